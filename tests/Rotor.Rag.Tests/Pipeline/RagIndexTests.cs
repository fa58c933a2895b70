using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests.Pipeline;

[Collection("MiniLM")]
public sealed class RagIndexTests(MiniLmFixture fixture, ITestOutputHelper output)
{
    // Twelve short documents on distinct subjects, two sections in the Markdown ones.
    private static readonly (string Name, string Text)[] Docs =
    [
        ("bees.txt", "Honey bees live in colonies with a single queen. Worker bees collect nectar and pollen from flowers and make honey in wax combs."),
        ("volcanoes.md", "# Eruptions\nA volcano erupts when molten rock called magma rises to the surface as lava.\n# Types\nShield volcanoes have gentle slopes built by fluid lava flows."),
        ("chess.txt", "Chess is a board game for two players. Each player begins with sixteen pieces and tries to checkmate the opposing king."),
        ("bread.txt", "Bread is baked from a dough of flour and water. Yeast makes the dough rise by producing carbon dioxide gas."),
        ("moon.md", "# Orbit\nThe Moon orbits the Earth about once every 27 days.\n# Landings\nApollo 11 landed the first astronauts on the Moon in 1969."),
        ("empty.txt", "   "),
        ("rivers.txt", "The Nile is a major river of north-eastern Africa that flows north into the Mediterranean Sea."),
        ("guitar.txt", "A guitar usually has six strings. Players strum or pluck the strings to make sound resonate in the hollow body."),
        ("photosynthesis.txt", "Plants turn sunlight, water and carbon dioxide into sugar and oxygen through photosynthesis in their leaves."),
        ("penguins.txt", "Penguins are flightless seabirds of the southern hemisphere. They swim with flippers and eat fish and krill."),
        ("copper.txt", "Copper is a soft metal that conducts heat and electricity very well, so it is used in electrical wiring."),
        ("tea.txt", "Tea is a drink made by pouring hot water over the cured leaves of the tea plant, first drunk in China."),
    ];

    private static string MakeFolder(string root)
    {
        string dir = Path.Combine(root, "docs");
        Directory.CreateDirectory(dir);
        foreach (var (name, text) in Docs) File.WriteAllText(Path.Combine(dir, name), text);
        return dir;
    }

    private RagIndexBuildOptions Options(int checkpointEvery = 0, Action<long>? after = null) => new()
    {
        BatchPassages = 2, CheckpointEveryDocuments = checkpointEvery, AfterDocument = after, Log = new StringWriter(),
    };

    [Fact]
    public async Task FolderIndexSearchesAndReportsSkips()
    {
        string root = TestPaths.TempDir();
        try
        {
            string src = MakeFolder(root), dir = Path.Combine(root, "idx");
            var report = RagIndexBuilder.Build(dir, DocumentSource.Folder(src), fixture.Embedder, Options());
            output.WriteLine(report.Summary());
            Assert.True(report.Finished);
            Assert.Equal(12, report.DocumentsRead);
            Assert.Equal(11, report.DocumentsIndexed);
            Assert.Equal(1, report.Skipped["empty"]);
            Assert.False(File.Exists(Path.Combine(dir, RagIndex.CheckpointFile)));
            using var rag = RagIndex.Open(dir, fixture.Embedder);
            Assert.Equal(CodeKind.Ternary, rag.Vectors.Options.Code);
            Assert.Equal(report.Passages, rag.Passages.Count);
            foreach (var mode in new[] { RetrievalMode.Dense, RetrievalMode.Lexical, RetrievalMode.Hybrid })
            {
                var r = rag.Search("When did astronauts first land on the Moon?", new RetrievalOptions { Top = 3, Mode = mode });
                output.WriteLine($"{mode}: {string.Join(", ", r.Hits.Select(h => $"{h.Passage.Id} {h.Score:F3}"))}");
                Assert.Equal("moon", r.Hits[0].Passage.Title);
                Assert.Equal("Landings", r.Hits[0].Passage.Section);
            }
            var dense = rag.Search("How do bees make honey?", new RetrievalOptions { Top = 3, Mode = RetrievalMode.Dense });
            Assert.Equal("bees", dense.Hits[0].Passage.Title);
            Assert.Equal(dense.Hits[0].Score, dense.DenseScores[0]);
            var fields = rag.Vectors.Search(fixture.Embedder.Embed("honey"), 1)[0].Fields!;
            Assert.Equal("bees", fields["title"]);
            // The index's retriever answers asynchronously with the same hits.
            const string Wiring = "Which metal is used for electrical wiring?";
            var hits = (await rag.Retriever.SearchAsync(Wiring, new RetrievalOptions { Top = 1 })).Hits;
            Assert.Equal("copper", hits[0].Passage.Title);
            Assert.Equal(rag.Search(Wiring, new RetrievalOptions { Top = 1 }).Hits.Select(h => (h.Passage.Id, h.Score)), hits.Select(h => (h.Passage.Id, h.Score)));
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void InterruptedBuildResumesWithoutDuplicates()
    {
        string root = TestPaths.TempDir();
        try
        {
            string src = MakeFolder(root), whole = Path.Combine(root, "whole"), resumed = Path.Combine(root, "resumed");
            var reference = RagIndexBuilder.Build(whole, DocumentSource.Folder(src), fixture.Embedder, Options());

            // Crash (an exception, no clean-up) while taking in document 8; checkpoints every 3 documents.
            var e = Assert.Throws<InvalidOperationException>(() => RagIndexBuilder.Build(resumed, DocumentSource.Folder(src), fixture.Embedder,
                Options(checkpointEvery: 3, after: n => { if (n == 8) throw new InvalidOperationException("simulated crash"); })));
            Assert.Equal("simulated crash", e.Message);
            Assert.True(File.Exists(Path.Combine(resumed, RagIndex.CheckpointFile)));
            Assert.False(File.Exists(Path.Combine(resumed, RagIndex.ManifestFile)));
            Assert.Contains("did not finish", Assert.Throws<RotorException>(() => RagIndex.Open(resumed, fixture.Embedder)).Message);
            // Uncommitted passages may sit in the log past the checkpoint: append garbage to prove they are cut off.
            File.AppendAllText(Path.Combine(resumed, RagIndex.PassagesFile), "{\"id\":\"half-written");

            // A crash between saving vectors.rix and writing checkpoint.json leaves vectors past the checkpoint: stand in
            // one for a passage not yet committed, with a wrong vector; the resume must replace it, not add a second.
            string vpath = Path.Combine(resumed, RagIndex.VectorsFile);
            using (var v = VectorIndex.Open(vpath, memoryMap: false))
            {
                var wrong = new float[v.Options.Dimensions]; wrong[0] = 1;
                v.Upsert([new IndexRecord("rivers.txt#0", wrong)]);
                v.Save(vpath);
            }

            // Resuming with other settings is refused, naming the setting.
            var bad = Assert.Throws<RotorException>(() => RagIndexBuilder.Build(resumed, DocumentSource.Folder(src), fixture.Embedder,
                Options(checkpointEvery: 3) with { Code = CodeKind.Int8 }));
            Assert.Contains("settings.code", bad.Message);

            var report = RagIndexBuilder.Build(resumed, DocumentSource.Folder(src), fixture.Embedder, Options(checkpointEvery: 3));
            output.WriteLine(report.Summary());
            Assert.True(report.Finished);
            Assert.Equal(6, report.ResumedFromDocuments);
            Assert.Equal(reference.Passages, report.Passages);
            Assert.Equal(reference.Skipped["empty"], report.Skipped["empty"]);
            using var a = RagIndex.Open(whole, fixture.Embedder);
            using var b = RagIndex.Open(resumed, fixture.Embedder);
            Assert.Equal(a.Passages, b.Passages);   // same passages, same order, no repeats (PassageFile.Read checks ids)
            Assert.Equal(a.Passages.Count, b.Vectors.Count);
            Assert.Equal(b.Vectors.Count, (int)b.Vectors.Stats.Slots);
            foreach (var p in a.Passages)
            {
                var va = a.Vectors.Get(p.Id)!.Vector.ToArray();
                var vb = b.Vectors.Get(p.Id)!.Vector.ToArray();
                for (int i = 0; i < va.Length; i++) Assert.Equal(va[i], vb[i], 5);
            }
            // A finished index is not rebuilt by accident.
            Assert.Contains("--force", Assert.Throws<RotorException>(() => RagIndexBuilder.Build(resumed, DocumentSource.Folder(src), fixture.Embedder, Options())).Message);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void CorruptIndexFilesAreRejectedByName()
    {
        string root = TestPaths.TempDir();
        try
        {
            string src = MakeFolder(root), dir = Path.Combine(root, "idx");
            RagIndexBuilder.Build(dir, DocumentSource.Folder(src), fixture.Embedder, Options());
            string manifest = Path.Combine(dir, RagIndex.ManifestFile), passages = Path.Combine(dir, RagIndex.PassagesFile), vectors = Path.Combine(dir, RagIndex.VectorsFile);
            string good = File.ReadAllText(manifest);
            using (RagIndex.Open(dir, fixture.Embedder)) { }

            string Fails(Action corrupt)
            {
                corrupt();
                try { return Assert.Throws<RotorException>(() => RagIndex.Open(dir, fixture.Embedder).Dispose()).Message; }
                finally { File.WriteAllText(manifest, good); }
            }

            Assert.Contains("not valid JSON", Fails(() => File.WriteAllText(manifest, good[..(good.Length / 2)])));
            Assert.Contains("version 7 is not supported", Fails(() => File.WriteAllText(manifest, good.Replace("\"version\": 1", "\"version\": 7"))));
            Assert.Contains("format is 'x'", Fails(() => File.WriteAllText(manifest, good.Replace("\"rotor-rag-index\"", "\"x\""))));
            Assert.Contains("model.dimensions", Fails(() => File.WriteAllText(manifest, good.Replace("\"dimensions\": 384", "\"dimensions\": \"384\""))));
            Assert.Contains("vectors.code is 'Quaternary'", Fails(() => File.WriteAllText(manifest, good.Replace("\"Ternary\"", "\"Quaternary\""))));
            Assert.Contains("counts.passages", Fails(() => File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(good, "\"passages\": \\d+", "\"passages\": 3"))));

            // A flipped byte in passages.jsonl (same size): the checksum names the file.
            byte[] original = File.ReadAllBytes(passages);
            var flipped = (byte[])original.Clone();
            flipped[flipped.Length / 2] ^= 0x01;
            File.WriteAllBytes(passages, flipped);
            var m = Assert.Throws<RotorException>(() => RagIndex.Open(dir, fixture.Embedder).Dispose()).Message;
            Assert.Contains("passages.jsonl", m); Assert.Contains("SHA-256", m);
            File.WriteAllBytes(passages, original);

            // A truncated vector file: the size names it.
            byte[] vbytes = File.ReadAllBytes(vectors);
            File.WriteAllBytes(vectors, vbytes[..^100]);
            m = Assert.Throws<RotorException>(() => RagIndex.Open(dir, fixture.Embedder).Dispose()).Message;
            Assert.Contains("vectors.rix", m); Assert.Contains("truncated", m);
            File.WriteAllBytes(vectors, vbytes);

            // A flipped byte in the codes of vectors.rix (same size): the file's own checksums name it and the section
            // when opened (a small file is copied and checked at open; a large one when a query first reads the chunk),
            // and the full check finds it by the manifest's SHA-256 before anything else.
            var vflipped = (byte[])vbytes.Clone();
            vflipped[4096 + 3] ^= 0x01;
            File.WriteAllBytes(vectors, vflipped);
            m = Assert.Throws<RotorException>(() => RagIndex.Open(dir, fixture.Embedder).Dispose()).Message;
            Assert.Contains("vectors.rix", m); Assert.Contains("checksum mismatch in section Codes", m);
            m = Assert.Throws<RotorException>(() => RagIndex.Verify(dir)).Message;
            Assert.Contains("vectors.rix", m); Assert.Contains("SHA-256", m);
            File.WriteAllBytes(vectors, vbytes);
            var steps = new List<string>();
            RagIndex.Verify(dir, (step, done, total) => { if (done == total) steps.Add(step); });
            Assert.Equal(["passages.jsonl (SHA-256)", "vectors.rix (SHA-256)", "vectors.rix (sections)", "bm25"], steps.Distinct());

            File.Delete(manifest);
            Assert.Contains("manifest.json missing", Assert.Throws<RotorException>(() => RagIndex.Open(dir, fixture.Embedder)).Message);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void JsonlCorpusWholeDocumentsAndCancellation()
    {
        string root = TestPaths.TempDir();
        try
        {
            string file = Path.Combine(root, "corpus.jsonl"), dir = Path.Combine(root, "idx");
            File.WriteAllLines(file, Docs.Select((d, i) => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["_id"] = $"d{i}", ["title"] = Path.GetFileNameWithoutExtension(d.Name), ["text"] = d.Text.Replace("\n", " ").Replace("# ", ""),
            })));
            // Cancelled (Ctrl+C) while taking in document 5: a checkpoint is written first, then the build stops.
            using var cts = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => RagIndexBuilder.Build(dir, DocumentSource.Jsonl(file), fixture.Embedder,
                Options(after: n => { if (n == 5) cts.Cancel(); }) with { SplitDocuments = false }, cts.Token));
            Assert.Contains("\"documents\": 5", File.ReadAllText(Path.Combine(dir, RagIndex.CheckpointFile)));
            var report = RagIndexBuilder.Build(dir, DocumentSource.Jsonl(file), fixture.Embedder, Options() with { SplitDocuments = false });
            Assert.Equal(5, report.ResumedFromDocuments);
            Assert.Equal(1, report.Skipped["empty"]);   // d5 is blank
            using var rag = RagIndex.Open(dir, fixture.Embedder);
            Assert.Equal(Enumerable.Range(0, 12).Where(i => i != 5).Select(i => $"d{i}"), rag.Passages.Select(p => p.Id));
            Assert.All(rag.Passages, p => Assert.Equal(p.Id, p.DocumentId));
            Assert.Equal("d9", rag.Search("flightless birds that swim", new RetrievalOptions { Top = 1, Mode = RetrievalMode.Dense }).Hits[0].Passage.Id);
        }
        finally { Directory.Delete(root, true); }
    }

    [WikiSampleFact]
    public void WikiSampleIndexAnswersAQuestionAboutAristotle()
    {
        string root = TestPaths.TempDir();
        try
        {
            // Two articles of the real dump, passages embedded cut to 64 tokens (the whole sample takes minutes to embed
            // on a small machine); every page is still read, cleaned and counted.
            var keep = new HashSet<string> { "Aristotle", "Albedo" };
            using var embedder = Rotor.Rag.Embeddings.SentenceEmbedder.CreateMiniLm(new Rotor.Rag.Embeddings.SentenceEmbedderOptions { MaxTokens = 64 });
            var report = RagIndexBuilder.Build(root, DocumentSource.Wiki(TestPaths.WikiSample!), embedder,
                new RagIndexBuildOptions { Include = d => keep.Contains(d.Title), Log = new StringWriter(), BatchPassages = 64 });
            output.WriteLine(report.Summary());
            Assert.Equal(100, report.Skipped["redirects"]);    // the one page outside namespace 0 is a redirect too
            Assert.Equal(106 - 2, report.Skipped["excluded"]);
            Assert.Equal(106, report.DocumentsRead);
            Assert.Equal(2, report.DocumentsIndexed);
            using var rag = RagIndex.Open(root, embedder);
            Assert.Equal(64, rag.Manifest.MaxTokens);
            Assert.Equal(keep, rag.Passages.Select(p => p.Title).ToHashSet());
            foreach (var mode in new[] { RetrievalMode.Hybrid, RetrievalMode.Dense, RetrievalMode.Lexical })
            {
                var r = rag.Search("Which Greek philosopher was a student of Plato and the teacher of Alexander the Great?", new RetrievalOptions { Top = 3, Mode = mode });
                output.WriteLine($"{mode}: {string.Join(" | ", r.Hits.Select(h => $"{h.Passage.Title} > {h.Passage.Section} {h.Score:F3}"))}");
                Assert.Equal("Aristotle", r.Hits[0].Passage.Title);
            }
            var albedo = rag.Search("How much sunlight does fresh snow reflect?", new RetrievalOptions { Top = 1, Mode = RetrievalMode.Hybrid });
            Assert.Equal("Albedo", albedo.Hits[0].Passage.Title);
        }
        finally { Directory.Delete(root, true); }
    }
}

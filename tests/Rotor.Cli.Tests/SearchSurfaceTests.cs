using System.Text.Json;

namespace Rotor.Cli.Tests;

/// <summary>
/// The retrieval surface end to end, each command in a process of its own: <c>rotor ingest</c> builds, <c>rotor search</c>
/// retrieves from an index directory, a passages file and the demo corpus alike; bad input is one line and exit code 2;
/// the help of <c>rotor eval</c>'s subcommands names no argument of another command.
/// </summary>
public class SearchSurfaceTests
{
    private static (int Code, string Out) Rotor(params string[] args) => TrainEvalEndToEndTests.Rotor(args);

    private static readonly (string Name, string Text)[] Docs =
    [
        ("moon.md", "# Moon\n\nThe Moon is Earth's only natural satellite.\n\n## Landings\n\nApollo 11 landed the first astronauts on the Moon in July 1969. Neil Armstrong stepped onto the surface first."),
        ("bees.txt", "Honey bees make honey from the nectar of flowers. A colony stores it in wax combs to eat through the winter."),
        ("copper.txt", "Copper is a soft metal that conducts electricity very well, so it is used for electrical wiring in houses."),
        ("tea.txt", "Tea is brewed by pouring hot water over the cured leaves of the tea plant, a shrub native to East Asia."),
    ];

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-cli-search-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(dir, "docs"));
        foreach (var (name, text) in Docs) File.WriteAllText(Path.Combine(dir, "docs", name), text);
        return dir;
    }

    // The passage ids of "#N SCORE ... [ID]" lines, best first.
    private static string[] Ranked(string output) =>
        output.Split('\n').Where(l => l.StartsWith('#')).Select(l => l[(l.LastIndexOf('[') + 1)..l.LastIndexOf(']')]).ToArray();

    [Fact]
    public void IngestThenSearchAnIndexDirectoryAPassagesFileAndTheDemo()
    {
        string dir = TempDir();
        try
        {
            string idx = Path.Combine(dir, "idx"), passages = Path.Combine(dir, "passages.jsonl");
            var ingest = Rotor("ingest", "docs", Path.Combine(dir, "docs"), "--out", idx);
            Assert.True(ingest.Code == 0, ingest.Out);
            Assert.Contains("index complete", ingest.Out);
            var split = Rotor("ingest", "passages", "--folder", Path.Combine(dir, "docs"), "--out", passages);
            Assert.True(split.Code == 0, split.Out);

            const string Question = "When did astronauts first land on the Moon?";
            foreach (string mode in new[] { "hybrid", "dense", "lexical" })
            {
                var fromIndex = Rotor("search", idx, Question, "--top", "2", "--mode", mode);
                Assert.True(fromIndex.Code == 0, fromIndex.Out);
                var fromFile = Rotor("search", passages, Question, "--top", "2", "--mode", mode);
                Assert.True(fromFile.Code == 0, fromFile.Out);
                Assert.Equal(2, Ranked(fromIndex.Out).Length);
                Assert.StartsWith("moon.md#", Ranked(fromIndex.Out)[0]);
                // The same passages, scored the same way (the index keeps ternary codes, rescored from float32).
                Assert.Equal(Ranked(fromIndex.Out)[0], Ranked(fromFile.Out)[0]);
            }
            Assert.Contains("moon > Landings", Rotor("search", idx, Question, "--top", "1").Out);

            // Many questions, scored by their judgements, written as JSON lines.
            string queries = Path.Combine(dir, "q.jsonl"), qrels = Path.Combine(dir, "qrels.tsv"), json = Path.Combine(dir, "out.jsonl");
            File.WriteAllLines(queries, ["{\"_id\":\"q1\",\"text\":\"Which metal is used for electrical wiring?\"}", "{\"_id\":\"q2\",\"text\":\"How do bees make honey?\"}"]);
            File.WriteAllLines(qrels, ["query-id\tcorpus-id\tscore", "q1\tcopper.txt\t1", "q2\tbees.txt\t1"]);
            var many = Rotor("search", idx, "--queries", queries, "--qrels", qrels, "--json", json, "--top", "3");
            Assert.True(many.Code == 0, many.Out);
            Assert.Contains("nDCG@10 1.0000", many.Out);
            var lines = File.ReadAllLines(json).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
            Assert.Equal(["q1", "q2"], lines.Select(l => l.GetProperty("_id").GetString()));
            Assert.Equal("copper.txt", lines[0].GetProperty("hits")[0].GetProperty("doc").GetString());

            var demo = Rotor("search", "demo", "Who was the first person to walk on the Moon?", "--top", "1", "--adaptive");
            Assert.True(demo.Code == 0, demo.Out);
            Assert.Contains("adaptive:", demo.Out);
            Assert.Equal(["apollo-11-1"], Ranked(demo.Out));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary><c>rotor index verify</c> passes a fresh index folder and its vector file, and fails (exit code 2, one line
    /// naming the file) on a damaged vector file and on a damaged Lucene file.</summary>
    [Fact]
    public void IndexVerifyChecksAFolderAndAFileAndFailsOnDamage()
    {
        string dir = TempDir();
        try
        {
            string idx = Path.Combine(dir, "idx"), rix = Path.Combine(idx, "vectors.rix");
            var ingest = Rotor("ingest", "docs", Path.Combine(dir, "docs"), "--out", idx, "--threads", "3");
            Assert.True(ingest.Code == 0, ingest.Out);
            Assert.Contains("dims, 3 threads)", ingest.Out);     // the embedder's ONNX Runtime threads: --threads reaches them
            var folder = Rotor("index", "verify", idx);
            Assert.True(folder.Code == 0, folder.Out);
            Assert.Contains($"ok: {idx}", folder.Out);
            var file = Rotor("index", "verify", rix);
            Assert.True(file.Code == 0, file.Out);
            Assert.Contains($"ok: {rix}", file.Out);

            void Expect((int Code, string Out) r, string names)
            {
                Assert.True(r.Code == 2, $"exit {r.Code}\n{r.Out}");
                Assert.Contains(names, Assert.Single(r.Out.Split('\n'), l => l.StartsWith("rotor: ", StringComparison.Ordinal)));
                Assert.DoesNotContain("   at ", r.Out);
            }
            // A byte of the codes (the first section, at 4096): the file fails by its own checksums, the folder by the manifest.
            string copy = Path.Combine(dir, "copy.rix");
            File.Copy(rix, copy);
            Flip(copy, 4096 + 3);
            Expect(Rotor("index", "verify", copy), "checksum mismatch in section Codes");
            Flip(rix, 4096 + 3);
            Expect(Rotor("index", "verify", idx), "vectors.rix: SHA-256");
            Flip(rix, 4096 + 3);
            Assert.Equal(0, Rotor("index", "verify", idx).Code);
            // A byte in the middle of the largest Lucene file.
            var lucene = new DirectoryInfo(Path.Combine(idx, "bm25")).GetFiles().MaxBy(f => f.Length)!;
            Flip(lucene.FullName, lucene.Length / 2);
            Expect(Rotor("index", "verify", idx), "bm25");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static void Flip(string path, long offset)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Position = offset;
        int b = fs.ReadByte();
        fs.Position = offset;
        fs.WriteByte((byte)(b ^ 0x04));
    }

    [Fact]
    public void BadInputIsOneLineAndExitCodeTwo()
    {
        string dir = TempDir();
        try
        {
            string missing = Path.Combine(dir, "nothing-here");
            foreach (var (args, names) in new (string[], string)[]
            {
                (["search", missing, "question"], missing),
                (["search", "demo"], "--queries"),
                (["search", "demo", "q", "--vectors", Path.Combine(dir, "v.rix")], "--vectors"),
                (["index", "stats", Path.Combine(dir, "v.rix")], "v.rix"),
                (["eval", "retrieval", "--corpus", missing, "--queries", missing, "--qrels", missing], missing),
            })
            {
                var r = Rotor(args);
                Assert.True(r.Code == 2, $"rotor {string.Join(' ', args)}: exit {r.Code}\n{r.Out}");
                string error = Assert.Single(r.Out.Split('\n'), l => l.StartsWith("rotor: ", StringComparison.Ordinal));
                Assert.Contains(names, error);
                Assert.DoesNotContain("   at ", r.Out);
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void EvalSubcommandsHaveTheirOwnUsage()
    {
        foreach (string sub in new[] { "retrieval", "quality", "latency", "embedding" })
        {
            var help = Rotor("eval", sub, "--help");
            Assert.True(help.Code == 0, help.Out);
            Assert.Contains($"rotor eval {sub} [options]", help.Out);
            Assert.DoesNotContain("MODEL", help.Out);
        }
        Assert.Contains("rotor eval model <MODEL> [options]", Rotor("eval", "model", "--help").Out);
        Assert.Contains("rotor eval [command] [options]", Rotor("eval", "--help").Out);
    }
}

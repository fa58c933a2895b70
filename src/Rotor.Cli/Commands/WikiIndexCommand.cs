using System.CommandLine;
using System.Diagnostics;
using Rotor.Index;
using Rotor.Rag;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor index wiki</c>: a MediaWiki dump (or a text folder, or a BEIR corpus) to passages, embedded with
/// all-MiniLM-L6-v2 and stored in a Rotor.Index file, each record keyed by its passage id with the fields doc, title,
/// section and text; the passages also go to a JSON-lines file for BM25 and hybrid search (<c>rotor rag search</c>).
/// Mounted with <c>IndexCommand.Create(WikiIndexCommand.Create())</c>.
/// </summary>
internal static class WikiIndexCommand
{
    internal static Command Create()
    {
        var dump = new Argument<FileInfo>("dump") { Description = "MediaWiki XML dump (.xml or .xml.bz2); with --folder or --beir, that source instead" };
        var folder = new Option<bool>("--folder") { Description = "The argument is a folder of .txt/.md files" };
        var beir = new Option<bool>("--beir") { Description = "The argument is a BEIR corpus (JSON lines, plain or .gz)" };
        var output = new Option<FileInfo>("--out") { Description = "Index file to write (.rix)", Required = true };
        var passagesOut = new Option<FileInfo?>("--passages") { Description = "Passages file to write beside it (default: the index path with .passages.jsonl)" };
        var code = new Option<CodeKind>("--code") { Description = "Code: Float32, Int8, Ternary, Binary", DefaultValueFactory = _ => CodeKind.Ternary };
        var hnsw = new Option<bool>("--hnsw") { Description = "Build an HNSW graph (else exact flat search)" };
        var words = new Option<int>("--words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 };
        var limit = new Option<int>("--limit-passages") { Description = "Stop after this many passages (0 = all)", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch") { Description = "Passages embedded and added at a time", DefaultValueFactory = _ => 256 };
        var cmd = new Command("wiki", "Turn a Wikipedia dump into passages, embed them and store them in an index with their text");
        cmd.Arguments.Add(dump);
        foreach (var o in new Option[] { folder, beir, output, passagesOut, code, hnsw, words, limit, batch }) cmd.Options.Add(o);
        cmd.SetAction(parseResult => RagCommandErrors.Run(() =>
        {
            string source = parseResult.GetValue(dump)!.FullName;
            bool isFolder = parseResult.GetValue(folder), isBeir = parseResult.GetValue(beir);
            if (isFolder && isBeir) throw new RotorException("give at most one of --folder, --beir");
            string indexPath = parseResult.GetValue(output)!.FullName;
            string passagesPath = parseResult.GetValue(passagesOut)?.FullName ?? Path.ChangeExtension(indexPath, ".passages.jsonl");
            int batchSize = parseResult.GetValue(batch), max = parseResult.GetValue(limit);
            if (batchSize < 1) throw new RotorException($"--batch must be positive, got {batchSize}");

            var stats = new WikiDumpStats();
            IEnumerable<Document> docs = isFolder ? TextFolderReader.Read(source) : isBeir ? BeirReader.ReadCorpus(source) : WikiDumpReader.ReadArticles(source, stats);
            var passages = new PassageSplitter(parseResult.GetValue(words)).Split(docs);
            if (max > 0) passages = passages.Take(max);

            using var embedder = SentenceEmbedder.CreateMiniLm();
            using var index = VectorIndex.Create(new VectorIndexOptions
            {
                Dimensions = embedder.Dimensions,
                Code = parseResult.GetValue(code),
                Metric = Metric.Cosine,
                Structure = parseResult.GetValue(hnsw) ? IndexStructure.Hnsw : IndexStructure.Flat,
            });
            var bytes = isFolder || isBeir ? null : new ProgressMeter("dump read (bytes)", new FileInfo(source).Length);
            var clock = Stopwatch.StartNew();
            int total = 0;
            var buffer = new List<Passage>(batchSize);
            var vectors = new float[batchSize * embedder.Dimensions];
            void Flush()
            {
                if (buffer.Count == 0) return;
                var span = vectors.AsSpan(0, buffer.Count * embedder.Dimensions);
                embedder.Embed(buffer.Select(p => p.IndexText).ToList(), span);
                var records = new IndexRecord[buffer.Count];
                for (int i = 0; i < buffer.Count; i++)
                {
                    var p = buffer[i];
                    records[i] = new IndexRecord(p.Id, vectors.AsMemory(i * embedder.Dimensions, embedder.Dimensions).ToArray(), new Dictionary<string, object>
                    {
                        ["doc"] = p.DocumentId, ["title"] = p.Title, ["section"] = p.Section, ["text"] = p.Text,
                    });
                }
                index.Add(records);
                total += buffer.Count;
                buffer.Clear();
                double secs = clock.Elapsed.TotalSeconds;
                Console.Error.WriteLine($"{total:N0} passages embedded and indexed, {total / secs:F1}/s" + (bytes is null ? "" : $"; {bytes.Line(stats.BytesRead)}"));
            }
            int written = PassageFile.Write(passagesPath, passages.Select(p =>
            {
                buffer.Add(p);
                if (buffer.Count == batchSize) Flush();
                return p;
            }));
            Flush();
            index.Save(indexPath);
            var s = index.Stats;
            Console.WriteLine($"{written:N0} passages -> {passagesPath}");
            Console.WriteLine($"{s.Count:N0} records, {index.Options.Code} {index.Options.Structure}, {s.CodeBytes / 1024.0 / 1024.0:F1} MiB of codes -> {indexPath} " +
                              $"in {clock.Elapsed.TotalSeconds:F1} s; embedding {embedder.Timings.Texts / Math.Max(embedder.Timings.Total.TotalSeconds, 1e-9):F1} passages/s");
            if (!isFolder && !isBeir)
                Console.WriteLine($"dump: {stats.Pages:N0} pages, {stats.Redirects:N0} redirects, {stats.Articles:N0} articles");
            return 0;
        }));
        return cmd;
    }
}

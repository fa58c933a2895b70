using System.CommandLine;
using Rotor.Index;
using Rotor.Rag;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor ingest wiki|docs|jsonl SOURCE --out DIR</c>: build a retrieval index directory (passages, vectors, BM25;
/// docs/PIPELINE.md), resumable, for <c>rotor search DIR</c>. <c>rotor ingest passages</c>: only the passages file.
/// </summary>
internal static class IngestCommand
{
    internal static Command Create()
    {
        var cmd = new Command("ingest", "Turn a corpus into a retrieval index directory (passages, vectors, BM25) for rotor search");
        cmd.Subcommands.Add(SourceCommand("wiki", "dump", "A MediaWiki XML dump, .xml or .xml.bz2",
            "Index a Wikipedia dump: articles split into passages, embedded, ternary vector index + BM25 (resumable)", DocumentSource.Wiki));
        cmd.Subcommands.Add(SourceCommand("docs", "folder", "A folder of .txt and .md files",
            "Index a folder of text and Markdown files (resumable)", DocumentSource.Folder));
        cmd.Subcommands.Add(SourceCommand("jsonl", "file", "BEIR corpus: JSON lines {\"_id\",\"title\",\"text\"}, plain or .gz",
            "Index a BEIR-style JSON-lines corpus (resumable)", DocumentSource.Jsonl));
        cmd.Subcommands.Add(Passages());
        return cmd;
    }

    private static Command SourceCommand(string name, string argName, string argDescription, string description, Func<string, DocumentSource> open)
    {
        var source = new Argument<string>(argName) { Description = argDescription };
        var output = new Option<string>("--out") { Description = "Index directory to create (or resume)", Required = true }.OutputFolder();
        var code = new Option<CodeKind>("--code") { Description = "Vector code: Float32, Int8, Ternary, Binary", DefaultValueFactory = _ => CodeKind.Ternary };
        var rescore = new Option<int>("--rescore") { Description = "Rescoring factor of searches (0: none, and no float32 copy is kept)", DefaultValueFactory = _ => 10 }.InRange(0, 1000);
        var words = new Option<int>("--target-words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 }.InRange(1, 100_000);
        var noSplit = new Option<bool>("--no-split") { Description = "One passage a document, id = document id (BEIR corpora)" };
        var batch = new Option<int>("--batch") { Description = "Passages embedded together", DefaultValueFactory = _ => 256 }.InRange(1, 1_000_000);
        var every = new Option<int>("--checkpoint-seconds") { Description = "Seconds between checkpoints", DefaultValueFactory = _ => 60 }.InRange(1, 86_400);
        var max = new Option<long>("--max-documents") { Description = "Stop after this many source documents (0: all); run again without it to go on", DefaultValueFactory = _ => 0 }.NonNegative();
        var force = new Option<bool>("--force") { Description = "Delete an earlier index or checkpoint in --out and start over" };
        var threads = Validate.Threads();
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens a passage is cut to", DefaultValueFactory = _ => 256 }.InRange(3, 512);
        var device = Validate.EmbeddingDevice();
        var cmd = new Command(name, description);
        cmd.Arguments.Add(source);
        var wait = WriterLock.Option();
        foreach (var o in new Option[] { output, code, rescore, words, noSplit, batch, every, max, force, threads, maxTokens, device, wait }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var src = open(pr.GetValue(source)!);
            string dir = pr.GetValue(output)!;
            // One build a folder: a second waits, then resumes or finds the finished index.
            using var writer = WriterLock.Take(dir, pr.GetValue(wait));
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions
            {
                Threads = pr.GetValue(threads) ?? 0, MaxTokens = pr.GetValue(maxTokens), Device = Validate.ToEmbeddingDevice(pr.GetValue(device)),
            });
            if (Validate.EmbeddingDeviceLine(embedder, $"ingest {name}") is { } line) Console.Error.WriteLine(line);
            Console.Error.WriteLine($"indexing {src.Path} into {dir}: {embedder.ModelId} ({embedder.Dimensions} dims, {embedder.Options.Threads} threads{(embedder.ExecutionProvider == "CPU" ? "" : ", on the GPU")}), {pr.GetValue(code)} codes, rescore x{pr.GetValue(rescore)}");
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); Console.Error.WriteLine("stopping at the next document: writing a checkpoint"); };
            Console.CancelKeyPress += onCancel;
            try
            {
                var report = RagIndexBuilder.Build(dir, src, embedder, new RagIndexBuildOptions
                {
                    Code = pr.GetValue(code), RescoreFactor = pr.GetValue(rescore), TargetWords = pr.GetValue(words), SplitDocuments = !pr.GetValue(noSplit),
                    BatchPassages = pr.GetValue(batch), CheckpointInterval = TimeSpan.FromSeconds(Math.Max(1, pr.GetValue(every))),
                    MaxDocuments = pr.GetValue(max), Force = pr.GetValue(force),
                }, cts.Token);
                Console.Write(report.Summary());
                return 0;
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine($"interrupted; run the same command again to resume from {Path.Combine(dir, "checkpoint.json")}");
                return 130;
            }
            finally { Console.CancelKeyPress -= onCancel; }
        });
        return cmd;
    }

    private static Command Passages()
    {
        var wiki = new Option<FileInfo?>("--wiki") { Description = "A MediaWiki XML dump (pages-articles, .xml or .xml.bz2)" };
        var folder = new Option<DirectoryInfo?>("--folder") { Description = "A folder of .txt and .md files, one document a file" };
        var beir = new Option<FileInfo?>("--beir") { Description = "A BEIR corpus (JSON lines, plain or .gz)" };
        var output = new Option<FileInfo>("--out") { Description = "Passages file to write (JSON lines): for rotor search FILE and rotor eval embedding --passages", Required = true }.OutputFile();
        var words = new Option<int>("--words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 }.InRange(1, 100_000);
        var cmd = new Command("passages", "Only split a corpus into passages of about --words words that carry their title and section (JSON lines; no embedding)");
        foreach (var o in new Option[] { wiki, folder, beir, output, words, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(parseResult =>
        {
            var w = parseResult.GetValue(wiki);
            var f = parseResult.GetValue(folder);
            var b = parseResult.GetValue(beir);
            if ((w is null ? 0 : 1) + (f is null ? 0 : 1) + (b is null ? 0 : 1) != 1) throw new RotorException("give exactly one of --wiki, --folder, --beir");
            var stats = new WikiDumpStats();
            IEnumerable<Document> docs = w is not null ? WikiDumpReader.ReadArticles(w.FullName, stats)
                : f is not null ? TextFolderReader.Read(f.FullName)
                : BeirReader.ReadCorpus(b!.FullName);
            var splitter = new PassageSplitter(parseResult.GetValue(words));
            string outPath = parseResult.GetValue(output)!.FullName;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int documents = 0;
            var passages = splitter.Split(docs.Select(d => { documents++; return d; }));
            // Dumps report progress by file position (rate and ETA in bytes); other sources by passages.
            var bytes = w is null ? null : new ProgressMeter("dump read (bytes)", new FileInfo(w.FullName).Length);
            int count = PassageFile.Write(outPath, passages, n =>
            {
                Console.Error.WriteLine($"{n:N0} passages from {documents:N0} documents, {n / clock.Elapsed.TotalSeconds:F0} passages/s");
                if (bytes is not null) Console.Error.WriteLine(bytes.Line(stats.BytesRead));
            });
            Console.WriteLine($"{count:N0} passages from {documents:N0} documents in {clock.Elapsed.TotalSeconds:F1} s -> {outPath}");
            if (w is not null)
                Console.WriteLine($"dump: {stats.Pages:N0} pages, {stats.Redirects:N0} redirects, {stats.OtherNamespace:N0} in other namespaces, {stats.Articles:N0} articles");
            return 0;
        });
        return cmd;
    }
}

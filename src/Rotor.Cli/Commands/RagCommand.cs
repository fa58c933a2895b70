using System.CommandLine;
using Rotor.Rag;
using Rotor.Rag.Corpus;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor rag</c>: <c>ingest</c> turns a Wikipedia dump, a folder of .txt/.md files or a BEIR corpus into passages
/// (JSON lines); <c>search</c> retrieves passages for a query from such a file, or from the bundled demo corpus.
/// </summary>
internal static class RagCommand
{
    internal static Command Create()
    {
        var rag = new Command("rag", "Retrieval: turn corpora into passages and search them");
        rag.Subcommands.Add(Ingest());
        rag.Subcommands.Add(Search());
        return rag;
    }

    private static Command Ingest()
    {
        var wiki = new Option<FileInfo?>("--wiki") { Description = "A MediaWiki XML dump (pages-articles, .xml or .xml.bz2)" };
        var folder = new Option<DirectoryInfo?>("--folder") { Description = "A folder of .txt and .md files, one document a file" };
        var beir = new Option<FileInfo?>("--beir") { Description = "A BEIR corpus (JSON lines, plain or .gz)" };
        var output = new Option<FileInfo>("--out") { Description = "Passages file to write (JSON lines)", Required = true };
        var words = new Option<int>("--words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 };
        var cmd = new Command("ingest", "Split a corpus into passages of about --words words that carry their title and section");
        foreach (var o in new Option[] { wiki, folder, beir, output, words }) cmd.Options.Add(o);
        cmd.SetAction(parseResult => RagCommandErrors.Run(() =>
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
        }));
        return cmd;
    }

    private static Command Search()
    {
        var query = new Argument<string>("query") { Description = "What to look for" };
        var passages = new Option<FileInfo?>("--passages") { Description = "Passages file from 'rotor rag ingest' (default: the bundled demo corpus)" };
        var k = new Option<int>("--k") { Description = "Passages to show", DefaultValueFactory = _ => 5 };
        var indexFile = new Option<FileInfo?>("--index") { Description = "Index from 'rotor index wiki' for the dense side (needs --passages: its passages file); else the passages are embedded now" };
        var mode = new Option<RetrievalMode>("--mode") { Description = "Hybrid, Dense or Lexical", DefaultValueFactory = _ => RetrievalMode.Hybrid };
        var cmd = new Command("search", "Embed the passages, index them with BM25 in memory and show the best ones for a query");
        cmd.Arguments.Add(query);
        foreach (var o in new Option[] { passages, indexFile, k, mode }) cmd.Options.Add(o);
        cmd.SetAction(parseResult => RagCommandErrors.Run(() =>
        {
            var file = parseResult.GetValue(passages);
            IReadOnlyList<Passage> list = file is null ? DemoCorpus.Passages : PassageFile.Read(file.FullName).ToList();
            using var embedder = SentenceEmbedder.CreateMiniLm();
            Retriever retriever;
            IDisposable? denseOwner = null;
            if (parseResult.GetValue(indexFile) is { } ix)
            {
                if (file is null) throw new RotorException("--index needs --passages, the passages file written with the index");
                var ordinal = new Dictionary<string, int>(list.Count, StringComparer.Ordinal);
                for (int i = 0; i < list.Count; i++) ordinal[list[i].Id] = i;
                var index = Rotor.Index.VectorIndex.Open(ix.FullName);
                if (index.Count != list.Count)
                    throw new RotorException($"{ix.FullName} holds {index.Count:N0} records but {file.FullName} has {list.Count:N0} passages: not made together");
                Console.Error.WriteLine($"dense: {ix.FullName} ({index.Options.Code}, {index.Options.Structure}); BM25 over {list.Count:N0} passages in memory");
                var dense = new Rotor.Rag.Pipeline.IndexDenseSearcher(index, ordinal, new Rotor.Index.SearchOptions { IncludeFields = false }, ownsIndex: true);
                denseOwner = dense;
                retriever = new Retriever(list, embedder, dense, Bm25Index.BuildInMemory(list.Select(p => p.IndexText)), ownsLexical: true);
            }
            else
            {
                Console.Error.WriteLine($"embedding {list.Count:N0} passages with {embedder.ModelId}");
                retriever = Retriever.BuildInMemoryAsync(list, embedder).GetAwaiter().GetResult();
            }
            using var _ = retriever;
            using var __ = denseOwner;
            var hits = retriever.RetrieveAsync(parseResult.GetValue(query)!, parseResult.GetValue(k), parseResult.GetValue(mode)).GetAwaiter().GetResult();
            foreach (var h in hits)
            {
                string where = h.Passage.Section.Length == 0 ? h.Passage.Title : $"{h.Passage.Title} / {h.Passage.Section}";
                Console.WriteLine($"{h.Score:F4}  [{h.Passage.Id}] {where} (dense rank {h.DenseRank?.ToString() ?? "-"}, bm25 rank {h.LexicalRank?.ToString() ?? "-"})");
                Console.WriteLine($"        {h.Passage.Text}");
            }
            return 0;
        }));
        return cmd;
    }
}

using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Evaluation;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor index wiki|docs|jsonl SOURCE --out DIR</c>: build a RAG index directory (docs/PIPELINE.md), resumable;
/// <c>rotor index quality</c>: issue 5's code quality figures and the adaptive-retrieval calibration on a BEIR set;
/// <c>rotor index latency</c>: search latency on a large replicated index. Passed to <c>IndexCommand.Create</c>.
/// </summary>
internal static class IndexSourceCommands
{
    /// <summary>All the commands of this file, for <c>IndexCommand.Create(IndexSourceCommands.All())</c>.</summary>
    internal static Command[] All() => [CreateWiki(), CreateDocs(), CreateJsonl(), CreateQuality(), CreateLatency()];

    internal static Command CreateWiki() => SourceCommand("wiki", "dump", "A MediaWiki XML dump, .xml or .xml.bz2",
        "Index a Wikipedia dump: articles split into passages, embedded, ternary vector index + BM25 (resumable)", DocumentSource.Wiki);

    internal static Command CreateDocs() => SourceCommand("docs", "folder", "A folder of .txt and .md files",
        "Index a folder of text and Markdown files (resumable)", DocumentSource.Folder);

    internal static Command CreateJsonl() => SourceCommand("jsonl", "file", "BEIR corpus: JSON lines {\"_id\",\"title\",\"text\"}, plain or .gz",
        "Index a BEIR-style JSON-lines corpus (resumable)", DocumentSource.Jsonl);

    internal static int Guard(Func<int> body)
    {
        try { return body(); }
        catch (RotorException e)
        {
            Console.Error.WriteLine($"rotor: {e.Message}");
            return 2;
        }
    }

    private static Command SourceCommand(string name, string argName, string argDescription, string description, Func<string, DocumentSource> open)
    {
        var source = new Argument<string>(argName) { Description = argDescription };
        var output = new Option<string>("--out") { Description = "Index directory to create (or resume)", Required = true };
        var code = new Option<CodeKind>("--code") { Description = "Vector code: Float32, Int8, Ternary, Binary", DefaultValueFactory = _ => CodeKind.Ternary };
        var rescore = new Option<int>("--rescore") { Description = "Rescoring factor of searches (0: none, and no float32 copy is kept)", DefaultValueFactory = _ => 10 };
        var words = new Option<int>("--target-words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 };
        var noSplit = new Option<bool>("--no-split") { Description = "One passage a document, id = document id (BEIR corpora)" };
        var batch = new Option<int>("--batch") { Description = "Passages embedded together", DefaultValueFactory = _ => 256 };
        var every = new Option<int>("--checkpoint-seconds") { Description = "Seconds between checkpoints", DefaultValueFactory = _ => 60 };
        var max = new Option<long>("--max-documents") { Description = "Stop after this many source documents (0: all); run again without it to go on", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force") { Description = "Delete an earlier index or checkpoint in --out and start over" };
        var threads = new Option<int>("--threads") { Description = "Embedding threads (0: one a processor)", DefaultValueFactory = _ => 0 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens a passage is cut to", DefaultValueFactory = _ => 256 };
        var cmd = new Command(name, description);
        cmd.Arguments.Add(source);
        foreach (var o in new Option[] { output, code, rescore, words, noSplit, batch, every, max, force, threads, maxTokens }) cmd.Options.Add(o);
        cmd.SetAction(pr => Guard(() =>
        {
            var src = open(pr.GetValue(source)!);
            string dir = pr.GetValue(output)!;
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = pr.GetValue(threads), MaxTokens = pr.GetValue(maxTokens) });
            Console.Error.WriteLine($"indexing {src.Path} into {dir}: {embedder.ModelId} ({embedder.Dimensions} dims, {embedder.Options.Threads} threads), {pr.GetValue(code)} codes, rescore x{pr.GetValue(rescore)}");
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
        }));
        return cmd;
    }

    private static (List<Document> Docs, List<Query> Queries, Dictionary<string, Dictionary<string, int>> Qrels) ReadBeir(string corpus, string queries, string qrels)
    {
        Console.Error.WriteLine($"reading {corpus}");
        var docs = BeirReader.ReadCorpus(corpus).ToList();
        var qs = BeirReader.ReadQueries(queries).ToList();
        return (docs, qs, BeirReader.ReadQrels(qrels));
    }

    internal static Command CreateQuality()
    {
        var corpus = new Option<string>("--corpus") { Description = "BEIR corpus (JSON lines, plain or .gz)", Required = true };
        var queries = new Option<string>("--queries") { Description = "BEIR queries (JSON lines)", Required = true };
        var qrels = new Option<string>("--qrels") { Description = "BEIR judgements (TSV)", Required = true };
        var cache = new Option<string?>("--embeddings-cache") { Description = "Corpus embeddings kept between runs (the file of rotor eval retrieval --embeddings-cache)" };
        var json = new Option<string?>("--json") { Description = "Write the figures as flat JSON" };
        var policyOut = new Option<string?>("--policy-out") { Description = "Write the calibrated adaptive policy (put it in an index directory as adaptive.json)" };
        var limit = new Option<int>("--limit-queries") { Description = "At most this many judged queries (0: all)", DefaultValueFactory = _ => 0 };
        var rate = new Option<double>("--target-retrieve-rate") { Description = "Adaptive: retrieve for at least this share of answerable dev queries (0: threshold at the best balanced accuracy)", DefaultValueFactory = _ => 0.9 };
        var cmd = new Command("quality", "Issue 5 quality: nDCG@10 and Recall@100 of dense search over float32, int8, ternary (+/- rescoring) and binary codes vs float32; adaptive-retrieval calibration (dev half) and test (other half)");
        foreach (var o in new Option[] { corpus, queries, qrels, cache, json, policyOut, limit, rate }) cmd.Options.Add(o);
        cmd.SetAction(pr => Guard(() =>
        {
            var (docs, qs, judgements) = ReadBeir(pr.GetValue(corpus)!, pr.GetValue(queries)!, pr.GetValue(qrels)!);
            using var embedder = SentenceEmbedder.CreateMiniLm();
            var report = RetrievalBenchmark.Run(docs, qs, judgements, embedder, pr.GetValue(limit), variants: IndexCodeVariants.All(),
                embeddingsCache: pr.GetValue(cache));
            Console.Write(report.ToTable());
            var o = (JsonObject)JsonNode.Parse(report.ToJson())!;
            var baseline = report.Methods.First(m => m.Method == "dense-float");
            Console.WriteLine($"{"code",-28} {"nDCG@10",8} {"vs float",9} {"R@100",8} {"vs float",9}");
            foreach (var m in report.Methods.Where(m => m.Method.StartsWith("dense", StringComparison.Ordinal)))
            {
                double rn = m.Ndcg10 / baseline.Ndcg10, rr = m.Recall100 / baseline.Recall100;
                Console.WriteLine($"{m.Method,-28} {m.Ndcg10,8:F4} {rn,9:P1} {m.Recall100,8:F4} {rr,9:P1}");
                o[$"{m.Method}.ndcg@10-vs-float"] = Math.Round(rn, 4);
                o[$"{m.Method}.recall@100-vs-float"] = Math.Round(rr, 4);
            }

            // Adaptive retrieval: rankings by the default index (ternary, rescored x10) over the same cached embeddings.
            var texts = docs.Select(d => (d.Title.Length > 0 ? d.Title + " " : "") + d.FullText).ToList();
            float[] vectors = pr.GetValue(cache) is { } c
                ? EmbeddingCache.GetOrCompute(c, texts, embedder, null, Console.Error).Vectors
                : Embed(embedder, texts);
            var judged = qs.Where(q => judgements.ContainsKey(q.Id)).ToList();
            if (pr.GetValue(limit) > 0) judged = judged.Take(pr.GetValue(limit)).ToList();
            var qv = Embed(embedder, judged.Select(q => q.Text).ToList());
            var searcher = Rotor.Rag.Pipeline.IndexDenseSearcher.FromVectors(vectors, embedder.Dimensions, CodeKind.Ternary, 10);
            var study = PipelineBenchmarks.AdaptiveStudy(searcher, docs.Select(d => d.Id).ToList(), judged, qv, judgements,
                targetRetrieveRate: pr.GetValue(rate) > 0 ? pr.GetValue(rate) : null);
            searcher.Index.Dispose();
            Console.Write(study.ToTable());
            study.AddTo(o);
            if (pr.GetValue(policyOut) is { } p) { AtomicFile.WriteAllText(p, study.Policy.ToJson()); Console.Error.WriteLine($"wrote {p}"); }
            if (pr.GetValue(json) is { } j) { AtomicFile.WriteAllText(j, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"); Console.Error.WriteLine($"wrote {j}"); }
            return 0;
        }));
        return cmd;
    }

    private static float[] Embed(SentenceEmbedder embedder, List<string> texts)
    {
        var v = new float[texts.Count * embedder.Dimensions];
        var meter = new Rotor.Rag.ProgressMeter("embedding", texts.Count);
        embedder.Embed(texts, v, done => meter.Report(done));
        return v;
    }

    internal static Command CreateLatency()
    {
        var corpus = new Option<string>("--corpus") { Description = "BEIR corpus whose embeddings seed the vectors", Required = true };
        var queries = new Option<string>("--queries") { Description = "BEIR queries: embedded one at a time, then searched", Required = true };
        var cache = new Option<string?>("--embeddings-cache") { Description = "Corpus embeddings cache (see rotor eval retrieval)" };
        var count = new Option<int>("--count") { Description = "Vectors in the index: the corpus, then noisy copies", DefaultValueFactory = _ => 100_000 };
        var noise = new Option<float>("--noise") { Description = "Gaussian noise a component of each copy (before renormalizing)", DefaultValueFactory = _ => 0.02f };
        var n = new Option<int>("--limit-queries") { Description = "Queries timed", DefaultValueFactory = _ => 100 };
        var threads = new Option<int>("--threads") { Description = "Embedding threads (0: one a processor)", DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "Write the rows as JSON" };
        var cmd = new Command("latency", "Per-question latency (embed + search) on a large index made of a corpus's embeddings and noisy copies of them");
        foreach (var o in new Option[] { corpus, queries, cache, count, noise, n, threads, json }) cmd.Options.Add(o);
        cmd.SetAction(pr => Guard(() =>
        {
            var docs = BeirReader.ReadCorpus(pr.GetValue(corpus)!).ToList();
            var qs = BeirReader.ReadQueries(pr.GetValue(queries)!).Take(pr.GetValue(n)).Select(q => q.Text).ToList();
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = pr.GetValue(threads) });
            var texts = docs.Select(d => (d.Title.Length > 0 ? d.Title + " " : "") + d.FullText).ToList();
            float[] baseVectors = pr.GetValue(cache) is { } c ? EmbeddingCache.GetOrCompute(c, texts, embedder, null, Console.Error).Vectors : Embed(embedder, texts);
            var vectors = PipelineBenchmarks.Replicate(baseVectors, embedder.Dimensions, pr.GetValue(count), pr.GetValue(noise));
            var rows = PipelineBenchmarks.Latency(vectors, embedder.Dimensions, qs, embedder,
            [
                ("float32", CodeKind.Float32, 0), ("int8", CodeKind.Int8, 0), ("ternary", CodeKind.Ternary, 0),
                ("ternary-rescored-4", CodeKind.Ternary, 4), ("ternary-rescored-10", CodeKind.Ternary, 10), ("binary-rescored-10", CodeKind.Binary, 10),
            ]);
            Console.WriteLine($"{vectors.Length / embedder.Dimensions:N0} vectors ({docs.Count:N0} corpus embeddings + noisy copies, noise {pr.GetValue(noise)}), {qs.Count} queries, {embedder.Options.Threads} embedding threads; times in ms");
            Console.Write(PipelineBenchmarks.LatencyTable(rows));
            if (pr.GetValue(json) is { } j)
            {
                var arr = new JsonArray();
                foreach (var r in rows)
                    arr.Add((JsonNode)new JsonObject
                    {
                        ["name"] = r.Name, ["vectors"] = r.Count, ["build-seconds"] = Math.Round(r.BuildSeconds, 3),
                        ["search-p50-ms"] = Math.Round(r.SearchP50, 3), ["search-p95-ms"] = Math.Round(r.SearchP95, 3),
                        ["total-p50-ms"] = Math.Round(r.TotalP50, 3), ["total-p95-ms"] = Math.Round(r.TotalP95, 3),
                        ["top10-overlap"] = double.IsNaN(r.Overlap10) ? null : Math.Round(r.Overlap10, 4),
                    });
                AtomicFile.WriteAllText(j, arr.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            }
            return 0;
        }));
        return cmd;
    }
}

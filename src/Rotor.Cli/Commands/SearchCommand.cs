using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor search TARGET "question" [--top K] [--mode dense|lexical|hybrid] [--adaptive]</c> and
/// <c>rotor search TARGET --queries FILE.jsonl [--qrels FILE.tsv] [--json OUT]</c>: the retrieval pipeline
/// (<see cref="Retriever"/>) over a retrieval index directory (<c>rotor ingest</c>), a passages file embedded now, or the
/// bundled demo corpus (docs/PIPELINE.md). The raw vector index is <c>rotor index search</c>.
/// </summary>
internal static class SearchCommand
{
    internal static Command Create()
    {
        var target = new Argument<string>("target")
        {
            Description = "What to search: an index directory (made by rotor ingest wiki|docs|jsonl), a passages file " +
                          "(made by rotor ingest passages; embedded now, BM25 in memory), or 'demo' (the bundled demo corpus)",
        };
        var question = new Argument<string?>("question") { Description = "The question", Arity = ArgumentArity.ZeroOrOne }.NotBlank();
        var top = new Option<int>("--top") { Description = "Passages to show", DefaultValueFactory = _ => 5 }.InRange(1, 10_000);
        var mode = new Option<RetrievalMode>("--mode") { Description = "dense, lexical or hybrid (RRF of both)", DefaultValueFactory = _ => RetrievalMode.Hybrid };
        var candidates = new Option<int>("--candidates") { Description = "Candidates from each list before fusion", DefaultValueFactory = _ => 100 }.InRange(1, 100_000);
        var adaptive = new Option<bool>("--adaptive") { Description = "Decide from the dense scores whether to retrieve and how many passages, and say why" };
        var policy = new Option<string?>("--policy") { Description = "Adaptive policy file (default: TARGET/adaptive.json if present, else built-in thresholds)" };
        var queries = new Option<string?>("--queries") { Description = "Many questions: JSON lines {\"_id\",\"text\"}" };
        var json = new Option<string?>("--json") { Description = "With --queries: write one JSON object a query (ranked ids, titles, texts, scores) to this file" }.OutputFile();
        var qrels = new Option<string?>("--qrels") { Description = "With --queries: BEIR judgements (TSV) to score the results by document id (nDCG@10, Recall@10/@100, MRR@10)" };
        var strict = new Option<bool>("--strict") { Description = "With --qrels: refuse judgements that name queries or documents absent from --queries and the target (else a warning with counts)" };
        var vectors = new Option<string?>("--vectors") { Description = "With a passages file: its vectors, an index file (.rix) keyed by passage id, instead of embedding the passages now" };
        var threads = Validate.Threads();
        var noVerify = new Option<bool>("--no-verify") { Description = "Index directory: skip the SHA-256 check of its files on open (sizes are still checked)" };
        var cmd = new Command("search", "Retrieve passages for a question: top passages with title, section and score (dense, BM25 or hybrid)");
        cmd.Arguments.Add(target); cmd.Arguments.Add(question);
        foreach (var o in new Option[] { top, mode, candidates, adaptive, policy, queries, json, qrels, strict, vectors, threads, noVerify }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            string what = pr.GetValue(target)!;
            string? q = pr.GetValue(question), qfile = pr.GetValue(queries);
            if ((q is null) == (qfile is null)) throw new RotorException("give either a question or --queries FILE");
            if ((pr.GetValue(json) is not null || pr.GetValue(qrels) is not null) && qfile is null) throw new RotorException("--json and --qrels go with --queries");
            var options = new RetrievalOptions { Top = pr.GetValue(top), Mode = pr.GetValue(mode), Candidates = pr.GetValue(candidates) };
            if (options.Top <= 0) throw new RotorException($"--top is {options.Top}, must be positive");
            bool isDirectory = Directory.Exists(what);
            if (pr.GetValue(vectors) is not null && (isDirectory || !File.Exists(what)))
                throw new RotorException("--vectors goes with a passages file (an index directory holds its own vectors)");
            // One question over an index directory is embedded on one thread, the fastest for a short text; else the
            // process's count (0).
            int t = q is not null && isDirectory ? 1 : 0;
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = t });
            using var opened = Open(what, pr.GetValue(vectors), embedder, verify: !pr.GetValue(noVerify));
            AdaptivePolicy? pol = null;
            if (pr.GetValue(adaptive))
            {
                string? local = isDirectory ? Path.Combine(what, "adaptive.json") : null;
                string? file = pr.GetValue(policy) ?? (local is not null && File.Exists(local) ? local : null);
                pol = file is null ? AdaptivePolicy.Default : AdaptivePolicy.Load(file);
            }
            if (q is not null) One(opened.Retriever, q, options, pol);
            else Many(opened.Retriever, embedder, qfile!, pr.GetValue(json), pr.GetValue(qrels), pr.GetValue(strict), options, pol);
            return 0;
        });
        return cmd;
    }

    // A retriever and what must be disposed with it.
    private sealed class Opened(Retriever retriever, IDisposable owner) : IDisposable
    {
        public Retriever Retriever { get; } = retriever;
        public void Dispose() => owner.Dispose();
    }

    private static Opened Open(string what, string? vectorsFile, SentenceEmbedder embedder, bool verify)
    {
        var clock = Stopwatch.StartNew();
        if (Directory.Exists(what))
        {
            var rag = RagIndex.Open(what, embedder, verifyChecksums: verify);
            Console.Error.WriteLine($"opened {what}: {rag.Passages.Count:N0} passages, {rag.Manifest.Code} vectors (rescore x{rag.Manifest.RescoreFactor}), in {clock.Elapsed.TotalSeconds:F1} s");
            return new Opened(rag.Retriever, rag);
        }
        IReadOnlyList<Passage> passages;
        if (File.Exists(what)) passages = PassageFile.Read(what).ToList();
        else if (what == "demo") passages = DemoCorpus.Passages;
        else throw new RotorException($"{what}: no such index directory or passages file (or 'demo' for the bundled corpus)");
        Retriever retriever;
        if (vectorsFile is not null)
        {
            var ordinal = new Dictionary<string, int>(passages.Count, StringComparer.Ordinal);
            for (int i = 0; i < passages.Count; i++) ordinal[passages[i].Id] = i;
            var index = VectorIndex.Open(vectorsFile);
            if (index.Count != passages.Count)
            {
                index.Dispose();
                throw new RotorException($"{vectorsFile} holds {index.Count:N0} records but {what} has {passages.Count:N0} passages: not made together");
            }
            Console.Error.WriteLine($"dense: {vectorsFile} ({index.Options.Code}, {index.Options.Structure}); BM25 over {passages.Count:N0} passages in memory");
            var dense = new IndexDenseSearcher(index, ordinal, new SearchOptions { IncludeFields = false }, ownsIndex: true);
            retriever = new Retriever(passages, embedder, dense, Bm25Index.BuildInMemory(passages.Select(IndexText.Of)), ownsIndexes: true);
        }
        else
        {
            Console.Error.WriteLine($"embedding {passages.Count:N0} passages with {embedder.ModelId}");
            retriever = Retriever.BuildInMemoryAsync(passages, embedder).GetAwaiter().GetResult();
        }
        return new Opened(retriever, retriever);
    }

    // Adaptive decisions read dense scores; a lexical search has none, so a dense search supplies them.
    private static AdaptiveDecision? Decide(Retriever retriever, string question, ReadOnlySpan<float> vector, RetrievalResult r, RetrievalOptions options, AdaptivePolicy? policy)
    {
        if (policy is null) return null;
        if (r.DenseScores.Count > 0) return policy.Decide(r.DenseScores);
        var dense = options with { Top = options.Candidates, Mode = RetrievalMode.Dense };
        return policy.Decide((vector.IsEmpty ? retriever.Search(question, dense) : retriever.Search(question, vector, dense)).DenseScores);
    }

    private static void One(Retriever retriever, string question, RetrievalOptions options, AdaptivePolicy? policy)
    {
        var r = retriever.Search(question, options with { Top = Math.Max(options.Top, policy?.MaxPassages ?? 0) });
        var decision = Decide(retriever, question, default, r, options, policy);
        Console.WriteLine($"{options.Mode} search: embed {r.EmbedMilliseconds:F1} ms, search {r.SearchMilliseconds:F1} ms");
        var shown = r.Hits.Take(options.Top).ToList();
        if (decision is not null)
        {
            Console.WriteLine($"adaptive: {decision.Reason}");
            shown = decision.Retrieve ? r.Hits.Take(decision.Count).ToList() : [];
        }
        int rank = 0;
        foreach (var h in shown)
        {
            rank++;
            string where = h.Passage.Section.Length == 0 ? h.Passage.Title : $"{h.Passage.Title} > {h.Passage.Section}";
            string detail = options.Mode == RetrievalMode.Hybrid ? $" (dense {(h.DenseScore is float d ? d.ToString("F3") : "-")} #{h.DenseRank?.ToString() ?? "-"}, bm25 #{h.LexicalRank?.ToString() ?? "-"})" : "";
            Console.WriteLine($"#{rank} {h.Score:F4}{detail}  {where}  [{h.Passage.Id}]");
            string text = h.Passage.Text.Length > 300 ? h.Passage.Text[..300] + " ..." : h.Passage.Text;
            Console.WriteLine($"   {text}");
        }
    }

    // Scores ranked passages by their documents: a document counts at the rank of its first passage.
    private static void Score(List<(Query Q, RetrievalResult R)> results, Dictionary<string, Dictionary<string, int>> qrels, RetrievalOptions options)
    {
        var rankings = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var (q, r) in results)
            if (qrels.ContainsKey(q.Id)) rankings[q.Id] = r.Hits.Select(h => h.Passage.DocumentId).Distinct().ToList();
        if (rankings.Count == 0) throw new RotorException("none of the queries has judgements in --qrels");
        var s = Rotor.Rag.Evaluation.MethodScores.Compute(options.Mode.ToString().ToLowerInvariant(), rankings, qrels, 0);
        Console.WriteLine($"scored {rankings.Count} judged queries (top {options.Top} passages, by document): nDCG@10 {s.Ndcg10:F4}, Recall@10 {s.Recall10:F4}, Recall@100 {s.Recall100:F4}, MRR@10 {s.Mrr10:F4}");
    }

    private static void Many(Retriever retriever, SentenceEmbedder embedder, string file, string? jsonOut, string? qrelsFile, bool strict, RetrievalOptions options, AdaptivePolicy? policy)
    {
        var qs = BeirReader.ReadQueries(file).ToList();
        var dup = qs.GroupBy(x => x.Id).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new RotorException($"{file}: query id '{dup.Key}' appears {dup.Count()} times");
        if (qs.FirstOrDefault(x => string.IsNullOrWhiteSpace(x.Text)) is { } blank) throw new RotorException($"{file}: query '{blank.Id}' has an empty text");
        // Judgements are read and checked before the work, against the queries and the documents of the target.
        Dictionary<string, Dictionary<string, int>>? judgements = null;
        if (qrelsFile is not null)
        {
            judgements = BeirReader.ReadQrels(qrelsFile);
            var coverage = Rotor.Rag.Evaluation.QrelsCoverage.Of(judgements, qs.Select(x => x.Id), retriever.Passages.Select(p => p.DocumentId));
            if (coverage.Warning(qrelsFile) is { } w)
            {
                if (strict) throw new RotorException($"{w} (--strict)");
                Console.Error.WriteLine($"warning: {w}");
            }
        }
        var clock = Stopwatch.StartNew();
        int d = embedder.Dimensions;
        bool embed = options.Mode != RetrievalMode.Lexical || policy is not null;
        var vectors = new float[qs.Count * d];
        var meter = new Rotor.Rag.ProgressMeter("embedding queries", qs.Count);
        if (embed) embedder.Embed(qs.Select(x => x.Text).ToList(), vectors, done => meter.Report(done));
        double embedSec = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var results = new (Query Q, RetrievalResult R, AdaptiveDecision? D)[qs.Count];
        var searchMeter = new Rotor.Rag.ProgressMeter("searching", qs.Count);
        for (int i = 0; i < qs.Count; i++)
        {
            var v = embed ? vectors.AsSpan(i * d, d) : default;
            var r = retriever.Search(qs[i].Text, v, options);
            results[i] = (qs[i], r, Decide(retriever, qs[i].Text, v, r, options, policy));
            searchMeter.Report(i + 1);
        }
        double searchSec = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{qs.Count:N0} queries, {options.Mode}, top {options.Top}: embedding {embedSec:F1} s ({1000 * embedSec / Math.Max(1, qs.Count):F1} ms a query in batches), " +
                          $"search {searchSec:F1} s ({1000 * searchSec / Math.Max(1, qs.Count):F2} ms a query)");
        if (policy is not null)
            Console.WriteLine($"adaptive: retrieve for {results.Count(x => x.D!.Retrieve):N0} of {qs.Count:N0} queries, mean {results.Where(x => x.D!.Retrieve).Select(x => (double)x.D!.Count).DefaultIfEmpty(0).Average():F2} passages");
        if (judgements is not null) Score(results.Select(x => (x.Q, x.R)).ToList(), judgements, options);
        if (jsonOut is null)
        {
            foreach (var (query, r, _) in results.Take(10))
                Console.WriteLine($"{query.Id}: {string.Join(", ", r.Hits.Take(3).Select(h => $"{h.Passage.Id} {h.Score:F3}"))}");
            return;
        }
        AtomicFile.Write(jsonOut, stream =>
        {
            foreach (var (query, r, dec) in results)
            {
                using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                {
                    w.WriteStartObject();
                    w.WriteString("_id", query.Id);
                    w.WriteString("text", query.Text);
                    w.WriteString("mode", options.Mode.ToString().ToLowerInvariant());
                    if (dec is not null)
                    {
                        w.WriteStartObject("adaptive");
                        w.WriteBoolean("retrieve", dec.Retrieve); w.WriteNumber("count", dec.Count); w.WriteString("reason", dec.Reason);
                        w.WriteEndObject();
                    }
                    w.WriteStartArray("hits");
                    foreach (var h in r.Hits)
                    {
                        w.WriteStartObject();
                        w.WriteString("id", h.Passage.Id); w.WriteString("doc", h.Passage.DocumentId); w.WriteString("title", h.Passage.Title);
                        w.WriteString("section", h.Passage.Section); w.WriteString("text", h.Passage.Text); w.WriteNumber("score", h.Score);
                        if (h.DenseScore is float ds) w.WriteNumber("denseScore", ds);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                stream.WriteByte((byte)'\n');
            }
        });
        Console.Error.WriteLine($"wrote {jsonOut}");
    }
}

using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor search INDEX "question" [--top K] [--mode dense|lexical|hybrid] [--adaptive]</c> and
/// <c>rotor search INDEX --queries FILE.jsonl --json OUT</c> over a RAG index directory (docs/PIPELINE.md).
/// </summary>
internal static class SearchCommand
{
    internal static Command Create()
    {
        var index = new Argument<string>("index") { Description = "RAG index directory (made by rotor index wiki|docs|jsonl)" };
        var question = new Argument<string?>("question") { Description = "The question", Arity = ArgumentArity.ZeroOrOne };
        var top = new Option<int>("--top") { Description = "Passages to show", DefaultValueFactory = _ => 5 };
        var mode = new Option<RetrievalMode>("--mode") { Description = "dense, lexical or hybrid (RRF of both)", DefaultValueFactory = _ => RetrievalMode.Hybrid };
        var candidates = new Option<int>("--candidates") { Description = "Candidates from each list before fusion", DefaultValueFactory = _ => 100 };
        var adaptive = new Option<bool>("--adaptive") { Description = "Decide from the dense scores whether to retrieve and how many passages, and say why" };
        var policy = new Option<string?>("--policy") { Description = "Adaptive policy file (default: INDEX/adaptive.json if present, else built-in thresholds)" };
        var queries = new Option<string?>("--queries") { Description = "Many questions: JSON lines {\"_id\",\"text\"}" };
        var json = new Option<string?>("--json") { Description = "With --queries: write one JSON object a query (ranked ids, titles, texts, scores) to this file" };
        var qrels = new Option<string?>("--qrels") { Description = "With --queries: BEIR judgements (TSV) to score the results by document id (nDCG@10, Recall@10/@100, MRR@10)" };
        var threads = new Option<int>("--threads") { Description = "Embedding threads (0: 1 for one question, which is fastest for a short text, one a processor for --queries)", DefaultValueFactory = _ => 0 };
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip the SHA-256 check of the index files on open (sizes are still checked)" };
        var cmd = new Command("search", "Search a RAG index: top passages with title, section and score");
        cmd.Arguments.Add(index); cmd.Arguments.Add(question);
        foreach (var o in new Option[] { top, mode, candidates, adaptive, policy, queries, json, qrels, threads, noVerify }) cmd.Options.Add(o);
        cmd.SetAction(pr => IndexSourceCommands.Guard(() =>
        {
            string dir = pr.GetValue(index)!;
            string? q = pr.GetValue(question), qfile = pr.GetValue(queries);
            if ((q is null) == (qfile is null)) throw new RotorException("give either a question or --queries FILE");
            if ((pr.GetValue(json) is not null || pr.GetValue(qrels) is not null) && qfile is null) throw new RotorException("--json and --qrels go with --queries");
            int k = pr.GetValue(top);
            if (k <= 0) throw new RotorException($"--top is {k}, must be positive");
            var m = pr.GetValue(mode);
            int t = pr.GetValue(threads);
            if (t == 0 && q is not null) t = 1;
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = t });
            var open = Stopwatch.StartNew();
            using var rag = RagIndex.Open(dir, embedder, verifyChecksums: !pr.GetValue(noVerify));
            Console.Error.WriteLine($"opened {dir}: {rag.Passages.Count:N0} passages, {rag.Manifest.Code} vectors (rescore x{rag.Manifest.RescoreFactor}), in {open.Elapsed.TotalSeconds:F1} s");
            AdaptivePolicy? pol = null;
            if (pr.GetValue(adaptive))
            {
                string? file = pr.GetValue(policy) ?? (File.Exists(Path.Combine(dir, "adaptive.json")) ? Path.Combine(dir, "adaptive.json") : null);
                pol = file is null ? AdaptivePolicy.Default : AdaptivePolicy.Load(file);
            }
            if (q is not null) One(rag, q, k, m, pr.GetValue(candidates), pol);
            else Many(rag, embedder, qfile!, pr.GetValue(json), pr.GetValue(qrels), k, m, pr.GetValue(candidates), pol);
            return 0;
        }));
        return cmd;
    }

    // Adaptive decisions read dense scores; a lexical search has none, so a dense search supplies them.
    private static AdaptiveDecision? Decide(RagIndex rag, string question, RagSearchResult r, AdaptivePolicy? policy, int candidates)
        => policy?.Decide(r.DenseScores.Count > 0 ? r.DenseScores : rag.Search(question, candidates, RetrievalMode.Dense, candidates).DenseScores);

    private static void One(RagIndex rag, string question, int k, RetrievalMode mode, int candidates, AdaptivePolicy? policy)
    {
        var r = rag.Search(question, Math.Max(k, policy?.MaxPassages ?? 0), mode, candidates);
        var decision = Decide(rag, question, r, policy, candidates);
        Console.WriteLine($"{mode} search: embed {r.EmbedMilliseconds:F1} ms, search {r.SearchMilliseconds:F1} ms");
        var shown = r.Hits.Take(k).ToList();
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
            string detail = mode == RetrievalMode.Hybrid ? $" (dense {(h.DenseScore is float d ? d.ToString("F3") : "-")} #{h.DenseRank?.ToString() ?? "-"}, bm25 #{h.LexicalRank?.ToString() ?? "-"})" : "";
            Console.WriteLine($"#{rank} {h.Score:F4}{detail}  {where}  [{h.Passage.Id}]");
            string text = h.Passage.Text.Length > 300 ? h.Passage.Text[..300] + " ..." : h.Passage.Text;
            Console.WriteLine($"   {text}");
        }
    }

    // Scores ranked passages by their documents: a document counts at the rank of its first passage.
    private static void Score(List<(Query Q, RagSearchResult R)> results, Dictionary<string, Dictionary<string, int>> qrels, RetrievalMode mode, int k)
    {
        var rankings = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var (q, r) in results)
            if (qrels.ContainsKey(q.Id)) rankings[q.Id] = r.Hits.Select(h => h.Passage.DocumentId).Distinct().ToList();
        if (rankings.Count == 0) throw new RotorException("none of the queries has judgements in --qrels");
        var s = Rotor.Rag.Evaluation.MethodScores.Compute(mode.ToString().ToLowerInvariant(), rankings, qrels, 0);
        Console.WriteLine($"scored {rankings.Count} judged queries (top {k} passages, by document): nDCG@10 {s.Ndcg10:F4}, Recall@10 {s.Recall10:F4}, Recall@100 {s.Recall100:F4}, MRR@10 {s.Mrr10:F4}");
    }

    private static void Many(RagIndex rag, SentenceEmbedder embedder, string file, string? jsonOut, string? qrelsFile, int k, RetrievalMode mode, int candidates, AdaptivePolicy? policy)
    {
        var qs = BeirReader.ReadQueries(file).ToList();
        var dup = qs.GroupBy(x => x.Id).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new RotorException($"{file}: query id '{dup.Key}' appears {dup.Count()} times");
        var clock = Stopwatch.StartNew();
        int d = embedder.Dimensions;
        var vectors = new float[qs.Count * d];
        var meter = new Rotor.Rag.ProgressMeter("embedding queries", qs.Count);
        if (mode != RetrievalMode.Lexical || policy is not null) embedder.Embed(qs.Select(x => x.Text).ToList(), vectors, done => meter.Report(done));
        double embedSec = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var results = new (Query Q, RagSearchResult R, AdaptiveDecision? D)[qs.Count];
        var searchMeter = new Rotor.Rag.ProgressMeter("searching", qs.Count);
        for (int i = 0; i < qs.Count; i++)
        {
            var v = vectors.AsSpan(i * d, d).ToArray();
            var r = rag.Search(qs[i].Text, mode == RetrievalMode.Lexical && policy is null ? null : v, k, mode, candidates);
            var dec = policy is null ? null : policy.Decide(r.DenseScores.Count > 0 ? r.DenseScores : rag.Search(qs[i].Text, v, candidates, RetrievalMode.Dense, candidates).DenseScores);
            results[i] = (qs[i], r, dec);
            searchMeter.Report(i + 1);
        }
        double searchSec = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{qs.Count:N0} queries, {mode}, top {k}: embedding {embedSec:F1} s ({1000 * embedSec / Math.Max(1, qs.Count):F1} ms a query in batches), " +
                          $"search {searchSec:F1} s ({1000 * searchSec / Math.Max(1, qs.Count):F2} ms a query)");
        if (policy is not null)
            Console.WriteLine($"adaptive: retrieve for {results.Count(x => x.D!.Retrieve):N0} of {qs.Count:N0} queries, mean {results.Where(x => x.D!.Retrieve).Select(x => (double)x.D!.Count).DefaultIfEmpty(0).Average():F2} passages");
        if (qrelsFile is not null) Score(results.Select(x => (x.Q, x.R)).ToList(), BeirReader.ReadQrels(qrelsFile), mode, k);
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
                    w.WriteString("mode", mode.ToString().ToLowerInvariant());
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

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Rag.Evaluation;

/// <summary>What a <see cref="RetrievalBenchmark"/> run measured.</summary>
/// <param name="CorpusDocuments">Documents in the corpus.</param>
/// <param name="Queries">Queries run (those with judgements).</param>
/// <param name="Methods">Scores of dense-float, bm25 and hybrid.</param>
/// <param name="EmbeddingTimings">Where the corpus embedding time went.</param>
/// <param name="EmbedSeconds">Wall time to embed the corpus.</param>
/// <param name="Bm25IndexSeconds">Wall time to build the BM25 index.</param>
/// <param name="Threads">Threads the embedder used.</param>
/// <param name="EmbeddingsFromCache">The corpus embeddings were read from a cache file (so no throughput was measured).</param>
public sealed record RetrievalReport(int CorpusDocuments, int Queries, IReadOnlyList<MethodScores> Methods, EmbeddingTimings EmbeddingTimings,
    double EmbedSeconds, double Bm25IndexSeconds, int Threads, bool EmbeddingsFromCache = false)
{
    /// <summary>Corpus documents embedded a second.</summary>
    public double PassagesPerSecond => CorpusDocuments / Math.Max(EmbedSeconds, 1e-9);

    /// <summary>
    /// The report as flat JSON: <c>METHOD.ndcg@10</c>, <c>METHOD.recall@10</c>, <c>METHOD.recall@100</c>,
    /// <c>METHOD.mrr@10</c>, <c>METHOD.queries-per-second</c> for METHOD in dense-float, bm25, hybrid; and
    /// <c>corpus.documents</c>, <c>queries</c>, <c>embedding.from-cache</c>, <c>embedding.*</c> (throughput, only when
    /// the corpus was embedded in this run) and <c>bm25.index-seconds</c>.
    /// </summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["corpus.documents"] = CorpusDocuments,
            ["queries"] = Queries,
        };
        foreach (var m in Methods)
        {
            o[$"{m.Method}.ndcg@10"] = Math.Round(m.Ndcg10, 5);
            o[$"{m.Method}.recall@10"] = Math.Round(m.Recall10, 5);
            o[$"{m.Method}.recall@100"] = Math.Round(m.Recall100, 5);
            o[$"{m.Method}.mrr@10"] = Math.Round(m.Mrr10, 5);
            o[$"{m.Method}.queries-per-second"] = Math.Round(m.QueriesPerSecond, 2);
        }
        var t = EmbeddingTimings;
        o["embedding.from-cache"] = EmbeddingsFromCache;
        if (!EmbeddingsFromCache) AddThroughput(o, t);
        o["bm25.index-seconds"] = Math.Round(Bm25IndexSeconds, 3);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private void AddThroughput(JsonObject o, EmbeddingTimings t)
    {
        o["embedding.threads"] = Threads;
        o["embedding.seconds"] = Math.Round(EmbedSeconds, 3);
        o["embedding.passages-per-second"] = Math.Round(PassagesPerSecond, 2);
        o["embedding.tokens"] = t.Tokens;
        o["embedding.padded-tokens"] = t.PaddedTokens;
        o["embedding.tokenize-seconds"] = Math.Round(t.Tokenize.TotalSeconds, 3);
        o["embedding.model-seconds"] = Math.Round(t.Model.TotalSeconds, 3);
        o["embedding.pool-seconds"] = Math.Round(t.Pool.TotalSeconds, 3);
    }

    /// <summary>A plain-text table of the scores and timings.</summary>
    public string ToTable()
    {
        var sw = new StringWriter(CultureInfo.InvariantCulture);
        sw.WriteLine($"corpus {CorpusDocuments:N0} documents, {Queries} queries with judgements");
        sw.WriteLine($"{"method",-24} {"nDCG@10",8} {"R@10",8} {"R@100",8} {"MRR@10",8} {"q/s",8}");
        foreach (var m in Methods)
            sw.WriteLine($"{m.Method,-24} {m.Ndcg10,8:F4} {m.Recall10,8:F4} {m.Recall100,8:F4} {m.Mrr10,8:F4} {m.QueriesPerSecond,8:F1}");
        var t = EmbeddingTimings;
        if (EmbeddingsFromCache) sw.WriteLine($"embedding: read from the cache in {EmbedSeconds:F1} s");
        else sw.WriteLine($"embedding: {PassagesPerSecond:F1} passages/s on {Threads} threads ({EmbedSeconds:F1} s; tokenize {t.Tokenize.TotalSeconds:F1} s, " +
                     $"model {t.Model.TotalSeconds:F1} s, pool {t.Pool.TotalSeconds:F2} s; {t.Tokens:N0} tokens, {t.PaddedTokens:N0} with padding)");
        sw.WriteLine($"bm25 index: {Bm25IndexSeconds:F1} s");
        return sw.ToString();
    }
}

/// <summary>Another dense searcher to score beside the exact float one, for example a quantized or approximate index.</summary>
/// <param name="Name">Method name, the prefix of its JSON keys (e.g. dense-ternary).</param>
/// <param name="Build">Makes the searcher from the corpus embeddings, (documents, dimensions) row-major, unit rows, and the dimensions.</param>
public sealed record DenseVariant(string Name, Func<float[], int, IDenseSearcher> Build);

/// <summary>
/// Runs a BEIR-format retrieval benchmark: embeds the corpus (title + " " + text, as BEIR does), builds an exact dense
/// searcher and a BM25 index, runs every judged query through dense, BM25 and their RRF fusion, and scores the top 100.
/// </summary>
public static class RetrievalBenchmark
{
    /// <summary>Hits kept a query (the deepest cut scored is @100).</summary>
    public const int Depth = 100;

    /// <summary>Runs the benchmark.</summary>
    /// <param name="corpus">Corpus documents.</param>
    /// <param name="queries">Queries; only those with judgements are run.</param>
    /// <param name="qrels">Judgements.</param>
    /// <param name="embedder">Sentence embedder.</param>
    /// <param name="limitQueries">Run at most this many queries (0 = all).</param>
    /// <param name="log">Progress lines go here (stderr by default).</param>
    /// <param name="variants">More dense searchers to score, each built over the same corpus embeddings; scored after hybrid.</param>
    /// <param name="embeddingsCache">A file that keeps the corpus embeddings between runs (see <see cref="EmbeddingCache"/>); null to embed every time.</param>
    public static RetrievalReport Run(IReadOnlyList<Document> corpus, IReadOnlyList<Query> queries, IReadOnlyDictionary<string, Dictionary<string, int>> qrels,
        SentenceEmbedder embedder, int limitQueries = 0, TextWriter? log = null, IReadOnlyList<DenseVariant>? variants = null, string? embeddingsCache = null)
    {
        log ??= Console.Error;
        if (corpus.Count == 0) throw new RotorException("the corpus is empty");
        var judged = queries.Where(q => qrels.ContainsKey(q.Id)).ToList();
        if (limitQueries > 0) judged = judged.Take(limitQueries).ToList();
        if (judged.Count == 0) throw new RotorException($"none of the {queries.Count} queries has relevance judgements");
        var texts = corpus.Select(IndexText.Of).ToList();

        var before = embedder.Timings;
        var meter = new ProgressMeter("embedding corpus", texts.Count, log);
        float[] vectors;
        bool fromCache = false;
        var clock = Stopwatch.StartNew();
        if (embeddingsCache is null)
        {
            vectors = new float[texts.Count * embedder.Dimensions];
            embedder.Embed(texts, vectors, done => meter.Report(done));
        }
        else (vectors, fromCache) = EmbeddingCache.GetOrCompute(embeddingsCache, texts, embedder, done => meter.Report(done), log);
        double embedSeconds = clock.Elapsed.TotalSeconds;
        var after = embedder.Timings;
        var timings = new EmbeddingTimings(after.Texts - before.Texts, after.Tokens - before.Tokens, after.PaddedTokens - before.PaddedTokens,
            after.Tokenize - before.Tokenize, after.Model - before.Model, after.Pool - before.Pool);

        clock.Restart();
        log.WriteLine($"building BM25 index of {texts.Count:N0} documents");
        using var bm25 = Bm25Index.BuildInMemory(texts);
        double bm25Seconds = clock.Elapsed.TotalSeconds;
        var dense = new ExactDenseSearcher(vectors, embedder.Dimensions);

        // Dense: embed every query in one batch, then search.
        clock.Restart();
        var qvec = new float[judged.Count * embedder.Dimensions];
        embedder.Embed(judged.Select(q => q.Text).ToList(), qvec);
        var denseHits = new IReadOnlyList<ScoredOrdinal>[judged.Count];
        Parallel.For(0, judged.Count, new ParallelOptions { MaxDegreeOfParallelism = embedder.Options.Threads },
            i => denseHits[i] = dense.Search(qvec.AsSpan(i * embedder.Dimensions, embedder.Dimensions), Depth));
        double denseQps = judged.Count / clock.Elapsed.TotalSeconds;

        clock.Restart();
        var lexHits = new IReadOnlyList<ScoredOrdinal>[judged.Count];
        for (int i = 0; i < judged.Count; i++) lexHits[i] = bm25.Search(judged[i].Text, Depth);
        double lexQps = judged.Count / clock.Elapsed.TotalSeconds;

        clock.Restart();
        var fused = new IReadOnlyList<ScoredOrdinal>[judged.Count];
        for (int i = 0; i < judged.Count; i++) fused[i] = ReciprocalRankFusion.Fuse([denseHits[i], lexHits[i]], Depth);
        double fuseSeconds = clock.Elapsed.TotalSeconds;
        double hybridQps = judged.Count / (judged.Count / denseQps + judged.Count / lexQps + fuseSeconds);

        IReadOnlyDictionary<string, IReadOnlyList<string>> Ids(IReadOnlyList<ScoredOrdinal>[] hits)
            => judged.Select((q, i) => (q.Id, Ranked: (IReadOnlyList<string>)hits[i].Select(h => corpus[h.Ordinal].Id).ToList()))
                     .ToDictionary(x => x.Id, x => x.Ranked);

        var methods = new List<MethodScores>
        {
            MethodScores.Compute("dense-float", Ids(denseHits), qrels, denseQps),
            MethodScores.Compute("bm25", Ids(lexHits), qrels, lexQps),
            MethodScores.Compute("hybrid", Ids(fused), qrels, hybridQps),
        };
        foreach (var variant in variants ?? [])
        {
            if (methods.Any(m => m.Method == variant.Name)) throw new ArgumentException($"method name '{variant.Name}' is used twice", nameof(variants));
            log.WriteLine($"building {variant.Name}");
            var searcher = variant.Build(vectors, embedder.Dimensions);
            if (searcher.Count != corpus.Count || searcher.Dimensions != embedder.Dimensions)
                throw new RotorException($"{variant.Name} holds {searcher.Count} vectors of {searcher.Dimensions} dimensions, expected {corpus.Count} of {embedder.Dimensions}");
            clock.Restart();
            var hits = new IReadOnlyList<ScoredOrdinal>[judged.Count];
            for (int i = 0; i < judged.Count; i++) hits[i] = searcher.Search(qvec.AsSpan(i * embedder.Dimensions, embedder.Dimensions), Depth);
            methods.Add(MethodScores.Compute(variant.Name, Ids(hits), qrels, judged.Count / clock.Elapsed.TotalSeconds));
        }
        return new RetrievalReport(corpus.Count, judged.Count, methods, timings, embedSeconds, bm25Seconds, embedder.Options.Threads, fromCache);
    }
}

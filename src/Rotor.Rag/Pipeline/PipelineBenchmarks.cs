using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Text;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Rag.Pipeline;

/// <summary>Result of <see cref="PipelineBenchmarks.AdaptiveStudy"/>.</summary>
/// <param name="Policy">The policy fitted on the development split.</param>
/// <param name="DevQueries">Development queries.</param>
/// <param name="TestQueries">Held-out queries.</param>
/// <param name="Dev">The policy on the development split.</param>
/// <param name="Test">The policy on the held-out split.</param>
/// <param name="FixedTest">Fixed-k baselines (k = 1, 3, 5, 10) on the held-out split.</param>
/// <param name="CountOnlyTest">The policy's count rule alone (always retrieving) on the held-out split: comparable with the fixed-k rows.</param>
/// <param name="Balanced">The policy whose retrieve threshold maximizes balanced accuracy on dev instead (for comparison; null when that is <paramref name="Policy"/>).</param>
/// <param name="BalancedTest">It on the held-out split.</param>
public sealed record AdaptiveStudyReport(AdaptivePolicy Policy, int DevQueries, int TestQueries, AdaptiveScores Dev, AdaptiveScores Test,
    IReadOnlyList<(int K, AdaptiveScores Scores)> FixedTest, AdaptiveScores CountOnlyTest, AdaptivePolicy? Balanced = null, AdaptiveScores? BalancedTest = null)
{
    /// <summary>A plain-text table.</summary>
    public string ToTable()
    {
        var sw = new StringWriter(CultureInfo.InvariantCulture);
        var p = Policy;
        sw.WriteLine($"adaptive policy fitted on {DevQueries} dev queries: retrieve when top >= {p.MinTopScore:F3}; take while within {p.MaxDropFromTop:F3} of the top, stop at a gap >= {p.MinGap:F3}, at most {p.MaxPassages}");
        sw.WriteLine($"{"policy",-16} {"split",-5} {"retrieve",9} {"skip",6} {"bal.acc",8} {"k mean",7} {"recall",7} {"prec.",7} {"F1",7}");
        void Row(string name, string split, AdaptiveScores s)
            => sw.WriteLine($"{name,-16} {split,-5} {s.RetrieveRecall,9:F3} {s.SkipRate,6:F3} {s.DecisionAccuracy,8:F3} {s.MeanPassages,7:F2} {s.PassageRecall,7:F3} {s.PassagePrecision,7:F3} {s.F1,7:F3}");
        Row("adaptive", "dev", Dev);
        Row("adaptive", "test", Test);
        Row("count rule only", "test", CountOnlyTest);
        if (Balanced is not null && BalancedTest is not null)
        {
            Row($"balanced (>={Balanced.MinTopScore:F3})", "test", BalancedTest);
        }
        foreach (var (k, s) in FixedTest) Row($"fixed k={k}", "test", s);
        return sw.ToString();
    }

    /// <summary>Flat JSON keys <c>adaptive.*</c> into <paramref name="o"/>.</summary>
    public void AddTo(System.Text.Json.Nodes.JsonObject o)
    {
        o["adaptive.min-top-score"] = Math.Round(Policy.MinTopScore, 4);
        o["adaptive.max-drop-from-top"] = Math.Round(Policy.MaxDropFromTop, 4);
        o["adaptive.min-gap"] = Math.Round(Policy.MinGap, 4);
        o["adaptive.max-passages"] = Policy.MaxPassages;
        o["adaptive.dev-queries"] = DevQueries;
        o["adaptive.test-queries"] = TestQueries;
        void Put(string prefix, AdaptiveScores s)
        {
            o[$"{prefix}.retrieve-rate"] = Math.Round(s.RetrieveRecall, 4);
            o[$"{prefix}.skip-rate-unanswerable"] = Math.Round(s.SkipRate, 4);
            o[$"{prefix}.balanced-accuracy"] = Math.Round(s.DecisionAccuracy, 4);
            o[$"{prefix}.mean-passages"] = Math.Round(s.MeanPassages, 3);
            o[$"{prefix}.recall"] = Math.Round(s.PassageRecall, 4);
            o[$"{prefix}.precision"] = Math.Round(s.PassagePrecision, 4);
            o[$"{prefix}.f1"] = Math.Round(s.F1, 4);
        }
        Put("adaptive.dev", Dev);
        Put("adaptive.test", Test);
        Put("adaptive-count-only.test", CountOnlyTest);
        if (Balanced is not null && BalancedTest is not null)
        {
            o["adaptive-balanced.min-top-score"] = Math.Round(Balanced.MinTopScore, 4);
            Put("adaptive-balanced.test", BalancedTest);
        }
        foreach (var (k, s) in FixedTest) Put($"fixed-{k}.test", s);
    }
}

/// <summary>Result of <see cref="PipelineBenchmarks.Latency"/> for one code.</summary>
/// <param name="Name">Variant name.</param>
/// <param name="Count">Vectors searched.</param>
/// <param name="BuildSeconds">Time to add the vectors to the index.</param>
/// <param name="SearchP50">Median search time (ms), query embedding excluded.</param>
/// <param name="SearchP95">95th percentile search time (ms).</param>
/// <param name="TotalP50">Median embed + search (ms).</param>
/// <param name="TotalP95">95th percentile embed + search (ms).</param>
/// <param name="Overlap10">Mean share of the float32 exact top 10 found in this variant's top 10.</param>
public sealed record LatencyRow(string Name, int Count, double BuildSeconds, double SearchP50, double SearchP95, double TotalP50, double TotalP95, double Overlap10);

/// <summary>The pipeline's measurements: code quality against float32, adaptive calibration, latency at scale.</summary>
public static class PipelineBenchmarks
{
    /// <summary>
    /// Dense rankings (top <paramref name="depth"/> by <paramref name="searcher"/>) of every judged query, split in two
    /// halves by query order: the first fits an <see cref="AdaptivePolicy"/> (retrieve threshold for
    /// <paramref name="targetRetrieveRate"/> of answerable queries, or at the best balanced accuracy when null), the
    /// second scores it beside fixed-k baselines.
    /// </summary>
    public static AdaptiveStudyReport AdaptiveStudy(IDenseSearcher searcher, IReadOnlyList<string> documentIds, IReadOnlyList<Query> queries,
        float[] queryVectors, IReadOnlyDictionary<string, Dictionary<string, int>> qrels, int depth = 100, int maxPassages = 10, double? targetRetrieveRate = 0.9)
    {
        int d = searcher.Dimensions;
        var rankings = new List<JudgedRanking>();
        for (int i = 0; i < queries.Count; i++)
        {
            if (!qrels.TryGetValue(queries[i].Id, out var grades)) continue;
            var hits = searcher.Search(queryVectors.AsSpan(i * d, d), depth);
            var rel = hits.Select(h => grades.TryGetValue(documentIds[h.Ordinal], out int g) && g > 0).ToArray();
            int total = grades.Count(kv => kv.Value > 0);
            if (total == 0) continue;
            rankings.Add(new JudgedRanking(queries[i].Id, hits.Select(h => h.Score).ToArray(), rel, total));
        }
        if (rankings.Count < 4) throw new RotorException($"only {rankings.Count} judged queries: too few to calibrate on one half and test on the other");
        int half = rankings.Count / 2;
        var dev = rankings.Take(half).ToList();
        var test = rankings.Skip(half).ToList();
        var policy = AdaptiveCalibration.Calibrate(dev, maxPassages, targetRetrieveRate);
        var balanced = targetRetrieveRate is null ? null : AdaptiveCalibration.Calibrate(dev, maxPassages);
        return new AdaptiveStudyReport(policy, dev.Count, test.Count, AdaptiveCalibration.Evaluate(policy, dev), AdaptiveCalibration.Evaluate(policy, test),
            [.. new[] { 1, 3, 5, 10 }.Select(k => (k, AdaptiveCalibration.EvaluateFixed(k, test)))],
            AdaptiveCalibration.Evaluate(policy with { MinTopScore = -2f }, test), balanced, balanced is null ? null : AdaptiveCalibration.Evaluate(balanced, test));
    }

    /// <summary>
    /// <paramref name="count"/> unit vectors made from <paramref name="baseVectors"/> ((n, dims) row-major): the originals, then
    /// copies with Gaussian noise of standard deviation <paramref name="noise"/> a component, renormalized (seeded).
    /// </summary>
    public static float[] Replicate(float[] baseVectors, int dims, int count, float noise, int seed = 1234)
    {
        int n = baseVectors.Length / dims;
        var result = new float[(long)count * dims];
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var row = result.AsSpan(i * dims, dims);
            baseVectors.AsSpan(i % n * dims, dims).CopyTo(row);
            if (i < n) continue;
            for (int j = 0; j < dims; j++)
            {
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                row[j] += noise * (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
            TensorPrimitives.Divide(row, TensorPrimitives.Norm(row), row);
        }
        return result;
    }

    /// <summary>
    /// Search latency over <paramref name="vectors"/> for each code: every query is embedded one at a time (real MiniLM
    /// runs) and searched for the top 10; reports medians and 95th percentiles of search alone and of embed + search.
    /// </summary>
    public static IReadOnlyList<LatencyRow> Latency(float[] vectors, int dims, IReadOnlyList<string> queries, SentenceEmbedder embedder,
        IReadOnlyList<(string Name, CodeKind Code, int Rescore)> variants, TextWriter? log = null)
    {
        log ??= Console.Error;
        int count = vectors.Length / dims;
        var qv = new float[queries.Count][];
        var embedMs = new double[queries.Count];
        embedder.Embed("warm up");
        for (int i = 0; i < queries.Count; i++)
        {
            var sw = Stopwatch.StartNew();
            qv[i] = embedder.Embed(queries[i]);
            embedMs[i] = sw.Elapsed.TotalMilliseconds;
        }
        var exact = new ExactDenseSearcher(vectors, dims);
        var truth = qv.Select(q => exact.Search(q, 10).Select(h => h.Ordinal).ToHashSet()).ToArray();
        var rows = new List<LatencyRow>();
        foreach (var (name, code, rescore) in variants)
        {
            log.WriteLine($"latency: building {name} over {count:N0} vectors");
            var b = Stopwatch.StartNew();
            var searcher = IndexDenseSearcher.FromVectors(vectors, dims, code, rescore);
            double build = b.Elapsed.TotalSeconds;
            for (int w = 0; w < 3; w++) searcher.Search(qv[w % qv.Length], 10);
            var searchMs = new double[queries.Count];
            double overlap = 0;
            for (int i = 0; i < queries.Count; i++)
            {
                var sw = Stopwatch.StartNew();
                var hits = searcher.Search(qv[i], 10);
                searchMs[i] = sw.Elapsed.TotalMilliseconds;
                overlap += hits.Count(h => truth[i].Contains(h.Ordinal)) / 10.0;
            }
            var total = searchMs.Select((s, i) => s + embedMs[i]).ToArray();
            rows.Add(new LatencyRow(name, count, build, Pct(searchMs, 50), Pct(searchMs, 95), Pct(total, 50), Pct(total, 95), overlap / queries.Count));
            searcher.Index.Dispose();
        }
        rows.Add(new LatencyRow("query-embedding", count, 0, Pct(embedMs, 50), Pct(embedMs, 95), Pct(embedMs, 50), Pct(embedMs, 95), double.NaN));
        return rows;
    }

    /// <summary>The p-th percentile (nearest rank).</summary>
    public static double Pct(double[] values, double p)
    {
        if (values.Length == 0) return double.NaN;
        var s = values.OrderBy(x => x).ToArray();
        int i = (int)Math.Ceiling(p / 100 * s.Length) - 1;
        return s[Math.Clamp(i, 0, s.Length - 1)];
    }

    /// <summary>A plain-text table of latency rows.</summary>
    public static string LatencyTable(IReadOnlyList<LatencyRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"variant",-26} {"vectors",9} {"build s",8} {"search p50",11} {"p95",7} {"embed+search p50",17} {"p95",7} {"top10 overlap",14}");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture, $"{r.Name,-26} {r.Count,9:N0} {r.BuildSeconds,8:F2} {r.SearchP50,11:F2} {r.SearchP95,7:F2} {r.TotalP50,17:F2} {r.TotalP95,7:F2} {r.Overlap10,14:F3}");
        return sb.ToString();
    }
}

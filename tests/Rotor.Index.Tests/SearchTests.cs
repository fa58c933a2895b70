using Xunit;
using Xunit.Abstractions;

namespace Rotor.Index.Tests;

/// <summary>Exact and HNSW search of every code kind against the brute-force reference.</summary>
public class SearchTests(ITestOutputHelper output)
{
    public static TheoryData<CodeKind, Metric> KindsAndMetrics()
    {
        var t = new TheoryData<CodeKind, Metric>();
        foreach (var k in Enum.GetValues<CodeKind>()) foreach (var m in Enum.GetValues<Metric>()) t.Add(k, m);
        return t;
    }

    [Theory, MemberData(nameof(KindsAndMetrics))]
    public void FlatSearchEqualsReference(CodeKind kind, Metric metric)
    {
        const int d = 72;
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = kind, Metric = metric });
        index.Add(TestData.Records(3001, d, seed: 11));
        for (int i = 0; i < 3001; i += 7) index.Delete($"k{i}");
        var filter = Filter.And(Filter.Eq("parity", "odd"), Filter.Range("n", 100, 2500));
        for (int qi = 0; qi < 5; qi++)
        {
            float[] q = TestData.Query(d, 100 + qi);
            foreach (var (f, threads) in new (Filter?, int)[] { (null, 1), (null, 2), (filter, 1), (filter, 3) })
            {
                var got = index.Search(q, 25, new SearchOptions { Filter = f, Threads = threads });
                var want = index.ExactReference(q, 25, f);
                Assert.Equal(want.Length, got.Count);
                var refScore = index.ExactReference(q, 3001, f).ToDictionary(x => index.KeyOf(x.Slot), x => x.Score);
                for (int i = 0; i < want.Length; i++)
                {
                    // Integer codes give bit-identical keys, so the order is exact; float32 dot products round
                    // differently from the double reference, so near-ties may swap: compare scores instead.
                    if (kind != CodeKind.Float32) Assert.Equal(index.KeyOf(want[i].Slot), got[i].Key);
                    else Assert.Equal(refScore[got[i].Key], want[i].Score, 1e-5f);
                    float expect = metric == Metric.L2 ? MathF.Max(0, Norm2(q, metric) - want[i].Score) : want[i].Score;
                    Assert.Equal(expect, got[i].Score, MathF.Abs(expect) * 1e-4f + 1e-4f);
                }
                if (f is not null)
                    foreach (var h in got) Assert.True(f.Matches(h.Fields));
            }
        }
    }

    private static float Norm2(float[] q, Metric metric)
    {
        if (metric == Metric.Cosine) return 1f;
        return q.Sum(x => x * x);
    }

    [Fact]
    public void Float32CosineScoresAreTrueCosines()
    {
        const int d = 33;
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Float32, Metric = Metric.Cosine });
        var recs = TestData.Records(200, d, 3);
        index.Add(recs);
        float[] q = TestData.Query(d, 9);
        var hits = index.Search(q, 200);
        foreach (var h in hits)
        {
            var v = recs[int.Parse(h.Key[1..])].Vector.Span;
            double dot = 0, nq = 0, nv = 0;
            for (int j = 0; j < d; j++) { dot += q[j] * v[j]; nq += q[j] * q[j]; nv += v[j] * v[j]; }
            Assert.Equal(dot / Math.Sqrt(nq * nv), h.Score, 1e-4);
        }
        for (int i = 1; i < hits.Count; i++) Assert.True(hits[i - 1].Score >= hits[i].Score);
    }

    [Theory]
    [InlineData(CodeKind.Float32, Metric.Cosine)]
    [InlineData(CodeKind.Int8, Metric.Dot)]
    [InlineData(CodeKind.Ternary, Metric.Cosine)]
    [InlineData(CodeKind.Ternary, Metric.L2)]
    [InlineData(CodeKind.Binary, Metric.Cosine)]
    public void HnswRecallAgainstExact(CodeKind kind, Metric metric)
    {
        const int d = 64, n = 4000, k = 10;
        using var index = VectorIndex.Create(new VectorIndexOptions
        {
            Dimensions = d, Code = kind, Metric = metric, Structure = IndexStructure.Hnsw,
            Hnsw = new HnswSettings(M: 12, EfConstruction: 100, EfSearch: 100),
        });
        var recs = TestData.Records(n, d, seed: 21, clusters: 40);
        index.Add(recs.Take(2500).ToList());
        index.Add(recs.Skip(2500).ToList()); // second batch: inserts into an existing graph
        double recall = 0; int queries = 40;
        for (int qi = 0; qi < queries; qi++)
        {
            float[] q = TestData.Query(d, 500 + qi);
            var got = index.Search(q, k).Select(h => h.Key).ToHashSet();
            var want = index.ExactReference(q, k, null).Select(x => index.KeyOf(x.Slot)).ToList();
            recall += want.Count(got.Contains) / (double)k;
        }
        recall /= queries;
        output.WriteLine($"{kind} {metric}: HNSW recall@10 vs exact on the same codes = {recall:F3}");
        Assert.True(recall >= 0.9, $"recall {recall:F3}");
    }

    [Theory]
    [InlineData(Metric.Cosine)]
    [InlineData(Metric.Dot)]
    [InlineData(Metric.L2)]
    public void Int8QueryFlatSearchEqualsReference(Metric metric)
    {
        const int d = 200;
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Metric = metric });
        index.Add(TestData.Records(2100, d, seed: 12));
        for (int i = 0; i < 2100; i += 9) index.Delete($"k{i}");
        for (int qi = 0; qi < 4; qi++)
        {
            float[] q = TestData.Query(d, 300 + qi);
            foreach (int threads in new[] { 1, 2 })
            {
                var got = index.Search(q, 20, new SearchOptions { Int8Query = true, Threads = threads });
                var want = index.ExactReference(q, 20, null, int8Query: true);
                Assert.Equal(want.Select(x => index.KeyOf(x.Slot)), got.Select(h => h.Key));
            }
        }
    }

    [Fact]
    public void Int8QueryRanksCloserToFloat32AndWorksThroughHnsw()
    {
        const int d = 96, k = 10, n = 4000;
        using var flat = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary });
        using var graph = VectorIndex.Create(new VectorIndexOptions
        {
            Dimensions = d, Code = CodeKind.Ternary, Structure = IndexStructure.Hnsw, Hnsw = new HnswSettings(M: 12, EfConstruction: 100, EfSearch: 100),
        });
        using var exact = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Float32 });
        var recs = TestData.Records(n, d, 41, clusters: 30);
        flat.Add(recs); graph.Add(recs); exact.Add(recs);
        double symmetric = 0, asymmetric = 0, graphVsExact = 0;
        const int queries = 30;
        var opt = new SearchOptions { Int8Query = true };
        for (int qi = 0; qi < queries; qi++)
        {
            float[] q = TestData.Query(d, 700 + qi);
            var truth = exact.Search(q, k).Select(h => h.Key).ToHashSet();
            symmetric += flat.Search(q, k).Count(h => truth.Contains(h.Key)) / (double)k;
            asymmetric += flat.Search(q, k, opt).Count(h => truth.Contains(h.Key)) / (double)k;
            var same = graph.ExactReference(q, k, null, int8Query: true).Select(x => graph.KeyOf(x.Slot)).ToHashSet();
            graphVsExact += graph.Search(q, k, opt).Count(h => same.Contains(h.Key)) / (double)k;
        }
        symmetric /= queries; asymmetric /= queries; graphVsExact /= queries;
        output.WriteLine($"recall@10 vs float32: ternary query {symmetric:F3}, int8 query {asymmetric:F3}; HNSW with int8 query vs its exact ranking {graphVsExact:F3}");
        Assert.True(asymmetric > symmetric, $"int8 query {asymmetric:F3} did not beat the ternary query {symmetric:F3}");
        Assert.True(graphVsExact >= 0.9, $"HNSW with int8 queries: recall {graphVsExact:F3} against the exact int8-query ranking");
    }

    [Fact]
    public void HnswSkipsDeletedAndHonoursFilters()
    {
        const int d = 48;
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Structure = IndexStructure.Hnsw });
        index.Add(TestData.Records(3000, d, 8));
        for (int i = 0; i < 3000; i += 2) index.Delete($"k{i}");
        float[] q = TestData.Query(d, 77);
        var hits = index.Search(q, 50);
        Assert.Equal(50, hits.Count);
        Assert.All(hits, h => Assert.Equal("odd", h.Fields!["parity"]));
        var filtered = index.Search(q, 20, new SearchOptions { Filter = Filter.Eq("flag", true) });
        Assert.All(filtered, h => { Assert.Equal(true, h.Fields!["flag"]); Assert.Equal("odd", h.Fields!["parity"]); });
        var want = index.ExactReference(q, 20, Filter.Eq("flag", true)).Select(x => index.KeyOf(x.Slot));
        Assert.True(want.Intersect(filtered.Select(h => h.Key)).Count() >= 16);
    }

    [Theory]
    [InlineData(CodeKind.Ternary)]
    [InlineData(CodeKind.Binary)]
    [InlineData(CodeKind.Int8)]
    public void RescoringRanksByFullPrecision(CodeKind kind)
    {
        const int d = 96, k = 10;
        using var code = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = kind });
        using var exact = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Float32 });
        var recs = TestData.Records(3000, d, 31, clusters: 30);
        code.Add(recs); exact.Add(recs);
        double plain = 0, rescored = 0;
        for (int qi = 0; qi < 20; qi++)
        {
            float[] q = TestData.Query(d, 900 + qi);
            var truth = exact.Search(q, k).Select(h => h.Key).ToHashSet();
            plain += code.Search(q, k).Count(h => truth.Contains(h.Key)) / (double)k;
            var r = code.Search(q, k, new SearchOptions { RescoreFactor = 10 });
            rescored += r.Count(h => truth.Contains(h.Key)) / (double)k;
            // Rescored scores are the full-precision cosines.
            var e = exact.Search(q, 3000).ToDictionary(h => h.Key, h => h.Score);
            foreach (var h in r) Assert.Equal(e[h.Key], h.Score, 1e-4f);
            // ... and they are the k best, by full precision, of the k * 10 best by code.
            var pool = code.Search(q, k * 10).Select(h => h.Key).OrderByDescending(key => e[key]).Take(k);
            Assert.Equal(pool.ToHashSet(), r.Select(h => h.Key).ToHashSet());
        }
        output.WriteLine($"{kind}: recall@10 vs float32 {plain / 20:F3}, rescored x10 {rescored / 20:F3}");
        Assert.True(rescored > plain || plain == 20, $"rescoring did not help: {plain / 20:F3} -> {rescored / 20:F3}");
    }

    [Fact]
    public void RescoreWithoutFullPrecisionIsRejected()
    {
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 8, Code = CodeKind.Ternary, KeepFullPrecision = false });
        index.Add(TestData.Records(10, 8, 1));
        var e = Assert.Throws<RotorException>(() => index.Search(new float[8], 3, new SearchOptions { RescoreFactor = 4 }));
        Assert.Contains("KeepFullPrecision", e.Message);
    }

    /// <summary>The threads of an exact scan: the request when given, else 1 below 8 MiB of codes and the process's count
    /// (<see cref="Rotor.Threading.ThreadCount.Default"/>) above; never more than one a chunk of 1024 slots.</summary>
    [Fact]
    public void ExactScanThreadsFollowTheRequestTheSizeAndTheProcessCount()
    {
        Assert.Equal(1, VectorIndex.ScanThreads(5000, 64, 0));                         // 320 KB of codes
        Assert.Equal(3, VectorIndex.ScanThreads(5000, 64, 3));
        Assert.Equal(2, VectorIndex.ScanThreads(1500, 64, 8));                         // two chunks
        Assert.Equal(1, VectorIndex.ScanThreads(0, 64, 4));
        int big = 1 << 20;                                                             // 64 MiB of codes, 1024 chunks
        Assert.Equal(Math.Min(1024, Rotor.Threading.ThreadCount.Default), VectorIndex.ScanThreads(big, 64, 0));
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 8 });
        index.Add(TestData.Records(3000, 8, 1));
        Assert.Equal(1, index.ExactScanThreads());
        Assert.Equal(3, index.ExactScanThreads(new SearchOptions { Threads = 5 }));
    }
}

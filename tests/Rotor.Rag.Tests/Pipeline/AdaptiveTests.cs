using Rotor.Index;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Xunit;

namespace Rotor.Rag.Tests.Pipeline;

public sealed class AdaptiveTests
{
    private static readonly AdaptivePolicy Policy = new(MinTopScore: 0.45f, MaxDropFromTop: 0.20f, MinGap: 0.10f, MaxPassages: 5);

    [Fact]
    public void LowTopScoreMeansNoRetrieval()
    {
        var d = Policy.Decide([0.31f, 0.30f, 0.29f]);
        Assert.False(d.Retrieve);
        Assert.Equal(0, d.Count);
        Assert.Equal("no retrieval: top score 0.31 < 0.45", d.Reason);
    }

    [Fact]
    public void NoCandidatesMeansNoRetrieval() => Assert.False(Policy.Decide([]).Retrieve);

    [Fact]
    public void StopsAtTheFirstLargeGap()
    {
        var d = Policy.Decide([0.62f, 0.60f, 0.58f, 0.47f, 0.46f]);
        Assert.True(d.Retrieve);
        Assert.Equal(3, d.Count);
        Assert.Equal("retrieve 3 passages: top score 0.62 >= 0.45, gap after #3 0.11 >= 0.10", d.Reason);
    }

    [Fact]
    public void StopsWhenTooFarBelowTheTop()
    {
        // Small steps, but the fourth is 0.21 under the top.
        var d = Policy.Decide([0.80f, 0.72f, 0.65f, 0.59f, 0.55f]);
        Assert.Equal(3, d.Count);
        Assert.Contains("#4 0.59 is 0.21 below the top", d.Reason);
    }

    [Fact]
    public void StopsAtTheMaximum()
    {
        var d = Policy.Decide([0.90f, 0.89f, 0.88f, 0.87f, 0.86f, 0.85f, 0.84f]);
        Assert.Equal(5, d.Count);
        Assert.Contains("maximum 5 passages", d.Reason);
    }

    [Fact]
    public void OneCandidateAboveTheThreshold()
    {
        var d = Policy.Decide([0.5f]);
        Assert.True(d.Retrieve);
        Assert.Equal(1, d.Count);
        Assert.StartsWith("retrieve 1 passage:", d.Reason);
    }

    [Fact]
    public void ConfidentModelSkipsRetrieval()
    {
        Assert.False(Policy.Decide([0.9f], modelConfidence: 0.95).Retrieve);
        Assert.True(Policy.Decide([0.9f], modelConfidence: 0.5).Retrieve);
        Assert.True(Policy.Decide([0.9f], modelConfidence: null).Retrieve);
    }

    [Fact]
    public void CalibrationSeparatesAnswerableFromUnanswerable()
    {
        // Answerable: relevant hit first at 0.60..0.80, then non-relevant hits around 0.30; the same without the
        // relevant hit tops at about 0.30, so the threshold must fall between 0.30 and 0.60.
        var rng = new Random(5);
        var dev = new List<JudgedRanking>();
        for (int q = 0; q < 40; q++)
        {
            float top = 0.6f + 0.2f * (float)rng.NextDouble();
            var scores = new List<float> { top };
            for (int i = 0; i < 20; i++) scores.Add(0.32f - 0.01f * i - 0.005f * (float)rng.NextDouble());
            var rel = new bool[scores.Count]; rel[0] = true;
            dev.Add(new JudgedRanking($"q{q}", scores.ToArray(), rel, 1));
        }
        var p = AdaptiveCalibration.Calibrate(dev);
        Assert.InRange(p.MinTopScore, 0.30f, 0.61f);
        var s = AdaptiveCalibration.Evaluate(p, dev);
        Assert.Equal(1.0, s.DecisionAccuracy, 6);
        Assert.Equal(1.0, s.MeanPassages, 6);   // the big gap after #1 cuts every list to the one relevant hit
        Assert.Equal(1.0, s.F1, 6);
        Assert.True(AdaptiveCalibration.EvaluateFixed(5, dev).F1 < 0.5);
    }

    [Fact]
    public void PolicyFileRoundTripsAndBadFilesAreNamed()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string path = Path.Combine(dir, "adaptive.json");
            AtomicFile.WriteAllText(path, Policy.ToJson());
            Assert.Equal(Policy, AdaptivePolicy.Load(path));
            File.WriteAllText(path, Policy.ToJson().Replace("\"minGap\": 0.1", "\"minGap\": -3"));
            var e = Assert.Throws<RotorException>(() => AdaptivePolicy.Load(path));
            Assert.Contains("minGap", e.Message);
            File.WriteAllText(path, "{");
            Assert.Contains("not valid JSON", Assert.Throws<RotorException>(() => AdaptivePolicy.Load(path)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(300)]
    public void IndexDenseSearcherMatchesExactSearch(int n)
    {
        const int d = 37;
        var rng = new Random(n);
        var v = new float[n * d];
        for (int i = 0; i < n; i++)
        {
            double norm = 0;
            for (int j = 0; j < d; j++) { v[i * d + j] = (float)(rng.NextDouble() * 2 - 1); norm += v[i * d + j] * v[i * d + j]; }
            for (int j = 0; j < d; j++) v[i * d + j] /= (float)Math.Sqrt(norm);
        }
        var exact = new ExactDenseSearcher(v, d);
        var f32 = IndexDenseSearcher.FromVectors(v, d, CodeKind.Float32);
        // Rescoring every vector by float32 is exact whatever the code.
        var tern = IndexDenseSearcher.FromVectors(v, d, CodeKind.Ternary, rescoreFactor: Math.Max(2, n));
        // HNSW over int8 codes with a beam as wide as the index, every vector rescored: exact too.
        using var hnsw = IndexDenseSearcher.FromVectors(v, d,
            new VectorIndexOptions { Dimensions = d, Code = CodeKind.Int8, Metric = Metric.Cosine, Structure = IndexStructure.Hnsw, KeepFullPrecision = true },
            new SearchOptions { EfSearch = Math.Max(16, n), RescoreFactor = Math.Max(2, n) });
        Assert.Equal(n, f32.Count);
        for (int q = 0; q < 5; q++)
        {
            var query = v.AsSpan(rng.Next(n) * d, d).ToArray();
            for (int j = 0; j < d; j++) query[j] += 0.1f * (float)(rng.NextDouble() - 0.5);
            int k = Math.Min(10, n);
            var want = exact.SearchReference(query, k);
            foreach (var s in new IDenseSearcher[] { f32, tern, hnsw })
            {
                var got = s.Search(query, k);
                Assert.Equal(want.Select(h => h.Ordinal), got.Select(h => h.Ordinal));
                for (int i = 0; i < k; i++) Assert.Equal(want[i].Score / (float)Math.Sqrt(query.Sum(x => x * x)), got[i].Score, 4);
            }
        }
    }

    [Fact]
    public void IndexDenseSearcherDisposesOnlyAnIndexItOwns()
    {
        var v = new float[] { 1, 0, 0, 1 };
        var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 2, Code = CodeKind.Float32, Metric = Metric.Cosine });
        index.Add([new IndexRecord("a", v.AsMemory(0, 2)), new IndexRecord("b", v.AsMemory(2, 2))]);
        var ordinals = new Dictionary<string, int> { ["a"] = 0, ["b"] = 1 };
        new IndexDenseSearcher(index, ordinals, new SearchOptions(), ownsIndex: false).Dispose();
        Assert.Equal(1, new IndexDenseSearcher(index, ordinals).Search([0f, 1f], 1)[0].Ordinal);   // still usable
        new IndexDenseSearcher(index, ordinals, new SearchOptions(), ownsIndex: true).Dispose();
        Assert.ThrowsAny<ObjectDisposedException>(() => index.Search([0f, 1f], 1));
        var l2 = VectorIndex.Create(new VectorIndexOptions { Dimensions = 2, Code = CodeKind.Float32, Metric = Metric.L2 });
        Assert.Contains("cosine", Assert.Throws<RotorException>(() => new IndexDenseSearcher(l2, ordinals, new SearchOptions())).Message);
    }
}

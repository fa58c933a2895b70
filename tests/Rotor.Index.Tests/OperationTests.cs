using Rotor.Index.Benchmarking;
using Xunit;

namespace Rotor.Index.Tests;

public class OperationTests
{
    [Fact]
    public void AddUpsertDeleteGetCountCompact()
    {
        const int d = 16;
        foreach (var structure in Enum.GetValues<IndexStructure>())
        {
            using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Structure = structure });
            var recs = TestData.Records(500, d, 4);
            index.Add(recs);
            Assert.Equal(500, index.Count);
            var e = Assert.Throws<RotorException>(() => index.Add([recs[3]]));
            Assert.Contains("k3", e.Message);
            var got = index.Get("k42")!;
            Assert.Equal(recs[42].Vector.ToArray().Select(x => x / Norm(recs[42].Vector.Span)), got.Vector.ToArray(), new FloatEq());
            Assert.Equal(42L, got.Fields!["n"]);

            var newVec = new float[d]; newVec[0] = 1;
            index.Upsert([new IndexRecord("k42", newVec, new Dictionary<string, object> { ["n"] = -1 })]);
            Assert.Equal(500, index.Count);
            Assert.Equal(-1L, index.Get("k42")!.Fields!["n"]);
            Assert.Equal("k42", index.Search(newVec, 1)[0].Key);

            Assert.True(index.Delete("k7"));
            Assert.False(index.Delete("k7"));
            Assert.Equal(2, index.Delete(["k8", "k9", "absent"]));
            Assert.Equal(497, index.Count);
            Assert.Null(index.Get("k8"));
            Assert.Equal(501, index.Stats.Slots);

            var before = index.Search(TestData.Query(d, 5), 20).Select(h => h.Key).ToArray();
            index.Compact();
            Assert.Equal(497, index.Stats.Slots);
            Assert.Equal(497, index.Count);
            Assert.Equal(-1L, index.Get("k42")!.Fields!["n"]);
            var after = index.Search(TestData.Query(d, 5), 20, new SearchOptions { Exact = true }).Select(h => h.Key).ToArray();
            if (structure == IndexStructure.Flat) Assert.Equal(before, after);
            Assert.DoesNotContain("k8", after);
        }
    }

    [Fact]
    public void UpsertBatchWithRepeatedKeyKeepsTheLast()
    {
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 2, Code = CodeKind.Float32, Metric = Metric.Dot });
        index.Upsert([new IndexRecord("a", new float[] { 1, 0 }), new IndexRecord("a", new float[] { 0, 1 })]);
        Assert.Equal(1, index.Count);
        Assert.Equal(new float[] { 0, 1 }, index.Get("a")!.Vector.ToArray());
    }

    [Fact]
    public void BadInputIsRejectedWithContext()
    {
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 4 });
        Assert.Contains("3 dimensions", Assert.Throws<RotorException>(() => index.Add([new IndexRecord("x", new float[3])])).Message);
        Assert.Contains("'y'", Assert.Throws<RotorException>(() => index.Add([new IndexRecord("y", new float[] { 1, float.NaN, 0, 0 })])).Message);
        Assert.Contains("twice", Assert.Throws<RotorException>(() => index.Add([new IndexRecord("z", new float[4]), new IndexRecord("z", new float[4])])).Message);
        Assert.Contains("DateTime", Assert.Throws<RotorException>(() => index.Add([new IndexRecord("w", new float[4], new Dictionary<string, object> { ["t"] = DateTime.Now })])).Message);
        Assert.Contains("query has 5", Assert.Throws<RotorException>(() => index.Search(new float[5], 1)).Message);
        Assert.Equal(0, index.Count);
    }

    [Fact]
    public void FilterParseAndRanges()
    {
        var f = new Dictionary<string, object> { ["year"] = 2021L, ["lang"] = "en", ["score"] = 0.5, ["ok"] = true };
        Assert.True(Filter.Parse("year>=2020").Matches(f));
        Assert.False(Filter.Parse("year<2021").Matches(f));
        Assert.True(Filter.Parse("lang=en").Matches(f));
        Assert.True(Filter.Parse("lang = 'en'").Matches(f));
        Assert.True(Filter.Parse("lang!=fr").Matches(f));
        Assert.True(Filter.Parse("score<=0.5").Matches(f));
        Assert.True(Filter.Parse("ok=true").Matches(f));
        Assert.False(Filter.Parse("missing=1").Matches(f));
        Assert.True(Filter.Range("score", 0, 1, minInclusive: false).Matches(f));
        Assert.False(Filter.Range("year", 2021, null, minInclusive: false).Matches(f));
        Assert.False(Filter.Eq("year", "2021").Matches(f)); // type mismatch never matches
        Assert.True(Filter.Or(Filter.Eq("lang", "fr"), Filter.Not(Filter.Eq("ok", false))).Matches(f));
        Assert.Throws<RotorException>(() => Filter.Parse("nonsense"));
        // An order against a bare word would match nothing (a typo silently empties the results): refused, named.
        Assert.Contains("'abc' is not a number", Assert.Throws<RotorException>(() => Filter.Parse("year > abc")).Message);
        Assert.Contains("no value", Assert.Throws<RotorException>(() => Filter.Parse("year >=")).Message);
        Assert.True(Filter.Parse("lang >= 'a'").Matches(f)); // quoted text compares in order
    }

    [Fact]
    public async Task ReadersSeeWholeBatchesWhileAWriterAdds()
    {
        const int d = 24, batches = 30, per = 100;
        using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Structure = IndexStructure.Hnsw, Hnsw = new HnswSettings(EfConstruction: 40) });
        float[] data = SyntheticVectors.Clustered(batches * per, d, 10, 2);
        using var stop = new CancellationTokenSource();
        var errors = new List<string>();
        var readers = Enumerable.Range(0, 3).Select(r => Task.Run(() =>
        {
            var rng = new Random(r);
            while (!stop.IsCancellationRequested)
            {
                int count = index.Count;
                if (count % per != 0) lock (errors) errors.Add($"count {count} is not a whole number of batches");
                var hits = index.Search(data.AsSpan(rng.Next(batches * per) * d, d), 1000, new SearchOptions { Exact = rng.Next(2) == 0 });
                if (hits.Count % per != 0 && hits.Count < index.Count) lock (errors) errors.Add($"search saw {hits.Count} records");
                int b = rng.Next(batches);
                int inBatch = index.Query(Filter.Eq("batch", b), int.MaxValue, includeVectors: false).Count;
                if (inBatch != 0 && inBatch != per) lock (errors) errors.Add($"batch {b} half visible: {inBatch}");
            }
        })).ToArray();
        for (int b = 0; b < batches; b++)
        {
            var recs = Enumerable.Range(0, per).Select(i => new IndexRecord($"b{b}-{i}", data.AsMemory((b * per + i) * d, d),
                new Dictionary<string, object> { ["batch"] = b })).ToList();
            index.Add(recs);
        }
        stop.Cancel();
        await Task.WhenAll(readers);
        Assert.Empty(errors);
        Assert.Equal(batches * per, index.Count);
    }

    private static float Norm(ReadOnlySpan<float> v) { double s = 0; foreach (float x in v) s += x * x; return (float)Math.Sqrt(s); }

    private sealed class FloatEq : IEqualityComparer<float>
    {
        public bool Equals(float a, float b) => MathF.Abs(a - b) <= 1e-5f;
        public int GetHashCode(float x) => 0;
    }
}

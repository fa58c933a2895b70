using Rotor.Index.Benchmarking;
using Xunit;

namespace Rotor.Index.Tests;

public class VectorFilesTests
{
    [Fact]
    public void JsonlRecordsParse()
    {
        string dir = TestData.TempDir(), p = Path.Combine(dir, "v.jsonl");
        File.WriteAllLines(p, [
            """{"key": "a", "vector": [1, 2.5, -3], "data": {"year": 2021, "x": 0.5, "lang": "en", "ok": true, "none": null}}""",
            "",
            """{"key": 7, "vector": [0, 0, 1]}""",
        ]);
        var recs = VectorFiles.Read(p, batch: 1).SelectMany(b => b).ToList();
        Assert.Equal(2, recs.Count);
        Assert.Equal("a", recs[0].Key);
        Assert.Equal(new float[] { 1, 2.5f, -3 }, recs[0].Vector.ToArray());
        Assert.Equal(2021L, recs[0].Fields!["year"]);
        Assert.Equal(0.5, recs[0].Fields!["x"]);
        Assert.Equal("en", recs[0].Fields!["lang"]);
        Assert.Equal(true, recs[0].Fields!["ok"]);
        Assert.False(recs[0].Fields!.ContainsKey("none"));
        Assert.Equal("7", recs[1].Key);
        Assert.Null(recs[1].Fields);
    }

    [Theory]
    [InlineData("""{"vector": [1]}""", "'key' is missing")]
    [InlineData("""{"key": "a", "vector": [1, "x"]}""", "vector[1]")]
    [InlineData("""{"key": "a"}""", "'vector'")]
    [InlineData("""{"key": "a", "vector": [1], "data": {"t": [1]}}""", "data.t")]
    [InlineData("""{"key": "a", "vector": [1""", "invalid JSON")]
    public void BadJsonlNamesFileLineAndField(string line, string words)
    {
        string dir = TestData.TempDir(), p = Path.Combine(dir, "bad.jsonl");
        File.WriteAllLines(p, ["""{"key": "ok", "vector": [1]}""", line]);
        var e = Assert.Throws<RotorException>(() => VectorFiles.Read(p).SelectMany(b => b).ToList());
        Assert.Contains("bad.jsonl:2", e.Message);
        Assert.Contains(words, e.Message);
    }

    [Fact]
    public void NpyRoundTrip()
    {
        string dir = TestData.TempDir(), p = Path.Combine(dir, "v.npy");
        float[] data = SyntheticVectors.Clustered(13, 7, 2, 3);
        VectorFiles.WriteNpy(p, data, 13, 7);
        var recs = VectorFiles.Read(p, batch: 5, keyPrefix: "r", keyStart: 100).SelectMany(b => b).ToList();
        Assert.Equal(13, recs.Count);
        Assert.Equal("r100", recs[0].Key);
        Assert.Equal("r112", recs[12].Key);
        for (int i = 0; i < 13; i++) Assert.Equal(data.AsSpan(i * 7, 7).ToArray(), recs[i].Vector.ToArray());
        byte[] bytes = File.ReadAllBytes(p);
        File.WriteAllBytes(p, bytes[..^4]);
        Assert.Contains("truncated", Assert.Throws<RotorException>(() => VectorFiles.Read(p).SelectMany(b => b).ToList()).Message);
        File.WriteAllBytes(p, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        Assert.Contains("not a .npy", Assert.Throws<RotorException>(() => VectorFiles.Read(p).SelectMany(b => b).ToList()).Message);
    }
}

using Rotor.Lm.Gguf;
using Rotor.Lm.Loading;

namespace Rotor.Lm.Tests;

/// <summary>
/// A token embedding (and a tied head, when asked) read from the memory-mapped GGUF file instead of a copy: the same
/// logits as the copy, bit for bit (the same values through the same kernels), and the mapping lives exactly as long as
/// the model.
/// </summary>
public sealed class MappedWeightsTests
{
    private static readonly int[] Ids = [1, 7, 300, 511, 0, 42, 42, 256, 3, 100];

    private static int[] IdsOf(LanguageModel m) => Ids.Select(i => i % m.Config.VocabSize).ToArray();

    private static float[] AllLogits(LanguageModel m)
    {
        var logits = new float[Ids.Length * m.Config.VocabSize];
        m.CreateSession(64).AppendAll(IdsOf(m), logits);
        return logits;
    }

    /// <summary>The model with every weight a copy, as loads made it before embeddings were mapped.</summary>
    private static LanguageModel Copied(string path, DenseType? head)
    {
        using var f = GgufFile.Open(path);
        var (c, w) = GgufLoader.Load(f);
        Assert.Null(w.Mapping);
        Assert.False(w.Embedding.IsView);
        return LanguageModel.FromWeights(c, w, new LanguageModelOptions { Threads = 1, LmHeadType = head });
    }

    [Theory]
    [InlineData("bitnet-tiny-i2_s.gguf", null, true)]     // F16 embedding, tied head read from the file
    [InlineData("bitnet-tiny-i2_s.gguf", DenseType.Int8, false)]
    [InlineData("bitnet-tiny-i2_s.gguf", DenseType.Q4, false)]
    [InlineData("bitnet-tiny-f32.gguf", null, true)]      // F32 embedding
    [InlineData("bitnet-tiny-f32.gguf", DenseType.F16, false)]
    public void AMappedEmbeddingGivesTheLogitsOfTheCopy(string file, DenseType? head, bool mapTied)
    {
        string path = TestPaths.Data("gguf", file);
        using var mapped = LanguageModel.Load(path, new LanguageModelOptions { Threads = 1, LmHeadType = head, MapTiedHead = mapTied });
        Assert.True(mapped.Weights.Embedding.IsView);
        Assert.NotNull(mapped.Weights.Mapping);
        Assert.Equal(mapTied, mapped.Weights.LmHead.IsView);
        using var copied = Copied(path, head);
        Assert.Equal(AllLogits(copied), AllLogits(mapped));
        // Generation reads the embedding a row a token: the same greedy continuation.
        Assert.Equal(Greedy(copied), Greedy(mapped));
    }

    private static int[] Greedy(LanguageModel m)
    {
        var s = m.CreateSession(64);
        var tokens = new List<int>();
        int next = Sampler.ArgMax(s.Append(IdsOf(m)));
        for (int i = 0; i < 16; i++) { tokens.Add(next); next = Sampler.ArgMax(s.Append([next])); }
        return [.. tokens];
    }

    [Theory]
    [InlineData("bitnet-tiny-i2_s.gguf", 1)]    // every projection a view of the file
    [InlineData("bitnet-tiny-i2_s.gguf", 2)]
    [InlineData("bitnet-ffn320-i2_s.gguf", 2)]  // ffn_down's rows of 320 converted, the rest views
    public void I2SProjectionsReadFromTheFileGiveTheLogitsOfTheCopy(string file, int threads)
    {
        string path = TestPaths.Data("gguf", file);
        using var mapped = LanguageModel.Load(path, new LanguageModelOptions { Threads = threads, MapTiedHead = false, MapWeights = true });
        using var copied = LanguageModel.Load(path, new LanguageModelOptions { Threads = threads, MapTiedHead = false, MapWeights = false });
        var views = mapped.Weights.Layers.SelectMany(l => l.Linears).Select(x => x.W.Ternary!).ToList();
        Assert.Contains(views, t => t.IsView && t.Layout == TernaryLayout.I2S);
        Assert.DoesNotContain(copied.Weights.Layers.SelectMany(l => l.Linears), x => x.W.Ternary!.IsView);
        Assert.NotNull(mapped.Weights.Mapping);
        // The same trits and scales, through the same kernels with the activations reordered: the same floats.
        Assert.Equal(AllLogits(copied), AllLogits(mapped));
        Assert.Equal(Greedy(copied), Greedy(mapped));
        foreach (var (a, b) in mapped.Weights.Layers.SelectMany(l => l.Linears).Zip(copied.Weights.Layers.SelectMany(l => l.Linears)))
        {
            Assert.Equal(b.W.Ternary!.ToTrits(), a.W.Ternary!.ToTrits());
            Assert.Equal(b.W.Ternary!.Scales.ToArray(), a.W.Ternary!.Scales.ToArray());
        }
    }

    [Fact]
    public void TheTiedHeadIsACopyUnlessAskedOtherwise()
    {
        using var m = LanguageModel.Load(TestPaths.Data("gguf", "bitnet-tiny-i2_s.gguf"), new LanguageModelOptions { Threads = 1, MapTiedHead = false, MapWeights = false });
        Assert.False(m.Weights.Embedding.IsView);
        Assert.Same(m.Weights.Embedding, m.Weights.LmHead);
        Assert.Null(m.Weights.Mapping);
        Assert.Equal(0, m.Weights.MappedBytes);
    }

    [Fact]
    public void DisposeUnmapsTheFileAndTheViewRefusesReads()
    {
        // A private copy, so that no other test's mapping of the fixture is counted.
        string dir = TestPaths.TempDir();
        try
        {
            string path = Path.Combine(dir, "model.gguf");
            File.Copy(TestPaths.Data("gguf", "bitnet-tiny-i2_s.gguf"), path);
            var options = new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.Int8 };
            Assert.Equal(0, Mappings(path));
            var m = LanguageModel.Load(path, options);
            float[] before = AllLogits(m);
            var embedding = m.Weights.Embedding;
            Assert.True(embedding.IsView);
            // The load's own mapping of the whole file is gone; the embedding's stays.
            if (OperatingSystem.IsLinux()) Assert.Equal(1, Mappings(path));
            var row = new float[m.Config.Dim];
            embedding.GetRow(5, row);
            m.Dispose();
            if (OperatingSystem.IsLinux()) Assert.Equal(0, Mappings(path));
            Assert.Throws<ObjectDisposedException>(() => embedding.GetRow(5, row));
            Assert.Throws<ObjectDisposedException>(() => AllLogits(m));
            // A second load after the first is disposed maps the file again and reads the same weights.
            using var again = LanguageModel.Load(path, options);
            Assert.Equal(before, AllLogits(again));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Mappings of <paramref name="path"/> in this process (/proc/self/maps; 0 where there is none).</summary>
    private static int Mappings(string path)
    {
        if (!File.Exists("/proc/self/maps")) return 0;
        string full = Path.GetFullPath(path);
        return File.ReadLines("/proc/self/maps").Count(l => l.EndsWith(" " + full, StringComparison.Ordinal));
    }
}

namespace Rotor.Lm.Tests;

/// <summary>
/// <see cref="ModelMemory"/> from headers alone against the loaded model: for every fixture of every format and every
/// <c>--lm-head</c> choice, the weight bytes equal <see cref="ModelWeights.Bytes"/> of the model loaded the same way
/// (what <c>rotor info</c> and <c>rotor bench-lm</c> printed from the loaded weights).
/// </summary>
public class ModelMemoryTests
{
    public static TheoryData<string> Models()
    {
        var t = new TheoryData<string>();
        foreach (string f in Directory.EnumerateFiles(TestPaths.Data("gguf"), "bitnet-*.gguf").Order()) t.Add("gguf/" + Path.GetFileName(f));
        foreach (string d in Directory.EnumerateDirectories(TestPaths.Data("bitnet-tiny")).Order()) t.Add("bitnet-tiny/" + Path.GetFileName(d));
        t.Add("stories260K.bin");
        return t;
    }

    [Theory, MemberData(nameof(Models))]
    public void HeadersGiveTheBytesOfTheLoadedWeights(string name)
    {
        string path = name == "stories260K.bin" ? Path.Combine(TestPaths.RepoRoot!, "src", "Rotor.Cli", "Resources", "lm", name) : TestPaths.Data(name.Split('/'));
        foreach (bool mapTied in new[] { false, true })
            foreach (DenseType? head in new DenseType?[] { null, DenseType.F32, DenseType.F16, DenseType.Int8, DenseType.Q4 })
            foreach (bool mapWeights in new[] { false, true })
            {
                var plan = ModelMemory.Of(path, head, mapTied, mapWeights);
                using var m = LanguageModel.Load(path, new LanguageModelOptions { LmHeadType = head, Threads = 1, MapTiedHead = mapTied, MapWeights = mapWeights });
                // Exact, except the scales of TQ1_0/TQ2_0 matrices, which their data decides (counted at the most).
                Assert.InRange(m.Weights.Bytes, plan.WeightBytes - plan.UncertainBytes, plan.WeightBytes);
                Assert.InRange(m.Weights.AllocatedBytes, plan.AllocatedBytes - plan.UncertainBytes, plan.AllocatedBytes);
                Assert.Equal(m.Weights.MappedBytes, plan.MappedBytes);
                Assert.Equal(name.Contains("tq", StringComparison.Ordinal), plan.UncertainBytes > 0);
                Assert.Equal(m.Config.KvBytesPerToken(), plan.KvBytesPerToken);
                Assert.Equal(m.Weights.LmHead.Type, plan.LmHeadType);
                Assert.Equal(m.Weights.Embedding.DataBytes, plan.EmbeddingBytes);
                Assert.Equal(ReferenceEquals(m.Weights.LmHead, m.Weights.Embedding) ? 0 : m.Weights.LmHead.DataBytes, plan.LmHeadBytes);
                Assert.InRange(m.Weights.Layers.SelectMany(l => l.Linears).Sum(x => x.W.Bytes), plan.Linears.Sum(l => l.Bytes) - plan.UncertainBytes, plan.Linears.Sum(l => l.Bytes));
                Assert.Equal(m.FileBytes, plan.FileBytes);
                Assert.Equal(m.Format, plan.Format);
            }
    }

    [Fact]
    public void AnEmbeddingThatIsNotTheHeadIsCountedAsMapped()
    {
        // bitnet-tiny-i2_s.gguf: tied F16 embedding of 512 x 256 (512-byte rows), I2_S layers.
        string path = TestPaths.Data("gguf", "bitnet-tiny-i2_s.gguf");
        long embedding = 512L * 256 * 2;
        var copy = ModelMemory.Of(path, null, mapTiedHead: false, mapWeights: false);
        Assert.Equal(0, copy.MappedBytes);
        Assert.Equal(copy.WeightBytes, copy.AllocatedBytes);
        foreach (var (head, mapTied) in new (DenseType?, bool)[] { (DenseType.Int8, false), (DenseType.Q4, false), (null, true) })
        {
            var plan = ModelMemory.Of(path, head, mapTied, mapWeights: false);
            Assert.Equal(embedding, plan.MappedBytes);
            // The head converted to int8 or q4 is the model's own; the embedding is not copied.
            long head8 = head is { } h ? DenseMatrix.BytesFor(512, 256, h) : 0;
            Assert.Equal(copy.WeightBytes - embedding + head8, plan.AllocatedBytes);
            using var m = LanguageModel.Load(path, new LanguageModelOptions { LmHeadType = head, Threads = 1, MapTiedHead = mapTied, MapWeights = false });
            Assert.True(m.Weights.Embedding.IsView);
            Assert.Equal(0, m.Weights.Embedding.AllocatedBytes);
            Assert.Equal(plan.AllocatedBytes, m.Weights.AllocatedBytes);
        }
        // A Q6_K embedding (llama-quantize's own choice in the ffn320 TQ2_0 file) is converted, so it is never mapped.
        Assert.Equal(0, ModelMemory.Of(TestPaths.Data("gguf", "bitnet-ffn320-tq2_0.gguf"), DenseType.Int8, true).MappedBytes);
    }

    [Fact]
    public void X86I2SProjectionsOfWholeBlocksAreCountedAsMapped()
    {
        // bitnet-tiny-i2_s.gguf: 2 layers of q (256 x 256), k and v (128 x 256), o (256 x 256), gate and up (512 x 256),
        // down (256 x 512): every row a whole number of 256-weight blocks, all mapped; only their scales are copies.
        string path = TestPaths.Data("gguf", "bitnet-tiny-i2_s.gguf");
        long codes = 2L * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 2 * 512 * 256 + 256 * 512) / 4;
        var copied = ModelMemory.Of(path, DenseType.Int8, false, mapWeights: false);
        var mapped = ModelMemory.Of(path, DenseType.Int8, false, mapWeights: true);
        Assert.Equal(copied.MappedBytes + codes, mapped.MappedBytes);
        Assert.Equal(copied.WeightBytes, mapped.WeightBytes);
        // bitnet-ffn320-i2_s.gguf: ffn_down's rows of 320 are not whole blocks, so it alone is converted.
        string ffn320 = TestPaths.Data("gguf", "bitnet-ffn320-i2_s.gguf");
        var f = ModelMemory.Of(ffn320, DenseType.Int8, false, mapWeights: true);
        using var m = LanguageModel.Load(ffn320, new LanguageModelOptions { LmHeadType = DenseType.Int8, Threads = 1, MapTiedHead = false, MapWeights = true });
        var layer = m.Weights.Layers[0];
        Assert.False(layer.WDown.Ternary!.IsView);
        Assert.True(layer.WGate.Ternary!.IsView && layer.WUp.Ternary!.IsView && layer.Wq.Ternary!.IsView);
        Assert.Equal(f.MappedBytes, m.Weights.MappedBytes);
    }

    [Fact]
    public void TheMatrixSizeRulesAreTheMatricesOwn()
    {
        var rng = new Random(5);
        foreach (int rows in new[] { 1, 3, 64, 65 })
            foreach (int cols in new[] { 1, 31, 255, 256, 257, 700 })
            {
                foreach (var t in new[] { DenseType.F32, DenseType.F16, DenseType.Int8 })
                    Assert.Equal(DenseMatrix.Create(rows, cols, t).AllocatedBytes, DenseMatrix.BytesFor(rows, cols, t));
                var trits = new sbyte[rows * cols];
                for (int i = 0; i < trits.Length; i++) trits[i] = (sbyte)rng.Next(-1, 2);
                Assert.Equal(TernaryMatrix.FromTrits(trits, rows, cols, [1f]).AllocatedBytes, TernaryMatrix.BytesFor(rows, cols, ScaleMode.PerTensor));
                Assert.Equal(TernaryMatrix.FromTrits(trits, rows, cols, new float[rows]).AllocatedBytes, TernaryMatrix.BytesFor(rows, cols, ScaleMode.PerRow));
            }
    }

    [Fact]
    public void NotAModelIsOneClearError()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string junk = Path.Combine(dir, "junk.bin");
            File.WriteAllBytes(junk, new byte[100]);
            Assert.Contains("junk.bin", Assert.Throws<RotorException>(() => ModelMemory.Of(junk)).Message);
            Assert.Contains("no such file", Assert.Throws<RotorException>(() => ModelMemory.Of(Path.Combine(dir, "absent"))).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

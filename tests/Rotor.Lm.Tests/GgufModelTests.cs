using Rotor.Lm.Gguf;
using Rotor.Lm.Loading;

namespace Rotor.Lm.Tests;

/// <summary>Whole models from the GGUF fixtures made by llama.cpp's and bitnet.cpp's tools (Data/gguf/README.md).</summary>
public sealed class GgufModelTests
{
    private static readonly int[] Ids = [1, 7, 300, 511, 0, 42, 42, 256, 3, 100];

    private static float[] AllLogits(string file, DenseType? head = null)
    {
        using var m = LanguageModel.Load(TestPaths.Data("gguf", file), new LanguageModelOptions { Threads = 1, LmHeadType = head });
        var logits = new float[Ids.Length * m.Config.VocabSize];
        m.CreateSession(64).AppendAll(Ids, logits);
        return logits;
    }

    [Fact]
    public void ConfigurationComesFromTheMetadata()
    {
        using var f = GgufFile.Open(TestPaths.Data("gguf", "bitnet-tiny-tq2_0.gguf"));
        var (c, arch) = GgufLoader.ReadConfig(f);
        Assert.Equal("bitnet-b1.58", arch.Name);
        Assert.Equal(FfnActivation.Relu2, c.Activation);
        Assert.Equal((256, 2, 4, 2, 64, 512, 512), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize));
        Assert.Equal(500000f, c.RopeTheta);
        Assert.True(c.SubNorms && c.TiedEmbeddings);
        Assert.Equal(RopeStyle.Half, c.Rope);
    }

    [Fact]
    public void EveryTernaryTypeOfTheSameWeightsGivesTheSameLogits()
    {
        // llama-quantize's TQ1_0 and TQ2_0 files hold the same trits, f16 scales and Q6_K embedding: equal logits.
        float[] tq1 = AllLogits("bitnet-tiny-tq1_0.gguf"), tq2 = AllLogits("bitnet-tiny-tq2_0.gguf");
        AssertClose(tq2, tq1, 1e-5f, "TQ1_0 against TQ2_0");
        // The F32 file holds ternary x scale as the converters store it; its F16 head changes logits by the head's
        // rounding only.
        float[] f32 = AllLogits("bitnet-tiny-f32.gguf");
        AssertClose(f32, AllLogits("bitnet-tiny-f32.gguf", DenseType.F16), 1e-3f, "F32 against an F16 head");
        // bitnet.cpp's I2_S file has the same trits and scales but an F16 embedding, and the TQ files a Q6_K one: the
        // input rounding flips some int8 activations, which this tiny random model amplifies; a wrong trit or scale
        // would move the logits by far more.
        AssertClose(f32, AllLogits("bitnet-tiny-i2_s.gguf"), 0.05f, "F32 against I2_S");
        AssertClose(f32, tq2, 0.08f, "F32 against TQ2_0");
    }

    private static void AssertClose(float[] expected, float[] actual, float relative, string what)
    {
        float max = expected.Max(MathF.Abs), diff = 0;
        for (int i = 0; i < expected.Length; i++) diff = MathF.Max(diff, MathF.Abs(expected[i] - actual[i]));
        Assert.True(diff <= relative * max, $"{what}: max |difference| {diff} of largest |logit| {max}");
    }

    [Theory]
    [InlineData("bitnet-tiny-f32.gguf", 1e-3f)]
    [InlineData("bitnet-tiny-i2_s.gguf", 1e-3f)]
    // TQ1_0 and TQ2_0 store each block's scale in f16: the weights themselves differ from the checkpoint's by up to
    // 2^-11 relative, which moves activations across int8 rounding boundaries in this tiny random model; the trits are
    // those of the checkpoint (GgufFixtureTests), the argmax agrees, the logits to the size of such flips.
    [InlineData("bitnet-tiny-tq2_0.gguf", 3e-2f)]
    [InlineData("bitnet-tiny-tq1_0.gguf", 3e-2f)]
    public void GgufFilesOfTheReferenceWeightsEqualTransformers(string file, float tolerance)
    {
        // The fixtures hold the weights of Data/bitnet-tiny/online (made by llama.cpp's and bitnet.cpp's quantizers,
        // F16 embeddings, which hold the bf16 values exactly); the reference is transformers' BitNetForCausalLM on that
        // checkpoint. TQ files round the weight scale to f16 (at most 2^-11 relative).
        var f = Rotor.IO.SafeTensors.Read(TestPaths.Data("bitnet-tiny", "online", "reference.safetensors"));
        int[] ids = f.Tensors["input_ids"].Data.Chunk(8).Select(b => (int)BitConverter.ToInt64(b)).ToArray();
        float[] expected = f.Tensors["logits"].ToFloats();
        using var m = LanguageModel.Load(TestPaths.Data("gguf", file), new LanguageModelOptions { Threads = 1 });
        int v = m.Config.VocabSize;
        var logits = new float[ids.Length * v];
        m.CreateSession(64).AppendAll(ids, logits);
        float max = expected.Max(MathF.Abs), diff = 0;
        const int beforeFlip = 10;   // see BitNetReferenceTests.BeforeFlip
        for (int i = 0; i < beforeFlip * v; i++) diff = MathF.Max(diff, MathF.Abs(logits[i] - expected[i]));
        Assert.True(diff <= tolerance * max, $"{file}: max |difference| {diff} of largest |logit| {max} ({diff / max:E2})");
        for (int p = 0; p < beforeFlip; p++)
            Assert.Equal(Sampler.ArgMax(expected.AsSpan(p * v, v)), Sampler.ArgMax(logits.AsSpan(p * v, v)));
    }

    [Fact]
    public void UnknownArchitectureIsRefusedWithItsName()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string path = Path.Combine(dir, "odd.gguf");
            var w = new GgufWriter();
            w.AddString("general.architecture", "mamba");
            w.AddTensor("token_embd.weight", GgmlType.F32, [4, 2], new byte[32]);
            w.Write(path);
            var e = Assert.Throws<RotorException>(() => LanguageModel.Load(path));
            Assert.Contains("odd.gguf", e.Message);
            Assert.Contains("mamba", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

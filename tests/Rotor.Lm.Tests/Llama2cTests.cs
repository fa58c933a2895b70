using System.Text.Json;
using Rotor.Kernels;
using Rotor.Lm.Loading;

namespace Rotor.Lm.Tests;

/// <summary>The real stories260K model against llama2.c's own run.c (Data/llama2c/README.md says how the reference was
/// made): logits at the first positions and the greedy continuation.</summary>
public sealed class Llama2cTests
{
    private sealed record Reference(int[] prompt_ids, int[] generated_ids, float[][] logits, string text);

    private static Reference LoadReference()
        => JsonSerializer.Deserialize<Reference>(File.ReadAllText(TestPaths.Data("llama2c", "stories260K-greedy.json")))!;

    [SharedLmFact("stories260K.bin")]
    public void LogitsMatchRunC()
    {
        var r = LoadReference();
        var (c, w) = Llama2cLoader.Load(TestPaths.SharedLm("stories260K.bin")!);
        Assert.Equal((64, 5, 8, 4, 512, 172), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.FfnDim));
        using var backend = new CpuBackend(threads: 1);
        var dec = new Decoder(c, w, backend, maxPositions: c.ContextLength);
        var cache = new KvCache(c, c.ContextLength);
        int[] seq = [.. r.prompt_ids, .. r.generated_ids];
        // One token at a time (decode path), as run.c does.
        for (int pos = 0; pos < r.logits.Length; pos++)
        {
            var logits = dec.Forward(seq.AsSpan(pos, 1), cache).ToArray();
            AssertClose(r.logits[pos], logits, $"position {pos}");
        }
        // All positions at once (prefill path) give the same logits.
        var all = new float[r.logits.Length * c.VocabSize];
        var cache2 = new KvCache(c, c.ContextLength);
        dec.Forward(seq.AsSpan(0, r.logits.Length), cache2, LogitsMode.All, all);
        for (int pos = 0; pos < r.logits.Length; pos++)
            AssertClose(r.logits[pos], all.AsSpan(pos * c.VocabSize, c.VocabSize).ToArray(), $"prefill position {pos}");
    }

    [SharedLmFact("stories260K.bin")]
    public void GreedyContinuationMatchesRunC()
    {
        var r = LoadReference();
        var (c, w) = Llama2cLoader.Load(TestPaths.SharedLm("stories260K.bin")!);
        using var backend = new CpuBackend(threads: 2);
        var dec = new Decoder(c, w, backend, maxPositions: c.ContextLength);
        var cache = new KvCache(c, c.ContextLength);
        var logits = dec.Forward(r.prompt_ids, cache);
        var got = new List<int>();
        while (got.Count < r.generated_ids.Length)
        {
            int next = ArgMax(logits);
            got.Add(next);
            logits = dec.Forward([next], cache);
        }
        Assert.Equal(r.generated_ids, got);
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public void GeneratedTextMatchesRunC()
    {
        // The whole path a user takes: text prompt, tokenizer, greedy generation, streamed text.
        var r = LoadReference();
        using var m = LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!, new LanguageModelOptions { TokenizerPath = TestPaths.SharedLm("tok512.bin"), Threads = 1 });
        var prompt = m.RequireTokenizer().Encode("Once upon a time");
        Assert.Equal(r.prompt_ids, prompt);
        var gen = new TextGenerator(m.CreateSession());
        var streamed = string.Concat(gen.Generate(prompt, new GenerationOptions { MaxTokens = r.generated_ids.Length, Sampling = SamplingOptions.Greedy }).Select(t => t.Text));
        Assert.Equal(r.generated_ids, gen.LastResult!.Ids);
        Assert.Equal(r.text, "Once upon a time" + streamed);
    }

    [Fact]
    public void TruncatedCheckpointIsRefusedWithItsName()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string path = Path.Combine(dir, "cut.bin");
            var header = new byte[28 + 400];
            int[] h = [64, 172, 5, 8, 4, 512, 512];
            for (int i = 0; i < 7; i++) BitConverter.GetBytes(h[i]).CopyTo(header, 4 * i);
            File.WriteAllBytes(path, header);
            var e = Assert.Throws<RotorException>(() => Llama2cLoader.Load(path));
            Assert.Contains("cut.bin", e.Message);
            Assert.Contains("implies", e.Message);
            Assert.False(Llama2cLoader.Probe(path));
        }
        finally { Directory.Delete(dir, true); }
    }

    internal static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    internal static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float maxAbs = expected.Max(MathF.Abs), maxDiff = 0;
        for (int i = 0; i < expected.Length; i++) maxDiff = MathF.Max(maxDiff, MathF.Abs(expected[i] - actual[i]));
        Assert.True(maxDiff <= 1e-4f * Math.Max(1f, maxAbs), $"{what}: max |difference| {maxDiff} (largest |logit| {maxAbs})");
        Assert.Equal(ArgMax(expected), ArgMax(actual));
    }
}

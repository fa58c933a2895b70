namespace Rotor.Lm.Tests;

/// <summary>The quantized LM heads on the real stories260K model against its F32 head: the logits move by a bounded
/// share of their range and keep their argmax (docs/BENCHMARKS-lm.md has the measured figures; these bounds are loose,
/// so that they fail when a path is wrong, not when rounding changes), and the batched product of the prefill path
/// equals the one-row product of the decode path.</summary>
public sealed class LmHeadTests
{
    private static readonly int[] Ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

    private static float[] Logits(DenseType? head)
    {
        using var m = LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!, new LanguageModelOptions { Threads = 2, LmHeadType = head });
        if (head is { } h) Assert.Equal(h, m.Weights.LmHead.Type);
        var all = new float[Ids.Length * m.Config.VocabSize];
        m.CreateSession(Ids.Length).AppendAll(Ids, all);
        return all;
    }

    [SharedLmFact("stories260K.bin")]
    public void QuantizedHeadsStayCloseToF32()
    {
        float[] f32 = Logits(null);
        int v = f32.Length / Ids.Length;
        foreach (var (type, bound) in new[] { (DenseType.Int8, 0.04), (DenseType.Q4, 0.15) })
        {
            float[] q = Logits(type);
            double worst = 0;
            int sameArgmax = 0;
            for (int p = 0; p < Ids.Length; p++)
            {
                var a = f32.AsSpan(p * v, v); var b = q.AsSpan(p * v, v);
                double max = 0, diff = 0;
                for (int j = 0; j < v; j++) { max = Math.Max(max, Math.Abs(a[j])); diff = Math.Max(diff, Math.Abs(a[j] - b[j])); }
                worst = Math.Max(worst, diff / max);
                if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(a) == System.Numerics.Tensors.TensorPrimitives.IndexOfMax(b)) sameArgmax++;
            }
            Assert.True(worst < bound, $"{type}: max |difference| / max |logit| = {worst:E2}, bound {bound}");
            Assert.True(sameArgmax >= 14, $"{type}: the same argmax at {sameArgmax} of {Ids.Length} positions");
        }
    }

    [SharedLmFact("stories260K.bin")]
    public void Q4HeadGivesTheSameLogitsOneTokenAtATime()
    {
        float[] batched = Logits(DenseType.Q4);
        using var m = LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!, new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.Q4 });
        var session = m.CreateSession(Ids.Length);
        int v = m.Config.VocabSize;
        for (int p = 0; p < Ids.Length; p++)
        {
            float[] one = session.Append(Ids.AsSpan(p, 1)).ToArray();
            float max = 0;
            for (int j = 0; j < v; j++) max = Math.Max(max, Math.Abs(batched[p * v + j]));
            for (int j = 0; j < v; j++) Assert.True(Math.Abs(one[j] - batched[p * v + j]) <= 1e-3f * max, $"position {p}, logit {j}: {one[j]} vs {batched[p * v + j]}");
        }
    }
}

/// <summary>The half-precision key/value cache on the real stories260K model: logits close to the float cache's at
/// every position (prefill and one token at a time) and the same greedy continuation.</summary>
public sealed class HalfKvCacheTests
{
    [SharedLmFact("stories260K.bin")]
    public void HalfCacheKeepsLogitsAndGreedyTokens()
    {
        string path = TestPaths.SharedLm("stories260K.bin")!;
        using var f32 = LanguageModel.Load(path, new LanguageModelOptions { Threads = 2 });
        using var f16 = LanguageModel.Load(path, new LanguageModelOptions { Threads = 2, KvCacheType = KvCacheType.F16 });
        Assert.Equal(KvCacheType.F16, f16.CreateSession(8).Cache.Type);
        Assert.Equal(f32.CreateSession(64).Cache.Bytes / 2, f16.CreateSession(64).Cache.Bytes);
        int v = f32.Config.VocabSize;
        int[] ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];
        var a = new float[ids.Length * v]; var b = new float[ids.Length * v];
        f32.CreateSession(ids.Length).AppendAll(ids, a);
        f16.CreateSession(ids.Length).AppendAll(ids, b);
        var one = f16.CreateSession(ids.Length);
        for (int p = 0; p < ids.Length; p++)
        {
            float[] c = one.Append(ids.AsSpan(p, 1)).ToArray();
            float max = 0;
            for (int j = 0; j < v; j++) max = Math.Max(max, Math.Abs(a[p * v + j]));
            for (int j = 0; j < v; j++)
            {
                Assert.True(Math.Abs(a[p * v + j] - b[p * v + j]) <= 1e-2f * max, $"prefill position {p}, logit {j}: {b[p * v + j]} vs {a[p * v + j]}");
                Assert.True(Math.Abs(a[p * v + j] - c[j]) <= 1e-2f * max, $"decode position {p}, logit {j}: {c[j]} vs {a[p * v + j]}");
            }
        }
        int[] Greedy(LanguageModel m)
        {
            var gen = new TextGenerator(m.CreateSession(256));
            return gen.Generate([1], new GenerationOptions { MaxTokens = 96, Sampling = SamplingOptions.Greedy }).Where(t => t.Id >= 0).Select(t => t.Id).ToArray();
        }
        Assert.Equal(Greedy(f32), Greedy(f16));
    }
}

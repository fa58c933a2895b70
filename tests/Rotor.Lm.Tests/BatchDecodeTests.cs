namespace Rotor.Lm.Tests;

/// <summary>Continuous batching: sequences stepped together give the logits each gives alone.</summary>
public sealed class BatchDecodeTests
{
    /// <summary>Steps the prompts together (all of them in one batch) and checks each step's logits against the sequence
    /// run alone. <paramref name="cacheOf"/> makes sequence b's cache (default: the model's type); a sequence run alone
    /// uses a cache of the same type.</summary>
    private static void BatchEqualsAlone(LanguageModel m, float tolerance, int[][]? prompts = null, Func<int, KvCache>? cacheOf = null)
    {
        int v = m.Config.VocabSize;
        prompts ??= [[1, 5, 9, 200], [1, 300], [1, 17, 17, 17, 17, 4, 90]];
        var dec = m.CreateDecoder(64, maxBatch: Math.Max(8, prompts.Length));
        var caches = prompts.Select((_, b) => cacheOf?.Invoke(b) ?? m.CreateCache(64)).ToArray();
        var next = new int[prompts.Length];
        for (int b = 0; b < prompts.Length; b++) next[b] = Sampler.ArgMax(dec.Forward(prompts[b], caches[b]));
        var logits = new float[prompts.Length * v];
        var seqs = prompts.Select(p => p.ToList()).ToArray();
        for (int step = 0; step < 6; step++)
        {
            dec.ForwardBatch(next, caches, logits);
            for (int b = 0; b < prompts.Length; b++)
            {
                seqs[b].Add(next[b]);
                // The same sequence run alone from scratch, one token at a time after its prompt.
                var aloneCache = new KvCache(m.Config, 64, caches[b].Type);
                float[] expected = dec.Forward(seqs[b].Take(prompts[b].Length).ToArray(), aloneCache).ToArray();
                foreach (int t in seqs[b].Skip(prompts[b].Length)) expected = dec.Forward([t], aloneCache).ToArray();
                float max = expected.Max(MathF.Abs), diff = 0;
                for (int i = 0; i < v; i++) diff = MathF.Max(diff, MathF.Abs(expected[i] - logits[b * v + i]));
                Assert.True(diff <= tolerance * max, $"sequence {b} step {step}: max |difference| {diff}");
                next[b] = Sampler.ArgMax(logits.AsSpan(b * v, v));
            }
        }
        Assert.Equal(prompts.Select(p => p.Length + 6), caches.Select(c => c.Length));
        var e = Assert.Throws<RotorException>(() => dec.ForwardBatch([1, 2], [caches[0], caches[0]], logits));
        Assert.Contains("twice", e.Message);
    }

    [SharedLmFact("stories260K.bin")]
    public void FloatModelBatchEqualsAlone()
    {
        using var m = LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!, new LanguageModelOptions { Threads = 2 });
        BatchEqualsAlone(m, 1e-5f);
    }

    [Fact]
    public void TernaryModelBatchEqualsAlone()
    {
        // A random BitNet model of 2B4T's layer structure at a small width: the batched products are the GEMM kernels,
        // the single ones the GEMV kernels; both are exact integer sums.
        var c = RandomModel.BitNet2B4T with { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 64, FfnDim = 512, VocabSize = 320 };
        using var m = LanguageModel.FromWeights(c, RandomModel.Create(c, seed: 5), new LanguageModelOptions { Threads = 2 });
        BatchEqualsAlone(m, 1e-5f);
    }

    [Fact]
    public void SeventeenSequencesAndHalfOrMixedCachesBatchEqualAlone()
    {
        // More rows than a tile holds (the head's F16 product in groups of four plus a tail, the attention of every row
        // as one job), with half caches, and with float and half caches mixed in one batch (rows attend one by one).
        var c = RandomModel.BitNet2B4T with { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 64, FfnDim = 512, VocabSize = 320 };
        using var m = LanguageModel.FromWeights(c, RandomModel.Create(c, seed: 6), new LanguageModelOptions { Threads = 2 });
        Assert.Equal(DenseType.F16, m.Weights.LmHead.Type);
        int[][] prompts = [.. Enumerable.Range(0, 17).Select(b => Enumerable.Range(0, 1 + b % 5).Select(i => (7 * b + 13 * i) % 320).ToArray())];
        BatchEqualsAlone(m, 1e-5f, prompts, _ => new KvCache(c, 64, KvCacheType.F16));
        BatchEqualsAlone(m, 1e-5f, prompts, b => new KvCache(c, 64, b % 3 == 0 ? KvCacheType.F16 : KvCacheType.F32));
    }
}

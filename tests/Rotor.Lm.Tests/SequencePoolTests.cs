using Rotor.Lm;

namespace Rotor.Lm.Tests;

public class SequencePoolTests
{
    private static LanguageModel Model(int seed)
    {
        var c = RandomModel.BitNet2B4T with { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 64, FfnDim = 512, VocabSize = 320 };
        return LanguageModel.FromWeights(c, RandomModel.Create(c, seed: seed), new LanguageModelOptions { Threads = 2 });
    }

    /// <summary>The logits of <paramref name="tokens"/> run alone through a fresh decoder and cache, one call.</summary>
    private static float[] Alone(LanguageModel m, IReadOnlyList<int> tokens)
    {
        var dec = m.CreateDecoder(64, 8);
        var cache = m.CreateCache(64);
        return dec.Forward(tokens.ToArray(), cache).ToArray();
    }

    private static void Near(float[] expected, ReadOnlySpan<float> actual, string what)
    {
        float max = expected.Max(MathF.Abs), diff = 0;
        for (int i = 0; i < expected.Length; i++) diff = MathF.Max(diff, MathF.Abs(expected[i] - actual[i]));
        Assert.True(diff <= 1e-5f * max, $"{what}: max |difference| {diff} of {max}");
    }

    [Fact]
    public void InterleavedPrefillsStepsAndReusedSlotsEqualEachSequenceAlone()
    {
        using var m = Model(11);
        int v = m.Config.VocabSize;
        // Three slots, a decoder batch of 2 (so a step of 3 rows runs in two pieces), prompts run in chunks between
        // steps, a sequence ended and its slot reused by a new one while the others go on.
        using var pool = m.CreateSequencePool(3, 64, maxBatch: 2);
        Assert.False(pool.OnGpu);
        Assert.Equal(0, pool.SlotsAllocated);
        var seqs = new List<int>?[3];
        var next = new int[3];
        void Start(int slot, int[] prompt)
        {
            pool.Reset(slot);
            var logits = pool.Prefill(slot, prompt.AsSpan(0, prompt.Length / 2 + 1));
            if (prompt.Length / 2 + 1 < prompt.Length) logits = pool.Prefill(slot, prompt.AsSpan(prompt.Length / 2 + 1));
            Near(Alone(m, prompt), logits, $"slot {slot} prompt");
            seqs[slot] = [.. prompt];
            next[slot] = Sampler.ArgMax(logits);
        }
        Start(0, [5, 9, 200, 3]);
        Start(1, [17]);
        Assert.Equal(2, pool.SlotsAllocated);
        var logitsAll = new float[3 * v];
        for (int step = 0; step < 5; step++)
        {
            if (step == 1) Start(2, [1, 2, 3, 4, 5, 6, 7]);
            if (step == 3) Start(1, [300, 301]);   // slot 1's sequence ends; a new one takes the slot
            int[] slots = [.. Enumerable.Range(0, 3).Where(s => seqs[s] is not null)];
            int[] tokens = [.. slots.Select(s => next[s])];
            pool.Step(tokens, slots, logitsAll);
            for (int b = 0; b < slots.Length; b++)
            {
                int s = slots[b];
                seqs[s]!.Add(tokens[b]);
                Assert.Equal(seqs[s]!.Count, pool.Length(s));
                var row = logitsAll.AsSpan(b * v, v);
                Near(Alone(m, seqs[s]!), row, $"step {step} slot {s}");
                next[s] = Sampler.ArgMax(row);
            }
        }
        Assert.Equal(3, pool.SlotsAllocated);
    }

    [Fact]
    public void ATruncatedSlotContinuesAsTheKeptPrefixAlone()
    {
        using var m = Model(13);
        int v = m.Config.VocabSize;
        using var pool = m.CreateSequencePool(2, 64, maxBatch: 4);
        int[] first = [4, 8, 15, 16, 23, 42, 99];
        pool.Prefill(0, first);
        var logits = new float[v];
        pool.Step([7], [0], logits);
        // Keep the first 5 of the 8 positions and run another continuation: the logits are those of that prefix and
        // the new tokens alone (the old positions 5..7 are overwritten, not attended).
        pool.Truncate(0, 5);
        Assert.Equal(5, pool.Length(0));
        int[] branch = [4, 8, 15, 16, 23, 200, 201];
        Near(Alone(m, branch), pool.Prefill(0, branch.AsSpan(5)), "after truncation");
        pool.Step([3], [0], logits);
        Near(Alone(m, [.. branch, 3]), logits, "a step after truncation");
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Truncate(0, 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Truncate(0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Truncate(1, 1));
        pool.Truncate(0, 0);
        Assert.Equal(0, pool.Length(0));
    }

    /// <summary>A pool with only the required members: its all-logits prefill is the base class's token by token.</summary>
    private sealed class PlainPool(LanguageModel m, int contextLength) : SequencePool(m.Config, 1, contextLength)
    {
        private readonly Decoder _decoder = m.CreateDecoder(contextLength, 8);
        private readonly KvCache _cache = m.CreateCache(contextLength);
        public override bool OnGpu => false;
        public override int SlotsAllocated => 1;
        protected override ReadOnlySpan<float> PrefillCore(int slot, int position, ReadOnlySpan<int> tokens)
        {
            if (_cache.Length != position) _cache.Truncate(position);
            return _decoder.Forward(tokens, _cache);
        }
        protected override void StepCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits) => throw new NotSupportedException();
    }

    [Fact]
    public void APrefillWithEveryPositionsLogitsEqualsEachPrefixAlone()
    {
        using var m = Model(14);
        int v = m.Config.VocabSize;
        int[] tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5];
        using var pool = m.CreateSequencePool(2, 64, maxBatch: 4);   // 9 tokens: the decoder's passes of 4, 4 and 1
        using var plain = new PlainPool(m, 64);
        foreach (SequencePool p in new SequencePool[] { pool, plain })
        {
            p.Prefill(0, [7, 7]);
            var all = new float[tokens.Length * v];
            var last = p.Prefill(0, tokens, all).ToArray();
            Assert.Equal(11, p.Length(0));
            for (int i = 0; i < tokens.Length; i++)
                Near(Alone(m, [7, 7, .. tokens[..(i + 1)]]), all.AsSpan(i * v, v), $"{p.GetType().Name} row {i}");
            Assert.Equal(all.AsSpan((tokens.Length - 1) * v).ToArray(), last);
            Assert.Throws<ArgumentException>(() => p.Prefill(0, [1, 2], new float[v]));
        }
    }

    [Theory]
    [InlineData(KvCacheType.F32)]
    [InlineData(KvCacheType.F16)]
    public void ACopiedPrefixRunsOnAsThatPrefixAloneAndTheSourceGoesOn(KvCacheType type)
    {
        var c = RandomModel.BitNet2B4T with { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 64, FfnDim = 512, VocabSize = 320 };
        using var m = LanguageModel.FromWeights(c, RandomModel.Create(c, seed: 15), new LanguageModelOptions { Threads = 2, KvCacheType = type });
        int v = c.VocabSize;
        float[] Solo(IReadOnlyList<int> t) { var d = m.CreateDecoder(64, 8); return d.Forward(t.ToArray(), m.CreateCache(64)).ToArray(); }
        using var pool = m.CreateSequencePool(3, 64, maxBatch: 4);
        Assert.True(pool.CanCopyPrefix);
        int[] shared = [9, 8, 7, 6, 5, 4, 3];
        pool.Prefill(0, shared);
        pool.Prefill(2, [1, 1, 1, 1, 1, 1, 1, 1, 1]);   // a destination that held something else
        pool.CopyPrefix(0, 2, 5);
        Assert.Equal(5, pool.Length(2));
        Near(Solo([9, 8, 7, 6, 5, 100, 101]), pool.Prefill(2, [100, 101]), "after a copied prefix");
        pool.CopyPrefix(0, 1, 7);   // a slot whose cache is made by the copy
        var logits = new float[2 * v];
        pool.Step([50, 60], [0, 1], logits);
        Near(Solo([.. shared, 50]), logits.AsSpan(0, v), "the source goes on");
        Near(Solo([.. shared, 60]), logits.AsSpan(v, v), "the copy goes on");
        Assert.Throws<ArgumentException>(() => pool.CopyPrefix(1, 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.CopyPrefix(0, 1, 9));
    }

    [Fact]
    public void BadStepsFailWithOneClearMessage()
    {
        using var m = Model(12);
        using var pool = m.CreateSequencePool(2, 4, maxBatch: 4);
        var logits = new float[2 * m.Config.VocabSize];
        pool.Prefill(0, [1, 2, 3]);
        Assert.Contains("twice", Assert.Throws<RotorException>(() => pool.Step([1, 2], [0, 0], logits)).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<RotorException>(() => pool.Step([m.Config.VocabSize], [0], logits)).Message);
        Assert.Contains("do not fit the context of 4", Assert.Throws<RotorException>(() => pool.Prefill(0, [1, 2])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Step([1], [2], logits));
        pool.Step([1], [0], logits);
        Assert.Equal(4, pool.Length(0));
        Assert.Contains("is full", Assert.Throws<RotorException>(() => pool.Step([1], [0], logits)).Message);
        // The CPU pool leaves the choice to its caller.
        Assert.False(pool.CanSample(SamplingOptions.Greedy));
        Assert.Throws<ArgumentException>(() => pool.StepSample([1], [1], [SamplingOptions.Greedy], [1UL], new int[1]));
        Assert.Contains("at least one", Assert.Throws<RotorException>(() => m.CreateSequencePool(0, 4)).Message);
        pool.Reset(0);
        Assert.Equal(0, pool.Length(0));
        Assert.Equal(0, pool.Length(1));
    }
}

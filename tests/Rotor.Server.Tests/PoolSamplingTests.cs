using Rotor.Lm;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>The scheduler's path for a pool that chooses the tokens itself (the GPU's: only the ids come back), on the
/// CPU through a pool that does what the GPU's does for greedy rows: a step whose every row it can take is one
/// <see cref="SequencePool.StepSample"/>, any other step comes back as logits; either way each request gets the tokens
/// it gets alone.</summary>
public sealed class PoolSamplingTests
{
    /// <summary>A CPU pool that chooses greedy rows' tokens itself (the argmax of its own logits), counting its steps.</summary>
    private sealed class ChoosingPool : SequencePool
    {
        private readonly Decoder _decoder;
        private readonly KvCache[] _caches;
        private readonly List<KvCache> _batch = [];
        private float[] _rows = [];

        public ChoosingPool(LanguageModel model, int slots, int contextLength) : base(model.Config, slots, contextLength)
        {
            _decoder = model.CreateDecoder(contextLength, 64);
            _caches = [.. Enumerable.Range(0, slots).Select(_ => model.CreateCache(contextLength))];
        }

        public int LogitSteps, ChoiceSteps;
        public override bool OnGpu => false;
        public override int SlotsAllocated => Slots;
        public override bool CanSample(SamplingOptions options) => options.Temperature == 0 && options.RepetitionPenalty == 1f;

        private KvCache Cache(int slot, int position)
        {
            var c = _caches[slot];
            if (c.Length != position) c.Truncate(position);
            return c;
        }

        protected override ReadOnlySpan<float> PrefillCore(int slot, int position, ReadOnlySpan<int> tokens) => _decoder.Forward(tokens, Cache(slot, position));

        private void Run(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits)
        {
            _batch.Clear();
            foreach (int s in slots) _batch.Add(Cache(s, Length(s)));
            _decoder.ForwardBatch(tokens, _batch, logits);
        }

        protected override void StepCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits)
        {
            LogitSteps++;
            Run(tokens, slots, logits);
        }

        protected override void StepSampleCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds, Span<int> next)
        {
            ChoiceSteps++;
            int v = Config.VocabSize;
            if (_rows.Length < tokens.Length * v) _rows = new float[tokens.Length * v];
            Run(tokens, slots, _rows);
            for (int b = 0; b < tokens.Length; b++) next[b] = Sampler.ArgMax(_rows.AsSpan(b * v, v));
        }
    }

    private static IReadOnlyList<int>[] Prompts(int n)
    {
        var rng = new Random(9);
        return [.. Enumerable.Range(0, n).Select(i => (IReadOnlyList<int>)Enumerable.Range(0, 3 + 5 * i).Select(_ => rng.Next(3, 512)).Prepend(1).ToArray())];
    }

    [StoriesFact]
    public async Task GreedyStepsAreChosenByThePoolAndEqualEachRequestAlone()
    {
        using var model = Models.RandomBitNet();
        var prompts = Prompts(4);
        var options = new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };
        var alone = prompts.Select(p => Models.Direct(model, p, options, 128)).ToArray();
        var pool = new ChoosingPool(model, 4, 128);
        using (var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 4, ContextLength = 128, PrefillChunk = 8 }, null, pool))
        {
            var outcomes = await Task.WhenAll(prompts.Select(p => scheduler.Submit(new GenerationRequest(p, options)).Completion));
            for (int i = 0; i < prompts.Length; i++)
            {
                Assert.Equal(alone[i].Ids, outcomes[i].Ids);
                Assert.Equal(GenerationEnd.Length, outcomes[i].End);
            }
        }
        Assert.True(pool.ChoiceSteps >= 11, $"{pool.ChoiceSteps} steps chosen by the pool");
        Assert.Equal(0, pool.LogitSteps);
    }

    [StoriesFact]
    public async Task StepsWithARowThePoolCannotChooseComeBackAsLogits()
    {
        using var model = Models.RandomBitNet();
        var prompts = Prompts(3);
        var greedy = new GenerationOptions { MaxTokens = 10, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };
        // A seeded sampler (not greedy: the pool cannot take it) and a greedy request whose logits are observed.
        var sampled = greedy with { Sampling = new SamplingOptions { Temperature = 0.9f, Seed = 42 } };
        var alone = new[] { Models.Direct(model, prompts[0], greedy, 128), Models.Direct(model, prompts[1], sampled, 128), Models.Direct(model, prompts[2], greedy, 128) };
        var pool = new ChoosingPool(model, 3, 128);
        int observed = 0;
        using (var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 3, ContextLength = 128 }, null, pool))
        {
            var a = scheduler.Submit(new GenerationRequest(prompts[0], greedy));
            var b = scheduler.Submit(new GenerationRequest(prompts[1], sampled));
            var c = scheduler.Submit(new GenerationRequest(prompts[2], greedy) { OnLogits = l => { Assert.Equal(512, l.Length); Interlocked.Increment(ref observed); } });
            var outcomes = await Task.WhenAll(a.Completion, b.Completion, c.Completion);
            for (int i = 0; i < 3; i++) Assert.Equal(alone[i].Ids, outcomes[i].Ids);
        }
        Assert.Equal(10, observed);
        // Every step holding the observed request came back as logits (steps before it joined may have been chosen).
        Assert.True(pool.LogitSteps >= 9, $"{pool.LogitSteps} steps with logits");
    }

    [Fact]
    public void APoolTooSmallForTheSchedulerIsRefused()
    {
        var c = RandomModel.BitNet2B4T with { Dim = 64, Layers = 1, Heads = 2, KvHeads = 1, HeadDim = 32, FfnDim = 128, VocabSize = 64, ContextLength = 64 };
        using var model = LanguageModel.FromWeights(c, RandomModel.Create(c, seed: 1), new LanguageModelOptions { Threads = 1 });
        var pool = model.CreateSequencePool(2, 64);
        var e = Assert.Throws<ArgumentException>(() => new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 4, ContextLength = 64 }, null, pool));
        Assert.Contains("needs 4", e.Message);
        pool.Dispose();
    }
}

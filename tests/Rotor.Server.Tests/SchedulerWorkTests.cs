using Rotor.Kernels;
using Rotor.Lm;
using Rotor.Server.Scheduling;
using Xunit.Abstractions;

namespace Rotor.Server.Tests;

/// <summary>
/// The work of a batched step, counted (never timed): one LM-head product for all rows of a step; no allocation on the
/// decode thread that grows with the vocabulary once the batch is running; sampling a row allocates nothing.
/// </summary>
public sealed class SchedulerWorkTests(ITestOutputHelper output)
{
    /// <summary>A tiny BitNet shape with a large vocabulary, so that anything proportional to V stands out.</summary>
    private static readonly ModelConfig Shape = RandomModel.BitNet2B4T with { Dim = 64, Layers = 1, Heads = 4, KvHeads = 2, HeadDim = 16, FfnDim = 96, VocabSize = 32768, ContextLength = 256 };

    /// <summary>Counts the dense products on the LM head and the rows each one takes.</summary>
    private sealed class CountingDense(IDenseBackend inner, DenseMatrix head) : IDenseBackend
    {
        public readonly List<int> HeadRows = [];
        public void MatMul(DenseMatrix w, ReadOnlySpan<float> x, Span<float> y)
        {
            if (ReferenceEquals(w, head)) HeadRows.Add(x.Length / w.Cols);
            inner.MatMul(w, x, y);
        }
    }

    [Fact]
    public void ABatchedStepTakesOneHeadProductForAllRows()
    {
        var weights = RandomModel.Create(Shape, seed: 3);
        using var cpu = new CpuBackend(1);
        var dense = new CountingDense(cpu, weights.LmHead);
        var decoder = new Rotor.Lm.Decoder(Shape, weights, cpu, dense, cpu, 64, 16);
        var caches = Enumerable.Range(0, 5).Select(_ => new KvCache(Shape, 64)).ToArray();
        for (int b = 0; b < caches.Length; b++) decoder.Forward([1 + b, 2, 3], caches[b]);
        Assert.Equal([1, 1, 1, 1, 1], dense.HeadRows);   // a prefill computes the last token's logits only
        dense.HeadRows.Clear();
        var logits = new float[5 * Shape.VocabSize];
        decoder.ForwardBatch([7, 8, 9, 10, 11], caches, logits);
        Assert.Equal([5], dense.HeadRows);
        // Each row equals that sequence decoded alone (the one product serves every row).
        for (int b = 0; b < 5; b++)
        {
            var alone = new KvCache(Shape, 64);
            var single = new Rotor.Lm.Decoder(Shape, weights, cpu, 64, 16);
            single.Forward([1 + b, 2, 3], alone);
            var row = single.Forward([7 + b], alone).ToArray();
            var batched = logits.AsSpan(b * Shape.VocabSize, Shape.VocabSize).ToArray();
            Assert.Equal(row.Length, batched.Length);
            for (int i = 0; i < row.Length; i++) Assert.Equal(row[i], batched[i], 3e-3f);
        }
    }

    /// <summary>Records, on the decode thread, the bytes it allocated between consecutive steps.</summary>
    private sealed class AllocationObserver : ISchedulerObserver
    {
        // The decode thread may still report a step after the last completion resolves: the test reads a copy.
        private readonly List<(int Decoded, int Prefilled, long Bytes)> _steps = [];
        private readonly Lock _gate = new();
        private long _last = -1;
        public List<(int Decoded, int Prefilled, long Bytes)> Steps() { lock (_gate) return [.. _steps]; }
        public void Step(int decoded, int prefilled, TimeSpan elapsed)
        {
            long now = GC.GetAllocatedBytesForCurrentThread();
            if (_last >= 0) lock (_gate) _steps.Add((decoded, prefilled, now - _last));
            _last = GC.GetAllocatedBytesForCurrentThread();   // the list's own growth is not the step's
        }
        public void Finished(GenerationOutcome outcome) { }
    }

    [Fact]
    public async Task TheDecodeThreadAllocatesNothingThatGrowsWithTheVocabulary()
    {
        using var model = LanguageModel.FromWeights(Shape, RandomModel.Create(Shape, seed: 5), new LanguageModelOptions { Threads = 1 }, "tiny-wide");
        var observer = new AllocationObserver();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 8, ContextLength = 256, PrefillChunk = 16 }, observer);
        const int Rows = 8, Tokens = 80;
        var streams = Enumerable.Range(0, Rows).Select(i => scheduler.Submit(new GenerationRequest([1 + i, 2 + i, 3, 4, 5],
            new GenerationOptions
            {
                MaxTokens = Tokens, StopOnEndTokens = false,
                // Greedy rows, sampled rows with top-k, and rows with the repetition penalty (applied in place).
                Sampling = (i % 3) switch
                {
                    0 => SamplingOptions.Greedy,
                    1 => new SamplingOptions { Temperature = 0.8f, Seed = i },
                    _ => new SamplingOptions { Temperature = 0.8f, RepetitionPenalty = 1.3f, Seed = i },
                },
            }))).ToArray();
        foreach (var s in streams) Assert.Equal(GenerationEnd.Length, (await s.Completion).End);

        // The steady state: every row decoding, no prefill, past the first steps (buffers and lists grown once).
        var steady = observer.Steps().Where(x => x.Decoded == Rows && x.Prefilled == 0).Skip(8).ToList();
        Assert.True(steady.Count > Tokens / 2, $"{steady.Count} steady steps");
        long most = steady.Max(x => x.Bytes);
        output.WriteLine($"decode-thread bytes a steady step of {Rows} rows: mean {steady.Average(x => x.Bytes):F0}, max {most}; one row of logits is {Shape.VocabSize * 4} bytes");
        Assert.True(most < Shape.VocabSize, $"a step allocated {most} bytes on the decode thread (V = {Shape.VocabSize})");
    }

    [Fact]
    public void SamplingARowAllocatesNothingOnceWarm()
    {
        var rng = new Random(2);
        var logits = new float[Shape.VocabSize];
        var history = Enumerable.Range(0, 200).Select(_ => rng.Next(Shape.VocabSize)).ToArray();
        foreach (var o in new[]
        {
            SamplingOptions.Greedy,
            new SamplingOptions { Temperature = 0.8f, Seed = 1 },
            new SamplingOptions { Temperature = 0.8f, RepetitionPenalty = 1.3f, Seed = 1 },
            new SamplingOptions { Temperature = 0, RepetitionPenalty = 1.3f },
        })
        {
            var sampler = new Sampler(o);
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)rng.NextDouble();
            sampler.SampleInPlace(logits, history);
            sampler.Sample(logits, history);
            // The least a round of 20 allocates: a sampler that allocates a call does in every round, while the
            // runtime's own one-off work on this thread (tiering up a method, loading a type) lands in one round only.
            long least = long.MaxValue;
            for (int round = 0; round < 5 && least > 0; round++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int k = 0; k < 20; k++) { sampler.SampleInPlace(logits, history); sampler.Sample(logits, history); }
                least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
            }
            Assert.Equal(0, least);
        }
    }
}

namespace Rotor.Lm.Tests;

/// <summary>Token log-probabilities: <see cref="TokenLogprobs.Compute"/> against a plain double-precision log-softmax
/// and sort, and <see cref="TextGenerator"/>'s against the session's own logits step by step.</summary>
public sealed class LogprobsTests
{
    private static double[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits) max = Math.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        double lse = max + Math.Log(sum);
        var r = new double[logits.Length];
        for (int i = 0; i < r.Length; i++) r[i] = logits[i] - lse;
        return r;
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(1, 5)]
    [InlineData(7, 3)]
    [InlineData(33, 20)]
    [InlineData(1000, 20)]
    [InlineData(32000, 1)]
    public void ComputeEqualsAPlainLogSoftmaxAndSort(int n, int top)
    {
        var rng = new Random(n * 31 + top);
        var logits = new float[n];
        for (int i = 0; i < n; i++) logits[i] = (float)(rng.NextDouble() * 20 - 10);
        // Ties: equal values keep the lower id first.
        if (n > 4) { logits[3] = logits[1]; logits[4] = 50; logits[2] = 50; }
        int chosen = rng.Next(n);
        var lp = TokenLogprobs.Compute(logits, chosen, top);
        var expected = LogSoftmax(logits);
        Assert.Equal(chosen, lp.Chosen.Id);
        Assert.Equal(expected[chosen], lp.Chosen.Logprob, 1e-5);
        var order = Enumerable.Range(0, n).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(top).ToArray();
        Assert.Equal(order, lp.Top.Select(t => t.Id));
        for (int i = 0; i < order.Length; i++) Assert.Equal(expected[order[i]], lp.Top[i].Logprob, 1e-5);
        Assert.Equal(1.0, expected.Sum(Math.Exp), 1e-9);
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute([1f, 2f], 0, 21));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute([1f, 2f], 2, 1));
        Assert.Contains("logprobs 21", Assert.Throws<RotorException>(() => new GenerationOptions { Logprobs = 21 }.Validate()).Message);
    }

    [Theory]
    [InlineData(0f, 1f)]
    [InlineData(0.8f, 1.3f)]
    public void TheGeneratorsLogprobsAreTheSessionsLogSoftmax(float temperature, float penalty)
    {
        var c = RandomModel.BitNet2B4T with { Dim = 128, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 32, FfnDim = 256, VocabSize = 300 };
        using var m = LanguageModel.FromWeights(c, RandomModel.Create(c, seed: 5), new LanguageModelOptions { Threads = 1 });
        int[] prompt = [1, 17, 42, 99, 7];
        var options = new GenerationOptions
        {
            MaxTokens = 9, StopOnEndTokens = false, Logprobs = 4,
            Sampling = new SamplingOptions { Temperature = temperature, Seed = 3, RepetitionPenalty = penalty, TopK = 40 },
        };
        var tokens = new TextGenerator(m.CreateSession(64)).Generate(prompt, options).Where(t => t.Id >= 0).ToList();
        Assert.Equal(9, tokens.Count);
        // The reference: the same ids run through a session of its own, the log-softmax of each step's raw logits
        // (temperature and penalty change the choice, never the reported distribution).
        var session = m.CreateSession(64);
        float[] logits = session.Continue(prompt).ToArray();
        foreach (var t in tokens)
        {
            var expected = LogSoftmax(logits);
            Assert.NotNull(t.Logprobs);
            Assert.Equal(t.Id, t.Logprobs!.Chosen.Id);
            Assert.Equal(expected[t.Id], t.Logprobs.Chosen.Logprob, 1e-4);
            int best = Array.IndexOf(expected, expected.Max());
            Assert.Equal(best, t.Logprobs.Top[0].Id);
            Assert.Equal(4, t.Logprobs.Top.Count);
            if (temperature == 0 && penalty == 1f) Assert.Equal(best, t.Id);
            logits = session.Append([t.Id]).ToArray();
        }
    }
}

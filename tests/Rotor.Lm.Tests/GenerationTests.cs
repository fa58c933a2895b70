using Rotor.Lm.Loading;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests;

/// <summary>Sampling and generation on the real stories260K model with a stand-in tokenizer whose token i reads
/// "&lt;i&gt;" (so that stop texts and streaming can be checked without depending on a real vocabulary).</summary>
public sealed class GenerationTests
{
    private sealed class AngleTokenizer : LmTokenizer
    {
        public override int VocabSize => 512;
        public override int? BosId => 1;
        public override int? EosId => 2;
        public override IReadOnlySet<int> StopIds { get; } = new HashSet<int> { 2 };
        private protected override SpecialTokenMatcher Matcher { get; } = SpecialTokenMatcher.Empty;
        private protected override void EncodeText(ReadOnlySpan<char> text, bool atTextStart, List<int> ids) => throw new NotSupportedException();
        public override byte[] TokenBytes(int id, int? previousId) => System.Text.Encoding.UTF8.GetBytes($"<{id}>");
        public override bool IsSpecial(int id) => id < 3;
    }

    private static LanguageModel Load()
        => LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!, new LanguageModelOptions { Tokenizer = new AngleTokenizer(), Threads = 1 });

    private static readonly int[] Prompt = [1, 403, 407, 261, 378];

    [SharedLmFact("stories260K.bin")]
    public void GreedyStreamsTheTokensAndTheirText()
    {
        using var m = Load();
        var gen = new TextGenerator(m.CreateSession(64));
        var items = gen.Generate(Prompt, new GenerationOptions { MaxTokens = 6, Sampling = SamplingOptions.Greedy }).ToList();
        var r = gen.LastResult!;
        Assert.Equal([432, 383, 286, 261, 376, 298], r.Ids);
        Assert.Equal(string.Concat(r.Ids.Select(i => $"<{i}>")), r.Text);
        Assert.Equal(r.Text, string.Concat(items.Select(t => t.Text)));
        Assert.Equal(FinishReason.Length, r.Finish);
        // The session holds the prompt and every generated token but the last, which was never run.
        Assert.Equal(Prompt.Length + 5, gen.Session.Position);
    }

    [SharedLmFact("stories260K.bin")]
    public void StopTextEndsTheOutputWhereItBegins()
    {
        using var m = Load();
        var gen = new TextGenerator(m.CreateSession(64));
        var items = gen.Generate(Prompt, new GenerationOptions { MaxTokens = 20, Sampling = SamplingOptions.Greedy, Stop = ["<261><3"] }).ToList();
        var r = gen.LastResult!;
        Assert.Equal(FinishReason.Stop, r.Finish);
        Assert.Equal("<432><383><286>", r.Text);
        Assert.Equal(r.Text, string.Concat(items.Select(t => t.Text)));
        Assert.Equal(5, r.Ids.Count);   // the tokens up to the one that completed the stop text
    }

    [SharedLmFact("stories260K.bin")]
    public void SeededSamplingIsReproducibleAndDiffersFromGreedy()
    {
        using var m = Load();
        GenerationResult Run(int seed) => new TextGenerator(m.CreateSession(64)).Complete(Prompt,
            new GenerationOptions { MaxTokens = 24, Sampling = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = seed } });
        var a = Run(7); var b = Run(7); var c = Run(8);
        Assert.Equal(a.Ids, b.Ids);
        Assert.NotEqual(a.Ids, c.Ids);
        var greedy = new TextGenerator(m.CreateSession(64)).Complete(Prompt, new GenerationOptions { MaxTokens = 24, Sampling = SamplingOptions.Greedy });
        Assert.NotEqual(greedy.Ids, a.Ids);
    }

    [SharedLmFact("stories260K.bin")]
    public void PromptLongerThanTheContextIsAClearError()
    {
        using var m = Load();
        var gen = new TextGenerator(m.CreateSession(8));
        var e = Assert.Throws<RotorException>(() => gen.Generate(Enumerable.Repeat(5, 8).ToArray(), new GenerationOptions()));
        Assert.Contains("context 8", e.Message);
        var full = new TextGenerator(m.CreateSession(8)).Complete(Prompt, new GenerationOptions { MaxTokens = 50, Sampling = SamplingOptions.Greedy });
        Assert.Equal(FinishReason.ContextFull, full.Finish);
        Assert.Equal(4, full.Ids.Count);   // positions 5..7 take three of them; the fourth comes from the last position
    }

    [SharedLmFact("stories260K.bin")]
    public void CancellationStopsTheStream()
    {
        using var m = Load();
        using var cts = new CancellationTokenSource();
        var gen = new TextGenerator(m.CreateSession(64));
        int seen = 0;
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var _ in gen.Generate(Prompt, new GenerationOptions { MaxTokens = 40, Sampling = SamplingOptions.Greedy }, cts.Token))
                if (++seen == 3) cts.Cancel();
        });
        Assert.Equal(3, seen);
    }

    [SharedLmFact("stories260K.bin")]
    public void ContinuingAConversationReusesTheCachedPrefix()
    {
        using var m = Load();
        var session = m.CreateSession(64);
        var gen = new TextGenerator(session);
        var first = gen.Complete(Prompt, new GenerationOptions { MaxTokens = 4, Sampling = SamplingOptions.Greedy });
        int[] next = [.. Prompt, .. first.Ids, 13, 403];
        var second = gen.Complete(next, new GenerationOptions { MaxTokens = 4, Sampling = SamplingOptions.Greedy });
        var fresh = new TextGenerator(m.CreateSession(64)).Complete(next, new GenerationOptions { MaxTokens = 4, Sampling = SamplingOptions.Greedy });
        Assert.Equal(fresh.Ids, second.Ids);
        Assert.Equal(next, session.Tokens.Take(next.Length));
    }

    [Fact]
    public void SamplerFiltersAsDocumented()
    {
        float[] logits = [0f, 5f, 4.9f, -1f, 3f];
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy).Sample(logits));
        // top-k 1 is greedy whatever the temperature.
        var k1 = new Sampler(new SamplingOptions { Temperature = 5, TopK = 1, Seed = 1 });
        for (int i = 0; i < 20; i++) Assert.Equal(1, k1.Sample(logits));
        // min-p 0.5: only tokens 1 and 2 remain (exp(-0.1) > 0.5, exp(-2) < 0.5).
        var mp = new Sampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.5f, Seed = 3 });
        var seen = new HashSet<int>();
        for (int i = 0; i < 200; i++) seen.Add(mp.Sample(logits));
        Assert.Equal(new HashSet<int> { 1, 2 }, seen);
        // The repetition penalty turns greedy away from a recent token.
        var rp = new Sampler(new SamplingOptions { Temperature = 0, RepetitionPenalty = 2f });
        Assert.Equal(2, rp.Sample(logits, [1, 1]));
        Assert.Throws<RotorException>(() => new Sampler(new SamplingOptions { TopP = 0 }));
        Assert.Throws<RotorException>(() => new Sampler(new SamplingOptions { Temperature = -1 }));
    }

    /// <summary>The sampler written plainly: copy, penalize each distinct recent token once, sort every candidate by
    /// (logit descending, id ascending), keep top-k, softmax with temperature, top-p, min-p, draw.</summary>
    private static int ReferenceSample(float[] logits, int[] history, SamplingOptions o, Random random)
    {
        var l = (float[])logits.Clone();
        if (o.RepetitionPenalty != 1f && o.RepeatLastN > 0)
            foreach (int t in history.Skip(Math.Max(0, history.Length - o.RepeatLastN)).Distinct())
                if ((uint)t < (uint)l.Length) l[t] = l[t] > 0 ? l[t] / o.RepetitionPenalty : l[t] * o.RepetitionPenalty;
        if (o.Temperature == 0) return Sampler.ArgMax(l);
        int k = o.TopK > 0 ? Math.Min(o.TopK, l.Length) : l.Length;
        var ids = Enumerable.Range(0, l.Length).OrderByDescending(i => l[i]).ThenBy(i => i).Take(k).ToArray();
        float max = l[ids[0]];
        var p = new float[k];
        double sum = 0;
        for (int i = 0; i < k; i++) { p[i] = MathF.Exp((l[ids[i]] - max) / o.Temperature); sum += p[i]; }
        for (int i = 0; i < k; i++) p[i] = (float)(p[i] / sum);
        int keep = k;
        if (o.TopP < 1f) { double c = 0; for (int i = 0; i < k; i++) { c += p[i]; if (c >= o.TopP) { keep = i + 1; break; } } }
        if (o.MinP > 0) { int m = 1; while (m < keep && p[m] >= o.MinP * p[0]) m++; keep = m; }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[i];
        double r = random.NextDouble() * total;
        for (int i = 0; i < keep; i++) { r -= p[i]; if (r < 0) return ids[i]; }
        return ids[keep - 1];
    }

    [Fact]
    public void SampleAndSampleInPlaceChooseAsThePlainReference()
    {
        var rng = new Random(11);
        foreach (int v in new[] { 1, 2, 3, 17, 512, 1031 })
            for (int trial = 0; trial < 12; trial++)
            {
                var o = new SamplingOptions
                {
                    Temperature = trial % 4 == 0 ? 0 : 0.3f + (float)rng.NextDouble(), TopK = trial % 3 == 0 ? 0 : 1 + rng.Next(60),
                    TopP = trial % 5 == 0 ? 1 : 0.5f + 0.5f * (float)rng.NextDouble(), MinP = trial % 2 == 0 ? 0 : 0.05f,
                    RepetitionPenalty = trial % 2 == 1 ? 1 : 1.1f + (float)rng.NextDouble(), RepeatLastN = 1 + rng.Next(80), Seed = trial,
                };
                var copying = new Sampler(o); var inPlace = new Sampler(o); var reference = new Random(trial);
                for (int step = 0; step < 6; step++)
                {
                    var logits = new float[v];
                    for (int i = 0; i < v; i++) logits[i] = (float)Math.Round(rng.NextDouble() * 8 - 4, 1);   // ties happen
                    var history = Enumerable.Range(0, rng.Next(100)).Select(_ => rng.Next(v + 3)).ToArray();   // repeats, some outside
                    var before = (float[])logits.Clone();
                    int want = ReferenceSample(logits, history, o, reference);
                    Assert.Equal(want, copying.Sample(logits, history));
                    Assert.Equal(before, logits);   // Sample leaves the logits alone
                    Assert.Equal(want, inPlace.SampleInPlace(logits, history));
                }
            }
    }
}

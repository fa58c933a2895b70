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
}

using System.Text.Json;
using Rotor.Lm;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>The prompt cache: a finished sequence's slot keeps its keys and values; a request whose prompt begins with
/// those tokens takes that slot, runs only the rest, and gets the tokens it gets alone on a fresh session.</summary>
public sealed class PromptCacheTests
{
    private static readonly GenerationOptions Greedy = new() { MaxTokens = 10, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };

    /// <summary>Counts the prompt tokens the scheduler ran.</summary>
    private sealed class PrefillCounter : ISchedulerObserver
    {
        private int _prefilled;
        public int Prefilled => Volatile.Read(ref _prefilled);
        public void Step(int decoded, int prefilled, TimeSpan elapsed) => Interlocked.Add(ref _prefilled, prefilled);
        public void Finished(GenerationOutcome outcome) { }
    }

    private static int[] Tokens(int seed, int n)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, n - 1).Select(_ => rng.Next(3, 512))];
    }

    private static async Task<GenerationOutcome> Run(GenerationScheduler s, IReadOnlyList<int> prompt, GenerationOptions? options = null)
        => await s.Submit(new GenerationRequest(prompt, options ?? Greedy)).Completion;

    [StoriesFact]
    public async Task AChatsNextTurnRunsOnlyItsNewTokensAndGetsTheTokensOfAFreshSession()
    {
        using var model = Models.RandomBitNet();
        var counter = new PrefillCounter();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 2, ContextLength = 256, PrefillChunk = 16 }, counter);
        int[] first = Tokens(3, 37);
        var one = await Run(scheduler, first);
        Assert.Equal(0, one.CachedPromptTokens);
        Assert.Equal(first.Length, counter.Prefilled);

        // The next turn: the whole conversation again, then new tokens. The slot holds the prompt and every generated
        // token but the last (which was chosen, never run).
        int[] next = [.. first, .. one.Ids, .. Tokens(4, 9)[1..]];
        int before = counter.Prefilled;
        var two = await Run(scheduler, next);
        Assert.Equal(first.Length + one.Ids.Count - 1, two.CachedPromptTokens);
        Assert.Equal(next.Length - two.CachedPromptTokens, counter.Prefilled - before);
        Assert.Equal(Models.Direct(model, next, Greedy, 256).Ids, two.Ids);

        // The same prompt again: all but its last token are held (that one's logits choose the first token).
        before = counter.Prefilled;
        var again = await Run(scheduler, next);
        Assert.Equal(next.Length - 1, again.CachedPromptTokens);
        Assert.Equal(1, counter.Prefilled - before);
        Assert.Equal(two.Ids, again.Ids);

        // A prompt that leaves the conversation early keeps only the shared part.
        int[] branch = [.. first[..20], .. Tokens(5, 12)[1..]];
        var b = await Run(scheduler, branch);
        Assert.Equal(20, b.CachedPromptTokens);
        Assert.Equal(Models.Direct(model, branch, Greedy, 256).Ids, b.Ids);
    }

    [StoriesFact]
    public async Task ARequestTakesTheSlotThatSharesTheLongestPrefix()
    {
        using var model = Models.RandomBitNet();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 3, ContextLength = 256, PrefillChunk = 64 });
        int[] p = Tokens(11, 30), q = Tokens(12, 45);
        // Two conversations at once take two slots.
        var both = await Task.WhenAll(Run(scheduler, p), Run(scheduler, q));
        // (the second copies the first's BOS, which it shares)
        Assert.Equal([0, 1], both.Select(o => o.CachedPromptTokens));
        int[] pNext = [.. p, .. both[0].Ids, 7, 8, 9], qNext = [.. q, .. both[1].Ids, 10, 11];
        // Each next turn finds its own conversation's slot, whichever slot was freed last.
        var q2 = await Run(scheduler, qNext);
        var p2 = await Run(scheduler, pNext);
        Assert.Equal(q.Length + both[1].Ids.Count - 1, q2.CachedPromptTokens);
        Assert.Equal(p.Length + both[0].Ids.Count - 1, p2.CachedPromptTokens);
        Assert.Equal(Models.Direct(model, qNext, Greedy, 256).Ids, q2.Ids);
        Assert.Equal(Models.Direct(model, pNext, Greedy, 256).Ids, p2.Ids);
        // Sequential requests reuse slots already made before making a new one.
        Assert.Equal(2, scheduler.CachesAllocated);
    }

    [StoriesFact]
    public async Task ARunningSequenceLendsItsPromptPrefixToARequestBesideIt()
    {
        using var model = Models.RandomBitNet();
        var counter = new PrefillCounter();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 2, ContextLength = 256, PrefillChunk = 64 }, counter);
        int[] system = Tokens(31, 48);
        int[] a = [.. system, .. Tokens(32, 6)[1..]], b = [.. system, .. Tokens(33, 9)[1..]];
        var longer = Greedy with { MaxTokens = 100 };
        // a's tokens take at least 2 ms each (its observer sleeps on the decode thread), so it is still running when b comes.
        var first = scheduler.Submit(new GenerationRequest(a, longer) { OnLogits = _ => Thread.Sleep(2) });
        // Once a is decoding (its prompt has run), b joins and takes the other slot.
        Assert.True(await first.Tokens.WaitToReadAsync());
        var second = await Run(scheduler, b);
        var one = await first.Completion;
        Assert.Equal(system.Length, second.CachedPromptTokens);
        Assert.Equal(a.Length + b.Length - system.Length, counter.Prefilled);
        Assert.Equal(Models.Direct(model, b, Greedy, 256).Ids, second.Ids);
        Assert.Equal(Models.Direct(model, a, longer, 256).Ids, one.Ids);
        Assert.Equal(2, scheduler.CachesAllocated);
    }

    [StoriesFact]
    public async Task RequestsArrivingTogetherRunTheirSharedPrefixOnce()
    {
        using var model = Models.RandomBitNet();
        var counter = new PrefillCounter();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 3, ContextLength = 256, PrefillChunk = 32 }, counter);
        int[] system = Tokens(41, 70);
        int[][] prompts = [.. Enumerable.Range(0, 3).Select(i => (int[])[.. system, .. Tokens(42 + i, 5 + 4 * i)[1..]])];
        // Oldest first: the first prompt runs (in chunks of 32), each later one copies the shared part from it.
        var outcomes = await Task.WhenAll(prompts.Select(p => Run(scheduler, p)));
        Assert.Equal([0, system.Length, system.Length], outcomes.Select(o => o.CachedPromptTokens));
        Assert.Equal(prompts.Sum(p => p.Length) - 2 * system.Length, counter.Prefilled);
        for (int i = 0; i < 3; i++) Assert.Equal(Models.Direct(model, prompts[i], Greedy, 256).Ids, outcomes[i].Ids);
    }

    [StoriesFact]
    public async Task AFailedSequenceOrADisabledCacheKeepsNothing()
    {
        using var model = Models.RandomBitNet();
        int[] prompt = Tokens(21, 25);
        using (var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 1, ContextLength = 128 }))
        {
            var failing = new GenerationRequest(prompt, Greedy) { OnLogits = _ => throw new InvalidOperationException("observer") };
            var failed = await scheduler.Submit(failing).Completion;
            Assert.Equal(GenerationEnd.Failed, failed.End);
            var after = await Run(scheduler, prompt);
            Assert.Equal(0, after.CachedPromptTokens);
            Assert.Equal(Models.Direct(model, prompt, Greedy, 128).Ids, after.Ids);
        }
        var counter = new PrefillCounter();
        using (var off = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 1, ContextLength = 128, PromptCache = false }, counter))
        {
            var a = await Run(off, prompt);
            var b = await Run(off, prompt);
            Assert.Equal(0, a.CachedPromptTokens + b.CachedPromptTokens);
            Assert.Equal(2 * prompt.Length, counter.Prefilled);
            Assert.Equal(a.Ids, b.Ids);
        }
    }

    [StoriesFact]
    public async Task TheApiReportsCachedPromptTokens()
    {
        using var model = Models.Stories();
        var options = new RotorServerOptions { ModelId = "m", Scheduler = new SchedulerOptions { MaxBatch = 2, ContextLength = 512 } };
        await using var s = await Served.StartAsync(model, options);
        string body = """{"model":"m","messages":[{"role":"user","content":"Once upon a time, there was a little cat"}],"max_tokens":8,"temperature":0}""";
        var (status, first) = await s.PostJsonAsync("v1/chat/completions", body);
        Assert.Equal(200, status);
        var (status2, second) = await s.PostJsonAsync("v1/chat/completions", body);
        Assert.Equal(200, status2);
        JsonElement u1 = first.GetProperty("usage"), u2 = second.GetProperty("usage");
        Assert.Equal(0, u1.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        int prompt = u2.GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(prompt - 1, u2.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.Equal(first.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            second.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(prompt - 1, s.Server.Metrics.CachedPromptTokens);
        string metrics = await s.Http.GetStringAsync("metrics");
        Assert.Contains("rotor_prompt_tokens_cached_total", metrics);
    }
}

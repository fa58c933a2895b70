using System.Text.Json;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>The server generates what <see cref="TextGenerator"/> generates alone: whole and streamed, chat and
/// completions, with stop texts; concurrent requests decoded in one batch give each request's tokens alone.</summary>
public sealed class GenerationTests
{
    private static readonly RotorServerOptions Options = new() { ModelId = "m", Scheduler = new SchedulerOptions { MaxBatch = 8, ContextLength = 512 } };

    [StoriesFact]
    public async Task ChatWholeAndStreamedEqualTextGeneratorGreedy()
    {
        using var model = Models.Stories();
        var messages = new[] { ("user", "Once upon a time, there was a little dog") };
        var prompt = ChatTemplate.For(model.RequireTokenizer()).Render(messages, addGenerationPrompt: true);
        var direct = Models.Direct(model, prompt, new GenerationOptions { MaxTokens = 60, Sampling = SamplingOptions.Greedy }, 512);
        Assert.True(direct.Text.Length > 20, direct.Text);

        await using var s = await Served.StartAsync(model, Options);
        string body = """{"model":"m","messages":[{"role":"user","content":"Once upon a time, there was a little dog"}],"max_tokens":60,"temperature":0""";
        var (status, whole) = await s.PostJsonAsync("v1/chat/completions", body + "}");
        Assert.Equal(200, status);
        Assert.Equal("chat.completion", whole.GetProperty("object").GetString());
        var choice = whole.GetProperty("choices")[0];
        Assert.Equal(direct.Text, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(direct.Finish == FinishReason.Stop ? "stop" : "length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(prompt.Count, whole.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(direct.Ids.Count, whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(prompt.Count + direct.Ids.Count, whole.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        var (sstatus, events) = await s.PostStreamAsync("v1/chat/completions", body + ""","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal(200, sstatus);
        var (text, finish, usage) = Served.Join(events);
        Assert.Equal(direct.Text, text);
        Assert.Equal(direct.Finish == FinishReason.Stop ? "stop" : "length", finish);
        Assert.Equal(direct.Ids.Count, usage!.Value.GetProperty("completion_tokens").GetInt32());
        Assert.True(events.Count > 10, "the answer streams in many chunks");
        Assert.Equal("assistant", JsonDocument.Parse(events[0]).RootElement.GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
    }

    [StoriesFact]
    public async Task CompletionsWithStopTextsEqualTextGenerator()
    {
        using var model = Models.Stories();
        var tok = model.RequireTokenizer();
        const string promptText = "Once upon a time";
        var prompt = tok.Encode(promptText, addBos: true);
        var free = Models.Direct(model, prompt, new GenerationOptions { MaxTokens = 80, Sampling = SamplingOptions.Greedy }, 512);
        // A stop text taken from the middle of the free run, and one that never occurs.
        string stopAt = free.Text.Substring(free.Text.Length / 2, 4);
        var options = new GenerationOptions { MaxTokens = 80, Sampling = SamplingOptions.Greedy, Stop = [stopAt, "\u0001never"] };
        var direct = Models.Direct(model, prompt, options, 512);
        Assert.Equal(FinishReason.Stop, direct.Finish);

        await using var s = await Served.StartAsync(model, Options);
        string body = $$"""{"model":"m","prompt":{{J.S(promptText)}},"max_tokens":80,"temperature":0,"stop":[{{J.S(stopAt)}},"\u0001never"]""";
        var (status, whole) = await s.PostJsonAsync("v1/completions", body + "}");
        Assert.Equal(200, status);
        Assert.Equal(direct.Text, whole.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("stop", whole.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var (_, events) = await s.PostStreamAsync("v1/completions", body + ""","stream":true}""");
        var (text, finish, _) = Served.Join(events);
        Assert.Equal(direct.Text, text);
        Assert.Equal("stop", finish);
        Assert.DoesNotContain(stopAt, text);
    }

    [StoriesFact]
    public async Task ConcurrentRequestsGiveEachRequestsTokensAlone()
    {
        using var model = Models.RandomBitNet();
        var tok = model.RequireTokenizer();
        string[] prompts = ["The cat", "A dog ran", "Once upon a time there", "Sun", "Tim and Sue went to the park to", "Big", "red ball", "Lily"];
        // Greedy for most; two seeded samplers (their draws depend only on their own seed and logits).
        SamplingOptions Sampling(int i) => i % 4 == 3 ? new SamplingOptions { Temperature = 0.9f, Seed = 100 + i } : SamplingOptions.Greedy;
        var alone = prompts.Select((p, i) => Models.Direct(model, tok.Encode(p, addBos: true), new GenerationOptions { MaxTokens = 24 + i, Sampling = Sampling(i) }, 512)).ToArray();

        await using var s = await Served.StartAsync(model, Options);
        var tasks = prompts.Select(async (p, i) =>
        {
            var sm = Sampling(i);
            string body = $$"""{"model":"m","prompt":{{J.S(p)}},"max_tokens":{{24 + i}},"temperature":{{sm.Temperature}}{{(sm.Seed is { } seed ? $",\"seed\":{seed},\"top_k\":40,\"top_p\":0.95,\"min_p\":0.05" : "")}}""";
            if (i % 2 == 0)
            {
                var (status, j) = await s.PostJsonAsync("v1/completions", body + "}");
                Assert.Equal(200, status);
                return (j.GetProperty("choices")[0].GetProperty("text").GetString()!, j.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            }
            var (st, events) = await s.PostStreamAsync("v1/completions", body + ""","stream":true,"stream_options":{"include_usage":true}}""");
            Assert.Equal(200, st);
            var (text, _, usage) = Served.Join(events);
            return (text, usage!.Value.GetProperty("completion_tokens").GetInt32());
        }).ToArray();
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(alone[i].Text, results[i].Item1);
            Assert.Equal(alone[i].Ids.Count, results[i].Item2);
        }
        Assert.True(s.Server.Metrics.LargestBatch > 1, $"requests were decoded together (largest batch {s.Server.Metrics.LargestBatch})");
        Assert.True(s.Server.Scheduler.CachesAllocated <= Options.Scheduler.MaxBatch);
    }

    [StoriesFact]
    public async Task SchedulerChunkedPrefillAndBatchEqualTextGenerator()
    {
        using var model = Models.RandomBitNet();
        var rng = new Random(5);
        // Prompts longer than the prefill chunk, of odd lengths, run while other sequences decode.
        var prompts = Enumerable.Range(0, 5).Select(i => (IReadOnlyList<int>)Enumerable.Range(0, 13 + 17 * i).Select(_ => rng.Next(3, 512)).Prepend(1).ToArray()).ToArray();
        var options = new GenerationOptions { MaxTokens = 20, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };
        var alone = prompts.Select(p => Models.Direct(model, p, options, 256)).ToArray();
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 3, ContextLength = 256, PrefillChunk = 7 });
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest(p, options))).ToArray();
        var outcomes = await Task.WhenAll(streams.Select(x => x.Completion));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(alone[i].Ids, outcomes[i].Ids);
            Assert.Equal(GenerationEnd.Length, outcomes[i].End);
            var streamed = new List<int>();
            await foreach (var t in streams[i].Tokens.ReadAllAsync()) if (t.Id >= 0) streamed.Add(t.Id);
            Assert.Equal(alone[i].Ids, streamed);
        }
        Assert.True(scheduler.CachesAllocated <= 3);
    }

    [StoriesFact]
    public async Task ContextFullEndsAsLength()
    {
        using var model = Models.RandomBitNet();
        var prompt = Enumerable.Range(0, 20).Select(i => 3 + i).Prepend(1).ToArray();
        var options = new GenerationOptions { MaxTokens = 1000, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };
        var alone = Models.Direct(model, prompt, options, 32);
        Assert.Equal(FinishReason.ContextFull, alone.Finish);
        using var scheduler = new GenerationScheduler(model, new SchedulerOptions { MaxBatch = 2, ContextLength = 32 });
        var outcome = await scheduler.Submit(new GenerationRequest(prompt, options)).Completion;
        Assert.Equal(GenerationEnd.ContextFull, outcome.End);
        Assert.Equal(alone.Ids, outcome.Ids);
    }
}

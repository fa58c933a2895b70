using System.Text.Json;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>logprobs on the wire: chat (logprobs, top_logprobs) and completions (logprobs N), whole and streamed, equal
/// to <see cref="TextGenerator"/>'s on a fresh session (which the Lm tests check against the log-softmax of the
/// logits); bad values refused naming the field.</summary>
public sealed class LogprobsTests
{
    private static readonly RotorServerOptions Options = new() { ModelId = "m", Scheduler = new SchedulerOptions { MaxBatch = 4, ContextLength = 512 } };

    [StoriesFact]
    public async Task ChatLogprobsWholeAndStreamedEqualTheGenerators()
    {
        using var model = Models.Stories();
        var tok = model.RequireTokenizer();
        var prompt = ChatTemplate.For(tok).Render([("user", "Once upon a time, there was a little dog")], addGenerationPrompt: true);
        var direct = new TextGenerator(model.CreateSession(512))
            .Generate(prompt, new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy, Logprobs = 3 }).Where(t => t.Id >= 0).ToList();

        await using var s = await Served.StartAsync(model, Options);
        string body = """{"model":"m","messages":[{"role":"user","content":"Once upon a time, there was a little dog"}],"max_tokens":12,"temperature":0,"logprobs":true,"top_logprobs":3""";
        var (status, whole) = await s.PostJsonAsync("v1/chat/completions", body + "}");
        Assert.Equal(200, status);
        var content = whole.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(direct.Count, content.Count);
        Assert.Equal(direct.Count, whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        int previous = prompt[^1];
        for (int i = 0; i < direct.Count; i++)
        {
            var item = content[i];
            var bytes = tok.TokenBytes(direct[i].Id, previous);
            Assert.Equal(bytes.Select(b => (int)b), item.GetProperty("bytes").EnumerateArray().Select(b => b.GetInt32()));
            Assert.Equal(direct[i].Logprobs!.Chosen.Logprob, item.GetProperty("logprob").GetSingle(), 1e-3);
            var top = item.GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(3, top.Count);
            for (int k = 0; k < 3; k++)
            {
                Assert.Equal(direct[i].Logprobs!.Top[k].Logprob, top[k].GetProperty("logprob").GetSingle(), 1e-3);
                if (k > 0) Assert.True(top[k].GetProperty("logprob").GetSingle() <= top[k - 1].GetProperty("logprob").GetSingle());
            }
            // Greedy: the chosen token is the likeliest.
            Assert.Equal(item.GetProperty("token").GetString(), top[0].GetProperty("token").GetString());
            Assert.True(item.GetProperty("logprob").GetSingle() <= 0);
            previous = direct[i].Id;
        }

        var (sstatus, events) = await s.PostStreamAsync("v1/chat/completions", body + ""","stream":true}""");
        Assert.Equal(200, sstatus);
        var streamed = new List<JsonElement>();
        foreach (string e in events.Where(e => e != "[DONE]"))
        {
            var choice = JsonDocument.Parse(e).RootElement.GetProperty("choices")[0];
            if (choice.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Object)
                streamed.AddRange(lp.GetProperty("content").EnumerateArray().Select(x => x.Clone()));
        }
        Assert.Equal(content.Select(c => c.GetRawText()), streamed.Select(c => c.GetRawText()));

        // Without logprobs the choice has none.
        var (_, plain) = await s.PostJsonAsync("v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}""");
        Assert.False(plain.GetProperty("choices")[0].TryGetProperty("logprobs", out _));
    }

    [StoriesFact]
    public async Task CompletionLogprobsHaveOneEntryAToken()
    {
        using var model = Models.Stories();
        await using var s = await Served.StartAsync(model, Options);
        var (status, whole) = await s.PostJsonAsync("v1/completions", """{"model":"m","prompt":"Once upon a time","max_tokens":10,"temperature":0,"logprobs":2}""");
        Assert.Equal(200, status);
        var choice = whole.GetProperty("choices")[0];
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        var values = lp.GetProperty("token_logprobs").EnumerateArray().Select(t => t.GetSingle()).ToList();
        var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToList();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()).ToList();
        Assert.Equal(10, tokens.Count);
        Assert.Equal(10, values.Count);
        Assert.Equal(10, offsets.Count);
        Assert.Equal(choice.GetProperty("text").GetString(), string.Concat(tokens));
        for (int i = 0; i < tokens.Count; i++)
        {
            Assert.Equal(i == 0 ? 0 : offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
            var top = tops[i].EnumerateObject().ToList();
            Assert.InRange(top.Count, 1, 2);
            // Greedy: the chosen token is the likeliest alternative.
            Assert.Equal(values[i], top.Max(p => p.Value.GetSingle()), 1e-6);
        }
    }

    [StoriesFact]
    public async Task EchoScoresThePromptAsTheModelsLogSoftmax()
    {
        using var model = Models.Stories();
        var tok = model.RequireTokenizer();
        int[] ids = [.. tok.Encode("Once upon a time, there was a little girl named Lily", addBos: true)];
        // The reference: every position's logits of the prompt run at once on a session of its own.
        int v = model.Config.VocabSize;
        var all = new float[ids.Length * v];
        model.CreateSession(512).AppendAll(ids, all);

        await using var s = await Served.StartAsync(model, Options);
        string idList = string.Join(",", ids);
        foreach (string prompt in new[] { $"[{idList}]", $"[[{idList}]]" })
        {
            string body = $$"""{"model":"m","prompt":{{prompt}},"max_tokens":4,"temperature":0,"echo":true,"logprobs":1""";
            var (status, whole) = await s.PostJsonAsync("v1/completions", body + "}");
            Assert.Equal(200, status);
            var choice = whole.GetProperty("choices")[0];
            var lp = choice.GetProperty("logprobs");
            var values = lp.GetProperty("token_logprobs").EnumerateArray().ToList();
            var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToList();
            int generated = whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
            Assert.Equal(ids.Length, whole.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            Assert.Equal(ids.Length + generated, values.Count);
            Assert.Equal(JsonValueKind.Null, values[0].ValueKind);
            Assert.Equal(JsonValueKind.Null, tops[0].ValueKind);
            for (int i = 1; i < ids.Length; i++)
            {
                var row = all.AsSpan((i - 1) * v, v);
                double max = double.NegativeInfinity, sum = 0;
                foreach (float l in row) max = Math.Max(max, l);
                foreach (float l in row) sum += Math.Exp(l - max);
                double expected = row[ids[i]] - max - Math.Log(sum);
                Assert.Equal(expected, values[i].GetSingle(), 1e-3);
                Assert.Single(tops[i].EnumerateObject());
            }
            Assert.StartsWith(tok.Decode(ids), choice.GetProperty("text").GetString());

            // Streamed: the echo first, then the tokens; the same scores.
            var (sstatus, events) = await s.PostStreamAsync("v1/completions", body + ""","stream":true}""");
            Assert.Equal(200, sstatus);
            var streamedValues = new List<string>();
            string streamedText = "";
            foreach (string e in events.Where(e => e != "[DONE]"))
            {
                var c = JsonDocument.Parse(e).RootElement.GetProperty("choices")[0];
                streamedText += c.GetProperty("text").GetString();
                if (c.TryGetProperty("logprobs", out var l) && l.ValueKind == JsonValueKind.Object)
                    streamedValues.AddRange(l.GetProperty("token_logprobs").EnumerateArray().Select(x => x.GetRawText()));
            }
            Assert.Equal(choice.GetProperty("text").GetString(), streamedText);
            Assert.Equal(values.Select(x => x.GetRawText()), streamedValues);
        }

        // Echo alone gives the text back before the completion, without scores.
        var (_, plain) = await s.PostJsonAsync("v1/completions", """{"model":"m","prompt":"Once upon a time","max_tokens":3,"temperature":0,"echo":true}""");
        Assert.StartsWith("Once upon a time", plain.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.False(plain.GetProperty("choices")[0].TryGetProperty("logprobs", out _));
    }

    [StoriesFact]
    public async Task BadLogprobsAreRefusedNamingTheField()
    {
        using var model = Models.Stories();
        await using var s = await Served.StartAsync(model, Options);
        const string chat = """{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":3,""";
        const string text = """{"model":"m","prompt":"Hi","max_tokens":3,""";
        foreach (var (path, body, param) in new[]
        {
            ("v1/chat/completions", chat + "\"logprobs\":3}", "logprobs"),
            ("v1/chat/completions", chat + "\"top_logprobs\":2}", "top_logprobs"),
            ("v1/chat/completions", chat + "\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs"),
            ("v1/completions", text + "\"logprobs\":true}", "logprobs"),
            ("v1/completions", text + "\"logprobs\":21}", "logprobs"),
            ("v1/completions", text + "\"logprobs\":1.5}", "logprobs"),
            ("v1/completions", """{"model":"m","prompt":[1,2,99999],"max_tokens":3}""", "prompt"),
            ("v1/completions", """{"model":"m","prompt":[[1,2],[3]],"max_tokens":3}""", "prompt"),
            ("v1/completions", """{"model":"m","prompt":["a",1],"max_tokens":3}""", "prompt"),
            ("v1/completions", """{"model":"m","prompt":[[]],"max_tokens":3}""", "prompt"),
        })
        {
            var (status, err) = await s.PostJsonAsync(path, body);
            Assert.True(status == 400, $"{body}: {status}");
            Assert.Equal(param, err.GetProperty("error").GetProperty("param").GetString());
        }
    }
}

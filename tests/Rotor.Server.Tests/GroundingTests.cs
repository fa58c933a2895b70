using System.Text.Json;
using Rotor.Lm;
using Rotor.Rag.Answers;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Rotor.Server.Grounding;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>
/// Grounded chat through the HTTP API decides as <c>rotor ask</c> does: the score rule and the model rule (selected by
/// the server's options or a request's <c>retrieval.adaptive</c>) give the decision and reason of the grounded-answer
/// library, the model rule's closed-book measurement is decoded by the scheduler among the other requests (and equals
/// the library's own measurement), earlier turns go into the prompt without steering retrieval, and bad grounded
/// requests get OpenAI-style errors.
/// </summary>
[Collection("rag")]
public sealed class GroundingTests(RagFixture f)
{
    private const string Moon = "Who was the first person to walk on the Moon?";
    private const string Pizza = "What is the best recipe for sourdough pizza?";

    private static string Chat(string model, string question, string extra = "", int maxTokens = 16)
        => $$$"""{"model":{{{J.S(model)}}},"messages":[{"role":"user","content":{{{J.S(question)}}}}],"max_tokens":{{{maxTokens}}},"temperature":0{{{extra}}}}""";

    [StoriesFact]
    public async Task TheScoreRuleRetrievesForARelevantQuestionAndNotForAnUnrelatedOne()
    {
        var s = f.Served!;
        var (status, yes) = await s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Moon));
        Assert.Equal(200, status);
        var expected = await f.ExpectedAsync(Moon, 16);
        Assert.True(expected.Decision.Retrieve);
        Assert.Equal("score", yes.GetProperty("retrieval").GetProperty("mode").GetString());
        Assert.Equal(expected.Decision.Reason, yes.GetProperty("retrieval").GetProperty("reason").GetString());
        Assert.Equal(expected.Prompt.Sources.Count, yes.GetProperty("sources").GetArrayLength());

        var (status2, no) = await s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Pizza));
        Assert.Equal(200, status2);
        var none = await f.ExpectedAsync(Pizza, 16);
        Assert.False(none.Decision.Retrieve);
        var d = no.GetProperty("retrieval");
        Assert.False(d.GetProperty("retrieve").GetBoolean());
        Assert.Equal(0, d.GetProperty("count").GetInt32());
        Assert.StartsWith("no retrieval: top score", d.GetProperty("reason").GetString());
        Assert.Equal(none.Decision.Reason, no.GetProperty("retrieval_decision").GetString());
        Assert.Equal(0, no.GetProperty("sources").GetArrayLength());
        // The model is told that nothing relevant was found: the prompt is the library's.
        Assert.Equal(none.Prompt.Ids!.Count, no.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(PromptSituation.NothingRelevant, none.Prompt.Situation);

        // Adaptive retrieval off takes the top passages whatever their scores.
        var (_, off) = await s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Pizza, ""","retrieval":{"adaptive":"off","top":3}"""));
        var all = await f.ExpectedAsync(Pizza, 16, new PrepareRequest { Adaptive = AdaptiveMode.Off, Top = 3 });
        Assert.Equal("off", off.GetProperty("retrieval").GetProperty("mode").GetString());
        Assert.Equal(3, off.GetProperty("retrieval").GetProperty("count").GetInt32());
        Assert.True(all.Prompt.Sources.Count > 0);
        Assert.Equal(all.Prompt.Sources.Select(x => x.Hit.Passage.Id), off.GetProperty("sources").EnumerateArray().Select(x => x.GetProperty("id").GetString()));
        Assert.Equal(all.Prompt.Sources.Select(x => x.Truncated), off.GetProperty("sources").EnumerateArray().Select(x => x.TryGetProperty("truncated", out var t) && t.GetBoolean()));
    }

    [StoriesFact]
    public async Task TheModelRuleIsMeasuredByTheSchedulerAmongOtherRequests()
    {
        var s = f.Served!;
        // The library's own measurement (its own session) is the reference.
        var reference = new ClosedBookConfidence(f.Model!, 8).Measure(Moon);
        Assert.Equal(8, s.Server.Options.Grounding.ConfidenceTokens);
        long Generations() => Enum.GetValues<GenerationEnd>().Sum(e => s.Server.Metrics.Ended(e));

        // Plain requests decode while model-rule requests arrive: the probes join the batch like requests.
        long before = Generations();
        var plain = Enumerable.Range(0, 3).Select(i => s.PostJsonAsync("v1/chat/completions", Chat("m", "Once upon a time " + i, maxTokens: 48))).ToArray();
        var grounded = Enumerable.Range(0, 3).Select(_ => s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Moon, ""","retrieval":{"adaptive":"model"}"""))).ToArray();
        var answers = await Task.WhenAll(grounded);
        foreach (var r in await Task.WhenAll(plain)) Assert.Equal(200, r.Status);
        // Three plain answers, three grounded answers and three closed-book probes went through the scheduler.
        Assert.Equal(9, Generations() - before);
        foreach (var (status, j) in answers)
        {
            Assert.Equal(200, status);
            var d = j.GetProperty("retrieval");
            Assert.Equal("model", d.GetProperty("mode").GetString());
            var c = d.GetProperty("confidence");
            Assert.Equal(reference.Steps, c.GetProperty("steps").GetInt32());
            Assert.Equal(reference.Text, c.GetProperty("closed_book_text").GetString());
            Assert.Equal(reference.MeanMaxProbability, c.GetProperty("mean_max_probability").GetDouble(), 4);
            Assert.Equal(reference.MeanEntropy, c.GetProperty("mean_entropy").GetDouble(), 3);
            // Unsure at the default threshold or not, the reason states the measurement and the rule's outcome.
            string reason = d.GetProperty("reason").GetString()!;
            Assert.True(reason.StartsWith("model unsure, confidence ", StringComparison.Ordinal) || reason.StartsWith("no retrieval: model confident", StringComparison.Ordinal), reason);
            Assert.Equal(reason.StartsWith("model unsure", StringComparison.Ordinal) && d.GetProperty("retrieve").GetBoolean(), j.GetProperty("sources").GetArrayLength() > 0);
        }
    }

    [StoriesFact]
    public async Task AServerOfTheModelRuleSkipsOrRetrievesByItsThreshold()
    {
        var reference = new ClosedBookConfidence(f.Model!, 4).Measure(Moon);
        foreach (var (threshold, retrieve) in new[] { (reference.MeanMaxProbability - 0.01, false), (reference.MeanMaxProbability + 0.01, true) })
        {
            await using var s = await Served.StartAsync(f.Model!, new RotorServerOptions
            {
                ModelId = "m", Sampling = SamplingOptions.Greedy, Scheduler = new SchedulerOptions { ContextLength = RagFixture.Context, MaxBatch = 2 },
                Grounding = new GroundedAnswerOptions { Adaptive = AdaptiveMode.Model, ConfidenceTokens = 4, Policy = AdaptivePolicy.Default with { ModelConfidenceThreshold = threshold } },
            }, retriever: f.Retriever);
            var (status, j) = await s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Moon));
            Assert.Equal(200, status);
            var d = j.GetProperty("retrieval");
            Assert.Equal("model", d.GetProperty("mode").GetString());
            Assert.Equal(reference.Steps, d.GetProperty("confidence").GetProperty("steps").GetInt32());
            Assert.Equal(retrieve, d.GetProperty("reason").GetString()!.StartsWith("model unsure", StringComparison.Ordinal));
            if (!retrieve)
            {
                Assert.StartsWith("no retrieval: model confident", d.GetProperty("reason").GetString());
                Assert.Equal(0, j.GetProperty("sources").GetArrayLength());
            }
            else Assert.True(j.GetProperty("sources").GetArrayLength() > 0);
        }
    }

    [StoriesFact]
    public async Task EarlierTurnsGoIntoThePromptButRetrievalSeesTheLastQuestion()
    {
        var s = f.Served!;
        string body = $$"""{"model":"m-rag","max_tokens":16,"temperature":0,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Tell me about photosynthesis."},{"role":"assistant","content":"Plants make sugar from light."},{"role":"user","content":{{J.S(Moon)}}}]}""";
        var (status, j) = await s.PostJsonAsync("v1/chat/completions", body);
        Assert.Equal(200, status);
        var alone = await f.ExpectedAsync(Moon, 16);
        var turns = await f.ExpectedAsync(Moon, 16, new PrepareRequest
        {
            History = [new("system", "Be brief."), new("user", "Tell me about photosynthesis."), new("assistant", "Plants make sugar from light.")],
        });
        // The decision and the sources are the question's alone; the prompt holds the turns too.
        Assert.Equal(alone.Decision.Reason, j.GetProperty("retrieval_decision").GetString());
        Assert.Equal(alone.Prompt.Sources.Select(x => x.Hit.Passage.Id), j.GetProperty("sources").EnumerateArray().Select(x => x.GetProperty("id").GetString()));
        Assert.Equal(turns.Prompt.Ids!.Count, j.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.True(turns.Prompt.Ids.Count > alone.Prompt.Ids!.Count);
        Assert.Contains("Plants make sugar from light.", f.Model!.RequireTokenizer().Decode(turns.Prompt.Ids));
    }

    [StoriesFact]
    public async Task BadGroundedRequestsGetOpenAiErrors()
    {
        var s = f.Served!;
        var cases = new (string Body, string? Param, string Contains)[]
        {
            (Chat("m-rag", Moon, ""","retrieval":{"adaptive":"maybe"}"""), "retrieval.adaptive", "is not score, model or off"),
            (Chat("m-rag", Moon, ""","retrieval":{"adaptive":3}"""), "retrieval.adaptive", "wrong type"),
            ("""{"model":"m-rag","messages":[{"role":"user","content":"Who?"},{"role":"assistant","content":"Armstrong"}]}""", null, "must end with a user message"),
            (Chat("m-rag", Moon, ""","retrieval":{"top":0}"""), "retrieval.top", "must be in 1..20"),
        };
        foreach (var (body, param, contains) in cases)
        {
            var (status, j) = await s.PostJsonAsync("v1/chat/completions", body);
            Assert.Equal(400, status);
            var e = j.GetProperty("error");
            Assert.Contains(contains, e.GetProperty("message").GetString());
            Assert.Equal("invalid_request_error", e.GetProperty("type").GetString());
            if (param is not null) Assert.Equal(param, e.GetProperty("param").GetString());
        }
        // The server keeps serving.
        Assert.Equal(200, (await s.PostJsonAsync("v1/chat/completions", Chat("m-rag", Moon))).Status);
    }

    [StoriesFact]
    public async Task TheAdapterMapsSourcesAndSaysWhatWasLeftOutForLackOfRoom()
    {
        using var answerer = new GroundedAnswerer(f.Model!, f.Retriever!, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Off, ContextLength = RagFixture.Context });
        var g = new AnswererGrounding(answerer);
        var full = await g.GroundAsync([("user", Moon)], new GroundingRequest(3, RetrievalMode.Hybrid, 16), RagFixture.Context, default);
        var prepared = await answerer.PrepareAsync(Moon, new PrepareRequest { Top = 3, AnswerTokens = 16 });
        Assert.Equal(prepared.Prompt.Ids, full.PromptIds);
        Assert.Equal(prepared.Prompt.Sources.Select(x => (x.Number, x.Hit.Passage.Id, x.Hit.Score, x.Truncated)), full.Sources.Select(x => (x.Number, x.PassageId, x.Score, x.Truncated)));
        Assert.NotEmpty(full.Sources);
        var passages = Rotor.Rag.Demo.DemoCorpus.Passages.ToDictionary(p => p.Id);
        foreach (var src in full.Sources)
        {
            var p = passages[src.PassageId];
            Assert.Equal((p.Text, p.Title, p.Section), (src.Text, src.Title, src.Section));
        }
        Assert.Equal(AdaptiveMode.Off, full.Details!.Mode);
        // A context with room for the question but not for the passages: none fits, the line says so.
        var bare = answerer.PromptBuilder.Measure(answerer.PromptBuilder.Messages(Moon, [], PromptSituation.NothingRelevant, [])).Count;
        var tight = await g.GroundAsync([("user", Moon)], new GroundingRequest(3, RetrievalMode.Hybrid, 16), bare + 16 + 5, default);
        Assert.Empty(tight.Sources);
        Assert.Equal(bare, tight.PromptIds.Count);
        Assert.Contains($"{prepared.Decision.Count} left out: no room in the context", tight.Decision);
        await Assert.ThrowsAsync<RotorException>(() => g.GroundAsync([("user", Moon)], new GroundingRequest(3, RetrievalMode.Hybrid, 16), bare + 10, default));
    }
}

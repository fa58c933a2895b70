using System.Text.Json;
using Microsoft.Extensions.AI;
using Rotor.Lm;
using Rotor.Lm.Chat;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Answers;
using Rotor.Rag.Corpus;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests.Answers;

/// <summary>The language models of these tests: stories260K (a real trained llama2.c model, plain chat format) and a
/// small random BitNet b1.58 model (ternary layers, squared ReLU, sub-norms) with the real Llama 3 tokenizer, so
/// that prompts are rendered in the BitNet chat format. Loaded on first use.</summary>
public sealed class AnswerModelsFixture : IDisposable
{
    private readonly Lazy<LanguageModel> _stories = new(() => LanguageModel.Load(TestPaths.SharedLm("stories260K.bin")!,
        new LanguageModelOptions { TokenizerPath = TestPaths.SharedLm("tok512.bin"), Threads = 1 }));
    private readonly Lazy<LanguageModel> _bitnet = new(() =>
    {
        var config = new ModelConfig
        {
            Architecture = "bitnet", Dim = 64, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16, FfnDim = 96, VocabSize = 128256,
            ContextLength = 1024, RopeTheta = 500000f, NormEps = 1e-5f, Activation = FfnActivation.Relu2, Rope = RopeStyle.Half,
            SubNorms = true, TiedEmbeddings = true,
        };
        var tok = TokenizerLoader.Load(TestPaths.SharedLm("llama3-tokenizer.model")!, config.VocabSize);
        return LanguageModel.FromWeights(config, RandomModel.Create(config, seed: 7), new LanguageModelOptions { Tokenizer = tok, Threads = 1 }, "random bitnet");
    });

    /// <summary>stories260K with tok512.</summary>
    public LanguageModel Stories => _stories.Value;
    /// <summary>The random BitNet model with the Llama 3 tokenizer.</summary>
    public LanguageModel BitNet => _bitnet.Value;

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_stories.IsValueCreated) _stories.Value.Dispose();
        if (_bitnet.IsValueCreated) _bitnet.Value.Dispose();
    }
}

/// <summary>
/// Grounded answers (Rotor.Rag.Answers): the prompt built (numbered passages with title and section, the question, the
/// model's chat format), the token budget never exceeded, citations parsed and mapped to the real passages, the
/// adaptive decisions of the score rule and the model rule with their reasons, the confidence measure against a
/// separate computation, and the IChatClient decorator.
/// </summary>
[Collection("MiniLM")]
public sealed class GroundedAnswerTests(MiniLmFixture minilm, AnswerModelsFixture models, ITestOutputHelper output) : IClassFixture<AnswerModelsFixture>
{
    private static readonly Passage[] Corpus =
    [
        new("aristotle#0", "aristotle", "Aristotle", "Early life", "Aristotle studied at Plato's Academy in Athens for twenty years, until Plato died in 347 BC."),
        new("aristotle#1", "aristotle", "Aristotle", "Teaching", "Aristotle was the tutor of the young Alexander the Great at the court of Philip II of Macedon."),
        new("moon#0", "moon", "Moon", "Landings", "Apollo 11 landed the first astronauts on the Moon in July 1969. Neil Armstrong stepped onto the surface first."),
        new("bees#0", "bees", "Honey bee", "", "Honey bees make honey from the nectar of flowers and store it in wax combs for the winter."),
        new("copper#0", "copper", "Copper", "Uses", "Copper is a soft metal that conducts electricity very well, so it is used for electrical wiring."),
        new("tea#0", "tea", "Tea", "", "Tea is brewed by pouring hot water over the cured leaves of the tea plant, a shrub native to East Asia."),
    ];

    private AnswerModelsFixture Models => models;

    private Retriever BuildRetriever() => Retriever.BuildInMemoryAsync(Corpus, minilm.Embedder).GetAwaiter().GetResult();

    private static RetrievedPassage Hit(Passage p, float score = 0.5f) => new(p, score, score, 1, 1);

    // Long passages: 150 words each from a fixed word list, deterministic.
    private static List<RetrievedPassage> LongPassages(int count)
    {
        string[] words = ["river", "mountain", "ancient", "city", "king", "battle", "philosophy", "science", "music", "north", "harbour", "trade", "empire", "language", "poet"];
        var rng = new Random(3);
        return Enumerable.Range(0, count).Select(i => Hit(new Passage($"long#{i}", "long", $"Long article {i}", i % 2 == 0 ? "" : $"Part {i}",
            string.Join(' ', Enumerable.Range(0, 150 - 7 * i % 120).Select(_ => words[rng.Next(words.Length)]))), 1f - i * 0.01f)).ToList();
    }

    [SharedLmFact("stories260K.bin", "tok512.bin", "llama3-tokenizer.model")]
    public void PromptHoldsNumberedPassagesAndTheQuestionInTheModelsChatFormat()
    {
        var hits = new[] { Hit(Corpus[0]), Hit(Corpus[3]) };
        // BitNet format: "System: ...<|eot_id|>User: Sources: ...<|eot_id|>Assistant: ".
        var bitnet = ChatTemplate.For(Models.BitNet.RequireTokenizer());
        Assert.Equal(ChatFormat.BitNet, bitnet.Format);
        var p = new GroundedPromptBuilder(bitnet).Build("Where did Aristotle study?", hits, PromptSituation.Sources, 1024, 64);
        string text = Models.BitNet.RequireTokenizer().Decode(p.Ids!);
        output.WriteLine(text);
        string expectedUser = "User: Sources:\n[1] Aristotle > Early life\n" + Corpus[0].Text + "\n\n[2] Honey bee\n" + Corpus[3].Text + "\n\nQuestion: Where did Aristotle study?<|eot_id|>";
        Assert.Equal("<|begin_of_text|>System: " + GroundedPromptBuilder.SourcesInstruction + "<|eot_id|>" + expectedUser + "Assistant: ", text);
        Assert.Equal(p.Ids!.Count, p.TokenCount);
        Assert.Equal([1, 2], p.Sources.Select(s => s.Number));
        Assert.Equal(["aristotle#0", "bees#0"], p.Sources.Select(s => s.Hit.Passage.Id));
        Assert.Equal(PromptSituation.Sources, p.Situation);

        // Plain format (stories260K): the messages joined by newlines, "Answer:" last.
        var plain = new GroundedPromptBuilder(ChatTemplate.For(Models.Stories.RequireTokenizer()));
        var q = plain.Build("Where did Aristotle study?", hits, PromptSituation.Sources, 512, 32);
        string plainText = Models.Stories.RequireTokenizer().Decode(q.Ids!);
        Assert.Contains("[1] Aristotle > Early life\n" + Corpus[0].Text, plainText);
        Assert.Contains("[2] Honey bee\n", plainText);
        Assert.EndsWith("Question: Where did Aristotle study?\nAnswer:", plainText);

        // Nothing relevant: the model is told so, no source is numbered.
        var none = plain.Build("Where did Aristotle study?", [], PromptSituation.NothingRelevant, 512, 32);
        Assert.Empty(none.Sources);
        Assert.Contains(GroundedPromptBuilder.NothingRelevantInstruction, Models.Stories.RequireTokenizer().Decode(none.Ids!));
        Assert.DoesNotContain("[1]", Models.Stories.RequireTokenizer().Decode(none.Ids!));
        // Sources asked for but none offered: also "nothing relevant".
        Assert.Equal(PromptSituation.NothingRelevant, plain.Build("q?", [], PromptSituation.Sources, 512, 32).Situation);
        Assert.Throws<RotorException>(() => plain.Build("  ", hits, PromptSituation.Sources, 512, 32));
    }

    [SharedLmFact("stories260K.bin", "tok512.bin", "llama3-tokenizer.model")]
    public void TheBudgetIsNeverExceeded()
    {
        var passages = LongPassages(24);
        int withSome = 0, withOmitted = 0, refused = 0, excerpts = 0;
        foreach (var model in new[] { Models.Stories, Models.BitNet })
        {
            var template = ChatTemplate.For(model.RequireTokenizer());
            var builder = new GroundedPromptBuilder(template);
            foreach (int ctx in new[] { 40, 64, 100, 200, 333, 512, 1024 })
                foreach (int answer in new[] { 1, 16, 50, 200 })
                {
                    if (answer >= ctx) { Assert.Throws<RotorException>(() => builder.Build("Which king led the battle?", passages, PromptSituation.Sources, ctx, answer)); continue; }
                    GroundedPrompt p;
                    try { p = builder.Build("Which king led the battle?", passages, PromptSituation.Sources, ctx, answer); }
                    catch (RotorException)
                    {
                        // Refused only when the prompt without any passage does not fit.
                        var bare = builder.Measure(builder.Messages("Which king led the battle?", [], PromptSituation.NothingRelevant, [])).Count;
                        Assert.True(bare + answer > ctx, $"refused with a bare prompt of {bare} tokens, ctx {ctx}, answer {answer}");
                        refused++;
                        continue;
                    }
                    Assert.True(p.TokenCount + answer <= ctx, $"{p.TokenCount} + {answer} > {ctx}");
                    // The count is the model's own: rendering the messages again gives the same ids.
                    Assert.Equal(p.Ids, template.Render(p.Messages.Select(m => (m.Role, m.Content))));
                    Assert.Equal(passages.Count, p.Sources.Count + p.Omitted.Count);
                    Assert.Equal(Enumerable.Range(1, p.Sources.Count), p.Sources.Select(s => s.Number));
                    // Taken in offered order; at most one excerpt, the last source, a prefix of its passage of at
                    // least MinExcerptWords words; every passage omitted before it would overflow the budget whole.
                    var order = passages.Select(x => x.Passage.Id).ToList();
                    int Pos(RetrievedPassage h) => order.IndexOf(h.Passage.Id);
                    Assert.Equal(p.Sources.Select(s => Pos(s.Hit)).Order(), p.Sources.Select(s => Pos(s.Hit)));
                    Assert.All(p.Sources.SkipLast(1), s => Assert.False(s.Truncated));
                    int cut = p.Sources.Count > 0 && p.Sources[^1].Truncated ? Pos(p.Sources[^1].Hit) : int.MaxValue;
                    if (cut != int.MaxValue)
                    {
                        string excerpt = p.Sources[^1].Excerpt!;
                        Assert.EndsWith(" ...", excerpt);
                        Assert.StartsWith(excerpt[..^4], p.Sources[^1].Hit.Passage.Text);
                        Assert.True(excerpt.Split(' ').Length - 1 >= builder.MinExcerptWords);
                        excerpts++;
                    }
                    foreach (var o in p.Omitted.Where(o => Pos(o) < cut))
                    {
                        var before = p.Sources.Where(s => Pos(s.Hit) < Pos(o)).ToList();
                        var with = before.Append(new AnswerSource(before.Count + 1, o)).ToList();
                        Assert.True(builder.Measure(builder.Messages("Which king led the battle?", with, PromptSituation.Sources, [])).Count + answer > ctx);
                    }
                    if (p.Sources.Count > 0) withSome++;
                    if (p.Omitted.Count > 0 && p.Sources.Count > 0) withOmitted++;
                }
        }
        // Excerpts off: passages whole or not at all.
        var wholeOnly = new GroundedPromptBuilder(ChatTemplate.For(Models.Stories.RequireTokenizer())) { MinExcerptWords = 0 };
        var w = wholeOnly.Build("Which king led the battle?", passages, PromptSituation.Sources, 512, 32);
        Assert.DoesNotContain(w.Sources, s => s.Truncated);
        Assert.True(w.TokenCount + 32 <= 512);
        output.WriteLine($"prompts with sources {withSome}, with some omitted {withOmitted}, with an excerpt {excerpts}, refused {refused}");
        Assert.True(withSome > 5 && withOmitted > 5 && excerpts > 5 && refused > 0);
    }

    [Fact]
    public void CitationsAreParsedAndMappedToTheirSources()
    {
        var sources = Corpus.Take(3).Select((p, i) => new AnswerSource(i + 1, Hit(p))).ToList();
        const string Answer = "He studied under Plato [1]. He taught Alexander [2][3], see [1, 3], [2-3] and [ 2 ; 1 ]; not [7], [a], [1a] or [].";
        var c = CitationParser.Parse(Answer, sources);
        Assert.Equal([1, 2, 3, 1, 3, 2, 3, 2, 1, 7], c.Select(x => x.Number));
        Assert.Equal(["aristotle#0", "aristotle#1", "moon#0", "aristotle#0", "moon#0", "aristotle#1", "moon#0", "aristotle#1", "aristotle#0", null],
            c.Select(x => x.Source?.Hit.Passage.Id));
        Assert.Equal("[1]", Answer.Substring(c[0].Start, c[0].Length));
        Assert.Equal("[ 2 ; 1 ]", Answer.Substring(c[7].Start, c[7].Length));
        Assert.Equal([1, 2, 3], CitationParser.Cited(c).Select(s => s.Number));
        Assert.Empty(CitationParser.Parse("No citation here.", sources));
        Assert.Equal([2], CitationParser.Parse("a range past the sources [2-40]", sources.Take(2).ToList()).Select(x => x.Number));
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public void AnAnswerRecordMapsCitationsToTheRetrievedPassages()
    {
        using var retriever = BuildRetriever();
        using var answerer = new GroundedAnswerer(Models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Off, Retrieval = new RetrievalOptions { Top = 3 }, MaxAnswerTokens = 24 });
        var prepared = answerer.Prepare("Who did Aristotle teach?");
        Assert.Equal(3, prepared.Prompt.Sources.Count);
        Assert.StartsWith("adaptive retrieval off", prepared.Decision.Reason);
        Assert.Equal("aristotle#1", prepared.Prompt.Sources[0].Hit.Passage.Id);

        // A known answer text (injected) maps its citations to the passages in the prompt.
        var injected = prepared.Complete("Alexander the Great [1], taught at court; see also [3] and [5].", 12, FinishReason.Stop, 1);
        Assert.Equal([prepared.Prompt.Sources[0].Hit.Passage.Id, prepared.Prompt.Sources[2].Hit.Passage.Id, null], injected.Citations.Select(c => c.Source?.Hit.Passage.Id));
        Assert.Equal([1, 3], injected.Cited.Select(s => s.Number));

        // A real generation: streamed pieces make the answer, the record is whole and its JSON parses.
        var pieces = new List<string>();
        var record = answerer.Generate(prepared, pieces.Add);
        output.WriteLine(record.Answer);
        Assert.Equal(record.Answer, string.Concat(pieces));
        Assert.True(record.GeneratedTokens is > 0 and <= 24);
        Assert.True(record.Prepared.Prompt.TokenCount + 24 <= answerer.ContextLength);
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) record.WriteJson(w);
        var json = JsonDocument.Parse(ms.ToArray()).RootElement;
        Assert.Equal("Who did Aristotle teach?", json.GetProperty("question").GetString());
        Assert.Equal(3, json.GetProperty("sources").GetArrayLength());
        Assert.Equal("aristotle#1", json.GetProperty("sources")[0].GetProperty("passage_id").GetString());
        Assert.Equal(record.Prepared.Prompt.TokenCount, json.GetProperty("prompt_tokens").GetInt32());
        Assert.False(json.GetProperty("no_source_used").GetBoolean());
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public void TheScoreRuleRetrievesForARelevantQuestionAndNotForAnUnrelatedOne()
    {
        using var retriever = BuildRetriever();
        using var answerer = new GroundedAnswerer(Models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Score, MaxAnswerTokens = 8 });
        var yes = answerer.Prepare("When did astronauts first land on the Moon?");
        output.WriteLine(yes.Decision.Reason);
        Assert.True(yes.Decision.Retrieve);
        Assert.StartsWith("retrieve ", yes.Decision.Reason);
        Assert.Contains(">= 0.45", yes.Decision.Reason);
        Assert.Equal("moon#0", yes.Prompt.Sources[0].Hit.Passage.Id);
        Assert.Equal(yes.Decision.Count, yes.Prompt.Sources.Count);

        var no = answerer.Prepare("What is the best recipe for sourdough pizza?");
        output.WriteLine(no.Decision.Reason);
        Assert.False(no.Decision.Retrieve);
        Assert.StartsWith("no retrieval: top score", no.Decision.Reason);
        Assert.Equal(PromptSituation.NothingRelevant, no.Prompt.Situation);
        Assert.Empty(no.Prompt.Sources);
        Assert.True(no.Complete("I do not know.", 4, FinishReason.Stop, 1).NoSourceUsed);

        // BM25 has no cosines: a dense search supplies the scores, so the decision is the same.
        using var lexical = new GroundedAnswerer(Models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Score, MaxAnswerTokens = 8, Retrieval = new RetrievalOptions { Mode = RetrievalMode.Lexical } });
        var bm25 = lexical.Prepare("When did astronauts first land on the Moon?");
        Assert.Equal(yes.Decision.Reason, bm25.Decision.Reason);
        Assert.Equal("moon#0", bm25.Prompt.Sources[0].Hit.Passage.Id);
        Assert.Null(bm25.Prompt.Sources[0].Hit.DenseScore);
    }

    [SharedLmFact("stories260K.bin", "tok512.bin", "llama3-tokenizer.model")]
    public void TheModelRuleSkipsRetrievalWhenConfidentAndDefersToScoresWhenNot()
    {
        using var retriever = BuildRetriever();
        foreach (var model in new[] { Models.Stories, Models.BitNet })
        {
            var measured = new ClosedBookConfidence(model, 6).Measure("When did astronauts first land on the Moon?");
            output.WriteLine($"{model.Source}: {measured}");
            Assert.InRange(measured.MeanMaxProbability, 0, 1);
            // Threshold at or below the measured confidence: confident, nothing retrieved, the model answers alone.
            var confident = new GroundedAnswerer(model, retriever, new GroundedAnswerOptions
            {
                Adaptive = AdaptiveMode.Model, ConfidenceTokens = 6, MaxAnswerTokens = 8, Policy = AdaptivePolicy.Default with { ModelConfidenceThreshold = measured.MeanMaxProbability },
            }).Prepare("When did astronauts first land on the Moon?");
            Assert.False(confident.Decision.Retrieve);
            Assert.StartsWith("no retrieval: model confident, confidence ", confident.Decision.Reason);
            Assert.Equal(PromptSituation.NotNeeded, confident.Prompt.Situation);
            Assert.Empty(confident.Retrieved);
            Assert.Equal(measured.MeanMaxProbability, confident.Decision.Confidence!.MeanMaxProbability, 12);
            // Above it: unsure, the score rule decides, and the reason says both.
            var unsure = new GroundedAnswerer(model, retriever, new GroundedAnswerOptions
            {
                Adaptive = AdaptiveMode.Model, ConfidenceTokens = 6, MaxAnswerTokens = 8, Policy = AdaptivePolicy.Default with { ModelConfidenceThreshold = Math.Min(1, measured.MeanMaxProbability + 1e-6) },
            }).Prepare("When did astronauts first land on the Moon?");
            output.WriteLine(unsure.Decision.Reason);
            Assert.True(unsure.Decision.Retrieve);
            Assert.StartsWith("model unsure, confidence ", unsure.Decision.Reason);
            Assert.Contains("; retrieve ", unsure.Decision.Reason);
            Assert.Equal("moon#0", unsure.Prompt.Sources[0].Hit.Passage.Id);
        }
    }

    [SharedLmFact("stories260K.bin", "tok512.bin", "llama3-tokenizer.model")]
    public void ConfidenceEqualsAPlainSoftmaxOverTheGreedyAnswersLogits()
    {
        foreach (var model in new[] { Models.Stories, Models.BitNet })
        {
            const int K = 6;
            const string Q = "Who was Aristotle's teacher?";
            var m = new ClosedBookConfidence(model, K).Measure(Q);
            // Reference: the greedy answer by TextGenerator, then every position's logits in one pass, softmax in double.
            var builder = new GroundedPromptBuilder(ChatTemplate.For(model.RequireTokenizer()));
            var prompt = builder.Measure(builder.ClosedBook(Q)).Ids!;
            var gen = new TextGenerator(model.CreateSession(256)).Complete(prompt, new GenerationOptions { MaxTokens = K, Sampling = SamplingOptions.Greedy });
            int steps = gen.Ids.Count + (gen.Finish == FinishReason.Stop ? 1 : 0);   // an end token is a measured step
            Assert.Equal(steps, m.Steps);
            var seq = prompt.Concat(gen.Ids).ToArray();
            var session = model.CreateSession(256);
            int v = model.Config.VocabSize;
            var logits = new float[seq.Length * v];
            session.AppendAll(seq, logits);
            double sumP = 0, sumH = 0;
            for (int s = 0; s < steps; s++)
            {
                var row = logits.AsSpan((prompt.Count - 1 + s) * v, v).ToArray();
                double max = row.Max(), z = row.Sum(x => Math.Exp(x - max));
                sumP += 1 / z;
                sumH -= row.Sum(x => { double p = Math.Exp(x - max) / z; return p > 0 ? p * Math.Log(p) : 0; });
            }
            output.WriteLine($"{model.Source}: {m} vs reference {sumP / steps:F6} / {sumH / steps:F6}");
            Assert.Equal(sumP / steps, m.MeanMaxProbability, 4);
            Assert.Equal(sumH / steps, m.MeanEntropy, 3);
            Assert.Equal(model.RequireTokenizer().Decode(gen.Ids), m.Text);
        }
    }

    /// <summary>An inner chat client that records what it is sent and replies with a fixed text.</summary>
    private sealed class ScriptedClient(string reply) : IChatClient
    {
        public List<ChatMessage> Sent { get; } = [];
        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            Sent.Clear(); Sent.AddRange(messages);
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, reply)));
        }
        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Sent.Clear(); Sent.AddRange(messages);
            foreach (string part in reply.Split(' ')) { await Task.Yield(); yield return new ChatResponseUpdate(ChatRole.Assistant, part + " ") { ResponseId = "r1" }; }
        }
        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }

    [Fact]
    public async Task TheChatClientDecoratorRetrievesForTheLastUserMessageAndReturnsSources()
    {
        using var retriever = BuildRetriever();
        var inner = new ScriptedClient("Armstrong [1] first, see [9].");
        IChatClient chat = new RetrievalChatClient(inner, retriever);
        ChatMessage[] conversation = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hello"), new(ChatRole.Assistant, "Hi."), new(ChatRole.User, "Who first walked on the Moon?")];
        var response = await chat.GetResponseAsync(conversation);
        // Earlier turns kept; the instructions and the sources + question replace the last user message.
        Assert.Equal(["system", "user", "assistant", "system", "user"], inner.Sent.Select(m => m.Role.Value));
        Assert.Equal(GroundedPromptBuilder.SourcesInstruction, inner.Sent[3].Text);
        Assert.StartsWith("Sources:\n[1] Moon > Landings\n", inner.Sent[4].Text);
        Assert.EndsWith("Question: Who first walked on the Moon?", inner.Sent[4].Text);
        var sources = Assert.IsAssignableFrom<IReadOnlyList<AnswerSource>>(response.AdditionalProperties![RetrievalChatClient.SourcesKey]);
        Assert.Equal("moon#0", sources[0].Hit.Passage.Id);
        var decision = Assert.IsType<RetrievalDecision>(response.AdditionalProperties[RetrievalChatClient.DecisionKey]);
        Assert.StartsWith("retrieve ", decision.Reason);
        var cites = Assert.IsAssignableFrom<IReadOnlyList<Citation>>(response.AdditionalProperties[RetrievalChatClient.CitationsKey]);
        Assert.Equal(["moon#0", null], cites.Select(c => c.Source?.Hit.Passage.Id));

        // Streaming: the first update carries the sources and the decision, the last the citations.
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync(conversation)) updates.Add(u);
        Assert.Same(sources.GetType(), updates[0].AdditionalProperties![RetrievalChatClient.SourcesKey]!.GetType());
        Assert.Equal("moon#0", ((IReadOnlyList<AnswerSource>)updates[0].AdditionalProperties![RetrievalChatClient.SourcesKey]!)[0].Hit.Passage.Id);
        Assert.True(updates[0].AdditionalProperties!.ContainsKey(RetrievalChatClient.DecisionKey));
        var lastCites = (IReadOnlyList<Citation>)updates[^1].AdditionalProperties![RetrievalChatClient.CitationsKey]!;
        Assert.Equal(["moon#0", null], lastCites.Select(c => c.Source?.Hit.Passage.Id));
        Assert.Equal("Armstrong [1] first, see [9]. ", string.Concat(updates.Select(u => u.Text)));

        // Nothing relevant: no source, the model is told so.
        var off = await chat.GetResponseAsync([new(ChatRole.User, "What is the best recipe for sourdough pizza?")]);
        Assert.Empty((IReadOnlyList<AnswerSource>)off.AdditionalProperties![RetrievalChatClient.SourcesKey]!);
        Assert.Equal(GroundedPromptBuilder.NothingRelevantInstruction, inner.Sent[^2].Text);
        await Assert.ThrowsAsync<RotorException>(() => chat.GetResponseAsync([new(ChatRole.System, "only a system message")]));
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public async Task TheDecoratorOverRotorChatClientCountsInTheModelsTokens()
    {
        using var retriever = BuildRetriever();
        using var rotor = new RotorChatClient(Models.Stories, new RotorChatClientOptions { ContextLength = 300 });
        var chat = new RetrievalChatClient(rotor, retriever, new RetrievalChatOptions { ContextLength = 300, Adaptive = AdaptiveMode.Off, Retrieval = new RetrievalOptions { Top = 6 } });
        var options = new ChatOptions { MaxOutputTokens = 40, Temperature = 0 };
        var g = await chat.GroundAsync([new(ChatRole.User, "Who did Aristotle teach?")], options);
        output.WriteLine($"{g.Prompt.TokenCount} prompt tokens, {g.Prompt.Sources.Count} sources, {g.Prompt.Omitted.Count} omitted");
        Assert.True(g.Prompt.TokenCount + 40 <= 300);
        Assert.NotEmpty(g.Prompt.Sources);
        Assert.NotEmpty(g.Prompt.Omitted);   // six passages do not fit 260 tokens of tok512
        Assert.Equal(rotor.RenderPrompt(g.Messages).Count, g.Prompt.TokenCount);
        var response = await chat.GetResponseAsync([new(ChatRole.User, "Who did Aristotle teach?")], options);
        Assert.True(response.Usage!.InputTokenCount + response.Usage.OutputTokenCount <= 300);
        Assert.NotEmpty((IReadOnlyList<AnswerSource>)response.AdditionalProperties![RetrievalChatClient.SourcesKey]!);
    }

    /// <summary>A probe that returns a fixed confidence and counts its calls (the rule must use it, not the model).</summary>
    private sealed class FixedProbe(double confidence) : IConfidenceProbe
    {
        public int Calls;
        public int Tokens => 4;
        public async Task<ConfidenceMeasurement> MeasureAsync(string question, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref Calls);
            await Task.Yield();
            return new ConfidenceMeasurement(confidence, 1.5, 4, "closed book", 0);
        }
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public async Task AProbeDecidesTheModelRuleAndRequestsOverrideTheOptions()
    {
        using var retriever = BuildRetriever();
        const string Q = "When did astronauts first land on the Moon?";
        var sure = new FixedProbe(0.9);
        using var answerer = new GroundedAnswerer(models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Model, MaxAnswerTokens = 8,
            Policy = AdaptivePolicy.Default with { ModelConfidenceThreshold = 0.5 } }, sure);
        var skip = await answerer.PrepareAsync(Q);
        Assert.Equal(1, sure.Calls);
        Assert.False(skip.Decision.Retrieve);
        Assert.Equal(0.9, skip.Decision.Confidence!.MeanMaxProbability);
        Assert.StartsWith("no retrieval: model confident, confidence 0.900", skip.Decision.Reason);
        Assert.Equal(PromptSituation.NotNeeded, skip.Prompt.Situation);

        // Per request: the score rule (the probe is not asked), top 1, lexical, room and context of the request's.
        var score = await answerer.PrepareAsync(Q, new PrepareRequest { Adaptive = AdaptiveMode.Score, Top = 1, Mode = RetrievalMode.Lexical, AnswerTokens = 20, ContextLength = 400 });
        Assert.Equal(1, sure.Calls);
        Assert.Equal(AdaptiveMode.Score, score.Decision.Mode);
        Assert.Single(score.Prompt.Sources);
        Assert.Equal("moon#0", score.Prompt.Sources[0].Hit.Passage.Id);
        Assert.Equal(400, score.Prompt.ContextLength);
        Assert.Equal(20, score.Prompt.AnswerTokens);
        Assert.True(score.Prompt.TokenCount + 20 <= 400);

        // Unsure: the scores decide, the reason says both; many questions at once (a probe needs no gate).
        var unsure = new FixedProbe(0.1);
        using var concurrent = new GroundedAnswerer(models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Model, MaxAnswerTokens = 8 }, unsure);
        var all = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => concurrent.PrepareAsync(Q))));
        Assert.Equal(8, unsure.Calls);
        foreach (var p in all)
        {
            Assert.True(p.Decision.Retrieve);
            Assert.StartsWith("model unsure, confidence 0.100", p.Decision.Reason);
            Assert.Equal(all[0].Prompt.Ids, p.Prompt.Ids);
        }
    }

    [SharedLmFact("stories260K.bin", "tok512.bin")]
    public async Task EarlierTurnsGoIntoThePromptButTheRulesSeeTheQuestionAlone()
    {
        using var retriever = BuildRetriever();
        using var answerer = new GroundedAnswerer(models.Stories, retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Score, MaxAnswerTokens = 8 });
        const string Q = "When did astronauts first land on the Moon?";
        var alone = await answerer.PrepareAsync(Q);
        PromptMessage[] history = [new("system", "You are terse."), new("user", "Tell me about Aristotle and Plato."), new("assistant", "Aristotle studied with Plato.")];
        var turns = await answerer.PrepareAsync(Q, new PrepareRequest { History = history });
        Assert.Equal(alone.Decision.Reason, turns.Decision.Reason);
        Assert.Equal(alone.Prompt.Sources.Select(x => x.Hit.Passage.Id), turns.Prompt.Sources.Select(x => x.Hit.Passage.Id));
        Assert.Equal([.. history, .. alone.Prompt.Messages], turns.Prompt.Messages);
        Assert.True(turns.Prompt.TokenCount > alone.Prompt.TokenCount);
        Assert.True(turns.Prompt.TokenCount + 8 <= answerer.ContextLength);
    }

    [Fact]
    public void TheAccumulatorIsAPlainSoftmaxInDouble()
    {
        var rng = new Random(5);
        foreach (int v in new[] { 1, 2, 7, 512, 4099 })
        {
            var acc = new ConfidenceAccumulator();
            double sumP = 0, sumH = 0;
            for (int step = 0; step < 3; step++)
            {
                var logits = new float[v];
                for (int i = 0; i < v; i++) logits[i] = (float)(rng.NextDouble() * 20 - 10) * (step + 1);
                if (v > 2) logits[1] = float.NegativeInfinity;   // a masked token: probability 0
                int best = acc.Add(logits);
                Assert.Equal(Sampler.ArgMax(logits), best);
                double max = logits.Max(), z = logits.Sum(x => Math.Exp(x - max));
                sumP += 1 / z;
                sumH -= logits.Sum(x => { double p = Math.Exp(x - max) / z; return p > 0 ? p * Math.Log(p) : 0; });
            }
            var m = acc.Result("t", 1);
            Assert.Equal(3, m.Steps);
            Assert.Equal(sumP / 3, m.MeanMaxProbability, 6);
            Assert.Equal(sumH / 3, m.MeanEntropy, 5);
            Assert.False(double.IsNaN(m.MeanEntropy));
        }
        Assert.Throws<InvalidOperationException>(() => new ConfidenceAccumulator().Result("", 0));
    }
}

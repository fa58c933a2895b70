using System.ClientModel;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Answers;

namespace Rotor.Server.Tests;

/// <summary>The official OpenAI .NET library and Microsoft.Extensions.AI's OpenAI client pointed at the server (chat,
/// streaming, embeddings), and grounded chat with its sources.</summary>
[Collection("rag")]
public sealed class ClientTests(RagFixture f)
{
    private const string Question = "Once upon a time, there was a big red ball";

    private GenerationResult Direct(int maxTokens)
    {
        var prompt = ChatTemplate.For(f.Model!.RequireTokenizer()).Render([("user", Question)], addGenerationPrompt: true);
        return Models.Direct(f.Model!, prompt, new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy }, RagFixture.Context);
    }

    private OpenAIClientOptions Options => new() { Endpoint = new Uri(f.Served!.Address, "v1/") };

    [StoriesFact]
    public async Task OpenAiLibraryChatStreamingAndEmbeddings()
    {
        var direct = Direct(40);
        var chat = new ChatClient("m", new ApiKeyCredential("k"), Options);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 };
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage(Question)], options);
        Assert.Equal(direct.Text, c.Content[0].Text);
        Assert.Equal(direct.Ids.Count, c.Usage.OutputTokenCount);
        Assert.Equal(direct.Finish == FinishReason.Stop ? OpenAI.Chat.ChatFinishReason.Stop : OpenAI.Chat.ChatFinishReason.Length, c.FinishReason);

        var sb = new StringBuilder();
        int updates = 0;
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage(Question)], options))
            foreach (var part in u.ContentUpdate) { sb.Append(part.Text); updates++; }
        Assert.Equal(direct.Text, sb.ToString());
        Assert.True(updates > 5, $"{updates} streamed updates");

        // A wrong key is refused through the library too.
        var bad = new ChatClient("m", new ApiKeyCredential("wrong"), Options);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => bad.CompleteChatAsync([new UserChatMessage(Question)], options));
        Assert.Equal(401, e.Status);

        var embeddings = new EmbeddingClient(ModelFiles.MiniLmName, new ApiKeyCredential("k"), Options);
        OpenAIEmbedding one = await embeddings.GenerateEmbeddingAsync("The first person on the Moon");
        Assert.Equal(f.Embedder!.Embed("The first person on the Moon"), one.ToFloats().ToArray());
        var many = await embeddings.GenerateEmbeddingsAsync(["a cat", "a dog", "the Moon landing"]);
        Assert.Equal(3, many.Value.Count);
        for (int i = 0; i < 3; i++) Assert.Equal(f.Embedder!.Embed(new[] { "a cat", "a dog", "the Moon landing" }[i]), many.Value[i].ToFloats().ToArray());
        Assert.True(many.Value.Usage.InputTokenCount > 3);
    }

    [StoriesFact]
    public async Task ExtensionsAiClientChatStreamingAndEmbeddings()
    {
        var direct = Direct(30);
        IChatClient chat = new ChatClient("m", new ApiKeyCredential("k"), Options).AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 30 };
        var r = await chat.GetResponseAsync([new Microsoft.Extensions.AI.ChatMessage(ChatRole.User, Question)], options);
        Assert.Equal(direct.Text, r.Text);
        Assert.Equal(direct.Ids.Count, r.Usage!.OutputTokenCount);
        var sb = new StringBuilder();
        await foreach (var u in chat.GetStreamingResponseAsync([new Microsoft.Extensions.AI.ChatMessage(ChatRole.User, Question)], options)) sb.Append(u.Text);
        Assert.Equal(direct.Text, sb.ToString());

        IEmbeddingGenerator<string, Embedding<float>> gen = new EmbeddingClient(ModelFiles.MiniLmName, new ApiKeyCredential("k"), Options).AsIEmbeddingGenerator();
        var e = await gen.GenerateAsync(["Apollo 11", "photosynthesis"]);
        Assert.Equal(2, e.Count);
        Assert.Equal(f.Embedder!.Embed("Apollo 11"), e[0].Vector.ToArray());
        Assert.Equal(f.Embedder!.Embed("photosynthesis"), e[1].Vector.ToArray());
    }

    [StoriesFact]
    public async Task EmbeddingsAsFloatsAndBadEmbeddingInput()
    {
        var s = f.Served!;
        var (status, body) = await s.PostJsonAsync("v1/embeddings", $$"""{"model":"{{ModelFiles.MiniLmName}}","input":"hello world"}""");
        Assert.Equal(200, status);
        var v = body.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        Assert.Equal(f.Embedder!.Embed("hello world"), v);
        Assert.Equal(404, (await s.PostJsonAsync("v1/embeddings", """{"model":"text-embedding-3-small","input":"x"}""")).Status);
        Assert.Equal(400, (await s.PostJsonAsync("v1/embeddings", $$"""{"model":"{{ModelFiles.MiniLmName}}","input":""}""")).Status);
        Assert.Equal(400, (await s.PostJsonAsync("v1/embeddings", $$"""{"model":"{{ModelFiles.MiniLmName}}","input":[1,2]}""")).Status);
        Assert.Equal(400, (await s.PostJsonAsync("v1/embeddings", $$"""{"model":"{{ModelFiles.MiniLmName}}","input":"x","dimensions":12}""")).Status);
        var models = JsonDocument.Parse(await s.Http.GetStringAsync("v1/models")).RootElement;
        Assert.Equal(["m", "m-rag", ModelFiles.MiniLmName], models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
    }

    [StoriesFact]
    public async Task GroundedChatAnswersFromRetrievedPassagesAndReturnsThem()
    {
        var s = f.Served!;
        const string q = "Who was the first person to walk on the Moon?";
        string body = $$$"""{"model":"m-rag","messages":[{"role":"user","content":{{{J.S(q)}}}}],"max_tokens":40,"temperature":0""";
        var (status, j) = await s.PostJsonAsync("v1/chat/completions", body + "}");
        Assert.Equal(200, status);
        var sources = j.GetProperty("sources").EnumerateArray().ToArray();
        Assert.NotEmpty(sources);
        var passages = DemoCorpus.Passages.ToDictionary(p => p.Id);
        for (int i = 0; i < sources.Length; i++)
        {
            Assert.Equal(i + 1, sources[i].GetProperty("number").GetInt32());
            var p = passages[sources[i].GetProperty("id").GetString()!];
            Assert.Equal(p.Text, sources[i].GetProperty("text").GetString());
            Assert.Equal(p.Title, sources[i].GetProperty("title").GetString());
        }
        var search = (await s.PostJsonAsync("v1/search", $$"""{"query":{{J.S(q)}},"top":4}""")).Body.GetProperty("data").EnumerateArray().ToArray();
        Assert.Equal(search[0].GetProperty("id").GetString(), sources[0].GetProperty("id").GetString());

        // The prompt and decision are what the grounded-answer library prepares for the question (score rule, top 5,
        // hybrid, 40 positions kept for the answer), and the answer is what the model makes of that prompt.
        var expected = await f.ExpectedAsync(q, 40);
        Assert.Equal(expected.Decision.Reason, j.GetProperty("retrieval_decision").GetString());
        Assert.StartsWith("retrieve ", expected.Decision.Reason);
        var decision = j.GetProperty("retrieval");
        Assert.Equal("score", decision.GetProperty("mode").GetString());
        Assert.True(decision.GetProperty("retrieve").GetBoolean());
        Assert.Equal(expected.Decision.Count, decision.GetProperty("count").GetInt32());
        Assert.False(decision.TryGetProperty("confidence", out _));
        Assert.Equal(expected.Prompt.Sources.Select(x => x.Hit.Passage.Id), sources.Select(x => x.GetProperty("id").GetString()));
        int promptTokens = j.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(expected.Prompt.Ids!.Count, promptTokens);
        Assert.True(promptTokens + 40 <= RagFixture.Context);
        string prompt = f.Model!.RequireTokenizer().Decode(expected.Prompt.Ids!);
        Assert.Contains("[1] " + sources[0].GetProperty("title").GetString(), prompt);
        Assert.Contains(q, prompt);
        var direct = Models.Direct(f.Model!, expected.Prompt.Ids!, new GenerationOptions { MaxTokens = 40, Sampling = SamplingOptions.Greedy }, RagFixture.Context);
        Assert.Equal(direct.Text, j.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        // Streamed: the sources and the decision come in the first chunk.
        var (_, events) = await s.PostStreamAsync("v1/chat/completions", body + ""","stream":true}""");
        var first = JsonDocument.Parse(events[0]).RootElement;
        Assert.Equal(sources.Length, first.GetProperty("sources").GetArrayLength());
        Assert.Equal(expected.Decision.Reason, first.GetProperty("retrieval").GetProperty("reason").GetString());
        Assert.Equal(direct.Text, Served.Join(events).Text);

        // The retrieval field on the plain model id does the same, with its own top and mode.
        var (st2, j2) = await s.PostJsonAsync("v1/chat/completions", $$$"""{"model":"m","messages":[{"role":"user","content":{{{J.S(q)}}}}],"max_tokens":40,"temperature":0,"retrieval":{"top":2,"mode":"lexical"}}""");
        Assert.Equal(200, st2);
        var lexical = await f.ExpectedAsync(q, 40, new PrepareRequest { Top = 2, Mode = Rotor.Rag.Search.RetrievalMode.Lexical });
        Assert.InRange(j2.GetProperty("sources").GetArrayLength(), 1, 2);
        Assert.Equal(lexical.Prompt.Sources.Select(x => x.Hit.Passage.Id), j2.GetProperty("sources").EnumerateArray().Select(x => x.GetProperty("id").GetString()));
    }
}

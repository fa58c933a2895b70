using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;
using Rotor.Server.Grounding;

namespace Rotor.Server.Tests;

/// <summary>Where test data lives: ../shared/data above the folder holding Rotor.sln.</summary>
internal static class TestPaths
{
    public static readonly string? RepoRoot = FindRepoRoot();

    public static string? SharedData => RepoRoot is null ? null : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));

    /// <summary>A file of ../shared/data/lm, or null when absent.</summary>
    public static string? SharedLm(string file)
        => SharedData is { } d && File.Exists(Path.Combine(d, "lm", file)) ? Path.Combine(d, "lm", file) : null;

    /// <summary>A folder for test artifacts (screenshots) under the test output folder.</summary>
    public static string Artifacts()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "artifacts");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        return null;
    }

    public const string Stories = "stories260K.bin";
    public const string Tok512 = "tok512.bin";
}

/// <summary>A fact that skips, saying why, when stories260K and its tokenizer are absent from ../shared/data/lm.</summary>
public sealed class StoriesFactAttribute : FactAttribute
{
    /// <summary>Skips unless stories260K.bin and tok512.bin exist.</summary>
    public StoriesFactAttribute()
    {
        foreach (string f in new[] { TestPaths.Stories, TestPaths.Tok512 })
            if (TestPaths.SharedLm(f) is null) { Skip = $"{f} not found under {TestPaths.SharedData ?? "../shared/data (no Rotor.sln above the test assembly)"}/lm"; return; }
    }
}

/// <summary>Models the tests serve.</summary>
internal static class Models
{
    /// <summary>The llama2.c stories260K model with its tok512 tokenizer.</summary>
    public static LanguageModel Stories() => LanguageModel.Load(TestPaths.SharedLm(TestPaths.Stories)!, new LanguageModelOptions { Threads = 1 });

    /// <summary>A small BitNet b1.58 model (ternary layers, sub-norms, squared ReLU) with random weights and the tok512
    /// tokenizer, so that text goes in and out.</summary>
    /// <param name="large">Wider and deeper (some milliseconds a token: slow enough to cancel mid-generation).</param>
    public static LanguageModel RandomBitNet(bool large = false)
    {
        var config = large
            ? RandomModel.BitNet2B4T with { Dim = 1024, Layers = 8, Heads = 8, KvHeads = 2, HeadDim = 128, FfnDim = 2816, VocabSize = 512, ContextLength = 1024 }
            : RandomModel.BitNet2B4T with { Dim = 256, Layers = 3, Heads = 4, KvHeads = 2, HeadDim = 64, FfnDim = 512, VocabSize = 512, ContextLength = 512 };
        var tok = TokenizerFiles(TestPaths.SharedLm(TestPaths.Tok512)!);
        return LanguageModel.FromWeights(config, RandomModel.Create(config, seed: 7), new LanguageModelOptions { Tokenizer = tok, Threads = 1 }, "random-bitnet");
    }

    private static LmTokenizer TokenizerFiles(string path) => TokenizerLoader.Load(path, 512);

    /// <summary>What <see cref="TextGenerator"/> makes of <paramref name="promptIds"/> alone on a fresh session.</summary>
    public static GenerationResult Direct(LanguageModel model, IReadOnlyList<int> promptIds, GenerationOptions options, int contextLength)
        => new TextGenerator(model.CreateSession(contextLength)).Complete(promptIds, options);
}

/// <summary>A started server on a free loopback port and an HttpClient pointed at it.</summary>
internal sealed class Served : IAsyncDisposable
{
    private Served(RotorServer server, HttpClient http) { Server = server; Http = http; }

    public RotorServer Server { get; }
    public HttpClient Http { get; }
    public Uri Address => Server.Address!;

    public static async Task<Served> StartAsync(LanguageModel model, RotorServerOptions options, SentenceEmbedder? embedder = null, Retriever? retriever = null, IChatGrounding? grounding = null)
    {
        var server = new RotorServer(model, options with { Port = 0, Host = "127.0.0.1" }, embedder, retriever, grounding);
        await server.StartAsync();
        var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
        if (options.ApiKeys.Count > 0) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKeys[0]);
        return new Served(server, http);
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json, CancellationToken ct = default)
        => Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"), ct);

    public async Task<(int Status, JsonElement Body)> PostJsonAsync(string path, string json)
    {
        using var r = await PostAsync(path, json);
        string text = await r.Content.ReadAsStringAsync();
        return ((int)r.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The data lines of a server-sent event stream, [DONE] included.</summary>
    public async Task<(int Status, List<string> Events)> PostStreamAsync(string path, string json)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using var r = await Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        var events = new List<string>();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
        return ((int)r.StatusCode, events);
    }

    /// <summary>The text of a stream's chunks (chat deltas or completion texts) and its finish reason.</summary>
    public static (string Text, string? Finish, JsonElement? Usage) Join(List<string> events)
    {
        var sb = new StringBuilder();
        string? finish = null;
        JsonElement? usage = null;
        Assert.Equal("[DONE]", events[^1]);
        foreach (var e in events.Take(events.Count - 1))
        {
            var j = JsonDocument.Parse(e).RootElement;
            Assert.False(j.TryGetProperty("error", out _), e);
            if (j.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) usage = u.Clone();
            foreach (var c in j.GetProperty("choices").EnumerateArray())
            {
                if (c.TryGetProperty("delta", out var d) && d.TryGetProperty("content", out var t) && t.ValueKind == JsonValueKind.String) sb.Append(t.GetString());
                if (c.TryGetProperty("text", out var tt) && tt.ValueKind == JsonValueKind.String) sb.Append(tt.GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = c.GetProperty("finish_reason").GetString();
            }
        }
        return (sb.ToString(), finish, usage);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>JSON string literal of a text.</summary>
internal static class J
{
    public static string S(string s) => JsonSerializer.Serialize(s);
}

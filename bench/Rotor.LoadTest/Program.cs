// Load test of an OpenAI-compatible server on loopback: N concurrent streaming clients (1, 4, 16, 64 by default), each
// sending chat requests one after another until its request count or the level's time is used up. Reports, per
// level: requests/s, generated tokens/s in total, time to first token and time per output token (p50/p99), failed and
// lost requests; then the ratio of each level's tokens/s to one client's. Point it at `rotor serve` or at llama.cpp's
// llama-server (--url), or let it start Rotor's server in this process (--serve MODEL). `--endpoint completions` sends
// the same text to /v1/completions (no chat template: both servers see the same tokens); `--ignore-eos` asks
// llama-server to run to max_tokens (Rotor ignores the field); `--fresh-connections` opens a connection a request.
// `--device cuda` decodes the in-process server's model on the GPU. bench/loadtest-vs-llama-server.sh drives both servers.
//
//   dotnet run -c Release --project bench/Rotor.LoadTest -- --serve ../shared/data/lm/stories260K.bin --json out.json
//   dotnet run -c Release --project bench/Rotor.LoadTest -- --url http://127.0.0.1:8080/ --model NAME
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Rotor;
using Rotor.Lm;
using Rotor.Server;
using Rotor.Server.Scheduling;

var inv = CultureInfo.InvariantCulture;
var opts = Args.Parse(args);
RotorServer? server = null;
LanguageModel? model = null;
try
{
    Uri url;
    string modelId;
    if (opts.Serve is { } path)
    {
        if (path.StartsWith("random:", StringComparison.Ordinal))
        {
            var config = RandomModel.Shape(path["random:".Length..]);
            var tok = opts.Tokenizer is null ? null : Rotor.Lm.Tokenizers.TokenizerLoader.Load(opts.Tokenizer, config.VocabSize);
            model = LanguageModel.FromWeights(config, RandomModel.Create(config), new LanguageModelOptions { Tokenizer = tok, Device = opts.Device }, path);
        }
        else model = LanguageModel.Load(path, new LanguageModelOptions { TokenizerPath = opts.Tokenizer, Device = opts.Device });
        modelId = "bench";
        server = new RotorServer(model, new RotorServerOptions
        {
            ModelId = modelId, Port = 0,
            Scheduler = new SchedulerOptions { MaxBatch = opts.MaxBatch, ContextLength = opts.Ctx ?? Math.Min(model.Config.ContextLength, 2048), QueueLimit = opts.Queue },
        });
        await server.StartAsync();
        url = server.Address!;
        Console.Error.WriteLine($"serving {path} in process at {url} (batch {opts.MaxBatch}, queue {opts.Queue}; {(model.Cuda is null && opts.Device == LmDevice.Cpu ? model.Backend.Name : model.DeviceNote)})");
    }
    else
    {
        url = new Uri(opts.Url ?? throw new RotorException("give --url URL of a running server, or --serve MODEL"));
        modelId = opts.Model ?? throw new RotorException("--model NAME: the model id the server at --url serves");
    }

    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
    { BaseAddress = url, Timeout = TimeSpan.FromSeconds(opts.Seconds + 120) };
    if (opts.ApiKey is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", opts.ApiKey);

    // One warm-up request: the first request pays for JIT and page faults.
    await OneRequest(http, modelId, opts, 0, CancellationToken.None);

    var levels = new List<LevelResult>();
    Console.WriteLine("clients  requests  failed  lost  seconds  req/s   tokens/s  ttft p50 ms  ttft p99 ms  tpot p50 ms  tpot p99 ms  prompt tokens");
    foreach (int clients in opts.Levels)
    {
        var r = await RunLevel(http, modelId, opts, clients);
        levels.Add(r);
        Console.WriteLine(string.Create(inv,
            $"{clients,7}  {r.Requests,8}  {r.Failed,6}  {r.Lost,4}  {r.Seconds,7:F1}  {r.RequestsPerSecond,5:F2}  {r.TokensPerSecond,9:F1}  {r.TtftP50 * 1e3,11:F1}  {r.TtftP99 * 1e3,11:F1}  {r.TpotP50 * 1e3,11:F2}  {r.TpotP99 * 1e3,11:F2}  {r.PromptTokensMean,13:F1}"));
    }
    var one = levels.FirstOrDefault(l => l.Clients == 1);
    if (one is not null && one.TokensPerSecond > 0)
        foreach (var l in levels.Where(l => l.Clients > 1))
            Console.WriteLine(string.Create(inv, $"{l.Clients} clients: {l.TokensPerSecond / one.TokensPerSecond:F2}x the total tokens/s of 1 client"));
    if (opts.Json is { } jsonPath)
    {
        using var stream = File.Create(jsonPath);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("url", url.ToString());
        if (opts.Label is { } label) w.WriteString("label", label);
        w.WriteString("endpoint", opts.Endpoint);
        w.WriteString("model", opts.Serve ?? modelId);
        if (model is not null) w.WriteString("device", model.Cuda is null ? model.Backend.Name : model.DeviceNote);
        w.WriteNumber("max_tokens", opts.MaxTokens);
        w.WriteNumber("seconds_per_level", opts.Seconds);
        w.WriteNumber("requests_per_client", opts.RequestsPerClient);
        w.WriteString("machine", $"{Environment.ProcessorCount} processors, {RuntimeInfo()}");
        w.WriteString("date", DateTime.UtcNow.ToString("u", inv));
        w.WriteStartArray("levels");
        foreach (var l in levels)
        {
            w.WriteStartObject();
            Num(w, "clients", l.Clients); Num(w, "requests", l.Requests); Num(w, "failed", l.Failed); Num(w, "lost", l.Lost);
            Num(w, "seconds", l.Seconds); Num(w, "requests_per_second", l.RequestsPerSecond); Num(w, "tokens", l.Tokens);
            Num(w, "tokens_per_second", l.TokensPerSecond);
            Num(w, "prompt_tokens_mean", l.PromptTokensMean);
            Num(w, "ttft_p50_ms", l.TtftP50 * 1e3); Num(w, "ttft_p99_ms", l.TtftP99 * 1e3);
            Num(w, "tpot_p50_ms", l.TpotP50 * 1e3); Num(w, "tpot_p99_ms", l.TpotP99 * 1e3);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
    return levels.Any(l => l.Failed > 0 || l.Lost > 0) ? 1 : 0;
}
catch (RotorException e)
{
    Console.Error.WriteLine($"loadtest: {e.Message}");
    return 2;
}
finally
{
    if (server is not null) await server.DisposeAsync();
    model?.Dispose();
}

// A level where nothing succeeded has no percentiles: null, not NaN (which JSON cannot hold).
static void Num(Utf8JsonWriter w, string name, double value)
{
    if (double.IsFinite(value)) w.WriteNumber(name, value); else w.WriteNull(name);
}

// A JSON string literal (no reflection: the load test publishes trimmed for GPU machines).
static string Quoted(string s) => "\"" + JsonEncodedText.Encode(s).ToString() + "\"";

static string RuntimeInfo() => System.Runtime.InteropServices.RuntimeInformation.OSDescription;

static async Task<LevelResult> RunLevel(HttpClient http, string model, Args o, int clients)
{
    using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(o.Seconds));
    var results = new List<RequestResult>();
    var sw = Stopwatch.StartNew();
    var tasks = Enumerable.Range(0, clients).Select(async c =>
    {
        var mine = new List<RequestResult>();
        for (int i = 0; i < o.RequestsPerClient && !deadline.IsCancellationRequested; i++)
        {
            // A request started is always finished (the deadline only stops new ones), so none is cut off.
            mine.Add(await OneRequest(http, model, o, c * 1000 + i, CancellationToken.None));
        }
        lock (results) results.AddRange(mine);
    }).ToArray();
    await Task.WhenAll(tasks);
    double seconds = sw.Elapsed.TotalSeconds;
    var ok = results.Where(r => r.Ok).ToList();
    long tokens = ok.Sum(r => (long)r.Tokens);
    int lost = results.Count(r => r.IsLost);
    return new LevelResult(clients, results.Count, results.Count - ok.Count - lost, lost, seconds, ok.Count / seconds, tokens, tokens / seconds,
        Percentile(ok.Select(r => r.Ttft), 0.5), Percentile(ok.Select(r => r.Ttft), 0.99),
        Percentile(ok.Where(r => r.Tokens > 1).Select(r => r.Tpot), 0.5), Percentile(ok.Where(r => r.Tokens > 1).Select(r => r.Tpot), 0.99),
        ok.Where(r => r.PromptTokens >= 0).Select(r => (double)r.PromptTokens).DefaultIfEmpty(double.NaN).Average());
}

/// <summary>A failed request; the first failure's reason is printed.</summary>
static RequestResult Fail(string why)
{
    if (Interlocked.Exchange(ref FirstFailure.Printed, 1) == 0) Console.Error.WriteLine($"first failure: {why}");
    return RequestResult.Failed;
}

static double Percentile(IEnumerable<double> values, double q)
{
    var v = values.OrderBy(x => x).ToArray();
    if (v.Length == 0) return double.NaN;
    return v[Math.Min(v.Length - 1, (int)Math.Ceiling(q * v.Length) - 1)];
}

static async Task<RequestResult> OneRequest(HttpClient http, string model, Args o, int n, CancellationToken ct)
{
    // The request number leads the prompt: a server that reuses cached prompt prefixes (llama-server's cache_prompt)
    // then evaluates every prompt token, as one without such a cache (Rotor) does.
    string prompt = (o.VaryPrompt ? n.ToString(CultureInfo.InvariantCulture) + ". " : "") + o.Prompt;
    bool chat = o.Endpoint == "chat";
    string input = chat
        ? "\"messages\":[{\"role\":\"user\",\"content\":" + Quoted(prompt) + "}]"
        : "\"prompt\":" + Quoted(prompt);
    string body = "{\"model\":" + Quoted(model) + "," + input + ",\"max_tokens\":" + o.MaxTokens.ToString(CultureInfo.InvariantCulture)
        + ",\"temperature\":" + o.Temperature.ToString(CultureInfo.InvariantCulture) + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
        + (o.IgnoreEos ? ",\"ignore_eos\":true" : "") + "}";
    var sw = Stopwatch.StartNew();
    try
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, chat ? "v1/chat/completions" : "v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        // A server that closes a connection after a streamed response (cpp-httplib's) would fail the next request sent
        // on it: --fresh-connections opens one a request, for every server alike.
        if (o.FreshConnections) req.Headers.ConnectionClose = true;
        using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ct);
        if (!r.IsSuccessStatusCode) return Fail($"HTTP {(int)r.StatusCode}: {await r.Content.ReadAsStringAsync(ct)}");
        // From here on the server accepted the request: a stream that ends without [DONE] is a lost request.
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(ct));
        double? first = null;
        int chunks = 0, usageTokens = -1, promptTokens = -1;
        bool done = false;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") { done = true; break; }
            using var j = JsonDocument.Parse(data);
            if (j.RootElement.TryGetProperty("error", out var err)) return Fail(err.ToString());
            if (j.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                usageTokens = u.GetProperty("completion_tokens").GetInt32();
                if (u.TryGetProperty("prompt_tokens", out var pt) && pt.ValueKind == JsonValueKind.Number) promptTokens = pt.GetInt32();
            }
            if (!j.RootElement.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array) continue;
            foreach (var c in choices.EnumerateArray())
            {
                // Chat chunks carry delta.content, completion chunks text.
                JsonElement t = default;
                bool has = chat ? c.TryGetProperty("delta", out var d) && d.TryGetProperty("content", out t) : c.TryGetProperty("text", out t);
                if (has && t.ValueKind == JsonValueKind.String && t.GetString()!.Length > 0)
                {
                    first ??= sw.Elapsed.TotalSeconds;
                    chunks++;
                }
            }
        }
        double total = sw.Elapsed.TotalSeconds;
        if (!done) return RequestResult.Lost;
        if (first is null) return Fail("no token came");
        int tokens = usageTokens >= 0 ? usageTokens : chunks;
        return new RequestResult(true, tokens, first.Value, tokens > 1 ? (total - first.Value) / (tokens - 1) : 0, PromptTokens: promptTokens);
    }
    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
    {
        return Fail(e.Message);
    }
    catch (Exception e) when (e is IOException or JsonException)
    {
        return RequestResult.Lost;
    }
}

/// <summary>One request: Ok, or refused/failed (an HTTP error or an error event), or lost (accepted, but the stream broke
/// off before [DONE]).</summary>
internal sealed record RequestResult(bool Ok, int Tokens, double Ttft, double Tpot, bool IsLost = false, int PromptTokens = -1)
{
    public static RequestResult Failed { get; } = new(false, 0, 0, 0);
    public static RequestResult Lost { get; } = new(false, 0, 0, 0, true);
}

internal sealed record LevelResult(int Clients, int Requests, int Failed, int Lost, double Seconds, double RequestsPerSecond, long Tokens, double TokensPerSecond,
    double TtftP50, double TtftP99, double TpotP50, double TpotP99, double PromptTokensMean);

internal static class FirstFailure
{
    public static int Printed;
}

internal sealed class Args
{
    public string? Serve, Tokenizer, Url, Model, ApiKey, Json, Label;
    public string Endpoint = "chat";
    public bool IgnoreEos, FreshConnections;
    public int[] Levels = [1, 4, 16, 64];
    public int Seconds = 30, RequestsPerClient = 8, MaxTokens = 128, MaxBatch = 64, Queue = 256;
    public int? Ctx;
    public float Temperature;
    public LmDevice Device = LmDevice.Cpu;
    public string Prompt = "Tell me a story about a little dog who finds a red ball.";
    public bool VaryPrompt = true;

    public static Args Parse(string[] a)
    {
        var o = new Args();
        for (int i = 0; i < a.Length; i++)
        {
            string Next() => i + 1 < a.Length ? a[++i] : throw new RotorException($"{a[i]} needs a value");
            int Int() { string v = Next(); return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) && x > 0 ? x : throw new RotorException($"{a[i - 1]} '{v}' is not a positive number"); }
            switch (a[i])
            {
                case "--serve": o.Serve = Next(); break;
                case "--tokenizer": o.Tokenizer = Next(); break;
                case "--url": o.Url = Next(); break;
                case "--model": o.Model = Next(); break;
                case "--api-key": o.ApiKey = Next(); break;
                case "--json": o.Json = Next(); break;
                case "--clients":
                    string list = Next();
                    o.Levels = [.. list.Split(',').Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) && x > 0 ? x : throw new RotorException($"--clients '{list}': a comma-separated list of positive numbers"))];
                    break;
                case "--seconds": o.Seconds = Int(); break;
                case "--requests": o.RequestsPerClient = Int(); break;
                case "--max-tokens": o.MaxTokens = Int(); break;
                case "--max-batch": o.MaxBatch = Int(); break;
                case "--queue": o.Queue = Int(); break;
                case "--ctx": o.Ctx = Int(); break;
                case "--temperature": o.Temperature = float.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--prompt": o.Prompt = Next(); break;
                case "--same-prompt": o.VaryPrompt = false; break;
                case "--endpoint":
                    o.Endpoint = Next();
                    if (o.Endpoint is not ("chat" or "completions")) throw new RotorException($"--endpoint '{o.Endpoint}' is not chat or completions");
                    break;
                case "--ignore-eos": o.IgnoreEos = true; break;
                case "--fresh-connections": o.FreshConnections = true; break;
                case "--label": o.Label = Next(); break;
                case "--device":
                    string d = Next();
                    o.Device = d switch { "cpu" => LmDevice.Cpu, "cuda" => LmDevice.Cuda, _ => throw new RotorException($"--device '{d}' is not cpu or cuda") };
                    break;
                default: throw new RotorException($"unknown option {a[i]} (--serve MODEL | --url URL --model ID, --clients 1,4,16,64, --seconds N, --requests N, --max-tokens N, --max-batch N, --queue N, --ctx N, --temperature T, --prompt TEXT, --same-prompt, --endpoint chat|completions, --ignore-eos, --fresh-connections, --label NAME, --device cpu|cuda (with --serve), --api-key K, --json FILE)");
            }
        }
        return o;
    }
}

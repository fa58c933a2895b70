using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Answers;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;
using Rotor.Server.Api;
using Rotor.Server.Grounding;
using Rotor.Server.Scheduling;

namespace Rotor.Server;

/// <summary>Settings of a <see cref="RotorServer"/>.</summary>
public sealed record RotorServerOptions
{
    /// <summary>The chat model's id in requests and GET /v1/models.</summary>
    public string ModelId { get; init; } = "rotor";
    /// <summary>Address to listen on (loopback by default).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Port (0 picks a free one; see <see cref="RotorServer.Address"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Keys a request must present as <c>Authorization: Bearer KEY</c> on /v1 and /metrics; none: open.</summary>
    public IReadOnlyList<string> ApiKeys { get; init; } = [];
    /// <summary>Largest request body in bytes (413 beyond).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Tokens a reply takes when the request does not say (cut to what the context leaves).</summary>
    public int DefaultMaxTokens { get; init; } = 256;
    /// <summary>Sampling when a request leaves a value unset.</summary>
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Batching, queue, context and timeout.</summary>
    public SchedulerOptions Scheduler { get; init; } = new();
    /// <summary>How long shutdown lets running requests finish before ending them.</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Log HTTP requests to the console.</summary>
    public bool Log { get; init; }
    /// <summary>How grounded chat decides and builds its prompt, as <c>rotor ask</c>: the adaptive rule
    /// (<see cref="GroundedAnswerOptions.Adaptive"/>, default score; a request's <c>retrieval.adaptive</c> overrides it),
    /// its thresholds (<see cref="GroundedAnswerOptions.Policy"/>), the model rule's closed-book tokens, and the default
    /// top and mode of <see cref="GroundedAnswerOptions.Retrieval"/>. The context is the scheduler's; the answer's room
    /// is each request's.</summary>
    public GroundedAnswerOptions Grounding { get; init; } = new();

    /// <summary>The id of retrieval-grounded chat (the same model answering from retrieved passages).</summary>
    public string GroundedModelId => ModelId + "-rag";
}

/// <summary>
/// Rotor's HTTP server on Kestrel (minimal APIs): OpenAI-compatible <c>POST /v1/chat/completions</c>,
/// <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>GET /v1/models</c>; Rotor's <c>POST /v1/search</c>; retrieval-grounded
/// chat (the model id + "-rag", or a <c>retrieval</c> field) answered with its <c>sources</c>; <c>GET /health</c>,
/// <c>GET /metrics</c> (Prometheus text) and a web page at <c>/</c>. Generation runs on a
/// <see cref="GenerationScheduler"/> (continuous batching). Every error is OpenAI's <c>{"error": {...}}</c>.
/// </summary>
public sealed class RotorServer : IAsyncDisposable
{
    private readonly LanguageModel _model;
    private readonly RotorServerOptions _o;
    private readonly SentenceEmbedder? _embedder;
    private readonly IPassageRetriever? _retriever;
    private readonly IChatGrounding? _grounding;
    private readonly GroundedAnswerer? _answerer;   // owned: made for the default grounding
    private readonly ChatTemplate? _template;
    private readonly WebApplication _app;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly object _embedLock = new();
    private byte[][] _keys;
    private bool _stopped;

    /// <summary>A server for <paramref name="model"/> (not started). <paramref name="embedder"/> enables /v1/embeddings,
    /// <paramref name="retriever"/> /v1/search, <paramref name="grounding"/> grounded chat (default: over the retriever).</summary>
    /// <exception cref="RotorException">An option is out of range.</exception>
    public RotorServer(LanguageModel model, RotorServerOptions? options = null, SentenceEmbedder? embedder = null, IPassageRetriever? retriever = null, IChatGrounding? grounding = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _o = options ?? new RotorServerOptions();
        if (_o.Port is < 0 or > 65535) throw new RotorException($"--port {_o.Port} must be in 0..65535");
        if (!IPAddress.TryParse(_o.Host, out var ip) && _o.Host != "localhost") throw new RotorException($"--host '{_o.Host}' is not an IP address");
        if (_o.MaxBodyBytes <= 0) throw new RotorException($"body limit {_o.MaxBodyBytes} must be positive");
        if (_o.DefaultMaxTokens <= 0) throw new RotorException($"default max tokens {_o.DefaultMaxTokens} must be positive");
        _o.Sampling.Validate("server sampling");
        if (_o.ApiKeys.Any(string.IsNullOrWhiteSpace)) throw new RotorException("--api-key: a key is empty");
        _keys = [.. _o.ApiKeys.Select(Encoding.UTF8.GetBytes)];
        _embedder = embedder; _retriever = retriever;
        if (model.Tokenizer is not null) _template = ChatTemplate.For(model.Tokenizer);
        Metrics = new ServerMetrics();
        Scheduler = new GenerationScheduler(model, _o.Scheduler, Metrics);
        Metrics.Scheduler = Scheduler;
        _grounding = grounding;
        if (grounding is null && retriever is not null && model.Tokenizer is not null)
        {
            // The model rule's closed-book probe is decoded by the scheduler: only its thread runs the model.
            var answers = _o.Grounding with { ContextLength = _o.Scheduler.ContextLength };
            var probe = new ScheduledConfidenceProbe(Scheduler, new GroundedPromptBuilder(ChatTemplate.For(model.Tokenizer, answers.Format)), answers.ConfidenceTokens);
            _answerer = new GroundedAnswerer(model, retriever, answers, probe);
            _grounding = new AnswererGrounding(_answerer);
        }

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        if (_o.Log) builder.Logging.AddSimpleConsole(c => c.SingleLine = true);
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = _o.ShutdownGrace + TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = _o.MaxBodyBytes;
            if (_o.Host == "localhost") k.ListenLocalhost(_o.Port); else k.Listen(ip!, _o.Port);
        });
        _app = builder.Build();
        _app.Lifetime.ApplicationStopping.Register(() => _ = Scheduler.ShutdownAsync(_o.ShutdownGrace));
        _app.Use(Authenticate);
        Map(_app);
    }

    /// <summary>The scheduler that decodes every request.</summary>
    public GenerationScheduler Scheduler { get; }
    /// <summary>The metrics.</summary>
    public ServerMetrics Metrics { get; }
    /// <summary>The options.</summary>
    public RotorServerOptions Options => _o;
    /// <summary>The address it listens on, once started (with the port chosen when 0 was asked).</summary>
    public Uri? Address { get; private set; }

    /// <summary>Starts listening.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        try { await _app.StartAsync(cancellationToken).ConfigureAwait(false); }
        catch (IOException e) { throw new RotorException($"cannot listen on {_o.Host}:{_o.Port}: {e.Message}"); }
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        Address = new Uri(addresses.First());
    }

    /// <summary>Runs until <paramref name="cancellationToken"/> fires (or the process is asked to stop), then shuts down
    /// gracefully.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        if (Address is null) await StartAsync(cancellationToken).ConfigureAwait(false);
        await _app.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
        await StopAsync().ConfigureAwait(false);
    }

    /// <summary>Stops accepting requests, lets running ones finish for <see cref="RotorServerOptions.ShutdownGrace"/>,
    /// ends the rest, and stops listening.</summary>
    public async Task StopAsync()
    {
        if (_stopped) return;
        _stopped = true;
        var drain = Scheduler.ShutdownAsync(_o.ShutdownGrace);
        await _app.StopAsync().ConfigureAwait(false);
        await drain.ConfigureAwait(false);
    }

    /// <summary>Stops (gracefully) and releases the web host.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        Scheduler.Dispose();
        _answerer?.Dispose();
    }

    // ---- routing ----

    private void Map(WebApplication app)
    {
        app.MapPost("/v1/chat/completions", ctx => Guard(ctx, "chat", ChatAsync));
        app.MapPost("/v1/completions", ctx => Guard(ctx, "completions", CompletionsAsync));
        app.MapPost("/v1/embeddings", ctx => Guard(ctx, "embeddings", EmbeddingsAsync));
        app.MapPost("/v1/search", ctx => Guard(ctx, "search", SearchAsync));
        app.MapGet("/v1/models", ctx => Guard(ctx, "models", ModelsAsync));
        app.MapGet("/health", ctx => Guard(ctx, "health", HealthAsync));
        app.MapGet("/metrics", ctx => Guard(ctx, "metrics", async c =>
        {
            c.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await Metrics.Registry.CollectAndExportAsTextAsync(c.Response.Body, c.RequestAborted).ConfigureAwait(false);
        }));
        app.MapGet("/", ctx => Guard(ctx, "page", c => StaticAsync(c, "index.html")));
        foreach (string file in new[] { "index.html", "app.js", "style.css" })
            app.MapGet("/" + file, ctx => Guard(ctx, "page", c => StaticAsync(c, file)));
        app.MapFallback(ctx => Guard(ctx, "unknown", c => throw new ApiException(404, $"unknown path {c.Request.Method} {c.Request.Path}", "invalid_request_error", null, "unknown_url")));
    }

    /// <summary>Runs a handler; turns refusals into OpenAI's error shape and counts the request.</summary>
    private async Task Guard(HttpContext ctx, string endpoint, Func<HttpContext, Task> handler)
    {
        try { await handler(ctx).ConfigureAwait(false); }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            var (status, err) = e switch
            {
                ApiException a => (a.Status, new ErrorDto { Message = a.Message, Type = a.Type, Param = a.Param, Code = a.Code }),
                BadHttpRequestException b when b.StatusCode == 413 => (413, new ErrorDto { Message = $"the request body is larger than {_o.MaxBodyBytes} bytes", Type = "invalid_request_error", Code = "request_too_large" }),
                BadHttpRequestException b => (b.StatusCode, new ErrorDto { Message = b.Message, Type = "invalid_request_error" }),
                JsonException j => (400, new ErrorDto { Message = $"the body is not valid JSON for this endpoint: {j.Message}", Type = "invalid_request_error", Param = j.Path, Code = "invalid_json" }),
                QueueFullException q => (429, new ErrorDto { Message = q.Message, Type = "rate_limit_error", Code = "rate_limit_exceeded" }),
                ShuttingDownException s => (503, new ErrorDto { Message = s.Message, Type = "server_error", Code = "shutting_down" }),
                RotorException r => (400, new ErrorDto { Message = r.Message, Type = "invalid_request_error" }),
                OperationCanceledException when ctx.RequestAborted.IsCancellationRequested => (499, new ErrorDto { Message = "the client closed the request", Type = "invalid_request_error" }),
                _ => (500, new ErrorDto { Message = $"internal error: {e.Message}", Type = "server_error" }),
            };
            if (!ctx.RequestAborted.IsCancellationRequested)
            {
                ctx.Response.StatusCode = status;
                if (status == 429) ctx.Response.Headers.RetryAfter = "1";
                await WriteJson(ctx, new ErrorResponseDto { Error = err }, ServerJson.Default.ErrorResponseDto).ConfigureAwait(false);
            }
            else ctx.Response.StatusCode = status;
        }
        catch (Exception) when (ctx.Response.HasStarted)
        {
            // A stream already under way: the error (if any) went out as an event; a vanished client needs nothing.
        }
        Metrics.Request(endpoint, ctx.Response.StatusCode);
    }

    private async Task Authenticate(HttpContext ctx, RequestDelegate next)
    {
        var path = ctx.Request.Path;
        if (_keys.Length > 0 && (path.StartsWithSegments("/v1") || path.StartsWithSegments("/metrics")))
        {
            string header = ctx.Request.Headers.Authorization.ToString();
            const string bearer = "Bearer ";
            bool ok = false;
            if (header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase))
            {
                byte[] given = Encoding.UTF8.GetBytes(header[bearer.Length..].Trim());
                foreach (var k in _keys) ok |= CryptographicOperations.FixedTimeEquals(given, k);
            }
            if (!ok)
            {
                await Guard(ctx, "unauthorized", _ => throw new ApiException(401,
                    header.Length == 0 ? "no API key given: send Authorization: Bearer KEY" : "the API key is not valid",
                    "invalid_request_error", null, "invalid_api_key")).ConfigureAwait(false);
                return;
            }
        }
        await next(ctx).ConfigureAwait(false);
    }

    // ---- chat and completions ----

    private async Task ChatAsync(HttpContext ctx)
    {
        var req = await ReadJson(ctx, ServerJson.Default.CompletionRequestDto).ConfigureAwait(false);
        bool grounded = CheckModel(req.Model, allowGrounded: true) || req.Retrieval is not null;
        var template = _template ?? throw new ApiException(400, $"{_model.Source}: the model has no tokenizer, so chat is not available", code: "no_tokenizer");
        if (req.Messages is null || req.Messages.Count == 0) throw ApiException.Invalid("messages", "messages must hold at least one message");
        var messages = new List<(string Role, string Content)>();
        for (int i = 0; i < req.Messages.Count; i++)
        {
            var m = req.Messages[i] ?? throw ApiException.Invalid($"messages[{i}]", $"messages[{i}] is null");
            string role = m.Role switch
            {
                "system" or "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                null => throw ApiException.Invalid($"messages[{i}].role", $"messages[{i}] has no role"),
                _ => throw ApiException.Invalid($"messages[{i}].role", $"messages[{i}].role '{m.Role}' is not supported (system, user, assistant)"),
            };
            messages.Add((role, m.Content ?? throw ApiException.Invalid($"messages[{i}].content", $"messages[{i}] has no content")));
        }
        var (gen, askedMax) = MapOptions(req, chat: true);
        IReadOnlyList<int> prompt;
        List<SourceDto>? sources = null;
        string? decision = null;
        RetrievalDecisionDto? details = null;
        if (grounded)
        {
            var grounding = _grounding ?? throw new ApiException(400, "retrieval-grounded chat needs an index: start rotor serve with --index DIR", param: "retrieval", code: "retrieval_unavailable");
            int top = req.Retrieval?.Top ?? _o.Grounding.Retrieval.Top;
            if (top is < 1 or > 20) throw ApiException.Invalid("retrieval.top", $"retrieval.top {top} must be in 1..20");
            var mode = req.Retrieval?.Mode is null ? _o.Grounding.Retrieval.Mode : ParseMode(req.Retrieval.Mode, "retrieval.mode");
            AdaptiveMode? adaptive = req.Retrieval?.Adaptive switch
            {
                null => null,
                "score" => AdaptiveMode.Score,
                "model" => AdaptiveMode.Model,
                "off" => AdaptiveMode.Off,
                var a => throw ApiException.Invalid("retrieval.adaptive", $"retrieval.adaptive '{a}' is not score, model or off"),
            };
            int reserve = Math.Min(askedMax ?? _o.DefaultMaxTokens, _o.Scheduler.ContextLength / 2);
            var g = await grounding.GroundAsync(messages, new GroundingRequest(top, mode, reserve) { Adaptive = adaptive }, _o.Scheduler.ContextLength, ctx.RequestAborted).ConfigureAwait(false);
            prompt = g.PromptIds;
            decision = g.Decision;
            details = g.Details is { } d ? DecisionDto(d) : null;
            sources = [.. g.Sources.Select(s => new SourceDto { Number = s.Number, Id = s.PassageId, Title = s.Title, Section = s.Section, Text = s.Text, Score = s.Score, Truncated = s.Truncated })];
        }
        else prompt = template.Render(messages, addGenerationPrompt: true);
        await GenerateAsync(ctx, req, prompt, gen, askedMax, chat: true, sources, decision, details).ConfigureAwait(false);
    }

    private static RetrievalDecisionDto DecisionDto(RetrievalDecision d) => new()
    {
        Mode = d.Mode.ToString().ToLowerInvariant(), Retrieve = d.Retrieve, Count = d.Count, Reason = d.Reason,
        Confidence = d.Confidence is { } c ? new ConfidenceDto { MeanMaxProbability = c.MeanMaxProbability, MeanEntropy = c.MeanEntropy, Steps = c.Steps, ClosedBookText = c.Text } : null,
    };

    private async Task CompletionsAsync(HttpContext ctx)
    {
        var req = await ReadJson(ctx, ServerJson.Default.CompletionRequestDto).ConfigureAwait(false);
        CheckModel(req.Model, allowGrounded: false);
        var tok = _model.Tokenizer ?? throw new ApiException(400, $"{_model.Source}: the model has no tokenizer, so text prompts are not available", code: "no_tokenizer");
        if (req.Prompt is null || req.Prompt.Count == 0) throw ApiException.Invalid("prompt", "prompt must be a string or token ids");
        if (req.Prompt.Count > 1) throw ApiException.Invalid("prompt", "one prompt a request: send the others as separate requests (they are batched together)");
        IReadOnlyList<int> ids;
        string? text;
        if (req.Prompt.Ids is { } idLists)
        {
            // Token ids go in as they are (no BOS added), so their log-probabilities line up with what was sent.
            ids = idLists[0];
            if (ids.Count == 0) throw ApiException.Invalid("prompt", "the prompt is empty");
            int v = _model.Config.VocabSize;
            foreach (int id in ids)
                if ((uint)id >= (uint)v) throw ApiException.Invalid("prompt", $"token id {id} is outside the vocabulary (0..{v - 1})");
            text = req.Echo == true ? tok.Decode(ids) : null;   // only an echo gives the prompt's text back
        }
        else
        {
            text = req.Prompt.Texts![0];
            if (text.Length == 0) throw ApiException.Invalid("prompt", "the prompt is empty");
            ids = tok.Encode(text, addBos: true);
        }
        var (gen, askedMax) = MapOptions(req, chat: false);
        await GenerateAsync(ctx, req, ids, gen, askedMax, chat: false, null, null, null, req.Echo == true ? text : null).ConfigureAwait(false);
    }

    /// <summary>True when the id names grounded chat; throws 404 for an unknown model.</summary>
    private bool CheckModel(string? model, bool allowGrounded)
    {
        if (string.IsNullOrEmpty(model)) throw ApiException.Invalid("model", "model is required (see GET /v1/models)");
        if (model == _o.ModelId) return false;
        if (allowGrounded && model == _o.GroundedModelId) return true;
        throw new ApiException(404, $"the model '{model}' does not exist here; this server has {string.Join(", ", ModelIds())}", "invalid_request_error", "model", "model_not_found");
    }

    private (GenerationOptions Options, int? AskedMax) MapOptions(CompletionRequestDto req, bool chat)
    {
        int? max = req.MaxCompletionTokens ?? req.MaxTokens;
        string maxName = req.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        if (max is < 1) throw ApiException.Invalid(maxName, $"{maxName} {max} must be at least 1");
        if (max >= _o.Scheduler.ContextLength)
            throw ApiException.Invalid(maxName, $"{maxName} {max} does not fit the context of {_o.Scheduler.ContextLength} tokens", "context_length_exceeded");
        if (req.N is { } n && n != 1) throw ApiException.Invalid("n", $"n {n}: one choice a request");
        if (req.Temperature is { } t && !(t >= 0 && t <= 2)) throw ApiException.Invalid("temperature", $"temperature {t} must be in [0, 2]");
        if (req.TopP is { } p && !(p > 0 && p <= 1)) throw ApiException.Invalid("top_p", $"top_p {p} must be in (0, 1]");
        if (req.TopK is < 0) throw ApiException.Invalid("top_k", $"top_k {req.TopK} must be 0 or more");
        if (req.MinP is { } mp && !(mp >= 0 && mp < 1)) throw ApiException.Invalid("min_p", $"min_p {mp} must be in [0, 1)");
        if (req.FrequencyPenalty is { } fp && !(fp >= -2 && fp <= 2)) throw ApiException.Invalid("frequency_penalty", $"frequency_penalty {fp} must be in [-2, 2]");
        var stop = req.Stop ?? [];
        if (stop.Count > 4) throw ApiException.Invalid("stop", $"stop holds {stop.Count} texts, at most 4");
        if (stop.Any(s => s.Length == 0)) throw ApiException.Invalid("stop", "a stop text is empty");
        var s = _o.Sampling;
        s = s with
        {
            Temperature = req.Temperature ?? s.Temperature,
            TopP = req.TopP ?? s.TopP,
            TopK = req.TopK ?? s.TopK,
            MinP = req.MinP ?? s.MinP,
            Seed = req.Seed is { } seed ? unchecked((int)seed) : s.Seed,
            RepetitionPenalty = req.FrequencyPenalty is { } f && f > 0 ? 1f + f : s.RepetitionPenalty,
        };
        return (new GenerationOptions { MaxTokens = max ?? _o.DefaultMaxTokens, Sampling = s, Stop = stop, Logprobs = Logprobs(req, chat) }, max);
    }

    /// <summary>The alternatives a token the request asks for (null: no log-probabilities): chat's logprobs true with
    /// top_logprobs, or completions' logprobs count.</summary>
    private static int? Logprobs(CompletionRequestDto req, bool chat)
    {
        const int max = TokenLogprobs.MaxTop;
        var kind = req.Logprobs?.ValueKind ?? JsonValueKind.Null;
        if (chat)
        {
            if (kind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                throw ApiException.Invalid("logprobs", "logprobs must be true or false");
            bool want = kind == JsonValueKind.True;
            if (req.TopLogprobs is { } top)
            {
                if (!want) throw ApiException.Invalid("top_logprobs", "top_logprobs needs logprobs: true");
                if (top is < 0 or > max) throw ApiException.Invalid("top_logprobs", $"top_logprobs {top} must be in 0..{max}");
            }
            return want ? req.TopLogprobs ?? 0 : null;
        }
        if (kind == JsonValueKind.Null) return null;
        if (kind != JsonValueKind.Number || !req.Logprobs!.Value.TryGetInt32(out int n) || n is < 0 or > max)
            throw ApiException.Invalid("logprobs", $"logprobs must be an integer in 0..{max} (the most likely tokens given at each position)");
        return n;
    }

    /// <summary>A generated token's text and bytes (<paramref name="previous"/>: the id before it, which decides a
    /// SentencePiece token's leading space).</summary>
    private (string Text, List<int> Bytes) TokenText(int id, int? previous)
    {
        byte[] b = _model.Tokenizer!.TokenBytes(id, previous);
        return (Encoding.UTF8.GetString(b), [.. b.Select(x => (int)x)]);
    }

    /// <summary>The log-probabilities of generated tokens (each with the id before it) in the endpoint's shape;
    /// <paramref name="offset"/> is where the next completion token's text starts.</summary>
    private JsonElement LogprobsJson(bool chat, List<(int Id, int? Previous, TokenLogprobs? Lp)> tokens, ref int offset)
    {
        if (chat)
        {
            var c = new ChatLogprobsDto();
            foreach (var (id, prev, lp) in tokens)
            {
                var (text, bytes) = TokenText(id, prev);
                var item = new ChatTokenLogprobDto { Token = text, Logprob = lp!.Chosen.Logprob, Bytes = bytes };
                foreach (var t in lp.Top)
                {
                    var (tt, tb) = TokenText(t.Id, prev);
                    item.TopLogprobs.Add(new TopLogprobDto { Token = tt, Logprob = t.Logprob, Bytes = tb });
                }
                c.Content.Add(item);
            }
            return JsonSerializer.SerializeToElement(c, ServerJson.Default.ChatLogprobsDto);
        }
        var d = new TextLogprobsDto();
        foreach (var (id, prev, lp) in tokens)
        {
            string text = TokenText(id, prev).Text;
            d.Tokens.Add(text);
            d.TextOffset.Add(offset);
            offset += text.Length;
            // An echoed prompt's first token has nothing before it to be scored under.
            d.TokenLogprobs.Add(lp?.Chosen.Logprob);
            if (lp is null) { d.TopLogprobs.Add(null); continue; }
            var top = new Dictionary<string, float>();
            // Two ids of the same text (rare: bytes that are not whole characters) keep the likelier.
            foreach (var t in lp.Top) top.TryAdd(TokenText(t.Id, prev).Text, t.Logprob);
            d.TopLogprobs.Add(top);
        }
        return JsonSerializer.SerializeToElement(d, ServerJson.Default.TextLogprobsDto);
    }

    private async Task GenerateAsync(HttpContext ctx, CompletionRequestDto req, IReadOnlyList<int> prompt, GenerationOptions gen, int? askedMax, bool chat, List<SourceDto>? sources, string? decision, RetrievalDecisionDto? details,
        string? echo = null)
    {
        int ctxLen = _o.Scheduler.ContextLength;
        string promptParam = chat ? "messages" : "prompt";
        if (prompt.Count >= ctxLen)
            throw ApiException.Invalid(promptParam, $"the prompt has {prompt.Count} tokens, the context {ctxLen}: shorten it", "context_length_exceeded");
        if (askedMax is { } am && prompt.Count + am > ctxLen)
            throw ApiException.Invalid(promptParam, $"the prompt's {prompt.Count} tokens and max_tokens {am} exceed the context of {ctxLen} tokens", "context_length_exceeded");
        gen = gen with { MaxTokens = Math.Min(gen.MaxTokens, ctxLen - prompt.Count) };

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var stream = Scheduler.Submit(new GenerationRequest(prompt, gen, cts.Token) { PromptLogprobs = echo is not null && gen.Logprobs is not null });
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = req.Model!;
        try
        {
            if (req.Stream != true)
            {
                var outcome = await stream.Completion.ConfigureAwait(false);
                ThrowIfFailed(outcome, ctx);
                var choice = new ChoiceDto { FinishReason = Finish(outcome.End) };
                if (outcome.Logprobs is { } lps)
                {
                    var items = PromptItems(prompt, outcome.PromptLogprobs);
                    for (int i = 0; i < lps.Count; i++) items.Add((outcome.Ids[i], i == 0 ? prompt[^1] : outcome.Ids[i - 1], lps[i]));
                    int offset = 0;
                    choice.Logprobs = LogprobsJson(chat, items, ref offset);
                }
                if (chat) choice.Message = new ResponseMessageDto { Role = "assistant", Content = outcome.Text }; else choice.Text = echo + outcome.Text;
                await WriteJson(ctx, new CompletionResponseDto
                {
                    Id = id, Object = chat ? "chat.completion" : "text_completion", Created = created, Model = model, Choices = [choice],
                    Usage = Usage(outcome), Sources = sources, RetrievalDecision = decision, Retrieval = details,
                }, ServerJson.Default.CompletionResponseDto).ConfigureAwait(false);
                return;
            }

            ctx.Response.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            string obj = chat ? "chat.completion.chunk" : "text_completion";
            // A token's log-probabilities go with the next chunk sent: a token whose text is held back (a possible stop
            // text, part of a character) sends none of its own.
            var pending = gen.Logprobs is null ? null : new List<(int Id, int? Previous, TokenLogprobs? Lp)>();
            int previous = prompt[^1], textOffset = 0;
            CompletionResponseDto Chunk(string? text, string? finish, bool first = false)
            {
                var c = new ChoiceDto { FinishReason = finish };
                if (pending is { Count: > 0 }) { c.Logprobs = LogprobsJson(chat, pending, ref textOffset); pending.Clear(); }
                if (chat) c.Delta = new ResponseMessageDto { Role = first ? "assistant" : null, Content = text ?? (first ? "" : null) };
                else c.Text = text ?? "";
                return new CompletionResponseDto { Id = id, Object = obj, Created = created, Model = model, Choices = [c], Sources = first ? sources : null, RetrievalDecision = first ? decision : null, Retrieval = first ? details : null };
            }
            if (chat) await SendEvent(ctx, Chunk(null, null, first: true)).ConfigureAwait(false);
            else if (echo is null) await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
            // An echoed prompt goes out as the first chunk once it has run (with its scores where asked for).
            bool echoed = echo is null;
            await foreach (var t in stream.Tokens.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
            {
                if (!echoed)
                {
                    echoed = true;
                    if (pending is not null) pending.AddRange(PromptItems(prompt, stream.PromptLogprobs));
                    await SendEvent(ctx, Chunk(echo, null)).ConfigureAwait(false);
                }
                if (t.Logprobs is { } lp && pending is not null) { pending.Add((t.Id, previous, lp)); }
                if (t.Id >= 0) previous = t.Id;
                if (t.Text.Length > 0) await SendEvent(ctx, Chunk(t.Text, null)).ConfigureAwait(false);
            }
            var end = await stream.Completion.ConfigureAwait(false);
            if (end.End is GenerationEnd.Cancelled) return;
            if (!echoed && end.End is not (GenerationEnd.TimedOut or GenerationEnd.Shutdown or GenerationEnd.Failed))
            {
                // No token was generated (the first was an end token): the echo still goes out.
                if (pending is not null) pending.AddRange(PromptItems(prompt, end.PromptLogprobs));
                await SendEvent(ctx, Chunk(echo, null)).ConfigureAwait(false);
            }
            if (end.End is GenerationEnd.TimedOut or GenerationEnd.Shutdown or GenerationEnd.Failed)
            {
                var (_, err) = FailureOf(end);
                await SendData(ctx, JsonSerializer.Serialize(new ErrorResponseDto { Error = err }, ServerJson.Default.ErrorResponseDto)).ConfigureAwait(false);
            }
            else
            {
                await SendEvent(ctx, Chunk(null, Finish(end.End))).ConfigureAwait(false);
                if (req.StreamOptions?.IncludeUsage == true)
                    await SendEvent(ctx, new CompletionResponseDto { Id = id, Object = obj, Created = created, Model = model, Choices = [], Usage = Usage(end) }).ConfigureAwait(false);
            }
            await SendData(ctx, "[DONE]").ConfigureAwait(false);
        }
        finally
        {
            // Whatever happened to the client, the sequence leaves the batch.
            await cts.CancelAsync().ConfigureAwait(false);
        }
    }

    /// <summary>An echoed prompt's scored tokens (the first without a score), or an empty list without them.</summary>
    private static List<(int Id, int? Previous, TokenLogprobs? Lp)> PromptItems(IReadOnlyList<int> prompt, IReadOnlyList<TokenLogprobs>? scores)
    {
        var items = new List<(int Id, int? Previous, TokenLogprobs? Lp)>();
        if (scores is null) return items;
        items.Add((prompt[0], null, null));
        for (int i = 1; i < prompt.Count; i++) items.Add((prompt[i], prompt[i - 1], scores[i - 1]));
        return items;
    }

    private static string Finish(GenerationEnd end) => end == GenerationEnd.Stop ? "stop" : "length";

    private static UsageDto Usage(GenerationOutcome o) => new()
    {
        PromptTokens = o.PromptTokens, CompletionTokens = o.Ids.Count, TotalTokens = o.PromptTokens + o.Ids.Count,
        PromptTokensDetails = new() { CachedTokens = o.CachedPromptTokens },
    };

    internal static (int Status, ErrorDto Error) FailureOf(GenerationOutcome o) => o.End switch
    {
        GenerationEnd.TimedOut => (504, new ErrorDto { Message = "the request ran past the server's time limit", Type = "timeout_error", Code = "timeout" }),
        GenerationEnd.Shutdown => (503, new ErrorDto { Message = "the server shut down before the request finished", Type = "server_error", Code = "shutting_down" }),
        _ => (500, new ErrorDto { Message = $"generation failed: {o.Error}", Type = "server_error" }),
    };

    private static void ThrowIfFailed(GenerationOutcome o, HttpContext ctx)
    {
        if (o.End == GenerationEnd.Cancelled) throw new OperationCanceledException(ctx.RequestAborted);
        if (o.End is GenerationEnd.TimedOut or GenerationEnd.Shutdown or GenerationEnd.Failed)
        {
            var (status, e) = FailureOf(o);
            throw new ApiException(status, e.Message, e.Type, null, e.Code);
        }
    }

    private static Task SendEvent(HttpContext ctx, CompletionResponseDto chunk)
        => SendData(ctx, JsonSerializer.Serialize(chunk, ServerJson.Default.CompletionResponseDto));

    private static async Task SendData(HttpContext ctx, string data)
    {
        await ctx.Response.WriteAsync("data: " + data + "\n\n", ctx.RequestAborted).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    // ---- embeddings, search, models, health, page ----

    private async Task EmbeddingsAsync(HttpContext ctx)
    {
        var req = await ReadJson(ctx, ServerJson.Default.EmbeddingRequestDto).ConfigureAwait(false);
        var embedder = _embedder ?? throw new ApiException(400, "embeddings are not available: the embedding model did not load on this server", code: "embeddings_unavailable");
        if (string.IsNullOrEmpty(req.Model)) throw ApiException.Invalid("model", "model is required (see GET /v1/models)");
        if (req.Model != embedder.ModelId)
            throw new ApiException(404, $"the embedding model '{req.Model}' does not exist here; this server has {embedder.ModelId}", "invalid_request_error", "model", "model_not_found");
        if (req.Input is null || req.Input.Count == 0) throw ApiException.Invalid("input", "input must be a string or a non-empty array of strings");
        if (req.Input.Count > 2048) throw ApiException.Invalid("input", $"input holds {req.Input.Count} texts, at most 2048");
        for (int i = 0; i < req.Input.Count; i++) if (req.Input[i].Length == 0) throw ApiException.Invalid($"input[{i}]", $"input[{i}] is empty");
        if (req.Dimensions is { } d && d != embedder.Dimensions) throw ApiException.Invalid("dimensions", $"dimensions {d}: the model gives {embedder.Dimensions}");
        bool base64 = req.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            _ => throw ApiException.Invalid("encoding_format", $"encoding_format '{req.EncodingFormat}' is not float or base64"),
        };
        int dim = embedder.Dimensions;
        var vectors = new float[req.Input.Count * dim];
        long tokens = await Task.Run(() =>
        {
            // Tokens are read from the embedder's running count, so calls are serialized (the embedder batches inside).
            lock (_embedLock)
            {
                long before = embedder.Timings.Tokens;
                embedder.Embed(req.Input, vectors, cancellationToken: ctx.RequestAborted);
                return embedder.Timings.Tokens - before;
            }
        }, ctx.RequestAborted).ConfigureAwait(false);
        var resp = new EmbeddingResponseDto { Model = embedder.ModelId, Usage = new UsageDto { PromptTokens = (int)tokens, TotalTokens = (int)tokens } };
        for (int i = 0; i < req.Input.Count; i++)
        {
            var v = vectors.AsSpan(i * dim, dim);
            JsonElement e = base64
                ? JsonSerializer.SerializeToElement(Convert.ToBase64String(MemoryMarshal.AsBytes(v)), ServerJson.Default.String)
                : JsonSerializer.SerializeToElement(v.ToArray(), ServerJson.Default.SingleArray);
            resp.Data.Add(new EmbeddingDto { Index = i, Embedding = e });
        }
        await WriteJson(ctx, resp, ServerJson.Default.EmbeddingResponseDto).ConfigureAwait(false);
    }

    private async Task SearchAsync(HttpContext ctx)
    {
        var req = await ReadJson(ctx, ServerJson.Default.SearchRequestDto).ConfigureAwait(false);
        var retriever = _retriever ?? throw new ApiException(404, "search needs an index: start rotor serve with --index DIR", code: "retrieval_unavailable");
        if (string.IsNullOrWhiteSpace(req.Query)) throw ApiException.Invalid("query", "query must be a non-empty string");
        int top = req.Top ?? 5;
        if (top is < 1 or > 100) throw ApiException.Invalid("top", $"top {top} must be in 1..100");
        var mode = ParseMode(req.Mode, "mode");
        var r = await Task.Run(() => retriever.SearchAsync(req.Query, new RetrievalOptions { Top = top, Mode = mode }, ctx.RequestAborted), ctx.RequestAborted).ConfigureAwait(false);
        var resp = new SearchResponseDto { Milliseconds = r.EmbedMilliseconds + r.SearchMilliseconds };
        int n = 0;
        foreach (var h in r.Hits)
            resp.Data.Add(new SourceDto { Number = ++n, Id = h.Passage.Id, Title = h.Passage.Title, Section = h.Passage.Section, Text = h.Passage.Text, Score = h.Score });
        await WriteJson(ctx, resp, ServerJson.Default.SearchResponseDto).ConfigureAwait(false);
    }

    private static RetrievalMode ParseMode(string? mode, string param) => mode switch
    {
        null or "hybrid" => RetrievalMode.Hybrid,
        "dense" => RetrievalMode.Dense,
        "lexical" => RetrievalMode.Lexical,
        _ => throw ApiException.Invalid(param, $"{param} '{mode}' is not hybrid, dense or lexical"),
    };

    private IEnumerable<string> ModelIds()
    {
        yield return _o.ModelId;
        if (_grounding is not null) yield return _o.GroundedModelId;
        if (_embedder is not null) yield return _embedder.ModelId;
    }

    private Task ModelsAsync(HttpContext ctx)
        => WriteJson(ctx, new ModelListDto { Data = [.. ModelIds().Select(m => new ModelDto { Id = m, Created = _created })] }, ServerJson.Default.ModelListDto);

    private Task HealthAsync(HttpContext ctx)
    {
        bool up = Scheduler.Accepting;
        if (!up) ctx.Response.StatusCode = 503;
        return WriteJson(ctx, new HealthDto
        {
            Status = up ? "ok" : "shutting_down", Model = _o.ModelId, Queue = Scheduler.QueueLength, Active = Scheduler.ActiveCount,
            Retrieval = _retriever is not null, Embeddings = _embedder is not null,
        }, ServerJson.Default.HealthDto);
    }

    private static async Task StaticAsync(HttpContext ctx, string file)
    {
        using var s = typeof(RotorServer).Assembly.GetManifestResourceStream("wwwroot/" + file)
            ?? throw new ApiException(404, $"unknown path GET /{file}", code: "unknown_url");
        ctx.Response.ContentType = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            _ => "application/octet-stream",
        };
        await s.CopyToAsync(ctx.Response.Body, ctx.RequestAborted).ConfigureAwait(false);
    }

    // ---- JSON ----

    private static async Task<T> ReadJson<T>(HttpContext ctx, JsonTypeInfo<T> type) where T : class
    {
        T? value;
        try { value = await JsonSerializer.DeserializeAsync(ctx.Request.Body, type, ctx.RequestAborted).ConfigureAwait(false); }
        catch (JsonException e)
        {
            string where = e.Path is { Length: > 1 } p ? $" at {p}" : "";
            // STJ's own type errors say "could not be converted"; Rotor's converters say what they expected; the
            // reader's errors are syntax.
            string what = e.Message.Contains("could not be converted", StringComparison.Ordinal) ? "a field has the wrong type"
                : e.Message.StartsWith("expected ", StringComparison.Ordinal) || e.Message.Contains("content part", StringComparison.Ordinal) ? "a field has the wrong type (" + e.Message + ")"
                : "malformed JSON";
            throw new ApiException(400, $"the body is not a valid request: {what}{where}", "invalid_request_error", e.Path is { Length: > 1 } pp ? pp.TrimStart('$', '.') : null, "invalid_json");
        }
        return value ?? throw new ApiException(400, "the body must be a JSON object", code: "invalid_json");
    }

    private static async Task WriteJson<T>(HttpContext ctx, T value, JsonTypeInfo<T> type)
    {
        ctx.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(ctx.Response.Body, value, type, ctx.RequestAborted).ConfigureAwait(false);
    }

    internal static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Chat;

/// <summary>Options of a <see cref="RotorChatClient"/>.</summary>
public sealed record RotorChatClientOptions
{
    /// <summary>The chat format; null detects it from the model's template and vocabulary.</summary>
    public ChatFormat? Format { get; init; }
    /// <summary>Context length of the client's session (default: the model's, at most 4096).</summary>
    public int? ContextLength { get; init; }
    /// <summary>Sampling when a request's <see cref="ChatOptions"/> leaves a value unset.</summary>
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Tokens a reply takes at most when the request does not say.</summary>
    public int MaxOutputTokens { get; init; } = 512;
    /// <summary>The model id reported in responses.</summary>
    public string ModelId { get; init; } = "rotor";
}

/// <summary>
/// A Microsoft.Extensions.AI chat client over a <see cref="LanguageModel"/>: the conversation is rendered with the
/// model's chat template, the reply is generated (streamed or whole) on one session that keeps the conversation's
/// cached prefix between calls, and <see cref="ChatOptions"/> map to the sampler (temperature, top-p, top-k, seed, stop
/// sequences, max output tokens, frequency penalty as a repetition penalty). Calls are served one at a time.
/// </summary>
public sealed class RotorChatClient : IChatClient
{
    private readonly LanguageModel _model;
    private readonly RotorChatClientOptions _options;
    private readonly ChatTemplate _template;
    private readonly InferenceSession _session;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>A client for <paramref name="model"/> (which must have a tokenizer).</summary>
    /// <exception cref="RotorException">The model has no tokenizer, or its vocabulary lacks the chat format's tokens.</exception>
    public RotorChatClient(LanguageModel model, RotorChatClientOptions? options = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options ?? new RotorChatClientOptions();
        _template = ChatTemplate.For(model.RequireTokenizer(), _options.Format);
        _session = model.CreateSession(_options.ContextLength);
    }

    /// <summary>The chat format in use.</summary>
    public ChatFormat Format => _template.Format;

    /// <summary>The prompt ids of <paramref name="messages"/> with the assistant's turn opened.</summary>
    public IReadOnlyList<int> RenderPrompt(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return _template.Render(messages.Select(m => (m.Role.Value, m.Text ?? "")), addGenerationPrompt: true);
    }

    /// <summary>Generation options for <paramref name="options"/> over the client's defaults.</summary>
    public GenerationOptions MapOptions(ChatOptions? options)
    {
        var s = _options.Sampling;
        if (options is not null)
        {
            s = s with
            {
                Temperature = options.Temperature ?? s.Temperature,
                TopP = options.TopP ?? s.TopP,
                TopK = options.TopK ?? s.TopK,
                Seed = options.Seed is { } seed ? unchecked((int)seed) : s.Seed,
                RepetitionPenalty = options.FrequencyPenalty is { } fp && fp > 0 ? 1f + fp : s.RepetitionPenalty,
            };
        }
        s.Validate("chat options");
        int max = options?.MaxOutputTokens ?? _options.MaxOutputTokens;
        if (max <= 0) throw new RotorException($"chat options: max output tokens {max} must be positive");
        return new GenerationOptions { MaxTokens = max, Sampling = s, Stop = options?.StopSequences?.ToArray() ?? [] };
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var prompt = RenderPrompt(messages);
        var gen = MapOptions(options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var g = new TextGenerator(_session);
            var r = await Task.Run(() => g.Complete(prompt, gen, cancellationToken), cancellationToken).ConfigureAwait(false);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, r.Text))
            {
                ModelId = _options.ModelId,
                FinishReason = Map(r.Finish),
                CreatedAt = DateTimeOffset.UtcNow,
                Usage = Usage(r),
            };
        }
        finally { _gate.Release(); }
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var prompt = RenderPrompt(messages);
        var gen = MapOptions(options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var g = new TextGenerator(_session);
            string id = Guid.NewGuid().ToString("N");
            using var e = g.Generate(prompt, gen, cancellationToken).GetEnumerator();
            while (await Task.Run(e.MoveNext, cancellationToken).ConfigureAwait(false))
            {
                if (e.Current.Text.Length == 0) continue;
                yield return new ChatResponseUpdate(ChatRole.Assistant, e.Current.Text) { ModelId = _options.ModelId, ResponseId = id };
            }
            var r = g.LastResult!;
            yield return new ChatResponseUpdate
            {
                Role = ChatRole.Assistant, ModelId = _options.ModelId, ResponseId = id, FinishReason = Map(r.Finish),
                Contents = [new UsageContent(Usage(r))],
            };
        }
        finally { _gate.Release(); }
    }

    /// <summary>The counts of <paramref name="r"/>; the prompt tokens the session still held from the conversation's
    /// earlier turns (not run again) as cached input.</summary>
    private static UsageDetails Usage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptIds.Count, OutputTokenCount = r.Ids.Count, TotalTokenCount = r.PromptIds.Count + r.Ids.Count,
        CachedInputTokenCount = r.CachedPromptTokens,
    };

    private static ChatFinishReason Map(FinishReason f) => f == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length;

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return new ChatClientMetadata("rotor", null, _options.ModelId);
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_model)) return _model;
        return null;
    }

    /// <summary>Releases the gate (the model belongs to the caller).</summary>
    public void Dispose() => _gate.Dispose();
}

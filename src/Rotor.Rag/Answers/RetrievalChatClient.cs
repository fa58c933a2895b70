using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.AI;
using Rotor.Lm;
using Rotor.Lm.Chat;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Rag.Answers;

/// <summary>Options of a <see cref="RetrievalChatClient"/>.</summary>
public sealed record RetrievalChatOptions
{
    /// <summary>The search; <see cref="RetrievalOptions.Top"/> is the most passages put in a prompt.</summary>
    public RetrievalOptions Retrieval { get; init; } = RetrievalOptions.Default;
    /// <summary>The adaptive rule. <see cref="AdaptiveMode.Model"/> needs <see cref="Confidence"/> or an inner client
    /// that exposes its <see cref="LanguageModel"/> (a <see cref="RotorChatClient"/> does).</summary>
    public AdaptiveMode Adaptive { get; init; } = AdaptiveMode.Score;
    /// <summary>Thresholds of both rules.</summary>
    public AdaptivePolicy Policy { get; init; } = AdaptivePolicy.Default;
    /// <summary>The model's confidence for <see cref="AdaptiveMode.Model"/> (default: a <see cref="ClosedBookConfidence"/>
    /// on the inner client's model).</summary>
    public IModelConfidence? Confidence { get; init; }
    /// <summary>Context length of the inner model (default: the inner Rotor model's, at most 4096; 4096 for another client).</summary>
    public int? ContextLength { get; init; }
    /// <summary>Answer tokens kept free when a request does not set <see cref="ChatOptions.MaxOutputTokens"/>.</summary>
    public int MaxAnswerTokens { get; init; } = 256;
    /// <summary>Counts a prompt's tokens for an inner client whose model Rotor does not hold (default:
    /// <see cref="GroundedPromptBuilder.Utf8UpperBound"/>). Unused when the inner client exposes a <see cref="LanguageModel"/>.</summary>
    public Func<IReadOnlyList<PromptMessage>, int>? TokenCounter { get; init; }
}

/// <summary>
/// A Microsoft.Extensions.AI chat client that grounds any inner client's answers in retrieved passages: for the last
/// user message it decides whether to retrieve (<see cref="AdaptiveMode"/>), puts the passages that fit the context
/// budget into the conversation, numbered (<see cref="GroundedPromptBuilder"/>: a system message of instructions, the
/// user message replaced by sources + question), and passes it on. The response's
/// <see cref="ChatResponse.AdditionalProperties"/> carry the sources (<see cref="SourcesKey"/>: a list of
/// <see cref="AnswerSource"/>), the decision (<see cref="DecisionKey"/>: a <see cref="RetrievalDecision"/>) and the
/// citations mapped to the sources (<see cref="CitationsKey"/>: a list of <see cref="Citation"/>). When streaming, the
/// first update carries the sources and the decision, and a last update (no text) the citations.
/// <code>
/// IChatClient chat = new ChatClientBuilder(new RotorChatClient(model))
///     .Use(inner => new RetrievalChatClient(inner, index.Retriever))
///     .Build();
/// var response = await chat.GetResponseAsync("Who was Aristotle's teacher?");
/// var sources = (IReadOnlyList&lt;AnswerSource&gt;)response.AdditionalProperties![RetrievalChatClient.SourcesKey]!;
/// </code>
/// </summary>
public sealed class RetrievalChatClient : DelegatingChatClient
{
    /// <summary>Key of the sources (<c>IReadOnlyList&lt;AnswerSource&gt;</c>) in AdditionalProperties.</summary>
    public const string SourcesKey = "rotor.sources";
    /// <summary>Key of the retrieval decision (<see cref="RetrievalDecision"/>) in AdditionalProperties.</summary>
    public const string DecisionKey = "rotor.retrieval";
    /// <summary>Key of the citations (<c>IReadOnlyList&lt;Citation&gt;</c>) in AdditionalProperties.</summary>
    public const string CitationsKey = "rotor.citations";

    private readonly IPassageRetriever _retriever;
    // Any retriever: one index or a cluster's front door (only SearchAsync is used).
    private readonly RetrievalChatOptions _options;
    private readonly GroundedPromptBuilder _builder;
    private readonly int _contextLength;
    private readonly IModelConfidence? _confidence;
    private readonly object _confidenceLock = new();

    /// <summary>Wraps <paramref name="innerClient"/> so that it answers from <paramref name="retriever"/>'s passages.</summary>
    /// <exception cref="RotorException">The model rule is asked for without a confidence source, or the inner model has no tokenizer.</exception>
    public RetrievalChatClient(IChatClient innerClient, IPassageRetriever retriever, RetrievalChatOptions? options = null) : base(innerClient)
    {
        _retriever = retriever ?? throw new ArgumentNullException(nameof(retriever));
        _options = options ?? new RetrievalChatOptions();
        if (_options.Retrieval.Top <= 0) throw new RotorException($"top {_options.Retrieval.Top} must be positive");
        var model = innerClient.GetService(typeof(LanguageModel)) as LanguageModel;
        if (model is not null)
        {
            var format = (innerClient.GetService(typeof(RotorChatClient)) as RotorChatClient)?.Format;
            _builder = new GroundedPromptBuilder(ChatTemplate.For(model.RequireTokenizer(), format));
            _contextLength = _options.ContextLength ?? Math.Min(model.Config.ContextLength, 4096);
        }
        else
        {
            _builder = new GroundedPromptBuilder(_options.TokenCounter ?? GroundedPromptBuilder.Utf8UpperBound());
            _contextLength = _options.ContextLength ?? 4096;
        }
        if (_options.Adaptive == AdaptiveMode.Model)
            _confidence = _options.Confidence ?? (model is not null ? new ClosedBookConfidence(model)
                : throw new RotorException("adaptive mode 'model' needs a confidence source: set RetrievalChatOptions.Confidence or wrap a client that exposes its LanguageModel"));
    }

    /// <summary>The retrieval and prompt for a conversation: what is sent to the inner client.</summary>
    /// <param name="Messages">The conversation as sent on: earlier messages, the instructions, sources + question.</param>
    /// <param name="Decision">The retrieval decision.</param>
    /// <param name="Prompt">The built prompt (sources, token count).</param>
    public sealed record Grounding(IReadOnlyList<ChatMessage> Messages, RetrievalDecision Decision, GroundedPrompt Prompt);

    /// <summary>Decides, retrieves and builds the conversation for the last user message of <paramref name="messages"/>.</summary>
    /// <exception cref="RotorException">There is no user message, it is empty, or the conversation does not fit the context.</exception>
    public async Task<Grounding> GroundAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        int last = list.FindLastIndex(m => m.Role == ChatRole.User);
        if (last < 0) throw new RotorException("the conversation has no user message to retrieve for");
        string question = list[last].Text ?? "";
        if (string.IsNullOrWhiteSpace(question)) throw new RotorException("the last user message is empty");
        int answerTokens = options?.MaxOutputTokens ?? _options.MaxAnswerTokens;
        if (answerTokens <= 0) throw new RotorException($"max output tokens {answerTokens} must be positive");
        var policy = _options.Policy with { MaxPassages = Math.Min(_options.Policy.MaxPassages, _options.Retrieval.Top) };

        RetrievalDecision decision;
        IReadOnlyList<RetrievedPassage> offered = [];
        PromptSituation situation;
        double? confidence = null;
        if (_confidence is not null) lock (_confidenceLock) confidence = _confidence.ConfidenceWithoutContext(question);
        if (confidence is double c && c >= policy.ModelConfidenceThreshold)
        {
            decision = new RetrievalDecision(AdaptiveMode.Model, false, 0, Fmt($"no retrieval: model confident, confidence {c:F3} >= {policy.ModelConfidenceThreshold:F3}"), null);
            situation = PromptSituation.NotNeeded;
        }
        else
        {
            var result = await _retriever.SearchAsync(question, _options.Retrieval, cancellationToken).ConfigureAwait(false);
            if (_options.Adaptive == AdaptiveMode.Off)
                decision = new RetrievalDecision(AdaptiveMode.Off, result.Hits.Count > 0, result.Hits.Count, Fmt($"adaptive retrieval off: the top {result.Hits.Count} passages"), null);
            else
            {
                var scores = result.DenseScores.Count > 0 || result.Hits.Count == 0 ? result.DenseScores
                    : (await _retriever.SearchAsync(question, _options.Retrieval with { Mode = RetrievalMode.Dense, Top = Math.Max(1, _options.Retrieval.Candidates) }, cancellationToken).ConfigureAwait(false)).DenseScores;
                var d = policy.Decide(scores);
                string reason = confidence is double u ? Fmt($"model unsure, confidence {u:F3} < {policy.ModelConfidenceThreshold:F3}; {d.Reason}") : d.Reason;
                decision = new RetrievalDecision(_options.Adaptive, d.Retrieve && result.Hits.Count > 0, Math.Min(d.Count, result.Hits.Count), reason, null);
            }
            offered = decision.Retrieve ? result.Hits.Take(decision.Count).ToList() : [];
            situation = decision.Retrieve ? PromptSituation.Sources : PromptSituation.NothingRelevant;
        }
        var history = list.Take(last).Select(m => new PromptMessage(m.Role.Value, m.Text ?? "")).ToList();
        var prompt = _builder.Build(question, offered, situation, _contextLength, Math.Min(answerTokens, _contextLength - 1), history);
        var sent = new List<ChatMessage>(list.Take(last));
        foreach (var m in prompt.Messages.Skip(history.Count)) sent.Add(new ChatMessage(new ChatRole(m.Role), m.Content));
        return new Grounding(sent, decision, prompt);
    }

    /// <inheritdoc/>
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var g = await GroundAsync(messages, options, cancellationToken).ConfigureAwait(false);
        var response = await base.GetResponseAsync(g.Messages, options, cancellationToken).ConfigureAwait(false);
        response.AdditionalProperties ??= [];
        response.AdditionalProperties[SourcesKey] = g.Prompt.Sources;
        response.AdditionalProperties[DecisionKey] = g.Decision;
        response.AdditionalProperties[CitationsKey] = CitationParser.Parse(response.Text, g.Prompt.Sources);
        return response;
    }

    /// <inheritdoc/>
    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var g = await GroundAsync(messages, options, cancellationToken).ConfigureAwait(false);
        yield return new ChatResponseUpdate { Role = ChatRole.Assistant, AdditionalProperties = new() { [SourcesKey] = g.Prompt.Sources, [DecisionKey] = g.Decision } };
        var text = new StringBuilder();
        string? responseId = null;
        await foreach (var u in base.GetStreamingResponseAsync(g.Messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(u.Text);
            responseId ??= u.ResponseId;
            yield return u;
        }
        yield return new ChatResponseUpdate
        {
            Role = ChatRole.Assistant, ResponseId = responseId,
            AdditionalProperties = new() { [CitationsKey] = CitationParser.Parse(text.ToString(), g.Prompt.Sources) },
        };
    }

    private static string Fmt(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

using Rotor.Rag.Answers;
using Rotor.Rag.Search;

namespace Rotor.Server.Grounding;

/// <summary>A passage a grounded prompt holds, numbered as the answer cites it ([1], [2], ...).</summary>
/// <param name="Number">The citation number.</param>
/// <param name="PassageId">Passage id in the index.</param>
/// <param name="Title">Document title.</param>
/// <param name="Section">Section title.</param>
/// <param name="Text">The whole passage text.</param>
/// <param name="Score">Retrieval score.</param>
/// <param name="Truncated">Whether the prompt held only the passage's leading words (the context had no room for more).</param>
public sealed record GroundingSource(int Number, string PassageId, string Title, string Section, string Text, float Score, bool Truncated = false);

/// <summary>What a grounding built: the prompt to generate from (ids in the model's chat format, fitting the context
/// with room for the answer) and the passages in it.</summary>
/// <param name="PromptIds">The prompt, ending with the assistant's turn opened.</param>
/// <param name="Sources">The passages the prompt holds, by number (empty when nothing relevant was found).</param>
/// <param name="Decision">Why retrieval happened or not, in one line (shown to the client), or null.</param>
public sealed record GroundedChatPrompt(IReadOnlyList<int> PromptIds, IReadOnlyList<GroundingSource> Sources, string? Decision)
{
    /// <summary>The whole decision (rule, count, reason, the model rule's measurement) when the grounding has one.</summary>
    public RetrievalDecision? Details { get; init; }
}

/// <summary>What a chat request asks of retrieval.</summary>
/// <param name="Top">Passages to retrieve at most.</param>
/// <param name="Mode">Retrieval mode.</param>
/// <param name="ReserveTokens">Positions to leave free for the answer.</param>
public sealed record GroundingRequest(int Top, RetrievalMode Mode, int ReserveTokens)
{
    /// <summary>The adaptive rule (null: the grounding's own).</summary>
    public AdaptiveMode? Adaptive { get; init; }
}

/// <summary>
/// Builds retrieval-grounded prompts for chat requests. The server calls <see cref="GroundAsync"/> once a grounded
/// request and generates from the prompt it returns with its batched scheduler, then returns the sources and the
/// decision with the answer. <see cref="AnswererGrounding"/> (Rotor.Rag's grounded answers: adaptive retrieval, prompt
/// within the context budget) is the server's.
/// </summary>
public interface IChatGrounding
{
    /// <summary>The prompt for <paramref name="messages"/> (role, content) with retrieved passages, within
    /// <paramref name="contextLength"/> positions less <see cref="GroundingRequest.ReserveTokens"/>.</summary>
    /// <exception cref="RotorException">The conversation does not end with a user message, or does not fit.</exception>
    Task<GroundedChatPrompt> GroundAsync(IReadOnlyList<(string Role, string Content)> messages, GroundingRequest request, int contextLength, CancellationToken cancellationToken);
}

/// <summary>
/// Grounding through a <see cref="GroundedAnswerer"/>, so that a grounded chat request is prepared as <c>rotor ask</c>
/// prepares a question: the adaptive rule (score, model or off) decides whether to retrieve and how many passages, the
/// passages that fit the context (counted in the model's tokens, leaving the reserve free) go into the prompt numbered,
/// and the decision and its reason come back with the sources.
/// <para>What the rules see: the last message, which must be the user's, is the question; the score rule searches for
/// it and the model rule measures the closed-book answer to it, alone. Earlier messages (system messages and earlier
/// turns) go into the prompt, before the instructions and sources, but do not steer retrieval.</para>
/// <para>The model rule runs the model. In the server it must run on the scheduler's decode thread only, so the
/// answerer is built with a <see cref="ScheduledConfidenceProbe"/>: the closed-book prompt is queued as a request and
/// decoded among the others, and <see cref="GroundedAnswerer.PrepareAsync"/> itself never touches the model.</para>
/// </summary>
public sealed class AnswererGrounding(GroundedAnswerer answerer) : IChatGrounding
{
    /// <summary>The answerer.</summary>
    public GroundedAnswerer Answerer { get; } = answerer ?? throw new ArgumentNullException(nameof(answerer));

    /// <inheritdoc/>
    public async Task<GroundedChatPrompt> GroundAsync(IReadOnlyList<(string Role, string Content)> messages, GroundingRequest request, int contextLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages); ArgumentNullException.ThrowIfNull(request);
        if (messages.Count == 0 || messages[^1].Role != "user")
            throw new RotorException("a grounded request must end with a user message: it is the question searched for");
        string question = messages[^1].Content;
        if (question.Trim().Length == 0) throw new RotorException("a grounded request needs a user message to search for");
        var history = new PromptMessage[messages.Count - 1];
        for (int i = 0; i < history.Length; i++) history[i] = new PromptMessage(messages[i].Role, messages[i].Content);
        var p = await Answerer.PrepareAsync(question, new PrepareRequest
        {
            History = history, Adaptive = request.Adaptive, Top = request.Top, Mode = request.Mode,
            AnswerTokens = request.ReserveTokens, ContextLength = contextLength,
        }, cancellationToken).ConfigureAwait(false);
        var sources = p.Prompt.Sources.Select(s => new GroundingSource(s.Number, s.Hit.Passage.Id, s.Hit.Passage.Title, s.Hit.Passage.Section,
            s.Hit.Passage.Text, s.Hit.Score, s.Truncated)).ToArray();
        string line = p.Prompt.Omitted.Count == 0 ? p.Decision.Reason
            : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{p.Decision.Reason}; {p.Prompt.Omitted.Count} left out: no room in the context of {contextLength} tokens with {p.Prompt.AnswerTokens} kept for the answer");
        return new GroundedChatPrompt(p.Prompt.Ids!, sources, line) { Details = p.Decision };
    }
}

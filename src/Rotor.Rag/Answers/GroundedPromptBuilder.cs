using System.Text;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Search;

namespace Rotor.Rag.Answers;

/// <summary>One chat message of a prompt: a role (system, user, assistant) and its text.</summary>
/// <param name="Role">"system", "user" or "assistant".</param>
/// <param name="Content">The text.</param>
public readonly record struct PromptMessage(string Role, string Content);

/// <summary>What the model is told about the sources.</summary>
public enum PromptSituation
{
    /// <summary>Passages were retrieved: they are numbered in the prompt and the model is asked to cite them.</summary>
    Sources = 0,
    /// <summary>Retrieval ran and found nothing relevant, or no passage fit the budget: the model is told so.</summary>
    NothingRelevant = 1,
    /// <summary>Retrieval was skipped because the model was confident: it answers from what it knows.</summary>
    NotNeeded = 2,
}

/// <summary>A passage as it appears in a prompt: its number ([1] is the first), the retrieval hit, and the excerpt
/// given when the whole passage did not fit.</summary>
/// <param name="Number">1-based number the prompt gives it.</param>
/// <param name="Hit">The passage (id, title, section, text) and its retrieval scores.</param>
/// <param name="Excerpt">The passage's leading words followed by " ..." when only they fit the budget; null when the
/// whole passage is in the prompt.</param>
public sealed record AnswerSource(int Number, RetrievedPassage Hit, string? Excerpt = null)
{
    /// <summary>The text the prompt holds for this source.</summary>
    public string PromptText => Excerpt ?? Hit.Passage.Text.Trim();

    /// <summary>Whether only the passage's leading words are in the prompt.</summary>
    public bool Truncated => Excerpt is not null;

    /// <summary>"Title > Section", or the title alone for a lead passage.</summary>
    public string Heading => Hit.Passage.Section.Length == 0 ? Hit.Passage.Title : $"{Hit.Passage.Title} > {Hit.Passage.Section}";
}

/// <summary>A prompt built by <see cref="GroundedPromptBuilder"/>: the messages, their token count (and ids, when the
/// builder has the model's tokenizer), the numbered sources and the passages left out for lack of room.</summary>
/// <param name="Messages">The chat messages: earlier turns, the instructions, the sources and the question.</param>
/// <param name="Ids">The prompt's token ids in the model's chat format, or null when the builder only counts.</param>
/// <param name="TokenCount">Tokens the prompt takes (exact with a tokenizer; an upper bound with a byte counter).</param>
/// <param name="Sources">The passages in the prompt, numbered from 1 in prompt order.</param>
/// <param name="Omitted">Passages offered but left out because they did not fit the budget, in offered order.</param>
/// <param name="Situation">What the model is told about the sources.</param>
/// <param name="ContextLength">Positions of the model's context.</param>
/// <param name="AnswerTokens">Positions kept free for the answer: <c>TokenCount + AnswerTokens &lt;= ContextLength</c>.</param>
public sealed record GroundedPrompt(IReadOnlyList<PromptMessage> Messages, IReadOnlyList<int>? Ids, int TokenCount,
    IReadOnlyList<AnswerSource> Sources, IReadOnlyList<RetrievedPassage> Omitted, PromptSituation Situation, int ContextLength, int AnswerTokens);

/// <summary>
/// Builds the prompt of a grounded answer within a token budget. The instructions go in a system message; the user
/// message holds the sources, numbered <c>[1]</c>, <c>[2]</c> with their title and section, then the question:
/// <code>
/// Sources:
/// [1] Aristotle > Early life
/// Aristotle was born in 384 BC in Stagira ...
///
/// Question: Who was Aristotle's teacher?
/// </code>
/// Passages are offered best first and taken whole while the rendered prompt plus the answer's room fits the
/// context; one that does not fit is left out (a later, shorter one may still fit). When a passage does not fit whole
/// but at least <see cref="MinExcerptWords"/> of its leading words do, the longest such excerpt is given (ending in
/// " ...") and no further passage is taken: the room is then used up. The invariant
/// <c>TokenCount + AnswerTokens &lt;= ContextLength</c> always holds. Tokens are counted by rendering the whole prompt
/// with the model's chat template, so the count is the model's own.
/// </summary>
public sealed class GroundedPromptBuilder
{
    /// <summary>The system message when sources are given.</summary>
    public const string SourcesInstruction =
        "Answer the question using only the numbered sources below. Cite every source you use by its number in square brackets, like [1] or [2]. If the sources do not contain the answer, say so.";
    /// <summary>The system message when retrieval found nothing relevant (or nothing fit the budget).</summary>
    public const string NothingRelevantInstruction =
        "No relevant source could be given for this question. Say that no source covers it, and answer only if you are sure.";
    /// <summary>The system message when retrieval was not needed.</summary>
    public const string NotNeededInstruction = "Answer the question briefly.";

    private readonly ChatTemplate? _template;
    private readonly Func<IReadOnlyList<PromptMessage>, int>? _count;

    /// <summary>A builder that renders with <paramref name="template"/> (the model's chat format) and counts its ids.</summary>
    public GroundedPromptBuilder(ChatTemplate template) => _template = template ?? throw new ArgumentNullException(nameof(template));

    /// <summary>A builder that counts tokens with <paramref name="countTokens"/> (for a model whose tokenizer Rotor
    /// does not hold); <see cref="GroundedPrompt.Ids"/> is then null.</summary>
    public GroundedPromptBuilder(Func<IReadOnlyList<PromptMessage>, int> countTokens) => _count = countTokens ?? throw new ArgumentNullException(nameof(countTokens));

    /// <summary>A counter that never counts fewer tokens than a byte-level or byte-fallback tokenizer (BPE,
    /// SentencePiece) makes: every token stands for at least one UTF-8 byte; <paramref name="perMessage"/> tokens a
    /// message are added for the chat format's markers.</summary>
    public static Func<IReadOnlyList<PromptMessage>, int> Utf8UpperBound(int perMessage = 8)
        => messages => messages.Sum(m => Encoding.UTF8.GetByteCount(m.Role) + Encoding.UTF8.GetByteCount(m.Content) + perMessage) + 1;

    /// <summary>Fewest leading words of a passage worth giving when the whole passage does not fit (0: passages are
    /// given whole or not at all). Default 12.</summary>
    public int MinExcerptWords { get; init; } = 12;

    /// <summary>Whether the template is the plain format (no roles): the question then ends with "Answer:", so that
    /// a model without chat training continues with the answer.</summary>
    private bool Plain => _template?.Format == ChatFormat.Plain;

    /// <summary>Builds the prompt for <paramref name="question"/>.</summary>
    /// <param name="question">The question (not empty).</param>
    /// <param name="passages">Passages to offer, best first (empty unless <paramref name="situation"/> is <see cref="PromptSituation.Sources"/>).</param>
    /// <param name="situation">What the model is told; <see cref="PromptSituation.Sources"/> with no passage that fits
    /// becomes <see cref="PromptSituation.NothingRelevant"/>.</param>
    /// <param name="contextLength">Positions of the model's context.</param>
    /// <param name="answerTokens">Positions to keep free for the answer (positive).</param>
    /// <param name="history">Earlier messages of a conversation, kept before the instructions (system messages included).</param>
    /// <exception cref="RotorException">The question is empty, or the prompt without any passage does not leave
    /// <paramref name="answerTokens"/> free (the message gives the numbers).</exception>
    public GroundedPrompt Build(string question, IReadOnlyList<RetrievedPassage> passages, PromptSituation situation,
        int contextLength, int answerTokens, IReadOnlyList<PromptMessage>? history = null)
    {
        ArgumentNullException.ThrowIfNull(question); ArgumentNullException.ThrowIfNull(passages);
        if (string.IsNullOrWhiteSpace(question)) throw new RotorException("the question is empty");
        if (answerTokens <= 0) throw new RotorException($"answer tokens {answerTokens} must be positive");
        if (contextLength <= answerTokens) throw new RotorException($"the context ({contextLength} tokens) leaves no room for a prompt beside {answerTokens} answer tokens; raise the context or lower the answer tokens");
        history ??= [];
        int budget = contextLength - answerTokens;
        var taken = new List<AnswerSource>();
        var omitted = new List<RetrievedPassage>();
        if (situation == PromptSituation.Sources)
        {
            bool full = false;
            foreach (var p in passages)
            {
                if (full) { omitted.Add(p); continue; }
                var whole = new AnswerSource(taken.Count + 1, p);
                if (Fits([.. taken, whole])) { taken.Add(whole); continue; }
                if (Excerpt(p, taken, out var part)) { taken.Add(part!); full = true; }
                else omitted.Add(p);
            }
            if (taken.Count == 0) situation = PromptSituation.NothingRelevant;
        }
        else omitted.AddRange(passages);
        var messages = Messages(question, taken, situation, history);
        var (count, ids) = Measure(messages);
        if (count > budget)
            throw new RotorException($"the question and instructions take {count} tokens; with {answerTokens} kept for the answer they do not fit the context of {contextLength}; shorten the question, lower --max-tokens or raise --ctx");
        return new GroundedPrompt(messages, ids, count, taken, omitted, situation, contextLength, answerTokens);

        bool Fits(IReadOnlyList<AnswerSource> sources) => Measure(Messages(question, sources, PromptSituation.Sources, history!)).Count <= budget;

        // The longest excerpt of at least MinExcerptWords leading words that fits, by bisection on the word count
        // (more words never take fewer tokens).
        bool Excerpt(RetrievedPassage p, List<AnswerSource> before, out AnswerSource? part)
        {
            part = null;
            if (MinExcerptWords <= 0) return false;
            string[] words = p.Passage.Text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            AnswerSource Cut(int n) => new(before.Count + 1, p, string.Join(' ', words, 0, n) + " ...");
            int lo = MinExcerptWords, hi = words.Length - 1;
            if (lo > hi || !Fits([.. before, Cut(lo)])) return false;
            while (lo < hi)
            {
                int mid = (lo + hi + 1) / 2;
                if (Fits([.. before, Cut(mid)])) lo = mid; else hi = mid - 1;
            }
            part = Cut(lo);
            return true;
        }
    }

    /// <summary>The closed-book prompt of <paramref name="question"/>: a short answer from what the model knows,
    /// without sources (what <see cref="ClosedBookConfidence"/> measures).</summary>
    public IReadOnlyList<PromptMessage> ClosedBook(string question) => Messages(question, [], PromptSituation.NotNeeded, []);

    /// <summary>The messages of a prompt: <paramref name="history"/>, the instructions of <paramref name="situation"/>,
    /// and the user message (the numbered <paramref name="sources"/> when the situation is
    /// <see cref="PromptSituation.Sources"/>, then the question).</summary>
    public IReadOnlyList<PromptMessage> Messages(string question, IReadOnlyList<AnswerSource> sources, PromptSituation situation, IReadOnlyList<PromptMessage> history)
    {
        ArgumentNullException.ThrowIfNull(question); ArgumentNullException.ThrowIfNull(sources); ArgumentNullException.ThrowIfNull(history);
        var user = new StringBuilder();
        if (situation == PromptSituation.Sources)
        {
            user.Append("Sources:\n");
            foreach (var s in sources)
                user.Append('[').Append(s.Number).Append("] ").Append(s.Heading).Append('\n').Append(s.PromptText).Append("\n\n");
        }
        user.Append("Question: ").Append(question.Trim());
        if (Plain) user.Append("\nAnswer:");
        string instruction = situation switch
        {
            PromptSituation.Sources => SourcesInstruction,
            PromptSituation.NothingRelevant => NothingRelevantInstruction,
            _ => NotNeededInstruction,
        };
        return [.. history, new PromptMessage("system", instruction), new PromptMessage("user", user.ToString())];
    }

    /// <summary>Token count of <paramref name="messages"/> with the assistant's turn opened, and the ids when a
    /// template renders them.</summary>
    public (int Count, IReadOnlyList<int>? Ids) Measure(IReadOnlyList<PromptMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (_template is null) return (_count!(messages), null);
        var ids = _template.Render(messages.Select(m => (m.Role, m.Content)), addGenerationPrompt: true);
        return (ids.Count, ids);
    }
}

using System.Globalization;
using System.Text;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Search;

namespace Rotor.Server.Grounding;

/// <summary>A passage a grounded prompt holds, numbered as the answer cites it ([1], [2], ...).</summary>
/// <param name="Number">The citation number.</param>
/// <param name="PassageId">Passage id in the index.</param>
/// <param name="Title">Document title.</param>
/// <param name="Section">Section title.</param>
/// <param name="Text">Passage text.</param>
/// <param name="Score">Retrieval score.</param>
public sealed record GroundingSource(int Number, string PassageId, string Title, string Section, string Text, float Score);

/// <summary>What a grounding built: the prompt to generate from (ids in the model's chat format, fitting the context
/// with room for the answer) and the passages in it.</summary>
/// <param name="PromptIds">The prompt, ending with the assistant's turn opened.</param>
/// <param name="Sources">The passages the prompt holds, by number (empty when nothing relevant was found).</param>
/// <param name="Decision">Why retrieval happened or not, in one line (shown to the client), or null.</param>
public sealed record GroundedChatPrompt(IReadOnlyList<int> PromptIds, IReadOnlyList<GroundingSource> Sources, string? Decision);

/// <summary>What a chat request asks of retrieval.</summary>
/// <param name="Top">Passages to retrieve at most.</param>
/// <param name="Mode">Retrieval mode.</param>
/// <param name="ReserveTokens">Positions to leave free for the answer.</param>
public sealed record GroundingRequest(int Top, RetrievalMode Mode, int ReserveTokens);

/// <summary>
/// Builds retrieval-grounded prompts for chat requests. The server calls <see cref="GroundAsync"/> once a grounded
/// request and generates from the prompt it returns with its batched scheduler, then returns the sources with the
/// answer. The library of grounded answers (Rotor.Rag's Answers: adaptive retrieval, prompt within the context budget,
/// citations) plugs in here as one adapter; <see cref="RetrieverGrounding"/> is the plain one used until then.
/// </summary>
public interface IChatGrounding
{
    /// <summary>The prompt for <paramref name="messages"/> (role, content) with retrieved passages, within
    /// <paramref name="contextLength"/> positions less <see cref="GroundingRequest.ReserveTokens"/>.</summary>
    Task<GroundedChatPrompt> GroundAsync(IReadOnlyList<(string Role, string Content)> messages, GroundingRequest request, int contextLength, CancellationToken cancellationToken);
}

/// <summary>
/// Grounding over a <see cref="Retriever"/> (any <see cref="IPassageRetriever"/>, a cluster's too): the last user message is the query; the best passages are numbered and
/// put in a system message that asks for an answer from them with citations; passages are dropped from the end until
/// the prompt (counted in the model's own tokens) leaves the reserve free.
/// </summary>
public sealed class RetrieverGrounding(IPassageRetriever retriever, ChatTemplate template) : IChatGrounding
{
    /// <summary>The instruction above the passages.</summary>
    public const string Instruction = "Answer the question using only the numbered passages below. Cite the passages you use as [1], [2]. If they do not contain the answer, say so.";

    /// <inheritdoc/>
    public async Task<GroundedChatPrompt> GroundAsync(IReadOnlyList<(string Role, string Content)> messages, GroundingRequest request, int contextLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages); ArgumentNullException.ThrowIfNull(request);
        string query = messages.LastOrDefault(m => m.Role == "user").Content ?? "";
        if (query.Trim().Length == 0) throw new RotorException("a grounded request needs a user message to search for");
        var hits = (await retriever.SearchAsync(query, new RetrievalOptions { Top = request.Top, Mode = request.Mode }, cancellationToken).ConfigureAwait(false)).Hits;
        int budget = contextLength - request.ReserveTokens;
        for (int keep = hits.Count; keep >= 0; keep--)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var sources = hits.Take(keep).Select((h, i) => new GroundingSource(i + 1, h.Passage.Id, h.Passage.Title, h.Passage.Section, h.Passage.Text, h.Score)).ToArray();
            var ids = template.Render(WithPassages(messages, sources), addGenerationPrompt: true);
            if (ids.Count <= budget)
            {
                string decision = keep == hits.Count
                    ? string.Create(CultureInfo.InvariantCulture, $"retrieved {keep} passages")
                    : string.Create(CultureInfo.InvariantCulture, $"retrieved {hits.Count} passages, {keep} fit the context of {contextLength} tokens");
                return new GroundedChatPrompt(ids, sources, decision);
            }
        }
        throw new RotorException($"the conversation alone does not fit the context of {contextLength} tokens with {request.ReserveTokens} left for the answer");
    }

    /// <summary>The messages with a system message of numbered passages before them (or after an existing system message).</summary>
    public static IEnumerable<(string Role, string Content)> WithPassages(IReadOnlyList<(string Role, string Content)> messages, IReadOnlyList<GroundingSource> sources)
    {
        var sb = new StringBuilder();
        if (sources.Count == 0) sb.Append("No passage was found for this question: say that you have no source for it.");
        else
        {
            sb.Append(Instruction);
            foreach (var s in sources)
            {
                sb.Append("\n\n[").Append(s.Number.ToString(CultureInfo.InvariantCulture)).Append("] ").Append(s.Title);
                if (s.Section.Length > 0) sb.Append(" — ").Append(s.Section);
                sb.Append('\n').Append(s.Text);
            }
        }
        int firstOther = 0;
        while (firstOther < messages.Count && messages[firstOther].Role == "system") firstOther++;
        for (int i = 0; i < firstOther; i++) yield return messages[i];
        yield return ("system", sb.ToString());
        for (int i = firstOther; i < messages.Count; i++) yield return messages[i];
    }
}

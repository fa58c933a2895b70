namespace Rotor.Rag.Corpus;

/// <summary>A titled part of a document's clean text. The lead (before any heading) has an empty title.</summary>
/// <param name="Title">Section heading, "" for the lead.</param>
/// <param name="Text">Clean text: paragraphs separated by '\n', no markup.</param>
public sealed record DocumentSection(string Title, string Text);

/// <summary>A source document in clean text, split into sections.</summary>
/// <param name="Id">Identifier unique within its corpus (a page id, a file path, a BEIR _id).</param>
/// <param name="Title">Document title.</param>
/// <param name="Sections">Sections in order.</param>
public sealed record Document(string Id, string Title, IReadOnlyList<DocumentSection> Sections)
{
    /// <summary>A document of one untitled section.</summary>
    public static Document Plain(string id, string title, string text) => new(id, title, [new DocumentSection("", text)]);

    /// <summary>All the text, sections joined by blank lines.</summary>
    public string FullText => string.Join("\n\n", Sections.Select(s => s.Text));
}

/// <summary>A retrievable unit: about a hundred words of one section of one document.</summary>
/// <param name="Id">Unique id: the document id, '#', the passage's index within the document.</param>
/// <param name="DocumentId">Id of the document it came from.</param>
/// <param name="Title">Document title.</param>
/// <param name="Section">Section title ("" for the lead).</param>
/// <param name="Text">The passage text.</param>
/// <remarks>What is embedded and indexed for it is <see cref="IndexText.Of(Passage)"/>.</remarks>
public sealed record Passage(string Id, string DocumentId, string Title, string Section, string Text);

/// <summary>
/// The text that is embedded and BM25-indexed for a unit of a corpus, in one place: every index build, in-memory
/// retriever and benchmark calls these, so that the vectors of a corpus and the ones it is compared with agree.
/// </summary>
public static class IndexText
{
    /// <summary>A passage: <c>"Title: Section. Text"</c>, <c>"Title. Text"</c> for the lead (no section), or the text
    /// alone when there is no title. The title and section put the passage in its context, which a passage of a hundred
    /// words often lacks (a pronoun for its subject).</summary>
    public static string Of(Passage passage)
    {
        ArgumentNullException.ThrowIfNull(passage);
        return passage.Section.Length == 0
            ? (passage.Title.Length == 0 ? passage.Text : $"{passage.Title}. {passage.Text}")
            : $"{passage.Title}: {passage.Section}. {passage.Text}";
    }

    /// <summary>A whole document, as the BEIR benchmark embeds one: the title, a space and <see cref="Document.FullText"/>
    /// (the text alone when there is no title). Scores measured this way compare with published BEIR figures.</summary>
    public static string Of(Document document)
    {
        ArgumentNullException.ThrowIfNull(document);
        return (document.Title.Length > 0 ? document.Title + " " : "") + document.FullText;
    }
}

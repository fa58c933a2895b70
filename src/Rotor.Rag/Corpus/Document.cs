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
public sealed record Passage(string Id, string DocumentId, string Title, string Section, string Text)
{
    /// <summary>The text given to an embedder or an index: the title, the section and the passage.</summary>
    public string IndexText => Section.Length == 0
        ? (Title.Length == 0 ? Text : $"{Title}. {Text}")
        : $"{Title}: {Section}. {Text}";
}

using System.Text.RegularExpressions;

namespace Rotor.Rag.Corpus;

/// <summary>
/// Splits documents into passages of about <see cref="TargetWords"/> words that end at sentence boundaries and never
/// cross a section. A passage takes whole sentences until it reaches the target; a sentence longer than
/// <see cref="MaxWords"/> is cut at word boundaries; a short tail is merged into the passage before it when the two fit
/// in <see cref="MaxWords"/>.
/// </summary>
public sealed partial class PassageSplitter
{
    // Words after which a period does not end a sentence.
    private static readonly HashSet<string> s_abbreviations = new(StringComparer.OrdinalIgnoreCase)
    {
        "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "cf", "al", "no", "vol", "fig",
        "ca", "c", "approx", "inc", "ltd", "co", "corp", "gen", "gov", "sen", "rep", "rev", "mt", "ft", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "b.c", "a.d", "op", "pp", "ed",
    };

    /// <summary>Creates a splitter.</summary>
    /// <param name="targetWords">Words a passage aims for (at least 10).</param>
    /// <param name="minWords">Passages with fewer words are dropped (list stubs such as "1" or "Sources: x").</param>
    public PassageSplitter(int targetWords = 100, int minWords = 4)
    {
        if (targetWords < 10) throw new ArgumentOutOfRangeException(nameof(targetWords), targetWords, "targetWords must be at least 10");
        if (minWords < 1 || minWords > targetWords) throw new ArgumentOutOfRangeException(nameof(minWords), minWords, $"minWords must be in 1..{targetWords}");
        TargetWords = targetWords;
        MinWords = minWords;
        MaxWords = targetWords + targetWords / 2;
    }

    /// <summary>Fewest words a kept passage has.</summary>
    public int MinWords { get; }

    /// <summary>Words a passage aims for.</summary>
    public int TargetWords { get; }

    /// <summary>Most words in one passage.</summary>
    public int MaxWords { get; }

    /// <summary>Passages of one document, numbered from 0 in document order.</summary>
    public IEnumerable<Passage> Split(Document document)
    {
        ArgumentNullException.ThrowIfNull(document);
        int index = 0;
        foreach (var section in document.Sections)
            foreach (var text in SplitText(section.Text))
                yield return new Passage($"{document.Id}#{index++}", document.Id, document.Title, section.Title, text);
    }

    /// <summary>Passages of many documents.</summary>
    public IEnumerable<Passage> Split(IEnumerable<Document> documents) => documents.SelectMany(Split);

    /// <summary>Splits one section's text into passage texts.</summary>
    public IReadOnlyList<string> SplitText(string text)
    {
        var chunks = new List<List<string>>();     // each chunk: its words
        var current = new List<string>();
        foreach (var sentence in Sentences(text))
        {
            var words = sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int start = 0; start < words.Length; start += MaxWords)
            {
                var piece = words.AsSpan(start, Math.Min(MaxWords, words.Length - start));
                if (current.Count > 0 && current.Count + piece.Length > MaxWords) { chunks.Add(current); current = []; }
                current.AddRange(piece);
                if (current.Count >= TargetWords) { chunks.Add(current); current = []; }
            }
        }
        if (current.Count > 0)
        {
            if (chunks.Count > 0 && current.Count < TargetWords / 4 && chunks[^1].Count + current.Count <= MaxWords) chunks[^1].AddRange(current);
            else chunks.Add(current);
        }
        return chunks.Where(c => c.Count >= MinWords).Select(c => string.Join(' ', c)).ToList();
    }

    /// <summary>Sentences of a text: a split after '.', '!' or '?' (and any closing quote or bracket) followed by space
    /// and an upper-case letter, digit or opening quote, unless the period ends a known abbreviation or an initial.
    /// Paragraph breaks always end a sentence.</summary>
    public static IEnumerable<string> Sentences(string text)
    {
        foreach (var paragraph in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int start = 0;
            foreach (Match m in BoundaryRegex().Matches(paragraph))
            {
                int end = m.Index + m.Groups[1].Length;
                if (paragraph[m.Index] == '.' && IsAbbreviation(paragraph, m.Index)) continue;
                string sentence = paragraph[start..end].Trim();
                if (sentence.Length > 0) yield return sentence;
                start = end;
            }
            string last = paragraph[start..].Trim();
            if (last.Length > 0) yield return last;
        }
    }

    // The word before the period at 'dot': a known abbreviation or a single letter (an initial like "J.").
    private static bool IsAbbreviation(string s, int dot)
    {
        int i = dot - 1;
        while (i >= 0 && !char.IsWhiteSpace(s[i]) && s[i] != '(') i--;
        string word = s[(i + 1)..dot];
        if (word.Length == 1 && char.IsUpper(word[0])) return true;
        return s_abbreviations.Contains(word);
    }

    [GeneratedRegex(@"([.!?]['""’”)\]]*)\s+(?=[\p{Lu}\d""“'‘(\[])")]
    private static partial Regex BoundaryRegex();
}

using System.Globalization;
using System.Text.RegularExpressions;

namespace Rotor.Rag.Answers;

/// <summary>A citation found in an answer: the number the answer wrote and the source it names (null when the prompt
/// had no source of that number).</summary>
/// <param name="Number">The cited number.</param>
/// <param name="Start">Index of the bracket group in the answer text.</param>
/// <param name="Length">Length of the bracket group (<c>[1, 2]</c> is one group with two citations).</param>
/// <param name="Source">The source numbered <paramref name="Number"/> in the prompt, or null.</param>
public sealed record Citation(int Number, int Start, int Length, AnswerSource? Source);

/// <summary>
/// Finds citations in an answer's text: bracket groups of numbers, <c>[1]</c>, <c>[1, 2]</c>, <c>[1; 3]</c>,
/// <c>[2-4]</c> (a range names each number in it), adjacent groups <c>[1][2]</c>. A group holding anything else
/// (<c>[a]</c>, <c>[1a]</c>) is not a citation. Numbers are mapped to the prompt's sources by their numbers.
/// </summary>
public static partial class CitationParser
{
    [GeneratedRegex(@"\[\s*(\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?(?:\s*[,;]\s*\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?)*)\s*\]", RegexOptions.CultureInvariant)]
    private static partial Regex Group();

    /// <summary>The citations of <paramref name="answer"/> in text order, each mapped to the source of its number in
    /// <paramref name="sources"/> (or null when there is none). A range wider than the sources is not expanded past
    /// them; a descending range counts as its two ends.</summary>
    public static IReadOnlyList<Citation> Parse(string answer, IReadOnlyList<AnswerSource> sources)
    {
        ArgumentNullException.ThrowIfNull(answer); ArgumentNullException.ThrowIfNull(sources);
        var byNumber = sources.ToDictionary(s => s.Number);
        var found = new List<Citation>();
        foreach (Match m in Group().Matches(answer))
        {
            foreach (string part in m.Groups[1].Value.Split([',', ';'], StringSplitOptions.TrimEntries))
            {
                var ends = part.Split(['-', '\u2013'], StringSplitOptions.TrimEntries);
                int a = int.Parse(ends[0], CultureInfo.InvariantCulture), b = ends.Length > 1 ? int.Parse(ends[1], CultureInfo.InvariantCulture) : a;
                IEnumerable<int> numbers = b >= a ? Enumerable.Range(a, Math.Min(b, Math.Max(a, sources.Count)) - a + 1) : [a, b];
                foreach (int n in numbers)
                    found.Add(new Citation(n, m.Index, m.Length, byNumber.GetValueOrDefault(n)));
            }
        }
        return found;
    }

    /// <summary>The sources cited at least once, in source-number order.</summary>
    public static IReadOnlyList<AnswerSource> Cited(IReadOnlyList<Citation> citations)
        => citations.Where(c => c.Source is not null).Select(c => c.Source!).DistinctBy(s => s.Number).OrderBy(s => s.Number).ToList();
}

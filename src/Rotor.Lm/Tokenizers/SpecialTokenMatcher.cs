namespace Rotor.Lm.Tokenizers;

/// <summary>Finds the text of special (control) and user-defined tokens in a string: at each position the longest
/// token wins, as Hugging Face's added-token matcher and tiktoken's special-token alternation do (no Llama 3 special
/// token is a prefix of another, so their order never matters there).</summary>
internal sealed class SpecialTokenMatcher
{
    private readonly Dictionary<char, (string Text, int Id, bool Control)[]> _byFirstChar = [];
    private readonly Dictionary<string, int> _tokens = new(StringComparer.Ordinal);

    /// <summary>A matcher for <paramref name="tokens"/>: text, id, and whether the token is a control token (matched
    /// only when asked to parse special tokens) rather than a user-defined one (always matched).</summary>
    public SpecialTokenMatcher(IEnumerable<(string Text, int Id, bool Control)> tokens)
    {
        foreach (var group in tokens.Where(t => t.Text.Length > 0).GroupBy(t => t.Text[0]))
        {
            var list = group.GroupBy(t => t.Text, StringComparer.Ordinal).Select(g => g.First())
                .OrderByDescending(t => t.Text.Length).ToArray();
            _byFirstChar[group.Key] = list;
            foreach (var t in list) _tokens[t.Text] = t.Id;
        }
    }

    /// <summary>A matcher that matches nothing.</summary>
    public static SpecialTokenMatcher Empty { get; } = new([]);

    /// <summary>Every token's text and id.</summary>
    public IReadOnlyDictionary<string, int> Tokens => _tokens;

    /// <summary>The first token at or after <paramref name="from"/>: its start, length and id; length 0 and start =
    /// text length when there is none.</summary>
    public (int Start, int Length, int Id) Next(string text, int from, bool parseSpecial)
    {
        if (_byFirstChar.Count == 0) return (text.Length, 0, -1);
        for (int i = from; i < text.Length; i++)
        {
            if (!_byFirstChar.TryGetValue(text[i], out var candidates)) continue;
            var rest = text.AsSpan(i);
            foreach (var (t, id, control) in candidates)
                if ((parseSpecial || !control) && rest.StartsWith(t, StringComparison.Ordinal)) return (i, t.Length, id);
        }
        return (text.Length, 0, -1);
    }
}

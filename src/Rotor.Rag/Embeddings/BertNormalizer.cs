using System.Globalization;
using System.Text;

namespace Rotor.Rag.Embeddings;

/// <summary>
/// BERT-uncased normalization without ICU: lower-case, then canonical decomposition (NFD) with the non-spacing marks
/// (category Mn) removed, so "Héllo Wörld" becomes "hello world". Rotor builds with InvariantGlobalization, where
/// <see cref="string.Normalize()"/> leaves non-ASCII text as it is, so the decompositions come from a table
/// (Resources/strip-accents.tsv, made from Python's unicodedata by make_strip_accents_table.py) and Hangul syllables are
/// decomposed by the Unicode algorithm.
/// </summary>
public static class BertNormalizer
{
    private const string TableResource = "Rotor.Rag.Resources.strip-accents.tsv";
    private static readonly Lazy<Dictionary<int, string>> s_table = new(LoadTable);

    /// <summary>Lower-cases <paramref name="text"/> and strips its accents as BERT uncased does.</summary>
    public static string LowerAndStripAccents(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string lower = text.ToLowerInvariant();
        int i = 0;
        while (i < lower.Length && lower[i] < 0x80) i++;
        if (i == lower.Length) return lower; // ASCII: nothing to strip
        var table = s_table.Value;
        var sb = new StringBuilder(lower.Length);
        sb.Append(lower, 0, i);
        foreach (var rune in lower.AsSpan(i).EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp is >= 0xAC00 and <= 0xD7A3) AppendHangul(sb, cp);
            else if (table.TryGetValue(cp, out var replacement)) sb.Append(replacement);
            else if (Rune.GetUnicodeCategory(rune) == UnicodeCategory.NonSpacingMark) { } // a mark newer than the table
            else sb.Append(rune.ToString());
        }
        return sb.ToString();
    }

    // Unicode 3.12: S = L * 588 + V * 28 + T over the base 0xAC00.
    private static void AppendHangul(StringBuilder sb, int cp)
    {
        int s = cp - 0xAC00;
        sb.Append((char)(0x1100 + s / 588));
        sb.Append((char)(0x1161 + s % 588 / 28));
        if (s % 28 != 0) sb.Append((char)(0x11A7 + s % 28));
    }

    private static Dictionary<int, string> LoadTable()
    {
        using var stream = typeof(BertNormalizer).Assembly.GetManifestResourceStream(TableResource)
            ?? throw new RotorException($"embedded resource {TableResource} is missing from {typeof(BertNormalizer).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var table = new Dictionary<int, string>();
        string? line;
        int lineNo = 0;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            if (line.Length == 0 || line[0] == '#') continue;
            int tab = line.IndexOf('\t');
            if (tab <= 0 || !int.TryParse(line.AsSpan(0, tab), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp))
                throw new RotorException($"{TableResource} line {lineNo}: expected 'HEX<TAB>HEX ...', got '{line}'");
            var sb = new StringBuilder();
            foreach (var part in line[(tab + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(part, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int to) || !Rune.IsValid(to))
                    throw new RotorException($"{TableResource} line {lineNo}: '{part}' is not a code point");
                sb.Append(new Rune(to).ToString());
            }
            table[cp] = sb.ToString();
        }
        if (table.Count < 1000) throw new RotorException($"{TableResource}: only {table.Count} entries, expected about 4000");
        return table;
    }
}

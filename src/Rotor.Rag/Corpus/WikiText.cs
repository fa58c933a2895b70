using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Rotor.Rag.Corpus;

/// <summary>
/// Wikitext to clean text. Removes comments, references, templates <c>{{...}}</c> (nested; the text of lang, nowrap
/// and convert is kept), tables <c>{| ... |}</c>,
/// file/image and category links, interlanguage links, HTML tags and non-prose tags with their content (math, gallery,
/// code ...); turns <c>[[a|b]]</c> into b, <c>[[a]]</c> into a, <c>[http://x label]</c> into label; drops bold/italic
/// quotes and list markers; decodes HTML entities; tidies the punctuation removed templates leave in parentheses. Headings become section titles. Sections that only hold citations or
/// links (References, External links, See also, ...) are dropped.
/// </summary>
public static partial class WikiText
{
    private static readonly HashSet<string> s_droppedSections = new(StringComparer.OrdinalIgnoreCase)
    {
        "References", "External links", "See also", "Further reading", "Notes", "Bibliography", "Sources",
        "Citations", "Footnotes", "Notes and references", "References and notes", "Works cited", "Gallery", "Explanatory notes",
    };

    private static readonly string[] s_dropLinkPrefixes = ["file:", "image:", "media:", "category:"];

    /// <summary>Clean sections of an article's wikitext, lead first (title ""); empty sections are left out.</summary>
    public static IReadOnlyList<DocumentSection> ToSections(string wikitext)
    {
        ArgumentNullException.ThrowIfNull(wikitext);
        string text = StripBlocks(wikitext);
        var sections = new List<DocumentSection>();
        string title = "";
        bool dropped = false;
        var body = new StringBuilder();
        void Flush()
        {
            string clean = body.ToString().Trim();
            if (!dropped && clean.Length > 0) sections.Add(new DocumentSection(title, clean));
            body.Clear();
        }
        foreach (var raw in text.Split('\n'))
        {
            string line = raw.Trim();
            var heading = HeadingRegex().Match(line);
            if (heading.Success)
            {
                Flush();
                title = CleanInline(heading.Groups[2].Value);
                dropped = s_droppedSections.Contains(title);
                continue;
            }
            if (line.Length == 0) { if (body.Length > 0 && body[^1] != '\n') body.Append('\n'); continue; }
            if (line.StartsWith("----", StringComparison.Ordinal)) continue;          // horizontal rule
            if (line[0] is '|' or '!') continue;                                       // stray table row
            line = ListMarkerRegex().Replace(line, "");                                 // * # : ; list and indent markers
            line = CleanInline(line);
            if (line.Length == 0 || !line.Any(char.IsLetterOrDigit)) continue;
            if (body.Length > 0 && body[^1] != '\n') body.Append(' ');
            body.Append(line);
        }
        Flush();
        return sections;
    }

    /// <summary>All clean text of an article, sections separated by blank lines, headings included as lines.</summary>
    public static string ToPlainText(string wikitext)
        => string.Join("\n\n", ToSections(wikitext).Select(s => s.Title.Length == 0 ? s.Text : s.Title + "\n" + s.Text));

    // Multi-line constructs: comments, refs, non-prose tags, templates, tables, links (which may hold templates/links).
    private static string StripBlocks(string s)
    {
        s = CommentRegex().Replace(s, "");
        s = RefSelfClosingRegex().Replace(s, "");
        s = RefRegex().Replace(s, "");
        s = NonProseTagRegex().Replace(s, "");
        s = ExpandTemplates(s);
        s = RemoveTables(s);
        s = ReplaceLinks(s);
        return s;
    }

    private static string CleanInline(string s)
    {
        s = ExternalLinkRegex().Replace(s, m => m.Groups[2].Value);
        s = QuotesRegex().Replace(s, "");
        s = LineBreakTagRegex().Replace(s, " ");
        s = TagRegex().Replace(s, "");
        s = BehaviorSwitchRegex().Replace(s, "");
        s = WebUtility.HtmlDecode(s).Replace('\u00A0', ' ');
        s = s.Replace("{{", "").Replace("}}", "").Replace("[[", "").Replace("]]", "");
        s = ParenOpenPunctRegex().Replace(s, "(");
        s = ParenClosePunctRegex().Replace(s, ")");
        s = EmptyParensRegex().Replace(s, "");
        s = RepeatedCommaRegex().Replace(s, ",");
        s = SpaceBeforePunctRegex().Replace(s, "$1");
        s = SpacesRegex().Replace(s, " ");
        return s.Trim();
    }

    /// <summary>
    /// Removes templates, nested ones included, except the few inline ones whose text is prose: <c>{{lang|xx|text}}</c>
    /// and <c>{{lang-xx|text}}</c> give text, <c>{{nowrap|text}}</c> (and nobr, small, smaller, big) give text,
    /// <c>{{convert|5|km}}</c> (and cvt) give "5 km" (or "5–10 km" for a range). An unclosed opener is removed alone.
    /// </summary>
    internal static string ExpandTemplates(string s)
    {
        if (!s.Contains("{{", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            int start = s.IndexOf("{{", i, StringComparison.Ordinal);
            if (start < 0) { sb.Append(s, i, s.Length - i); break; }
            sb.Append(s, i, start - i);
            int end = MatchClose(s, start, "{{", "}}");
            if (end < 0) { i = start + 2; continue; }
            sb.Append(ExpandTemplate(s.Substring(start + 2, end - start - 4)));
            i = end;
        }
        return sb.ToString();
    }

    private static string ExpandTemplate(string inner)
    {
        var parts = SplitTopLevel(inner);
        string name = parts[0].Trim().ToLowerInvariant();
        var args = parts.Skip(1).Where(p => !NamedParameterRegex().IsMatch(p)).Select(p => p.Trim()).ToList();
        string kept = name switch
        {
            "lang" when args.Count >= 2 => args[1],
            _ when name.StartsWith("lang-", StringComparison.Ordinal) && args.Count >= 1 => args[0],
            "nowrap" or "nobr" or "small" or "smaller" or "big" when args.Count >= 1 => args[0],
            "convert" or "cvt" when args.Count >= 4 && args[1] is "-" or "–" or "to" or "and" => $"{args[0]}–{args[2]} {args[3]}",
            "convert" or "cvt" when args.Count >= 2 => $"{args[0]} {args[1]}",
            _ => "",
        };
        return ExpandTemplates(kept);
    }

    // Splits a template's inside at the '|' that are not inside nested {{ }} or [[ ]].
    private static List<string> SplitTopLevel(string inner)
    {
        var parts = new List<string>();
        int depth = 0, from = 0;
        for (int i = 0; i < inner.Length; i++)
        {
            if (i + 1 < inner.Length && ((inner[i] == '{' && inner[i + 1] == '{') || (inner[i] == '[' && inner[i + 1] == '['))) { depth++; i++; }
            else if (i + 1 < inner.Length && ((inner[i] == '}' && inner[i + 1] == '}') || (inner[i] == ']' && inner[i + 1] == ']'))) { depth--; i++; }
            else if (inner[i] == '|' && depth == 0) { parts.Add(inner[from..i]); from = i + 1; }
        }
        parts.Add(inner[from..]);
        return parts;
    }

    // Index just past the close that balances the open at 'start', or -1.
    private static int MatchClose(string s, int start, string open, string close)
    {
        int depth = 0, i = start;
        while (i < s.Length)
        {
            if (string.CompareOrdinal(s, i, open, 0, open.Length) == 0) { depth++; i += open.Length; }
            else if (string.CompareOrdinal(s, i, close, 0, close.Length) == 0) { depth--; i += close.Length; if (depth == 0) return i; }
            else i++;
        }
        return -1;
    }

    // Tables: lines from "{|" to the balancing "|}" (tables nest).
    private static string RemoveTables(string s)
    {
        if (!s.Contains("{|", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int depth = 0;
        foreach (var line in s.Split('\n'))
        {
            string t = line.TrimStart();
            if (t.StartsWith("{|", StringComparison.Ordinal)) { if (depth++ == 0) sb.Append('\n'); continue; } // a table ends a paragraph
            if (depth > 0)
            {
                if (t.StartsWith("|}", StringComparison.Ordinal)) depth--;
                continue;
            }
            sb.Append(line).Append('\n');
        }
        return sb.ToString();
    }

    // [[target]] -> target, [[target|label]] -> label; file, image, category and interlanguage links removed whole
    // (with any links nested in their captions).
    private static string ReplaceLinks(string s)
    {
        if (!s.Contains("[[", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            int start = s.IndexOf("[[", i, StringComparison.Ordinal);
            if (start < 0) { sb.Append(s, i, s.Length - i); break; }
            sb.Append(s, i, start - i);
            int end = MatchClose(s, start, "[[", "]]");
            if (end < 0) { i = start + 2; continue; }
            string inner = s.Substring(start + 2, end - start - 4);
            i = end;
            string target = inner.Split('|')[0].Trim();
            string lower = target.ToLowerInvariant().TrimStart(':');
            // A leading colon makes [[:Category:X]] a plain link to that page rather than a categorization.
            if (!target.StartsWith(':') && (s_dropLinkPrefixes.Any(p => lower.StartsWith(p, StringComparison.Ordinal)) || InterlanguageRegex().IsMatch(target))) continue;
            int pipe = TopLevelPipe(inner);
            string label = pipe < 0 ? target.TrimStart(':') : inner[(pipe + 1)..];
            if (label.Length == 0) label = target; // the "pipe trick" [[a (b)|]]
            sb.Append(ReplaceLinks(label));
        }
        return sb.ToString();
    }

    private static int TopLevelPipe(string inner)
    {
        int depth = 0;
        for (int i = 0; i < inner.Length; i++)
        {
            if (i + 1 < inner.Length && inner[i] == '[' && inner[i + 1] == '[') { depth++; i++; }
            else if (i + 1 < inner.Length && inner[i] == ']' && inner[i + 1] == ']') { depth--; i++; }
            else if (inner[i] == '|' && depth == 0) return i;
        }
        return -1;
    }

    [GeneratedRegex(@"<!--.*?(-->|\z)", RegexOptions.Singleline)]
    private static partial Regex CommentRegex();

    [GeneratedRegex(@"<ref\b[^>]*/>", RegexOptions.IgnoreCase)]
    private static partial Regex RefSelfClosingRegex();

    [GeneratedRegex(@"<ref\b[^>]*>.*?(</ref\s*>|\z)", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex RefRegex();

    [GeneratedRegex(@"<(math|gallery|timeline|syntaxhighlight|source|score|imagemap|chem|ce|hiero|graph|mapframe|references|nowiki|pre|code)\b[^>]*?(/>|>.*?</\1\s*>)", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex NonProseTagRegex();

    [GeneratedRegex(@"^(={1,6})\s*(.+?)\s*\1\s*$")]
    private static partial Regex HeadingRegex();

    [GeneratedRegex(@"^[*#:;]+\s*")]
    private static partial Regex ListMarkerRegex();

    [GeneratedRegex(@"\[(https?:|ftp:|//)[^\s\]]*\s*([^\]]*)\]", RegexOptions.IgnoreCase)]
    private static partial Regex ExternalLinkRegex();

    [GeneratedRegex(@"<br\s*/?>", RegexOptions.IgnoreCase)]
    private static partial Regex LineBreakTagRegex();

    [GeneratedRegex(@"</?[a-zA-Z][^<>]*>")]
    private static partial Regex TagRegex();

    [GeneratedRegex(@"__[A-Z]+__")]
    private static partial Regex BehaviorSwitchRegex();

    [GeneratedRegex(@"^[a-z]{2,3}(-[a-z]+)*:")]
    private static partial Regex InterlanguageRegex();

    [GeneratedRegex(@"\(\s*[,;:]?\s*\)")]
    private static partial Regex EmptyParensRegex();

    [GeneratedRegex(@"\(\s*([,;:]\s*)+")]
    private static partial Regex ParenOpenPunctRegex();

    [GeneratedRegex(@"(\s*[,;:])+\s*\)")]
    private static partial Regex ParenClosePunctRegex();

    [GeneratedRegex(@",(\s*,)+")]
    private static partial Regex RepeatedCommaRegex();

    [GeneratedRegex(@"'{2,}")]
    private static partial Regex QuotesRegex();

    [GeneratedRegex(@"^\s*[\w -]+\s*=")]
    private static partial Regex NamedParameterRegex();


    [GeneratedRegex(@"\s+([,.;:!?)])")]
    private static partial Regex SpaceBeforePunctRegex();

    [GeneratedRegex(@"[ \t]{2,}")]
    private static partial Regex SpacesRegex();
}

using System.Xml;
using SharpCompress.Compressors;
using SharpCompress.Compressors.BZip2;

namespace Rotor.Rag.Corpus;

/// <summary>One &lt;page&gt; of a MediaWiki XML export (its latest revision).</summary>
/// <param name="Id">Page id.</param>
/// <param name="Title">Page title.</param>
/// <param name="Namespace">Namespace key: 0 for articles.</param>
/// <param name="RedirectTo">Target title when the page is a redirect, else null.</param>
/// <param name="Wikitext">The revision's wikitext.</param>
public sealed record WikiPage(long Id, string Title, int Namespace, string? RedirectTo, string Wikitext)
{
    /// <summary>True for a real article: namespace 0 and not a redirect.</summary>
    public bool IsArticle => Namespace == 0 && RedirectTo is null;
}

/// <summary>Counts of what a dump read has seen so far.</summary>
public sealed class WikiDumpStats
{
    /// <summary>&lt;page&gt; elements read.</summary>
    public int Pages { get; internal set; }
    /// <summary>Pages that are redirects (any namespace).</summary>
    public int Redirects { get; internal set; }
    /// <summary>Pages outside namespace 0 that are not redirects.</summary>
    public int OtherNamespace { get; internal set; }
    /// <summary>Articles: namespace 0, not redirects.</summary>
    public int Articles { get; internal set; }
    /// <summary>Uncompressed characters of article wikitext.</summary>
    public long ArticleChars { get; internal set; }
    /// <summary>Bytes of the dump file read so far (compressed bytes for .bz2), for progress.</summary>
    public long BytesRead { get; internal set; }
    /// <summary>Size of the dump file in bytes.</summary>
    public long TotalBytes { get; internal set; }
}

/// <summary>
/// Streams pages out of a MediaWiki XML dump (pages-articles, plain <c>.xml</c> or <c>.xml.bz2</c>) with an
/// <see cref="XmlReader"/>, one page in memory at a time.
/// </summary>
public static class WikiDumpReader
{
    /// <summary>Every page of the dump, redirects and other namespaces included.</summary>
    /// <param name="path">A .xml or .bz2 file.</param>
    /// <param name="stats">Updated as pages are read.</param>
    /// <exception cref="RotorException">The file is missing, not bzip2 where named .bz2, or not a MediaWiki export; the message names the file and line.</exception>
    public static IEnumerable<WikiPage> ReadPages(string path, WikiDumpStats? stats = null)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: Wikipedia dump not found");
        stats ??= new WikiDumpStats();
        return ReadPagesCore(path, stats);
    }

    /// <summary>
    /// Articles only (namespace 0, no redirects), as clean sectioned documents (see <see cref="WikiText"/>), in dump
    /// order. The dump is read on one thread while <paramref name="threads"/> threads clean the wikitext.
    /// </summary>
    /// <param name="path">A .xml or .bz2 file.</param>
    /// <param name="stats">Updated as pages are read.</param>
    /// <param name="threads">Threads cleaning wikitext; 0 means <see cref="Rotor.Threading.ThreadCount.Default"/>.</param>
    /// <param name="limit">At most this many articles (0: all); the dump is not read past the last of them.</param>
    public static IEnumerable<Document> ReadArticles(string path, WikiDumpStats? stats = null, int threads = 0, long limit = 0)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be 0 (the process default) or positive");
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var articles = ReadPages(path, stats).Where(p => p.IsArticle);
        // The limit applies before the parallel stage, which reads ahead of what is consumed.
        if (limit > 0) articles = articles.Take((int)Math.Min(limit, int.MaxValue));
        static Document Clean(WikiPage page)
            => new(page.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), page.Title, WikiText.ToSections(page.Wikitext));
        if (threads == 1) return articles.Select(Clean);
        return Unwrapped(articles.AsParallel().AsOrdered().WithDegreeOfParallelism(threads == 0 ? Rotor.Threading.ThreadCount.Default : threads).Select(Clean));
    }

    // PLINQ wraps what the reader throws in an AggregateException; a single RotorException is rethrown as itself.
    private static IEnumerable<Document> Unwrapped(IEnumerable<Document> parallel)
    {
        using var e = parallel.GetEnumerator();
        while (true)
        {
            try { if (!e.MoveNext()) yield break; }
            catch (AggregateException a) when (a.InnerExceptions.Count == 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(a.InnerExceptions[0]);
            }
            yield return e.Current;
        }
    }

    /// <summary>Opens a dump for reading, decompressing bzip2 when the file is bzip2.</summary>
    public static Stream Open(string path) => Open(path, out _);

    private static Stream Open(string path, out FileStream file)
    {
        file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            bool bz2 = BZip2Stream.IsBZip2(file);
            file.Position = 0;
            if (bz2)
            {
                try { return new BufferedStream(BZip2Stream.Create(file, CompressionMode.Decompress, decompressConcatenated: true, leaveOpen: false), 1 << 16); }
                catch (Exception e) when (IsReadError(e)) { throw new RotorException($"{path}: corrupt bzip2 data: {e.Message}", e); }
            }
            if (path.EndsWith(".bz2", StringComparison.OrdinalIgnoreCase)) throw new RotorException($"{path}: named .bz2 but is not bzip2 data");
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static IEnumerable<WikiPage> ReadPagesCore(string path, WikiDumpStats stats)
    {
        using var stream = Open(path, out var file);
        stats.TotalBytes = file.Length;
        XmlReader created;
        // Create reads the first buffer (all of a small file) to detect the encoding: decoder errors can surface here.
        try { created = XmlReader.Create(stream, new XmlReaderSettings { IgnoreWhitespace = true, IgnoreComments = true, DtdProcessing = DtdProcessing.Prohibit }); }
        catch (Exception e) when (IsReadError(e)) { throw new RotorException($"{path}: cannot read the dump: {e.Message}", e); }
        using var xml = created;
        bool sawRoot = false;
        while (true)
        {
            bool more;
            try { more = xml.Read(); }
            catch (Exception e) when (IsReadError(e))
            {
                throw new RotorException($"{path}: {Where(xml)}: cannot read the dump: {e.Message}", e);
            }
            if (!more) break;
            if (xml.NodeType != XmlNodeType.Element) continue;
            if (!sawRoot)
            {
                if (xml.LocalName != "mediawiki") throw new RotorException($"{path}: root element is <{xml.LocalName}>, expected <mediawiki> (a MediaWiki XML export)");
                sawRoot = true;
                continue;
            }
            if (xml.LocalName != "page" || xml.Depth != 1) continue;
            WikiPage page;
            try { page = ReadPage(xml, path); }
            catch (XmlException e) { throw new RotorException($"{path}: {Where(xml)}: malformed <page>: {e.Message}", e); }
            catch (Exception e) when (IsReadError(e)) { throw new RotorException($"{path}: {Where(xml)}: cannot read the dump: {e.Message}", e); }
            stats.Pages++;
            stats.BytesRead = file.CanSeek ? file.Position : stats.TotalBytes; // the bzip2 reader closes the file at its end
            if (page.RedirectTo is not null) stats.Redirects++;
            else if (page.Namespace != 0) stats.OtherNamespace++;
            else { stats.Articles++; stats.ArticleChars += page.Wikitext.Length; }
            yield return page;
        }
        if (!sawRoot) throw new RotorException($"{path}: empty, no <mediawiki> root element");
    }

    // Reads one <page> subtree: title, ns, id, redirect/@title and revision/text. The reader ends on </page>.
    private static WikiPage ReadPage(XmlReader xml, string path)
    {
        string where = Where(xml);
        string? title = null, text = null, redirect = null, ns = null, id = null;
        using (var page = xml.ReadSubtree())
        {
            page.Read(); // <page>
            page.Read();
            while (!page.EOF)
            {
                // ReadElementContentAsString moves past the element, so only Read() when nothing was consumed.
                if (page.NodeType == XmlNodeType.Element)
                {
                    switch (page.LocalName)
                    {
                        case "title" when page.Depth == 1: title = page.ReadElementContentAsString(); continue;
                        case "ns" when page.Depth == 1: ns = page.ReadElementContentAsString(); continue;
                        case "id" when page.Depth == 1: id = page.ReadElementContentAsString(); continue;
                        case "text" when page.Depth == 2: text = page.ReadElementContentAsString(); continue;
                        case "redirect" when page.Depth == 1: redirect = page.GetAttribute("title") ?? ""; break;
                    }
                }
                page.Read();
            }
        }
        if (title is null) throw new RotorException($"{path}: page at {where} has no <title>");
        if (!int.TryParse(ns, out int nsKey)) throw new RotorException($"{path}: page '{title}' at {where}: <ns> is '{ns}', expected an integer");
        if (!long.TryParse(id, out long pageId)) throw new RotorException($"{path}: page '{title}' at {where}: <id> is '{id}', expected an integer");
        return new WikiPage(pageId, title, nsKey, redirect, text ?? "");
    }

    // What reading a damaged dump throws: XML errors, I/O errors and whatever the bzip2 decoder (a third-party library)
    // throws on corrupt blocks (its own exception types, or index and argument errors from its tables). A RotorException
    // is Rotor's own, already worded.
    private static bool IsReadError(Exception e) =>
        e is not (RotorException or OutOfMemoryException or OperationCanceledException)
        && (e is XmlException or InvalidOperationException or IOException or InvalidDataException or System.Text.DecoderFallbackException
            or IndexOutOfRangeException or ArgumentException or NullReferenceException
            || e.GetType().Namespace?.StartsWith("SharpCompress", StringComparison.Ordinal) == true);

    private static string Where(XmlReader xml) => xml is IXmlLineInfo li && li.HasLineInfo() ? $"line {li.LineNumber}" : "unknown line";
}

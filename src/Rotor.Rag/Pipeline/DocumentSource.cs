using System.Globalization;
using Rotor.Rag.Corpus;

namespace Rotor.Rag.Pipeline;

/// <summary>
/// Where an index's documents come from: a Wikipedia dump, a folder of text files or a BEIR-style JSON-lines corpus.
/// Reading is deterministic (same documents, same order), which is what lets an interrupted build skip what it has
/// already committed. Reports its position for progress lines and what it skipped.
/// </summary>
public abstract class DocumentSource
{
    private protected DocumentSource(string kind, string path)
    {
        Kind = kind;
        Path = path;
    }

    /// <summary>wiki, docs or jsonl.</summary>
    public string Kind { get; }

    /// <summary>The file or folder read.</summary>
    public string Path { get; }

    /// <summary>Bytes of the source (file length, or total length of the folder's files): a resumed build checks it is unchanged.</summary>
    public abstract long SizeBytes { get; }

    /// <summary>Documents, streamed, in a fixed order. Counters restart with each call.</summary>
    /// <param name="limit">At most this many documents (0: all). Nothing of the source past them is read, so that a
    /// damaged tail cannot fail a build that stops before it.</param>
    public abstract IEnumerable<Document> ReadDocuments(long limit = 0);

    /// <summary>Fraction of the source read so far (0..1), for the ETA.</summary>
    public abstract double Fraction { get; }

    /// <summary>Position in words, e.g. "pages 1,234, read 12.3/1,700.0 MB".</summary>
    public abstract string Position { get; }

    /// <summary>Items the source itself skipped, by reason (e.g. redirects, other namespaces).</summary>
    public abstract IReadOnlyDictionary<string, long> Skipped { get; }

    /// <summary>A MediaWiki XML dump (.xml or .xml.bz2): articles only; redirects and other namespaces are skipped.</summary>
    public static DocumentSource Wiki(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: Wikipedia dump not found");
        return new WikiSource(path);
    }

    /// <summary>A folder of .txt and .md files (see <see cref="TextFolderReader"/>).</summary>
    public static DocumentSource Folder(string path)
    {
        if (!Directory.Exists(path)) throw new RotorException($"{path}: folder not found");
        return new FolderSource(path);
    }

    /// <summary>A BEIR corpus file: one <c>{"_id","title","text"}</c> a line, plain or gzip.</summary>
    public static DocumentSource Jsonl(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: corpus file not found");
        return new JsonlSource(path);
    }

    private static string Mb(long bytes) => (bytes / 1e6).ToString("N1", CultureInfo.InvariantCulture);

    private sealed class WikiSource(string path) : DocumentSource("wiki", path)
    {
        private WikiDumpStats _stats = new();
        public override long SizeBytes => new FileInfo(Path).Length;
        public override IEnumerable<Document> ReadDocuments(long limit = 0)
        {
            _stats = new WikiDumpStats();
            return WikiDumpReader.ReadArticles(Path, _stats, limit: limit);
        }
        public override double Fraction => _stats.TotalBytes == 0 ? 0 : (double)_stats.BytesRead / _stats.TotalBytes;
        public override string Position => string.Create(CultureInfo.InvariantCulture,
            $"pages {_stats.Pages:N0} ({_stats.Articles:N0} articles), read {Mb(_stats.BytesRead)}/{Mb(_stats.TotalBytes)} MB");
        public override IReadOnlyDictionary<string, long> Skipped => new Dictionary<string, long>
        {
            ["redirects"] = _stats.Redirects,
            ["other-namespaces"] = _stats.OtherNamespace,
        };
    }

    private sealed class FolderSource(string path) : DocumentSource("docs", path)
    {
        private int _files, _read, _brokenLinks;
        private long _bytesRead;
        private List<string> Files() => TextFolderReader.Files(Path, out _brokenLinks);
        public override long SizeBytes => Files().Sum(f => new FileInfo(f).Length);
        public override IEnumerable<Document> ReadDocuments(long limit = 0)
        {
            var files = Files();
            _files = files.Count; _read = 0; _bytesRead = 0;
            foreach (var f in limit > 0 ? files.Take((int)Math.Min(limit, int.MaxValue)) : files)
            {
                var doc = TextFolderReader.ReadFile(f, System.IO.Path.GetRelativePath(Path, f).Replace('\\', '/'));
                _read++;
                _bytesRead += new FileInfo(f).Length;
                yield return doc;
            }
        }
        public override double Fraction => _files == 0 ? 0 : (double)_read / _files;
        public override string Position => string.Create(CultureInfo.InvariantCulture, $"files {_read:N0}/{_files:N0}, read {Mb(_bytesRead)} MB");
        public override IReadOnlyDictionary<string, long> Skipped =>
            _brokenLinks == 0 ? new Dictionary<string, long>() : new Dictionary<string, long> { ["broken-links"] = _brokenLinks };
    }

    private sealed class JsonlSource(string path) : DocumentSource("jsonl", path)
    {
        private long _lines = -1, _read;
        public override long SizeBytes => new FileInfo(Path).Length;
        public override IEnumerable<Document> ReadDocuments(long limit = 0)
        {
            if (_lines < 0)
            {
                // One quick pass for the total (the ETA); far cheaper than embedding what it counts.
                long n = 0;
                foreach (var (_, line) in TextLines.Read(Path)) if (!string.IsNullOrWhiteSpace(line)) n++;
                _lines = n;
            }
            _read = 0;
            foreach (var d in limit > 0 ? BeirReader.ReadCorpus(Path).Take((int)Math.Min(limit, int.MaxValue)) : BeirReader.ReadCorpus(Path))
            {
                _read++;
                yield return d;
            }
        }
        public override double Fraction => _lines <= 0 ? 0 : (double)_read / _lines;
        public override string Position => string.Create(CultureInfo.InvariantCulture, $"documents {_read:N0}/{Math.Max(_lines, 0):N0}");
        public override IReadOnlyDictionary<string, long> Skipped => new Dictionary<string, long>();
    }
}

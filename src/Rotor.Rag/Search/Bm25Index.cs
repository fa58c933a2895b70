using Lucene.Net.Analysis;
using Lucene.Net.Analysis.En;
using Lucene.Net.Analysis.TokenAttributes;
using Lucene.Net.Documents;
using Lucene.Net.Index;
using Lucene.Net.Search;
using Lucene.Net.Search.Similarities;
using Lucene.Net.Store;
using Lucene.Net.Util;
using LuceneDirectory = Lucene.Net.Store.Directory;

namespace Rotor.Rag.Search;

/// <summary>
/// BM25 lexical search with Lucene.Net: one analyzed field (Lucene's EnglishAnalyzer: standard tokenizer, possessive
/// filter, lower case, English stop words, Porter stemmer) and one stored ordinal a document. A query is analyzed the same
/// way and becomes a disjunction of its terms. Built in a folder (written to a sibling temp folder, committed, then
/// renamed into place) or in memory. Thread-safe for searching.
/// </summary>
public sealed class Bm25Index : IDisposable
{
    private const string TextField = "text";
    private const string OrdField = "ord";
    private const LuceneVersion Version = LuceneVersion.LUCENE_48;

    private readonly LuceneDirectory _directory;
    private readonly DirectoryReader _reader;
    private readonly IndexSearcher _searcher;
    private readonly Analyzer _analyzer;
    private readonly int[] _ordOf; // Lucene doc id -> ordinal

    private readonly string _where;

    private Bm25Index(LuceneDirectory directory, string where, float k1, float b)
    {
        _directory = directory;
        _where = where;
        _analyzer = new EnglishAnalyzer(Version);
        try
        {
            _reader = DirectoryReader.Open(directory);
        }
        catch (Exception e) when (e is IOException or CorruptIndexException or IndexFormatTooOldException or IndexFormatTooNewException)
        {
            throw new RotorException($"{where}: not a readable BM25 (Lucene) index: {e.Message}", e);
        }
        Similarity = new BM25Similarity(k1, b);
        _searcher = new IndexSearcher(_reader) { Similarity = Similarity };
        _ordOf = new int[_reader.MaxDoc];
        var seen = new bool[_reader.MaxDoc];
        for (int d = 0; d < _reader.MaxDoc; d++)
        {
            var field = _reader.Document(d).GetField(OrdField)
                ?? throw new RotorException($"{where}: document {d} has no '{OrdField}' field; not an index built by Bm25Index");
            int ord = field.GetInt32Value() ?? -1;
            if (ord < 0 || ord >= _reader.MaxDoc || seen[ord])
                throw new RotorException($"{where}: document {d} has ordinal {ord}; ordinals must be 0..{_reader.MaxDoc - 1}, each once");
            seen[ord] = true;
            _ordOf[d] = ord;
        }
    }

    /// <summary>The BM25 parameters in use.</summary>
    public BM25Similarity Similarity { get; }

    /// <summary>Documents indexed.</summary>
    public int Count => _reader.NumDocs;

    /// <summary>Builds an index of <paramref name="texts"/> (ordinal = position) in memory.</summary>
    public static Bm25Index BuildInMemory(IEnumerable<string> texts, float k1 = 0.9f, float b = 0.4f)
    {
        var dir = new RAMDirectory();
        Write(dir, texts, k1, b, null);
        return new Bm25Index(dir, "in-memory index", k1, b);
    }

    /// <summary>
    /// Builds an index of <paramref name="texts"/> (ordinal = position) in <paramref name="folder"/>, replacing what is
    /// there. Written into a temporary folder beside it first (<see cref="AtomicFile.TempPathOf"/>) and moved into place
    /// once committed; the temporary folders of builds whose process died are deleted first. Callers that may run
    /// concurrently hold the folder's <see cref="FileLock"/> (rotor ingest does).
    /// </summary>
    /// <param name="folder">Target folder.</param>
    /// <param name="texts">Document texts.</param>
    /// <param name="k1">BM25 k1.</param>
    /// <param name="b">BM25 b.</param>
    /// <param name="progress">Called every 1,000 documents with the count so far.</param>
    public static Bm25Index Build(string folder, IEnumerable<string> texts, float k1 = 0.9f, float b = 0.4f, Action<int>? progress = null)
    {
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        AtomicFile.RemoveStale(full);
        string temp = AtomicFile.TempPathOf(full), old = AtomicFile.TempPathOf(full);
        bool aside = false;
        try
        {
            using (var dir = FSDirectory.Open(temp)) Write(dir, texts, k1, b, progress);
            // A folder cannot be renamed over another: the old one is moved aside first (a reader opening it in
            // between finds no folder and says so), then deleted once the new one is in place.
            if (System.IO.Directory.Exists(full)) { System.IO.Directory.Move(full, old); aside = true; }
            System.IO.Directory.Move(temp, full);
            aside = false;
        }
        finally
        {
            if (aside && !System.IO.Directory.Exists(full)) System.IO.Directory.Move(old, full); // the new one did not go in
            foreach (string t in new[] { temp, old })
                if (System.IO.Directory.Exists(t)) System.IO.Directory.Delete(t, recursive: true);
        }
        return Open(folder, k1, b);
    }

    /// <summary>Opens an index built by <see cref="Build"/>.</summary>
    /// <exception cref="RotorException">The folder is missing or does not hold a valid index.</exception>
    public static Bm25Index Open(string folder, float k1 = 0.9f, float b = 0.4f)
    {
        if (!System.IO.Directory.Exists(folder)) throw new RotorException($"{folder}: BM25 index folder not found");
        return new Bm25Index(FSDirectory.Open(folder), folder, k1, b);
    }

    private static void Write(LuceneDirectory dir, IEnumerable<string> texts, float k1, float b, Action<int>? progress)
    {
        var config = new IndexWriterConfig(Version, new EnglishAnalyzer(Version))
        {
            OpenMode = OpenMode.CREATE,
            Similarity = new BM25Similarity(k1, b),
            RAMBufferSizeMB = 64,
        };
        using var writer = new IndexWriter(dir, config);
        int ord = 0;
        var textField = new TextField(TextField, "", Field.Store.NO);
        var ordField = new StoredField(OrdField, 0);
        var doc = new Lucene.Net.Documents.Document { textField, ordField };
        foreach (var text in texts)
        {
            textField.SetStringValue(text ?? throw new ArgumentException($"text {ord} is null", nameof(texts)));
            ordField.SetInt32Value(ord);
            writer.AddDocument(doc);
            ord++;
            if (progress is not null && ord % 1000 == 0) progress(ord);
        }
        writer.Commit();
    }

    /// <summary>Analyzed terms of a text, as the index sees them (lower-cased, stop words out, Porter-stemmed).</summary>
    public IReadOnlyList<string> Analyze(string text)
    {
        var terms = new List<string>();
        using var ts = _analyzer.GetTokenStream(TextField, text);
        var term = ts.AddAttribute<ICharTermAttribute>();
        ts.Reset();
        while (ts.IncrementToken()) terms.Add(term.ToString());
        ts.End();
        return terms;
    }

    /// <summary>The <paramref name="k"/> best documents for <paramref name="query"/> by BM25, best first; empty when no query term is indexed.</summary>
    public IReadOnlyList<ScoredOrdinal> Search(string query, int k) => Search(query, k, null);

    /// <summary>
    /// As <see cref="Search(string, int)"/>, but scored with the collection and term statistics of a larger collection
    /// that this index is one part of (<see cref="Bm25Statistics.Sum"/> of every part's <see cref="Statistics"/>): BM25's
    /// idf and average length then come from the whole collection, so each part scores a document exactly as one index
    /// of the whole collection would.
    /// </summary>
    /// <param name="query">Query text.</param>
    /// <param name="k">Hits to return (positive).</param>
    /// <param name="global">Statistics of the whole collection for this query's terms; null: this index's own.</param>
    /// <exception cref="RotorException">A query term is missing from <paramref name="global"/>.</exception>
    public IReadOnlyList<ScoredOrdinal> Search(string query, int k, Bm25Statistics? global)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
        var terms = Analyze(query);
        if (terms.Count == 0) return [];
        var bq = new BooleanQuery();
        // A repeated query term counts once per occurrence, as in Lucene's query parser.
        foreach (var t in terms.Take(BooleanQuery.MaxClauseCount)) bq.Add(new TermQuery(new Term(TextField, t)), Occur.SHOULD);
        var searcher = global is null ? _searcher : new GlobalStatisticsSearcher(_reader, global) { Similarity = Similarity };
        var top = searcher.Search(bq, k);
        var hits = new ScoredOrdinal[top.ScoreDocs.Length];
        for (int i = 0; i < hits.Length; i++) hits[i] = new ScoredOrdinal(_ordOf[top.ScoreDocs[i].Doc], top.ScoreDocs[i].Score);
        return hits;
    }

    /// <summary>Reads every file of every segment and checks it against its Lucene checksum footer (Lucene checks only
    /// the small files when it opens an index).</summary>
    /// <exception cref="RotorException">A file is damaged (the message names the folder and Lucene's finding).</exception>
    public void CheckIntegrity()
    {
        try
        {
            foreach (var leaf in _reader.Leaves) leaf.AtomicReader.CheckIntegrity();
        }
        catch (Exception e) when (e is IOException or CorruptIndexException)
        {
            throw new RotorException($"{_where}: BM25 (Lucene) index is corrupt: {e.Message}", e);
        }
    }

    /// <summary>This index's BM25 statistics for the analyzed terms of <paramref name="query"/>: what
    /// <see cref="Search(string, int, Bm25Statistics?)"/> needs, summed over every part of a collection.</summary>
    public Bm25Statistics Statistics(string query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var c = _searcher.CollectionStatistics(TextField);
        var terms = new Dictionary<string, (long DocFreq, long TotalTermFreq)>(StringComparer.Ordinal);
        foreach (var t in Analyze(query).Take(BooleanQuery.MaxClauseCount))
        {
            if (terms.ContainsKey(t)) continue;
            var term = new Term(TextField, t);
            var context = TermContext.Build(_searcher.TopReaderContext, term);
            var s = _searcher.TermStatistics(term, context);
            terms[t] = (s.DocFreq, s.TotalTermFreq);
        }
        return new Bm25Statistics(c.MaxDoc, c.DocCount, c.SumTotalTermFreq, c.SumDocFreq, terms);
    }

    // Answers Lucene's statistics questions with the whole collection's figures; everything else is the part's own.
    private sealed class GlobalStatisticsSearcher(IndexReader reader, Bm25Statistics global) : IndexSearcher(reader)
    {
        public override CollectionStatistics CollectionStatistics(string field)
            => new(field, global.MaxDocuments, global.DocumentCount, global.SumTotalTermFrequency, global.SumDocumentFrequency);

        public override TermStatistics TermStatistics(Term term, TermContext context)
        {
            string text = term.Text;
            if (!global.Terms.TryGetValue(text, out var s)) throw new RotorException($"BM25 statistics hold no entry for the query term '{text}'");
            return new TermStatistics(term.Bytes, s.DocFreq, s.TotalTermFreq);
        }
    }

    /// <summary>Closes the reader and the directory.</summary>
    public void Dispose()
    {
        _reader.Dispose();
        _directory.Dispose();
        _analyzer.Dispose();
    }
}

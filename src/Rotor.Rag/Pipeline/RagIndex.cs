using System.Diagnostics;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;
using RagHit = Rotor.Rag.Search.SearchHit;

namespace Rotor.Rag.Pipeline;

/// <summary>A passage found by a search of a <see cref="RagIndex"/>.</summary>
/// <param name="Passage">The passage.</param>
/// <param name="Score">Score in the mode used: cosine (dense), BM25 (lexical) or RRF (hybrid).</param>
/// <param name="DenseScore">Cosine similarity when the passage was among the dense candidates.</param>
/// <param name="DenseRank">1-based rank among the dense candidates, or null.</param>
/// <param name="LexicalRank">1-based rank among the BM25 candidates, or null.</param>
public sealed record RagHitResult(Passage Passage, float Score, float? DenseScore, int? DenseRank, int? LexicalRank);

/// <summary>What one search found and what it cost.</summary>
/// <param name="Hits">Passages, best first.</param>
/// <param name="DenseScores">Cosine scores of the dense candidates, best first (empty in lexical mode): the input of adaptive retrieval.</param>
/// <param name="EmbedMilliseconds">Time to embed the query.</param>
/// <param name="SearchMilliseconds">Time in the dense and BM25 searches and the fusion.</param>
public sealed record RagSearchResult(IReadOnlyList<RagHitResult> Hits, IReadOnlyList<float> DenseScores, double EmbedMilliseconds, double SearchMilliseconds);

/// <summary>
/// A RAG index directory opened for search (layout: docs/PIPELINE.md): <c>manifest.json</c>, <c>passages.jsonl</c>
/// (<see cref="PassageFile"/>), <c>vectors.rix</c> (a Rotor.Index <see cref="VectorIndex"/> keyed by passage id with stored
/// fields title and section) and <c>bm25/</c> (a <see cref="Bm25Index"/> whose ordinals are positions in passages.jsonl).
/// Built by <see cref="RagIndexBuilder"/>. Thread-safe for searching.
/// </summary>
public sealed class RagIndex : IDisposable
{
    /// <summary>Manifest file name.</summary>
    public const string ManifestFile = "manifest.json";
    /// <summary>Passage file name.</summary>
    public const string PassagesFile = "passages.jsonl";
    /// <summary>Vector index file name.</summary>
    public const string VectorsFile = "vectors.rix";
    /// <summary>BM25 folder name.</summary>
    public const string Bm25Folder = "bm25";
    /// <summary>Checkpoint of an unfinished build.</summary>
    public const string CheckpointFile = "checkpoint.json";

    private readonly SentenceEmbedder _embedder;
    private readonly Bm25Index _bm25;

    private RagIndex(string directory, RagManifest manifest, IReadOnlyList<Passage> passages, VectorIndex vectors, Bm25Index bm25, SentenceEmbedder embedder)
    {
        Directory = directory; Manifest = manifest; Passages = passages; Vectors = vectors; _bm25 = bm25; _embedder = embedder;
        var ordinals = new Dictionary<string, int>(passages.Count, StringComparer.Ordinal);
        for (int i = 0; i < passages.Count; i++) ordinals[passages[i].Id] = i;
        OrdinalOf = ordinals;
        Dense = new IndexDenseSearcher(vectors, ordinals, manifest.RescoreFactor);
    }

    /// <summary>The index directory.</summary>
    public string Directory { get; }
    /// <summary>The manifest.</summary>
    public RagManifest Manifest { get; }
    /// <summary>Passages in ordinal order.</summary>
    public IReadOnlyList<Passage> Passages { get; }
    /// <summary>Passage id to ordinal.</summary>
    public IReadOnlyDictionary<string, int> OrdinalOf { get; }
    /// <summary>The dense vectors.</summary>
    public VectorIndex Vectors { get; }
    /// <summary>Dense search with the manifest's rescoring factor.</summary>
    public IndexDenseSearcher Dense { get; }
    /// <summary>BM25 over <see cref="Passage.IndexText"/>.</summary>
    public Bm25Index Lexical => _bm25;

    /// <summary>Opens and checks an index directory; <paramref name="embedder"/> must be the model it was built with.</summary>
    /// <param name="directory">The index directory.</param>
    /// <param name="embedder">Embeds queries (not disposed by the index).</param>
    /// <param name="verifyChecksums">Check the SHA-256 of passages.jsonl and vectors.rix (sizes are always checked).</param>
    /// <exception cref="RotorException">A file is missing, of the wrong size or checksum, the counts disagree, or the model differs (the message names which).</exception>
    public static RagIndex Open(string directory, SentenceEmbedder embedder, bool verifyChecksums = true)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        if (!System.IO.Directory.Exists(directory)) throw new RotorException($"{directory}: index directory not found");
        string manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            if (File.Exists(Path.Combine(directory, CheckpointFile)))
                throw new RotorException($"{directory}: the index build did not finish ({CheckpointFile} present, no {ManifestFile}): run the same 'rotor index' command again to resume it");
            throw new RotorException($"{directory}: not a RAG index ({ManifestFile} missing)");
        }
        var m = RagManifest.Load(manifestPath);
        if (m.Dimensions != embedder.Dimensions || !string.Equals(m.ModelSha256, embedder.ModelSha256, StringComparison.OrdinalIgnoreCase))
            throw new RotorException($"{manifestPath}: built with model {m.ModelName} ({m.Dimensions} dims, sha256 {m.ModelSha256[..Math.Min(12, m.ModelSha256.Length)]}), " +
                                     $"but the query embedder is {embedder.ModelId} ({embedder.Dimensions} dims, sha256 {embedder.ModelSha256[..12]})");
        string passagesPath = Path.Combine(directory, PassagesFile), vectorsPath = Path.Combine(directory, VectorsFile), bm25Path = Path.Combine(directory, Bm25Folder);
        CheckStamp(passagesPath, m.PassagesFile, "files.passages.jsonl", manifestPath, verifyChecksums);
        CheckStamp(vectorsPath, m.VectorsFile, "files.vectors.rix", manifestPath, verifyChecksums);
        if (!System.IO.Directory.Exists(bm25Path)) throw new RotorException($"{bm25Path}: BM25 folder missing");
        var (bm25Files, bm25Bytes) = FolderSize(bm25Path);
        if (bm25Files != m.Bm25Files || bm25Bytes != m.Bm25Bytes)
            throw new RotorException($"{bm25Path}: holds {bm25Files} files of {bm25Bytes} bytes, the manifest says {m.Bm25Files} files of {m.Bm25Bytes} bytes");

        var passages = PassageFile.Read(passagesPath).ToList();
        if (passages.Count != m.Passages) throw new RotorException($"{passagesPath}: holds {passages.Count} passages, {manifestPath} says counts.passages = {m.Passages}");
        VectorIndex? vectors = null;
        Bm25Index? bm25 = null;
        try
        {
            vectors = VectorIndex.Open(vectorsPath);
            if (vectors.Count != passages.Count) throw new RotorException($"{vectorsPath}: holds {vectors.Count} vectors for {passages.Count} passages");
            if (vectors.Options.Dimensions != m.Dimensions) throw new RotorException($"{vectorsPath}: vectors have {vectors.Options.Dimensions} dimensions, the manifest says {m.Dimensions}");
            if (vectors.Options.Code != m.Code) throw new RotorException($"{vectorsPath}: code is {vectors.Options.Code}, the manifest says {m.Code}");
            foreach (var p in passages)
                if (!vectors.Contains(p.Id)) throw new RotorException($"{vectorsPath}: no vector for passage '{p.Id}'");
            bm25 = Bm25Index.Open(bm25Path);
            if (bm25.Count != passages.Count) throw new RotorException($"{bm25Path}: holds {bm25.Count} documents for {passages.Count} passages");
            return new RagIndex(directory, m, passages, vectors, bm25, embedder);
        }
        catch
        {
            vectors?.Dispose();
            bm25?.Dispose();
            throw;
        }
    }

    private static void CheckStamp(string path, FileStamp expected, string field, string manifestPath, bool verify)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: missing ({manifestPath} lists it)");
        long len = new FileInfo(path).Length;
        if (len != expected.Bytes) throw new RotorException($"{path}: {len} bytes, {manifestPath} says {field}.bytes = {expected.Bytes} (truncated or changed)");
        if (verify)
        {
            var actual = FileStamp.Of(path);
            if (!string.Equals(actual.Sha256, expected.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new RotorException($"{path}: SHA-256 {actual.Sha256} differs from {field}.sha256 {expected.Sha256} in {manifestPath} (corrupt or changed)");
        }
    }

    /// <summary>Files and total bytes of a folder (recursive).</summary>
    internal static (int Files, long Bytes) FolderSize(string folder)
    {
        int n = 0; long bytes = 0;
        foreach (var f in new DirectoryInfo(folder).EnumerateFiles("*", SearchOption.AllDirectories)) { n++; bytes += f.Length; }
        return (n, bytes);
    }

    /// <summary>A <see cref="Retriever"/> over this index (dense through <see cref="Dense"/>, BM25 through <see cref="Lexical"/>).</summary>
    public Retriever CreateRetriever() => new(Passages, _embedder, Dense, _bm25);

    /// <summary>Embeds <paramref name="query"/> (unless lexical) and searches.</summary>
    /// <param name="query">Question text.</param>
    /// <param name="k">Passages to return.</param>
    /// <param name="mode">Dense, lexical or hybrid (RRF of the two candidate lists).</param>
    /// <param name="candidates">Candidates from each list (at least k).</param>
    public RagSearchResult Search(string query, int k, RetrievalMode mode = RetrievalMode.Hybrid, int candidates = 100)
    {
        ArgumentNullException.ThrowIfNull(query);
        var clock = Stopwatch.StartNew();
        float[]? vector = mode == RetrievalMode.Lexical ? null : _embedder.Embed(query);
        double embedMs = clock.Elapsed.TotalMilliseconds;
        var r = Search(query, vector, k, mode, candidates);
        return r with { EmbedMilliseconds = embedMs };
    }

    /// <summary>Searches with a query embedding computed elsewhere (<paramref name="vector"/>; null only in lexical mode).</summary>
    public RagSearchResult Search(string query, float[]? vector, int k, RetrievalMode mode = RetrievalMode.Hybrid, int candidates = 100)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
        if (mode != RetrievalMode.Lexical && vector is null) throw new ArgumentException($"{mode} search needs the query vector", nameof(vector));
        candidates = Math.Max(candidates, k);
        var clock = Stopwatch.StartNew();
        IReadOnlyList<RagHit> dense = [], lexical = [];
        if (Passages.Count > 0)
        {
            if (mode != RetrievalMode.Lexical) dense = Dense.Search(vector!, candidates);
            if (mode != RetrievalMode.Dense) lexical = _bm25.Search(query, candidates);
        }
        var ranked = mode switch
        {
            RetrievalMode.Dense => dense.Take(k).ToList(),
            RetrievalMode.Lexical => lexical.Take(k).ToList(),
            _ => dense.Count + lexical.Count == 0 ? [] : ReciprocalRankFusion.Fuse([dense, lexical], k),
        };
        double searchMs = clock.Elapsed.TotalMilliseconds;
        var denseAt = new Dictionary<int, (int Rank, float Score)>();
        for (int i = 0; i < dense.Count; i++) denseAt.TryAdd(dense[i].Index, (i + 1, dense[i].Score));
        var lexicalAt = new Dictionary<int, int>();
        for (int i = 0; i < lexical.Count; i++) lexicalAt.TryAdd(lexical[i].Index, i + 1);
        var hits = ranked.Select(h =>
        {
            bool d = denseAt.TryGetValue(h.Index, out var ds);
            return new RagHitResult(Passages[h.Index], h.Score, d ? ds.Score : null, d ? ds.Rank : null, lexicalAt.TryGetValue(h.Index, out int l) ? l : null);
        }).ToList();
        return new RagSearchResult(hits, dense.Select(h => h.Score).ToList(), 0, searchMs);
    }

    /// <summary>Closes the vector and BM25 indexes (the embedder is the caller's).</summary>
    public void Dispose()
    {
        Vectors.Dispose();
        _bm25.Dispose();
    }
}

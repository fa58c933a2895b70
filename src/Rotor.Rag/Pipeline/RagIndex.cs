using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Rag.Pipeline;

/// <summary>
/// A RAG index directory opened for search (layout: docs/PIPELINE.md): <c>manifest.json</c>, <c>passages.jsonl</c>
/// (<see cref="PassageFile"/>), <c>vectors.rix</c> (a Rotor.Index <see cref="VectorIndex"/> keyed by passage id with stored
/// fields title and section) and <c>bm25/</c> (a <see cref="Bm25Index"/> whose ordinals are positions in passages.jsonl).
/// Built by <see cref="RagIndexBuilder"/>. Searched through its <see cref="Retriever"/> (<see cref="Search"/> is a
/// shortcut); thread-safe for searching.
/// <code>
/// using var embedder = SentenceEmbedder.CreateMiniLm();
/// using var index = RagIndex.Open("wiki-idx", embedder);
/// foreach (var hit in index.Search("Who was Aristotle's teacher?", new RetrievalOptions { Top = 3 }).Hits)
///     Console.WriteLine($"{hit.Score:F4} {hit.Passage.Title} > {hit.Passage.Section} [{hit.Passage.Id}]: {hit.Passage.Text}");
/// </code>
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

    private RagIndex(string directory, RagManifest manifest, IReadOnlyList<Passage> passages, VectorIndex vectors, Bm25Index bm25, SentenceEmbedder embedder)
    {
        Directory = directory; Manifest = manifest; Vectors = vectors;
        var ordinals = new Dictionary<string, int>(passages.Count, StringComparer.Ordinal);
        for (int i = 0; i < passages.Count; i++) ordinals[passages[i].Id] = i;
        OrdinalOf = ordinals;
        Dense = new IndexDenseSearcher(vectors, ordinals, manifest.RescoreFactor);
        Retriever = new Retriever(passages, embedder, Dense, bm25, ownsIndexes: false);
    }

    /// <summary>The index directory.</summary>
    public string Directory { get; }
    /// <summary>The manifest.</summary>
    public RagManifest Manifest { get; }
    /// <summary>Passages in ordinal order.</summary>
    public IReadOnlyList<Passage> Passages => Retriever.Passages;
    /// <summary>Passage id to ordinal.</summary>
    public IReadOnlyDictionary<string, int> OrdinalOf { get; }
    /// <summary>The dense vectors.</summary>
    public VectorIndex Vectors { get; }
    /// <summary>Dense search with the manifest's rescoring factor.</summary>
    public IndexDenseSearcher Dense { get; }
    /// <summary>BM25 over <see cref="IndexText.Of(Passage)"/>.</summary>
    public Bm25Index Lexical => Retriever.Lexical;

    /// <summary>Hybrid, dense and BM25 search over this index (the embedder given to <see cref="Open"/> embeds the queries).</summary>
    public Retriever Retriever { get; }

    /// <summary>Opens and checks an index directory; <paramref name="embedder"/> must be the model it was built with.</summary>
    /// <param name="directory">The index directory.</param>
    /// <param name="embedder">Embeds queries (not disposed by the index).</param>
    /// <param name="verifyChecksums">Check the SHA-256 of passages.jsonl (read whole at open in any case) and the
    /// checksums of vectors.rix as its sections are first used (<see cref="VectorIndex.Open"/>); sizes are always
    /// checked. vectors.rix is not hashed whole at open, so that opening a large index reads its header and small
    /// sections only; <see cref="Verify"/> checks every file in full, against the manifest's SHA-256 too.</param>
    /// <exception cref="RotorException">A file is missing, of the wrong size or checksum, the counts disagree, or the model differs (the message names which).</exception>
    public static RagIndex Open(string directory, SentenceEmbedder embedder, bool verifyChecksums = true)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        if (!System.IO.Directory.Exists(directory)) throw new RotorException($"{directory}: index directory not found");
        string manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            if (File.Exists(Path.Combine(directory, CheckpointFile)))
                throw new RotorException($"{directory}: the index build did not finish ({CheckpointFile} present, no {ManifestFile}): run the same 'rotor ingest' command again to resume it");
            throw new RotorException($"{directory}: not a RAG index ({ManifestFile} missing)");
        }
        var m = RagManifest.Load(manifestPath);
        if (m.Dimensions != embedder.Dimensions || !string.Equals(m.ModelSha256, embedder.ModelSha256, StringComparison.OrdinalIgnoreCase))
            throw new RotorException($"{manifestPath}: built with model {m.ModelName} ({m.Dimensions} dims, sha256 {m.ModelSha256[..Math.Min(12, m.ModelSha256.Length)]}), " +
                                     $"but the query embedder is {embedder.ModelId} ({embedder.Dimensions} dims, sha256 {embedder.ModelSha256[..12]})");
        string passagesPath = Path.Combine(directory, PassagesFile), vectorsPath = Path.Combine(directory, VectorsFile), bm25Path = Path.Combine(directory, Bm25Folder);
        CheckStamp(passagesPath, m.PassagesFile, "files.passages.jsonl", manifestPath, verifyChecksums);
        CheckStamp(vectorsPath, m.VectorsFile, "files.vectors.rix", manifestPath, verify: false);
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
            vectors = VectorIndex.Open(vectorsPath, verifyChecksums: verifyChecksums);
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

    private static void CheckStamp(string path, FileStamp expected, string field, string manifestPath, bool verify, Action<long>? progress = null)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: missing ({manifestPath} lists it)");
        long len = new FileInfo(path).Length;
        if (len != expected.Bytes) throw new RotorException($"{path}: {len} bytes, {manifestPath} says {field}.bytes = {expected.Bytes} (truncated or changed)");
        if (verify)
        {
            string actual = FileStamp.Sha256Of(path, progress);
            if (!string.Equals(actual, expected.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new RotorException($"{path}: SHA-256 {actual} differs from {field}.sha256 {expected.Sha256} in {manifestPath} (corrupt or changed)");
        }
    }

    /// <summary>The full check of an index directory, without an embedding model: the manifest; passages.jsonl and
    /// vectors.rix against the manifest's sizes and SHA-256; every section and chunk of vectors.rix against its own
    /// checksums and its structure (<see cref="VectorIndex.VerifyFile"/>); the BM25 folder's size and every Lucene file
    /// against its checksum footer (<see cref="Bm25Index.CheckIntegrity"/>); and the counts, which must agree.</summary>
    /// <param name="directory">The index directory.</param>
    /// <param name="progress">Called with the step (a file name), its bytes done and its total bytes.</param>
    /// <exception cref="RotorException">The first damage or disagreement found (the message names the file).</exception>
    public static void Verify(string directory, Action<string, long, long>? progress = null)
    {
        if (!System.IO.Directory.Exists(directory)) throw new RotorException($"{directory}: index directory not found");
        string manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath)) throw new RotorException($"{directory}: not a RAG index ({ManifestFile} missing)");
        var m = RagManifest.Load(manifestPath);
        string passagesPath = Path.Combine(directory, PassagesFile), vectorsPath = Path.Combine(directory, VectorsFile), bm25Path = Path.Combine(directory, Bm25Folder);
        CheckStamp(passagesPath, m.PassagesFile, "files.passages.jsonl", manifestPath, true, d => progress?.Invoke($"{PassagesFile} (SHA-256)", d, m.PassagesFile.Bytes));
        int passages = PassageFile.Read(passagesPath).Count();
        if (passages != m.Passages) throw new RotorException($"{passagesPath}: holds {passages} passages, {manifestPath} says counts.passages = {m.Passages}");
        CheckStamp(vectorsPath, m.VectorsFile, "files.vectors.rix", manifestPath, true, d => progress?.Invoke($"{VectorsFile} (SHA-256)", d, m.VectorsFile.Bytes));
        VectorIndex.VerifyFile(vectorsPath, (d, t) => progress?.Invoke($"{VectorsFile} (sections)", d, t));
        using (var vectors = VectorIndex.Open(vectorsPath, memoryMap: true, verifyChecksums: false))
        {
            if (vectors.Count != passages) throw new RotorException($"{vectorsPath}: holds {vectors.Count} vectors for {passages} passages");
            if (vectors.Options.Dimensions != m.Dimensions) throw new RotorException($"{vectorsPath}: vectors have {vectors.Options.Dimensions} dimensions, the manifest says {m.Dimensions}");
            if (vectors.Options.Code != m.Code) throw new RotorException($"{vectorsPath}: code is {vectors.Options.Code}, the manifest says {m.Code}");
            foreach (var p in PassageFile.Read(passagesPath))
                if (!vectors.Contains(p.Id)) throw new RotorException($"{vectorsPath}: no vector for passage '{p.Id}'");
        }
        if (!System.IO.Directory.Exists(bm25Path)) throw new RotorException($"{bm25Path}: BM25 folder missing");
        var (bm25Files, bm25Bytes) = FolderSize(bm25Path);
        if (bm25Files != m.Bm25Files || bm25Bytes != m.Bm25Bytes)
            throw new RotorException($"{bm25Path}: holds {bm25Files} files of {bm25Bytes} bytes, the manifest says {m.Bm25Files} files of {m.Bm25Bytes} bytes");
        using var bm25 = Bm25Index.Open(bm25Path);
        progress?.Invoke(Bm25Folder, 0, bm25Bytes);
        bm25.CheckIntegrity();
        progress?.Invoke(Bm25Folder, bm25Bytes, bm25Bytes);
        if (bm25.Count != passages) throw new RotorException($"{bm25Path}: holds {bm25.Count} documents for {passages} passages");
    }

    /// <summary>Files and total bytes of a folder (recursive).</summary>
    public static (int Files, long Bytes) FolderSize(string folder)
    {
        int n = 0; long bytes = 0;
        foreach (var f in new DirectoryInfo(folder).EnumerateFiles("*", SearchOption.AllDirectories)) { n++; bytes += f.Length; }
        return (n, bytes);
    }

    /// <summary>The best passages for <paramref name="query"/>: <see cref="Retriever.Search(string, RetrievalOptions?)"/> of
    /// <see cref="Retriever"/>.</summary>
    public RetrievalResult Search(string query, RetrievalOptions? options = null) => Retriever.Search(query, options);

    /// <summary>Closes the vector and BM25 indexes (the embedder is the caller's).</summary>
    public void Dispose()
    {
        Vectors.Dispose();
        Lexical.Dispose();
    }
}

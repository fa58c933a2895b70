using System.Diagnostics;
using Microsoft.Extensions.AI;
using Rotor.Rag.Corpus;

namespace Rotor.Rag.Search;

/// <summary>Which rankings a retrieval uses.</summary>
public enum RetrievalMode
{
    /// <summary>Embedding similarity only.</summary>
    Dense,
    /// <summary>BM25 only.</summary>
    Lexical,
    /// <summary>Dense and BM25 fused by reciprocal rank fusion.</summary>
    Hybrid,
}

/// <summary>What one <see cref="Retriever.Search(string, RetrievalOptions?)"/> asks for.</summary>
public sealed record RetrievalOptions
{
    /// <summary>Passages to return (positive).</summary>
    public int Top { get; init; } = 5;

    /// <summary>Dense, lexical, or hybrid (RRF of the two candidate lists).</summary>
    public RetrievalMode Mode { get; init; } = RetrievalMode.Hybrid;

    /// <summary>Candidates taken from each ranking before fusion; raised to <see cref="Top"/> when smaller.</summary>
    public int Candidates { get; init; } = 100;

    /// <summary>The defaults: the best 5 passages of a hybrid search over 100 candidates a ranking.</summary>
    public static RetrievalOptions Default { get; } = new();

    internal void Validate()
    {
        if (Top <= 0) throw new ArgumentOutOfRangeException(nameof(Top), Top, "Top must be positive");
        if (!Enum.IsDefined(Mode)) throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "unknown retrieval mode");
    }
}

/// <summary>Anything that answers a query with passages: one <see cref="Retriever"/>, or a cluster's front door that
/// searches shards on other machines and merges them into the same ranking.</summary>
public interface IPassageRetriever
{
    /// <summary>The best passages for <paramref name="query"/> (embedded here unless lexical).</summary>
    /// <exception cref="RotorException">The query is empty, or the index cannot answer.</exception>
    Task<RetrievalResult> SearchAsync(string query, RetrievalOptions? options = null, CancellationToken cancellationToken = default);
}

/// <summary>A passage found for a query.</summary>
/// <param name="Passage">The passage: id, document id, title, section and text.</param>
/// <param name="Score">Score in the mode used: cosine (dense), BM25 (lexical) or RRF (hybrid); higher is better.</param>
/// <param name="DenseScore">Cosine similarity when the passage was among the dense candidates, else null.</param>
/// <param name="DenseRank">1-based rank among the dense candidates, or null.</param>
/// <param name="LexicalRank">1-based rank among the BM25 candidates, or null.</param>
public sealed record RetrievedPassage(Passage Passage, float Score, float? DenseScore, int? DenseRank, int? LexicalRank);

/// <summary>What one search found and what it cost.</summary>
/// <param name="Hits">Passages, best first, at most <see cref="RetrievalOptions.Top"/>.</param>
/// <param name="DenseScores">Cosine scores of the dense candidates, best first (empty in lexical mode): the input of
/// adaptive retrieval (<see cref="Pipeline.AdaptivePolicy.Decide"/>).</param>
/// <param name="EmbedMilliseconds">Time to embed the query (0 when the caller gave the vector, or in lexical mode).</param>
/// <param name="SearchMilliseconds">Time in the dense and BM25 searches and the fusion.</param>
public sealed record RetrievalResult(IReadOnlyList<RetrievedPassage> Hits, IReadOnlyList<float> DenseScores, double EmbedMilliseconds, double SearchMilliseconds);

/// <summary>
/// The retrieval pipeline over a set of passages: the query is embedded and searched in an <see cref="IDenseSearcher"/>,
/// searched in a <see cref="Bm25Index"/>, and in hybrid mode the two rankings are fused with
/// <see cref="ReciprocalRankFusion"/>. Both indexes hold one entry a passage, addressed by the passage's ordinal
/// (its position in <see cref="Passages"/>); what they index is <see cref="IndexText.Of(Passage)"/>. Thread-safe for
/// searching when its parts are (all of Rotor's are).
/// <para>Made in memory by <see cref="BuildInMemoryAsync"/>, or over an index directory by
/// <see cref="Pipeline.RagIndex.Open"/> (its <see cref="Pipeline.RagIndex.Retriever"/>).</para>
/// </summary>
public sealed class Retriever : IPassageRetriever, IDisposable
{
    private readonly IEmbeddingGenerator<string, Embedding<float>> _embedder;
    private readonly bool _ownsIndexes;

    /// <summary>Creates a retriever over <paramref name="passages"/> whose ordinals index both <paramref name="dense"/> and <paramref name="lexical"/>.</summary>
    /// <param name="passages">Passages in ordinal order.</param>
    /// <param name="embedder">Embeds queries; the model the dense vectors were made with. Not disposed by the retriever.</param>
    /// <param name="dense">Dense search over the passages' embeddings.</param>
    /// <param name="lexical">BM25 over the passages' index texts.</param>
    /// <param name="ownsIndexes">Dispose <paramref name="lexical"/> (and <paramref name="dense"/>, when disposable) with the retriever.</param>
    /// <exception cref="ArgumentException">An index does not hold one entry a passage.</exception>
    public Retriever(IReadOnlyList<Passage> passages, IEmbeddingGenerator<string, Embedding<float>> embedder, IDenseSearcher dense, Bm25Index lexical, bool ownsIndexes = false)
    {
        Passages = passages ?? throw new ArgumentNullException(nameof(passages));
        _embedder = embedder ?? throw new ArgumentNullException(nameof(embedder));
        Dense = dense ?? throw new ArgumentNullException(nameof(dense));
        Lexical = lexical ?? throw new ArgumentNullException(nameof(lexical));
        if (dense.Count != passages.Count) throw new ArgumentException($"dense index holds {dense.Count} vectors for {passages.Count} passages", nameof(dense));
        if (lexical.Count != passages.Count) throw new ArgumentException($"BM25 index holds {lexical.Count} documents for {passages.Count} passages", nameof(lexical));
        _ownsIndexes = ownsIndexes;
    }

    /// <summary>Passages searched, in ordinal order.</summary>
    public IReadOnlyList<Passage> Passages { get; }

    /// <summary>The dense side.</summary>
    public IDenseSearcher Dense { get; }

    /// <summary>The BM25 side.</summary>
    public Bm25Index Lexical { get; }

    /// <summary>Embeds every passage (<see cref="IndexText.Of(Passage)"/>) and builds an exact dense searcher and an
    /// in-memory BM25 index, both owned by the retriever.</summary>
    public static async Task<Retriever> BuildInMemoryAsync(IReadOnlyList<Passage> passages, IEmbeddingGenerator<string, Embedding<float>> embedder, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(passages);
        ArgumentNullException.ThrowIfNull(embedder);
        var texts = passages.Select(IndexText.Of).ToList();
        var embeddings = await embedder.GenerateAsync(texts, null, cancellationToken).ConfigureAwait(false);
        if (embeddings.Count != texts.Count) throw new RotorException($"embedder returned {embeddings.Count} embeddings for {texts.Count} passages");
        int dims = texts.Count == 0 ? 1 : embeddings[0].Vector.Length;
        var vectors = new float[texts.Count * dims];
        for (int i = 0; i < embeddings.Count; i++)
        {
            if (embeddings[i].Vector.Length != dims) throw new RotorException($"embedding {i} has {embeddings[i].Vector.Length} dimensions, expected {dims}");
            embeddings[i].Vector.Span.CopyTo(vectors.AsSpan(i * dims, dims));
        }
        return new Retriever(passages, embedder, new ExactDenseSearcher(vectors, dims), Bm25Index.BuildInMemory(texts), ownsIndexes: true);
    }

    /// <summary>The best passages for <paramref name="query"/>: embeds it (unless lexical) and searches.</summary>
    /// <param name="query">Question text.</param>
    /// <param name="options">Top, mode and candidates (null: <see cref="RetrievalOptions.Default"/>).</param>
    /// <exception cref="ArgumentOutOfRangeException">Top is not positive.</exception>
    /// <exception cref="RotorException">The query is empty or only white space (it would rank passages by nothing).</exception>
    public RetrievalResult Search(string query, RetrievalOptions? options = null)
        => SearchAsync(query, options).GetAwaiter().GetResult();

    /// <summary>As <see cref="Search(string, RetrievalOptions?)"/>; <paramref name="cancellationToken"/> cancels the query embedding.</summary>
    public async Task<RetrievalResult> SearchAsync(string query, RetrievalOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        RefuseEmpty(query);
        options ??= RetrievalOptions.Default;
        options.Validate();
        float[]? vector = null;
        var clock = Stopwatch.StartNew();
        if (options.Mode != RetrievalMode.Lexical && Passages.Count > 0)
        {
            var e = await _embedder.GenerateAsync([query], null, cancellationToken).ConfigureAwait(false);
            vector = e[0].Vector.ToArray();
        }
        double embedMs = options.Mode == RetrievalMode.Lexical ? 0 : clock.Elapsed.TotalMilliseconds;
        return Search(query, vector, options) with { EmbedMilliseconds = embedMs };
    }

    /// <summary>Searches with a query embedding computed elsewhere, for example a batch of queries embedded together.</summary>
    /// <param name="query">Question text (for BM25).</param>
    /// <param name="vector">Its embedding by the retriever's model; null only in lexical mode.</param>
    /// <param name="options">Top, mode and candidates (null: <see cref="RetrievalOptions.Default"/>).</param>
    /// <exception cref="ArgumentException">The vector is missing in dense or hybrid mode.</exception>
    public RetrievalResult Search(string query, ReadOnlySpan<float> vector, RetrievalOptions? options = null) => Search(query, vector.ToArray(), options);

    // An empty query has no words for BM25 and embeds to a vector that means nothing: ranking by it is silent garbage.
    private static void RefuseEmpty(string query)
    {
        if (string.IsNullOrWhiteSpace(query)) throw new RotorException("the query is empty: nothing to search for");
    }

    private RetrievalResult Search(string query, float[]? vector, RetrievalOptions? options)
    {
        ArgumentNullException.ThrowIfNull(query);
        RefuseEmpty(query);
        options ??= RetrievalOptions.Default;
        options.Validate();
        var mode = options.Mode;
        int k = options.Top, candidates = Math.Max(options.Candidates, k);
        var clock = Stopwatch.StartNew();
        IReadOnlyList<ScoredOrdinal> dense = [], lexical = [];
        if (Passages.Count > 0)
        {
            if (mode != RetrievalMode.Lexical)
            {
                if (vector is null || vector.Length == 0) throw new ArgumentException($"{mode} search needs the query vector", nameof(vector));
                dense = Dense.Search(vector, candidates);
            }
            if (mode != RetrievalMode.Dense) lexical = Lexical.Search(query, candidates);
        }
        var ranked = mode switch
        {
            RetrievalMode.Dense => dense.Take(k).ToList(),
            RetrievalMode.Lexical => lexical.Take(k).ToList(),
            _ => ReciprocalRankFusion.Fuse([dense, lexical], k),
        };
        double searchMs = clock.Elapsed.TotalMilliseconds;
        var denseAt = new Dictionary<int, (int Rank, float Score)>();
        for (int i = 0; i < dense.Count; i++) denseAt.TryAdd(dense[i].Ordinal, (i + 1, dense[i].Score));
        var lexicalAt = new Dictionary<int, int>();
        for (int i = 0; i < lexical.Count; i++) lexicalAt.TryAdd(lexical[i].Ordinal, i + 1);
        var hits = ranked.Select(h =>
        {
            bool d = denseAt.TryGetValue(h.Ordinal, out var ds);
            return new RetrievedPassage(Passages[h.Ordinal], h.Score, d ? ds.Score : null, d ? ds.Rank : null, lexicalAt.TryGetValue(h.Ordinal, out int l) ? l : null);
        }).ToList();
        return new RetrievalResult(hits, dense.Select(h => h.Score).ToList(), 0, searchMs);
    }

    /// <summary>Disposes the indexes when the retriever owns them.</summary>
    public void Dispose()
    {
        if (!_ownsIndexes) return;
        (Dense as IDisposable)?.Dispose();
        Lexical.Dispose();
    }
}

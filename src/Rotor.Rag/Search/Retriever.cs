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

/// <summary>A passage found for a query.</summary>
/// <param name="Passage">The passage.</param>
/// <param name="Score">Score in the mode used (cosine, BM25 or RRF).</param>
/// <param name="DenseRank">1-based rank in the dense candidates, or null if not among them.</param>
/// <param name="LexicalRank">1-based rank in the BM25 candidates, or null if not among them.</param>
public sealed record RetrievedPassage(Passage Passage, float Score, int? DenseRank, int? LexicalRank);

/// <summary>
/// Retrieval over a set of passages: the query is embedded and searched in an <see cref="IDenseSearcher"/>, searched
/// in a <see cref="Bm25Index"/>, and the two rankings fused with RRF. Passage ordinals are shared by both indexes.
/// </summary>
public sealed class Retriever : IDisposable
{
    private readonly IEmbeddingGenerator<string, Embedding<float>> _embedder;
    private readonly IDenseSearcher _dense;
    private readonly Bm25Index _lexical;
    private readonly bool _ownsLexical;

    /// <summary>Creates a retriever over <paramref name="passages"/> whose ordinals index both <paramref name="dense"/> and <paramref name="lexical"/>.</summary>
    /// <exception cref="ArgumentException">An index does not hold one entry a passage.</exception>
    public Retriever(IReadOnlyList<Passage> passages, IEmbeddingGenerator<string, Embedding<float>> embedder, IDenseSearcher dense, Bm25Index lexical, bool ownsLexical = false)
    {
        Passages = passages ?? throw new ArgumentNullException(nameof(passages));
        _embedder = embedder ?? throw new ArgumentNullException(nameof(embedder));
        _dense = dense ?? throw new ArgumentNullException(nameof(dense));
        _lexical = lexical ?? throw new ArgumentNullException(nameof(lexical));
        if (dense.Count != passages.Count) throw new ArgumentException($"dense index holds {dense.Count} vectors for {passages.Count} passages", nameof(dense));
        if (lexical.Count != passages.Count) throw new ArgumentException($"BM25 index holds {lexical.Count} documents for {passages.Count} passages", nameof(lexical));
        _ownsLexical = ownsLexical;
    }

    /// <summary>Passages searched, in ordinal order.</summary>
    public IReadOnlyList<Passage> Passages { get; }

    /// <summary>Embeds every passage (<see cref="Passage.IndexText"/>) and builds an exact dense searcher and an in-memory BM25 index.</summary>
    public static async Task<Retriever> BuildInMemoryAsync(IReadOnlyList<Passage> passages, IEmbeddingGenerator<string, Embedding<float>> embedder, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(passages);
        ArgumentNullException.ThrowIfNull(embedder);
        var texts = passages.Select(p => p.IndexText).ToList();
        var embeddings = await embedder.GenerateAsync(texts, null, cancellationToken).ConfigureAwait(false);
        if (embeddings.Count != texts.Count) throw new RotorException($"embedder returned {embeddings.Count} embeddings for {texts.Count} passages");
        int dims = texts.Count == 0 ? 1 : embeddings[0].Vector.Length;
        var vectors = new float[texts.Count * dims];
        for (int i = 0; i < embeddings.Count; i++)
        {
            if (embeddings[i].Vector.Length != dims) throw new RotorException($"embedding {i} has {embeddings[i].Vector.Length} dimensions, expected {dims}");
            embeddings[i].Vector.Span.CopyTo(vectors.AsSpan(i * dims, dims));
        }
        return new Retriever(passages, embedder, new ExactDenseSearcher(vectors, dims), Bm25Index.BuildInMemory(texts), ownsLexical: true);
    }

    /// <summary>The best <paramref name="k"/> passages for <paramref name="query"/>.</summary>
    /// <param name="query">Query text.</param>
    /// <param name="k">Passages to return.</param>
    /// <param name="mode">Dense, lexical or hybrid.</param>
    /// <param name="candidates">Hits taken from each ranking before fusion (at least k).</param>
    /// <param name="cancellationToken">Cancels the query embedding.</param>
    public async Task<IReadOnlyList<RetrievedPassage>> RetrieveAsync(string query, int k = 5, RetrievalMode mode = RetrievalMode.Hybrid, int candidates = 100, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
        if (Passages.Count == 0) return [];
        candidates = Math.Max(candidates, k);
        IReadOnlyList<SearchHit> dense = [], lexical = [];
        if (mode != RetrievalMode.Lexical)
        {
            var e = await _embedder.GenerateAsync([query], null, cancellationToken).ConfigureAwait(false);
            dense = _dense.Search(e[0].Vector.Span, candidates);
        }
        if (mode != RetrievalMode.Dense) lexical = _lexical.Search(query, candidates);
        var ranked = mode switch
        {
            RetrievalMode.Dense => dense.Take(k).ToList(),
            RetrievalMode.Lexical => lexical.Take(k).ToList(),
            _ => ReciprocalRankFusion.Fuse([dense, lexical], k),
        };
        var denseRank = Ranks(dense);
        var lexicalRank = Ranks(lexical);
        return ranked.Select(h => new RetrievedPassage(Passages[h.Index], h.Score,
            denseRank.TryGetValue(h.Index, out int d) ? d : null, lexicalRank.TryGetValue(h.Index, out int l) ? l : null)).ToList();
    }

    private static Dictionary<int, int> Ranks(IReadOnlyList<SearchHit> hits)
    {
        var ranks = new Dictionary<int, int>();
        for (int i = 0; i < hits.Count; i++) ranks.TryAdd(hits[i].Index, i + 1);
        return ranks;
    }

    /// <summary>Disposes the BM25 index when this retriever built it.</summary>
    public void Dispose()
    {
        if (_ownsLexical) _lexical.Dispose();
    }
}

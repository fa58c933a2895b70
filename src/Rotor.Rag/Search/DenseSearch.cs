using System.Numerics.Tensors;

namespace Rotor.Rag.Search;

/// <summary>One entry of a ranking inside the retrieval pipeline: the ordinal of a passage (or document) in the searched
/// collection and its score, higher is better. <see cref="Retriever"/> turns these into <see cref="RetrievedPassage"/>s;
/// a raw vector index answers with <see cref="Rotor.Index.SearchHit"/>s (keys, not ordinals).</summary>
/// <param name="Ordinal">Position of the passage or document in the collection, in insertion order.</param>
/// <param name="Score">Similarity (dense: dot product of unit vectors = cosine; BM25: its score; RRF: fused score).</param>
public readonly record struct ScoredOrdinal(int Ordinal, float Score);

/// <summary>
/// Nearest-neighbour search over embeddings: what the retrieval layer needs from a vector index. Vectors are unit length,
/// so the score is the cosine. The exact in-memory <see cref="ExactDenseSearcher"/> implements it; a persisted
/// approximate index plugs in behind the same interface.
/// </summary>
public interface IDenseSearcher
{
    /// <summary>Vector size.</summary>
    int Dimensions { get; }

    /// <summary>Vectors searched.</summary>
    int Count { get; }

    /// <summary>The <paramref name="k"/> best hits for <paramref name="query"/>, best first.</summary>
    IReadOnlyList<ScoredOrdinal> Search(ReadOnlySpan<float> query, int k);
}

/// <summary>
/// Exact dense search: the dot product of the query with every vector (TensorPrimitives), best k kept in a heap.
/// Ties go to the lower index. O(N * D) a query; fine to a few hundred thousand vectors.
/// </summary>
public sealed class ExactDenseSearcher : IDenseSearcher
{
    private readonly float[] _vectors; // (N, D) row-major

    /// <summary>Wraps (not copies) <paramref name="vectors"/>, (count, dimensions) row-major, each row of unit length.</summary>
    /// <exception cref="ArgumentException">The length is not a multiple of <paramref name="dimensions"/>.</exception>
    /// <exception cref="RotorException">A value is NaN or infinite.</exception>
    public ExactDenseSearcher(float[] vectors, int dimensions)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        if (dimensions <= 0) throw new ArgumentOutOfRangeException(nameof(dimensions), dimensions, "dimensions must be positive");
        if (vectors.Length % dimensions != 0)
            throw new ArgumentException($"vectors has length {vectors.Length}, not a multiple of dimensions {dimensions}", nameof(vectors));
        float m = vectors.Length == 0 ? 0 : TensorPrimitives.MaxMagnitude(vectors);
        if (!float.IsFinite(m)) throw new RotorException($"vectors hold NaN or infinite values (max magnitude {m})");
        _vectors = vectors;
        Dimensions = dimensions;
        Count = vectors.Length / dimensions;
    }

    /// <inheritdoc />
    public int Dimensions { get; }

    /// <inheritdoc />
    public int Count { get; }

    /// <inheritdoc />
    public IReadOnlyList<ScoredOrdinal> Search(ReadOnlySpan<float> query, int k)
    {
        if (query.Length != Dimensions) throw new ArgumentException($"query has length {query.Length}, expected {Dimensions}", nameof(query));
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
        k = Math.Min(k, Count);
        var heap = new PriorityQueue<int, (float Score, int Index)>(k + 1, WorstFirst.Instance);
        for (int i = 0; i < Count; i++)
        {
            float s = TensorPrimitives.Dot(query, _vectors.AsSpan(i * Dimensions, Dimensions));
            if (heap.Count < k) heap.Enqueue(i, (s, i));
            else if (heap.TryPeek(out _, out var worst) && (s > worst.Score)) heap.EnqueueDequeue(i, (s, i));
        }
        var hits = new ScoredOrdinal[heap.Count];
        for (int j = hits.Length - 1; j >= 0; j--)
        {
            heap.TryDequeue(out int idx, out var p);
            hits[j] = new ScoredOrdinal(idx, p.Score);
        }
        return hits;
    }

    /// <summary>The obviously correct version: score everything, sort by score then index. The test oracle.</summary>
    public IReadOnlyList<ScoredOrdinal> SearchReference(ReadOnlySpan<float> query, int k)
    {
        var all = new List<ScoredOrdinal>(Count);
        for (int i = 0; i < Count; i++)
        {
            double s = 0;
            for (int d = 0; d < Dimensions; d++) s += (double)query[d] * _vectors[i * Dimensions + d];
            all.Add(new ScoredOrdinal(i, (float)s));
        }
        return all.OrderByDescending(h => h.Score).ThenBy(h => h.Ordinal).Take(k).ToList();
    }

    // Heap order: the worst hit (lowest score, then highest index) on top.
    private sealed class WorstFirst : IComparer<(float Score, int Index)>
    {
        public static readonly WorstFirst Instance = new();
        public int Compare((float Score, int Index) a, (float Score, int Index) b)
            => a.Score != b.Score ? a.Score.CompareTo(b.Score) : b.Index.CompareTo(a.Index);
    }
}

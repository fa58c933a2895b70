using Rotor.Index;
using Rotor.Rag.Evaluation;
using Rotor.Rag.Search;

namespace Rotor.Rag.Pipeline;

/// <summary>
/// <see cref="IDenseSearcher"/> over a Rotor.Index <see cref="VectorIndex"/> (cosine metric): a hit's key is mapped back
/// to the ordinal of its passage, and the search runs with fixed <see cref="SearchOptions"/> (code scan, optional
/// rescoring by the kept float32 vectors).
/// </summary>
public sealed class IndexDenseSearcher : IDenseSearcher, IDisposable
{
    private readonly VectorIndex _index;
    private readonly IReadOnlyDictionary<string, int> _ordinalOf;
    private readonly SearchOptions _options;
    private readonly bool _ownsIndex;

    /// <summary>Wraps <paramref name="index"/>; <paramref name="ordinalOf"/> maps each key to its passage ordinal.</summary>
    /// <param name="index">A cosine index whose keys are passage ids.</param>
    /// <param name="ordinalOf">Passage id to ordinal; must hold every key of the index.</param>
    /// <param name="rescoreFactor">Candidates a result taken by the code and ranked again by float32 (0 or 1: none).</param>
    /// <exception cref="RotorException">The index is not cosine, or rescoring is asked of an index without float32 vectors.</exception>
    public IndexDenseSearcher(VectorIndex index, IReadOnlyDictionary<string, int> ordinalOf, int rescoreFactor = 0)
        : this(index, ordinalOf, new SearchOptions { RescoreFactor = rescoreFactor, IncludeFields = false })
    {
    }

    /// <summary>Wraps <paramref name="index"/> and searches it with <paramref name="search"/> (rescoring, HNSW beam width,
    /// int8 query, ...); disposes the index with this searcher when <paramref name="ownsIndex"/>.</summary>
    /// <exception cref="RotorException">The index is not cosine, or rescoring is asked of an index without float32 vectors.</exception>
    public IndexDenseSearcher(VectorIndex index, IReadOnlyDictionary<string, int> ordinalOf, SearchOptions search, bool ownsIndex = false)
    {
        _index = index ?? throw new ArgumentNullException(nameof(index));
        _ordinalOf = ordinalOf ?? throw new ArgumentNullException(nameof(ordinalOf));
        ArgumentNullException.ThrowIfNull(search);
        ArgumentOutOfRangeException.ThrowIfNegative(search.RescoreFactor);
        if (index.Options.Metric != Metric.Cosine) throw new RotorException($"a dense searcher needs a cosine index, this one is {index.Options.Metric}");
        if (search.RescoreFactor > 1 && index.Options.Code != CodeKind.Float32 && !index.Options.KeepFullPrecision)
            throw new RotorException($"rescoring (factor {search.RescoreFactor}) needs the float32 vectors, and this {index.Options.Code} index was made without them");
        RescoreFactor = index.Options.Code == CodeKind.Float32 ? 0 : search.RescoreFactor;
        _options = search with { RescoreFactor = RescoreFactor, IncludeFields = false };
        _ownsIndex = ownsIndex;
    }

    /// <summary>Rescoring factor in use (0 for float32 codes or none).</summary>
    public int RescoreFactor { get; }

    /// <summary>The wrapped index.</summary>
    public VectorIndex Index => _index;

    /// <inheritdoc />
    public int Dimensions => _index.Options.Dimensions;

    /// <inheritdoc />
    public int Count => _index.Count;

    /// <inheritdoc />
    /// <exception cref="RotorException">A hit's key is not a known passage id.</exception>
    public IReadOnlyList<ScoredOrdinal> Search(ReadOnlySpan<float> query, int k)
    {
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
        var hits = _index.Search(query, k, _options);
        var result = new ScoredOrdinal[hits.Count];
        for (int i = 0; i < hits.Count; i++)
        {
            if (!_ordinalOf.TryGetValue(hits[i].Key, out int ord)) throw new RotorException($"vector index key '{hits[i].Key}' is not a known passage id");
            result[i] = new ScoredOrdinal(ord, hits[i].Score);
        }
        return result;
    }

    /// <summary>Builds an in-memory flat index of <paramref name="vectors"/> ((count, dimensions) row-major; key = ordinal)
    /// with <paramref name="code"/>, keeping float32 vectors when <paramref name="rescoreFactor"/> &gt; 1.</summary>
    public static IndexDenseSearcher FromVectors(float[] vectors, int dimensions, CodeKind code, int rescoreFactor = 0) =>
        FromVectors(vectors, dimensions,
            new VectorIndexOptions { Dimensions = dimensions, Code = code, Metric = Metric.Cosine, KeepFullPrecision = rescoreFactor > 1 },
            new SearchOptions { RescoreFactor = rescoreFactor, IncludeFields = false });

    /// <summary>Builds an in-memory index of <paramref name="vectors"/> ((count, dimensions) row-major; key = ordinal) with
    /// <paramref name="options"/> (code, flat or HNSW, kept float32 vectors; the metric must be cosine), searched with
    /// <paramref name="search"/>. The searcher owns the index.</summary>
    public static IndexDenseSearcher FromVectors(float[] vectors, int dimensions, VectorIndexOptions options, SearchOptions search)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        ArgumentNullException.ThrowIfNull(options);
        if (dimensions <= 0 || vectors.Length % dimensions != 0)
            throw new ArgumentException($"vectors has length {vectors.Length}, not a multiple of dimensions {dimensions}", nameof(vectors));
        if (options.Dimensions != dimensions) throw new ArgumentException($"options are for {options.Dimensions} dimensions, the vectors have {dimensions}", nameof(options));
        int n = vectors.Length / dimensions;
        var index = VectorIndex.Create(options);
        var ordinals = new Dictionary<string, int>(n, StringComparer.Ordinal);
        const int Batch = 8192;
        for (int start = 0; start < n; start += Batch)
        {
            int m = Math.Min(Batch, n - start);
            var records = new IndexRecord[m];
            for (int i = 0; i < m; i++)
            {
                string key = (start + i).ToString(System.Globalization.CultureInfo.InvariantCulture);
                records[i] = new IndexRecord(key, vectors.AsMemory((start + i) * dimensions, dimensions));
                ordinals[key] = start + i;
            }
            index.Add(records);
        }
        return new IndexDenseSearcher(index, ordinals, search, ownsIndex: true);
    }

    /// <summary>Disposes the index if this searcher owns it.</summary>
    public void Dispose()
    {
        if (_ownsIndex) _index.Dispose();
    }
}

/// <summary>
/// The dense variants that <c>rotor eval quality</c> scores against float32, as <see cref="DenseVariant"/>s for <see cref="RetrievalBenchmark.Run"/>:
/// Rotor.Index flat search over float32, int8, ternary (with and without rescoring) and binary codes. JSON keys are
/// <c>NAME.ndcg@10</c> etc. with NAME <c>dense-index-float32</c>, <c>dense-int8</c>, <c>dense-ternary</c>,
/// <c>dense-ternary-rescored</c> (factor 4), <c>dense-ternary-rescored-10</c>, <c>dense-binary</c>, <c>dense-binary-rescored</c>.
/// </summary>
public static class IndexCodeVariants
{
    /// <summary>All the variants.</summary>
    public static IReadOnlyList<DenseVariant> All() =>
    [
        Variant("dense-index-float32", CodeKind.Float32, 0),
        Variant("dense-int8", CodeKind.Int8, 0),
        Variant("dense-ternary", CodeKind.Ternary, 0),
        Variant("dense-ternary-rescored", CodeKind.Ternary, 4),
        Variant("dense-ternary-rescored-10", CodeKind.Ternary, 10),
        Variant("dense-binary", CodeKind.Binary, 0),
        Variant("dense-binary-rescored", CodeKind.Binary, 10),
    ];

    /// <summary>One variant: a flat index of <paramref name="code"/> built over the corpus embeddings.</summary>
    public static DenseVariant Variant(string name, CodeKind code, int rescoreFactor)
        => new(name, (vectors, dims) => IndexDenseSearcher.FromVectors(vectors, dims, code, rescoreFactor));
}

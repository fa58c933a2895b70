namespace Rotor.Index;

/// <summary>How each vector is stored and scored. Bytes a vector for D dimensions are given per member; see
/// <see cref="CodeLayout"/> and docs/INDEX_FORMAT.md.</summary>
public enum CodeKind
{
    /// <summary>Full precision: D floats (4 D bytes). Scored by a float dot product.</summary>
    Float32 = 0,
    /// <summary>Symmetric int8 with one float scale a vector (absmax / 127): D bytes. Scored by an int8 x int8 dot.</summary>
    Int8 = 1,
    /// <summary>Ternary {-1, 0, +1} as two bit planes of ceil(D/64) words each, the non-zero mask then the signs (a sign
    /// bit set = -1, only where the mask bit is set): 2 bits a dimension, 96 bytes for D = 384. Scored by popcount.
    /// Encoded by <see cref="TernaryQuantizer.Threshold"/>.</summary>
    Ternary = 2,
    /// <summary>Sign bits, 1 bit a dimension (48 bytes for D = 384). Scored by Hamming distance. For comparison.</summary>
    Binary = 3,
}

/// <summary>The similarity that ranks results.</summary>
public enum Metric
{
    /// <summary>Cosine similarity: vectors are normalized to unit length when added, the query when searched, and
    /// ranked by dot product. <see cref="SearchHit.Score"/> is the cosine similarity (higher is closer).</summary>
    Cosine = 0,
    /// <summary>Dot product (inner product), vectors stored as given. <see cref="SearchHit.Score"/> is the dot product (higher is closer).</summary>
    Dot = 1,
    /// <summary>Euclidean: <see cref="SearchHit.Score"/> is the squared distance <c>||q - v||^2</c> (lower is closer).</summary>
    L2 = 2,
}

/// <summary>How a search finds candidates.</summary>
public enum IndexStructure
{
    /// <summary>Exact: every vector is scored (multi-threaded for large indexes).</summary>
    Flat = 0,
    /// <summary>Approximate: a hierarchical navigable small world graph over the codes.</summary>
    Hnsw = 1,
}

/// <summary>HNSW settings (Malkov and Yashunin, 2016).</summary>
/// <param name="M">Links a node keeps on layers above 0 (2 M on layer 0). The default 32 is twice the usual 16: the
/// similarity of ternary and binary codes is coarse, and at 1M clustered vectors M = 16 needed efSearch 256 for 0.95
/// recall where M = 32 reaches 0.97 at efSearch 64 (docs/BENCHMARKS-index.md). Graph memory is 4 (2 M + 1) bytes a
/// vector on layer 0.</param>
/// <param name="EfConstruction">Beam width while inserting: larger builds a better graph, more slowly.</param>
/// <param name="EfSearch">Default beam width while searching (raised to k when k is larger).</param>
/// <param name="Seed">Seed of the nodes' levels (each a hash of the seed and the node's slot); a build on one thread
/// (<see cref="VectorIndex.GraphBuildThreads"/>) is then reproducible.</param>
public sealed record HnswSettings(int M = 32, int EfConstruction = 200, int EfSearch = 64, int Seed = 42)
{
    /// <summary>The smallest <see cref="M"/>.</summary>
    public const int MinM = 2;
    /// <summary>The largest <see cref="M"/>.</summary>
    public const int MaxM = 128;

    internal void Validate()
    {
        if (M < MinM || M > MaxM) throw new ArgumentOutOfRangeException(nameof(M), M, $"HNSW M must be in {MinM}..{MaxM}");
        if (EfConstruction < 1) throw new ArgumentOutOfRangeException(nameof(EfConstruction), EfConstruction, "efConstruction must be positive");
        if (EfSearch < 1) throw new ArgumentOutOfRangeException(nameof(EfSearch), EfSearch, "efSearch must be positive");
    }
}

/// <summary>What an index is: fixed when it is created and stored in its file.</summary>
public sealed record VectorIndexOptions
{
    /// <summary>Vector length.</summary>
    public required int Dimensions { get; init; }
    /// <summary>Storage code of the vectors.</summary>
    public CodeKind Code { get; init; } = CodeKind.Ternary;
    /// <summary>Similarity.</summary>
    public Metric Metric { get; init; } = Metric.Cosine;
    /// <summary>Exact or graph search.</summary>
    public IndexStructure Structure { get; init; } = IndexStructure.Flat;
    /// <summary>Graph settings (used when <see cref="Structure"/> is <see cref="IndexStructure.Hnsw"/>).</summary>
    public HnswSettings Hnsw { get; init; } = new();
    /// <summary>Keep the float32 vectors beside a compact code (on disk, memory-mapped once saved and loaded), for
    /// rescoring and for <see cref="VectorIndex.Get"/>. Ignored for <see cref="CodeKind.Float32"/> (the code is the vector).</summary>
    public bool KeepFullPrecision { get; init; } = true;

    /// <summary>The largest <see cref="Dimensions"/>.</summary>
    public const int MaxDimensions = 65536;

    internal void Validate()
    {
        if (Dimensions < 1 || Dimensions > MaxDimensions) throw new ArgumentOutOfRangeException(nameof(Dimensions), Dimensions, $"dimensions must be in 1..{MaxDimensions}");
        if (!Enum.IsDefined(Code)) throw new ArgumentOutOfRangeException(nameof(Code), Code, "unknown code kind");
        if (!Enum.IsDefined(Metric)) throw new ArgumentOutOfRangeException(nameof(Metric), Metric, "unknown metric");
        if (!Enum.IsDefined(Structure)) throw new ArgumentOutOfRangeException(nameof(Structure), Structure, "unknown index structure");
        Hnsw.Validate();
    }

    internal bool HasFullPrecision => Code == CodeKind.Float32 || KeepFullPrecision;
}

/// <summary>Options of one search.</summary>
public sealed record SearchOptions
{
    /// <summary>Only records whose stored fields match (null: all).</summary>
    public Filter? Filter { get; init; }
    /// <summary>Rescoring: take <c>k * RescoreFactor</c> candidates by the compact code and rank them again by the
    /// full-precision vectors. 0 or 1: no rescoring. Needs <see cref="VectorIndexOptions.KeepFullPrecision"/>.</summary>
    public int RescoreFactor { get; init; }
    /// <summary>HNSW beam width for this search (0: the index default).</summary>
    public int EfSearch { get; init; }
    /// <summary>Force an exact scan even on an HNSW index.</summary>
    public bool Exact { get; init; }
    /// <summary>Threads for an exact scan (0: automatic, 1 below 8 MiB of codes, else <see cref="Rotor.Threading.ThreadCount.Default"/>:
    /// <c>--threads</c>, <c>ROTOR_THREADS</c> or every processor).</summary>
    public int Threads { get; init; }
    /// <summary>Ternary indexes: score the codes against the query quantized to int8 (absmax / 127) instead of the
    /// query's own ternary code (asymmetric distance, as FAISS does for its codes): only the stored vectors carry the
    /// ternary error, so the ranking is closer to float32's, at about twice the cost of a code against a code
    /// (AVX2 vpmaddubsw on the bit planes against a bit-transposed query; docs/INDEX.md). Used by exact scans and
    /// HNSW traversal alike; ignored for other codes (int8 already scores int8 against int8).</summary>
    public bool Int8Query { get; init; }
    /// <summary>Return each hit's stored fields.</summary>
    public bool IncludeFields { get; init; } = true;
    /// <summary>Return each hit's vector (full precision if kept, else decoded from the code).</summary>
    public bool IncludeVectors { get; init; }

    /// <summary>Search defaults.</summary>
    public static SearchOptions Default { get; } = new();
}

/// <summary>One result of a search.</summary>
/// <param name="Key">The record key.</param>
/// <param name="Score">Cosine similarity, dot product, or squared L2 distance, by the index <see cref="Metric"/>;
/// computed on the code, or on the full-precision vectors when rescored.</param>
/// <param name="Fields">Stored fields (null when not requested or absent).</param>
/// <param name="Vector">The vector when requested.</param>
public sealed record SearchHit(string Key, float Score, IReadOnlyDictionary<string, object>? Fields, float[]? Vector);

/// <summary>A record to add.</summary>
/// <param name="Key">Unique key (non-empty).</param>
/// <param name="Vector">The vector, length <see cref="VectorIndexOptions.Dimensions"/>.</param>
/// <param name="Fields">Stored fields: values are string, long, double or bool (int and float are widened).</param>
public sealed record IndexRecord(string Key, ReadOnlyMemory<float> Vector, IReadOnlyDictionary<string, object>? Fields = null);

/// <summary>Counts and sizes of an index.</summary>
/// <param name="Count">Live records.</param>
/// <param name="Slots">Stored slots, deleted ones included (compaction removes them).</param>
/// <param name="CodeBytesPerVector">Bytes of one code.</param>
/// <param name="CodeBytes">Bytes of all codes.</param>
/// <param name="FullPrecisionBytes">Bytes of the kept float32 vectors (memory-mapped from disk once loaded).</param>
/// <param name="GraphBytes">Bytes of the HNSW links.</param>
/// <param name="MemoryMapped">Whether the codes are read from a mapped file.</param>
public sealed record IndexStats(long Count, long Slots, int CodeBytesPerVector, long CodeBytes, long FullPrecisionBytes, long GraphBytes, bool MemoryMapped);

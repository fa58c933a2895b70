namespace Rotor.Lm;

/// <summary>How a <see cref="KvCache"/> stores keys and values.</summary>
public enum KvCacheType
{
    /// <summary>32-bit floats, 4 bytes a value.</summary>
    F32 = 0,
    /// <summary>IEEE halves, 2 bytes a value (rounded to nearest even when stored, widened exactly when read).</summary>
    F16 = 1,
}

/// <summary>
/// The keys and values of one sequence for every layer: K[layer] and V[layer] are (capacity, kvDim) in
/// <see cref="Type"/>, row t holding position t after the rotary embedding (keys) as the attention reads them.
/// <see cref="Length"/> positions are filled; a new token goes at position Length.
/// </summary>
public sealed class KvCache
{
    private readonly float[][]? _k, _v;     // (layers)(capacity * kvDim), F32
    private readonly Half[][]? _kh, _vh;    // (layers)(capacity * kvDim), F16

    /// <summary>A cache for <paramref name="capacity"/> positions of a model shaped like <paramref name="config"/>,
    /// storing <paramref name="type"/> values.</summary>
    public KvCache(ModelConfig config, int capacity, KvCacheType type = KvCacheType.F32)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (capacity <= 0) throw new RotorException($"context length {capacity} must be positive");
        if (type is not (KvCacheType.F32 or KvCacheType.F16)) throw new ArgumentOutOfRangeException(nameof(type), type, "unknown key/value cache type");
        if ((long)capacity * config.KvDim > Array.MaxLength)
            throw new RotorException($"a key/value cache of {capacity} positions x {config.KvDim} values a layer does not fit one array: use a shorter context");
        Capacity = capacity; KvDim = config.KvDim; Type = type;
        long n = (long)capacity * KvDim;
        if (type == KvCacheType.F32)
        {
            _k = new float[config.Layers][]; _v = new float[config.Layers][];
            for (int l = 0; l < config.Layers; l++) { _k[l] = new float[n]; _v[l] = new float[n]; }
        }
        else
        {
            _kh = new Half[config.Layers][]; _vh = new Half[config.Layers][];
            for (int l = 0; l < config.Layers; l++) { _kh[l] = new Half[n]; _vh[l] = new Half[n]; }
        }
        Bytes = config.KvBytesPerToken(type) * capacity;
    }

    /// <summary>A cache whose keys and values live elsewhere (on a GPU): it keeps only the length.</summary>
    internal KvCache(int capacity, int kvDim, long bytes, KvCacheType type = KvCacheType.F32)
    {
        if (capacity <= 0) throw new RotorException($"context length {capacity} must be positive");
        Capacity = capacity; KvDim = kvDim; Bytes = bytes; Type = type;
    }

    /// <summary>Positions the cache holds at most (the context length).</summary>
    public int Capacity { get; }
    /// <summary>Values a position takes in one layer's keys.</summary>
    public int KvDim { get; }
    /// <summary>How keys and values are stored.</summary>
    public KvCacheType Type { get; }
    /// <summary>Positions filled.</summary>
    public int Length { get; internal set; }
    /// <summary>Bytes the cache holds.</summary>
    public long Bytes { get; }

    /// <summary>Forgets every position (the memory stays).</summary>
    public void Clear() => Length = 0;

    /// <summary>Keeps the first <paramref name="length"/> positions (a shared prompt prefix) and forgets the rest.</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be in [0, {Length}]");
        Length = length;
    }

    /// <summary>Holds the first <paramref name="length"/> positions of <paramref name="source"/> (a cache of the same
    /// model and type): its keys and values are copied, the rest of this cache forgotten.</summary>
    /// <exception cref="ArgumentException">The caches differ in shape or type, or the source holds fewer positions.</exception>
    public void CopyPrefixFrom(KvCache source, int length)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.KvDim != KvDim || source.Type != Type || (source._k ?? (object?)source._kh) is null || (_k ?? (object?)_kh) is null
            || (source._k?.Length ?? source._kh!.Length) != (_k?.Length ?? _kh!.Length))
            throw new ArgumentException("the caches differ in shape, type or place", nameof(source));
        if (length < 0 || length > source.Length || length > Capacity)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be in [0, {Math.Min(source.Length, Capacity)}]");
        int n = length * KvDim;
        for (int l = 0; l < (_k?.Length ?? _kh!.Length); l++)
        {
            if (_k is not null) { source._k![l].AsSpan(0, n).CopyTo(_k[l]); source._v![l].AsSpan(0, n).CopyTo(_v![l]); }
            else { source._kh![l].AsSpan(0, n).CopyTo(_kh![l]); source._vh![l].AsSpan(0, n).CopyTo(_vh![l]); }
        }
        Length = length;
    }

    // A cache made by the GPU decoder keeps only its length: its keys and values live on the device.
    internal float[] Keys(int layer) => (_k ?? throw OnDevice())[layer];
    internal float[] Values(int layer) => (_v ?? throw OnDevice())[layer];
    internal Half[] KeysF16(int layer) => (_kh ?? throw OnDevice())[layer];
    internal Half[] ValuesF16(int layer) => (_vh ?? throw OnDevice())[layer];
    private InvalidOperationException OnDevice() => new($"this key/value cache holds no {Type} values here (a GPU cache, or the other storage type)");
}

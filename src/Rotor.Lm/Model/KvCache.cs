namespace Rotor.Lm;

/// <summary>
/// The keys and values of one sequence for every layer: K[layer] and V[layer] are (capacity, kvDim) float32, row t
/// holding position t after the rotary embedding (keys) as the attention reads them. <see cref="Length"/> positions are
/// filled; a new token goes at position Length.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _k, _v;

    /// <summary>A cache for <paramref name="capacity"/> positions of a model shaped like <paramref name="config"/>.</summary>
    public KvCache(ModelConfig config, int capacity)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (capacity <= 0) throw new RotorException($"context length {capacity} must be positive");
        long bytes = config.KvBytesPerToken() * capacity;
        if ((long)capacity * config.KvDim > Array.MaxLength)
            throw new RotorException($"a key/value cache of {capacity} positions x {config.KvDim} values a layer does not fit one array: use a shorter context");
        Capacity = capacity; KvDim = config.KvDim;
        _k = new float[config.Layers][]; _v = new float[config.Layers][];
        for (int l = 0; l < config.Layers; l++) { _k[l] = new float[(long)capacity * KvDim]; _v[l] = new float[(long)capacity * KvDim]; }
        Bytes = bytes;
    }

    /// <summary>A cache whose keys and values live elsewhere (on a GPU): it keeps only the length.</summary>
    internal KvCache(int capacity, int kvDim, long bytes)
    {
        if (capacity <= 0) throw new RotorException($"context length {capacity} must be positive");
        Capacity = capacity; KvDim = kvDim; Bytes = bytes;
        _k = []; _v = [];
    }

    /// <summary>Positions the cache holds at most (the context length).</summary>
    public int Capacity { get; }
    /// <summary>Values a position takes in one layer's keys.</summary>
    public int KvDim { get; }
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

    internal float[] Keys(int layer) => _k.Length > 0 ? _k[layer] : throw new InvalidOperationException("this cache lives on the GPU");
    internal float[] Values(int layer) => _v.Length > 0 ? _v[layer] : throw new InvalidOperationException("this cache lives on the GPU");
}

namespace Rotor.Nn;

/// <summary>A layer of a network: maps a batch of rows (B, In) to (B, Out). B = batch, In/Out = features.</summary>
public interface ILayer
{
    /// <summary>Features a row in.</summary>
    int InputSize { get; }
    /// <summary>Features a row out.</summary>
    int OutputSize { get; }
    /// <summary>Short description, such as "TernaryLinear 784->128".</summary>
    string Name { get; }

    /// <summary>y (B, Out) = layer(x (B, In)). Allocates nothing once its buffers fit the batch.</summary>
    void Forward(ReadOnlySpan<float> x, Span<float> y, int batch);
}

/// <summary>Statistics of one layer's ternary weights.</summary>
/// <param name="Name">The layer.</param>
/// <param name="Weights">Weights (rows * cols).</param>
/// <param name="ZeroShare">Share of weights that are 0.</param>
/// <param name="Plus">Count of +1.</param>
/// <param name="Minus">Count of -1.</param>
/// <param name="Bytes">Bytes the packed weights, scales and bias take.</param>
public readonly record struct LayerStats(string Name, long Weights, double ZeroShare, long Plus, long Minus, long Bytes);

internal static class LayerChecks
{
    public static void Batch(ILayer l, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{l.Name}: batch must be positive, got {batch}");
        if (x.Length < (long)batch * l.InputSize) throw new ArgumentException($"{l.Name}: input has {x.Length} values, expected batch {batch} x {l.InputSize} = {(long)batch * l.InputSize}");
        if (y.Length < (long)batch * l.OutputSize) throw new ArgumentException($"{l.Name}: output has room for {y.Length} values, expected batch {batch} x {l.OutputSize} = {(long)batch * l.OutputSize}");
    }
}

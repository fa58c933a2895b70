using System.Numerics.Tensors;

namespace Rotor.Nn;

/// <summary>y = max(x, 0).</summary>
public sealed class ReLU(int size) : ILayer
{
    /// <inheritdoc/>
    public int InputSize { get; } = size > 0 ? size : throw new ArgumentOutOfRangeException(nameof(size), size, "size must be positive");
    /// <inheritdoc/>
    public int OutputSize => InputSize;
    /// <inheritdoc/>
    public string Name => $"ReLU {InputSize}";
    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        LayerChecks.Batch(this, x, y, batch);
        TensorPrimitives.Max(x[..(batch * InputSize)], 0f, y[..(batch * InputSize)]);
    }
}

/// <summary>y = sign(x) in {-1, 0, +1}.</summary>
public sealed class Sign(int size) : ILayer
{
    /// <inheritdoc/>
    public int InputSize { get; } = size > 0 ? size : throw new ArgumentOutOfRangeException(nameof(size), size, "size must be positive");
    /// <inheritdoc/>
    public int OutputSize => InputSize;
    /// <inheritdoc/>
    public string Name => $"Sign {InputSize}";
    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        LayerChecks.Batch(this, x, y, batch);
        int n = batch * InputSize;
        for (int i = 0; i < n; i++) y[i] = MathF.Sign(x[i]);
    }
}

/// <summary>Row-wise softmax: y[b, i] = exp(x[b, i]) / sum_j exp(x[b, j]).</summary>
public sealed class Softmax(int size) : ILayer
{
    /// <inheritdoc/>
    public int InputSize { get; } = size > 0 ? size : throw new ArgumentOutOfRangeException(nameof(size), size, "size must be positive");
    /// <inheritdoc/>
    public int OutputSize => InputSize;
    /// <inheritdoc/>
    public string Name => $"Softmax {InputSize}";
    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        LayerChecks.Batch(this, x, y, batch);
        for (int b = 0; b < batch; b++)
            TensorPrimitives.SoftMax(x.Slice(b * InputSize, InputSize), y.Slice(b * InputSize, InputSize));
    }
}

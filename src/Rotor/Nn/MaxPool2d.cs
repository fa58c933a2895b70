using System.Numerics.Tensors;

namespace Rotor.Nn;

/// <summary>Max pooling k x k, stride k, over NHWC images, for a <see cref="Sequential"/> (trained by <see cref="Training.MaxPool2dLayer"/>).</summary>
public sealed class MaxPool2d : ILayer
{
    /// <summary>Pooling of C x H x W images by k (H and W multiples of k).</summary>
    public MaxPool2d(int channels, int height, int width, int k)
    {
        Check.Positive(channels, nameof(channels)); Check.Positive(k, nameof(k));
        if (height <= 0 || width <= 0 || height % k != 0 || width % k != 0) throw new RotorException($"maxpool2d: image {height}x{width} is not a positive multiple of the window {k}");
        C = channels; H = height; W = width; K = k;
    }

    /// <summary>Channels.</summary>
    public int C { get; }
    /// <summary>Input height.</summary>
    public int H { get; }
    /// <summary>Input width.</summary>
    public int W { get; }
    /// <summary>Window and stride.</summary>
    public int K { get; }
    /// <inheritdoc/>
    public int InputSize => H * W * C;
    /// <inheritdoc/>
    public int OutputSize => H / K * (W / K) * C;
    /// <inheritdoc/>
    public string Name => $"MaxPool2d {K}";

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (batch <= 0 || x.Length < (long)batch * InputSize || y.Length < (long)batch * OutputSize)
            throw new ArgumentException($"{Name}: batch {batch} does not fit input {x.Length} / output {y.Length} values");
        int oh = H / K, ow = W / K, o = 0;
        for (int b = 0; b < batch; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o += C)
                {
                    Span<float> dst = y.Slice(o, C);
                    x.Slice(((b * H + oy * K) * W + ox * K) * C, C).CopyTo(dst);
                    for (int dy = 0; dy < K; dy++)
                        for (int dx = 0; dx < K; dx++)
                            TensorPrimitives.Max(dst, x.Slice(((b * H + oy * K + dy) * W + ox * K + dx) * C, C), dst);
                }
    }
}

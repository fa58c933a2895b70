using System.Numerics.Tensors;
using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// Inference form of <see cref="TernaryConv2d"/> for a <see cref="Sequential"/>: NHWC images (B, H, W, C) ->
/// (B, OH, OW, O), stride 1, zero padding; packed ternary weights (O, k*k*C) with their scale, run through the
/// backend's ternary x float product on each image's patches. With actBits &gt; 0, each image is first quantized
/// per image (absmax), as in training.
/// </summary>
public sealed class TernaryConv2dLayer : ILayer
{
    private readonly float[] _bias;
    private float[] _patches = [], _xq = [];

    /// <summary>A convolution over packed weights (rows O, columns k*k*C in (ky, kx, c) order).</summary>
    public TernaryConv2dLayer(TernaryMatrix weights, ReadOnlySpan<float> bias, int channels, int height, int width, int kernel, int pad, int actBits, ITernaryBackend? backend = null)
    {
        Weights = weights ?? throw new ArgumentNullException(nameof(weights));
        if (weights.Cols != kernel * kernel * channels) throw new RotorException($"conv2d: weights have {weights.Cols} columns, k*k*C = {kernel * kernel * channels}");
        Check.Length(bias.Length, weights.Rows, nameof(bias));
        C = channels; H = height; W = width; Kernel = kernel; Pad = pad; ActBits = actBits;
        OH = height + 2 * pad - kernel + 1; OW = width + 2 * pad - kernel + 1;
        if (OH <= 0 || OW <= 0) throw new RotorException($"conv2d: kernel {kernel} larger than the padded image {height}x{width}");
        _bias = bias.ToArray();
        Backend = backend ?? CpuBackend.Default;
    }

    /// <summary>The packed weights (O, k*k*C).</summary>
    public TernaryMatrix Weights { get; }
    /// <summary>The bias (O).</summary>
    public ReadOnlySpan<float> Bias => _bias;
    /// <summary>The device.</summary>
    public ITernaryBackend Backend { get; }
    /// <summary>Input channels.</summary>
    public int C { get; }
    /// <summary>Input height.</summary>
    public int H { get; }
    /// <summary>Input width.</summary>
    public int W { get; }
    /// <summary>Kernel size.</summary>
    public int Kernel { get; }
    /// <summary>Padding.</summary>
    public int Pad { get; }
    /// <summary>Output height.</summary>
    public int OH { get; }
    /// <summary>Output width.</summary>
    public int OW { get; }
    /// <summary>Activation bits (0: float).</summary>
    public int ActBits { get; }
    /// <inheritdoc/>
    public int InputSize => H * W * C;
    /// <inheritdoc/>
    public int OutputSize => OH * OW * Weights.Rows;
    /// <inheritdoc/>
    public string Name => $"TernaryConv2d {C}x{H}x{W} -> {Weights.Rows}x{OH}x{OW} k{Kernel}";

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{Name}: batch must be positive");
        if (x.Length < (long)batch * InputSize || y.Length < (long)batch * OutputSize)
            throw new ArgumentException($"{Name}: input {x.Length} / output {y.Length} values are too few for batch {batch}");
        int kkc = Kernel * Kernel * C, plane = OH * OW;
        if (_patches.Length < plane * kkc) _patches = new float[plane * kkc];
        if (ActBits > 0 && _xq.Length < InputSize) _xq = new float[InputSize];
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> img = x.Slice(b * InputSize, InputSize);
            if (ActBits > 0) { FakeQuant.ActivationsAbsMax(img, _xq, InputSize, ActBits); img = _xq; }
            for (int oy = 0, r = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++, r++)
                {
                    Span<float> row = _patches.AsSpan(r * kkc, kkc);
                    for (int ky = 0; ky < Kernel; ky++)
                        for (int kx = 0; kx < Kernel; kx++)
                        {
                            Span<float> dst = row.Slice((ky * Kernel + kx) * C, C);
                            int iy = oy + ky - Pad, ix = ox + kx - Pad;
                            if ((uint)iy < (uint)H && (uint)ix < (uint)W) img.Slice((iy * W + ix) * C, C).CopyTo(dst);
                            else dst.Clear();
                        }
                }
            Backend.MatMulFloat(Weights, _patches.AsSpan(0, plane * kkc), y.Slice(b * OutputSize, OutputSize), _bias);
        }
    }
}

/// <summary>Max pooling k x k, stride k, over NHWC images, for a <see cref="Sequential"/>.</summary>
public sealed class MaxPoolLayer : ILayer
{
    /// <summary>Pooling of C x H x W images by k (H and W multiples of k).</summary>
    public MaxPoolLayer(int channels, int height, int width, int k)
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

/// <summary>RMSNorm over each row, <c>y = g * x / sqrt(mean(x^2) + eps)</c>, for a <see cref="Sequential"/>.</summary>
public sealed class RmsNormInferenceLayer : ILayer
{
    private readonly float[] _gain;

    /// <summary>A norm with gain <paramref name="gain"/> (its length is the row size).</summary>
    public RmsNormInferenceLayer(ReadOnlySpan<float> gain, float eps)
    {
        if (gain.IsEmpty) throw new RotorException("rmsnorm: empty gain");
        Check.Finite(gain, "rmsnorm gain");
        _gain = gain.ToArray(); Eps = eps;
    }

    /// <summary>Added to the mean square.</summary>
    public float Eps { get; }
    /// <summary>The gain.</summary>
    public ReadOnlySpan<float> Gain => _gain;
    /// <inheritdoc/>
    public int InputSize => _gain.Length;
    /// <inheritdoc/>
    public int OutputSize => _gain.Length;
    /// <inheritdoc/>
    public string Name => $"RMSNorm {_gain.Length}";

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        int n = _gain.Length;
        if (batch <= 0 || x.Length < (long)batch * n || y.Length < (long)batch * n)
            throw new ArgumentException($"{Name}: batch {batch} does not fit input {x.Length} / output {y.Length} values");
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> xr = x.Slice(b * n, n);
            float rinv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xr) / n + Eps);
            TensorPrimitives.Multiply(xr, rinv, y.Slice(b * n, n));
            TensorPrimitives.Multiply(y.Slice(b * n, n), _gain, y.Slice(b * n, n));
        }
    }
}

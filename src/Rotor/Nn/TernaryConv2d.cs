using Rotor.Kernels;

namespace Rotor.Nn;

/// <summary>
/// A ternary convolution for a <see cref="Sequential"/> (trained by <see cref="Training.TernaryConv2dLayer"/>): NHWC images (B, H, W, C) ->
/// (B, OH, OW, O), stride 1, zero padding; packed ternary weights (O, k*k*C) with their scale, run through the
/// backend's ternary x float product on each image's patches. With actBits &gt; 0, each image is first quantized
/// per image (absmax), as in training.
/// </summary>
public sealed class TernaryConv2d : ILayer
{
    private readonly float[] _bias;
    private float[] _patches = [], _xq = [];

    /// <summary>A convolution over packed weights (rows O, columns k*k*C in (ky, kx, c) order).</summary>
    public TernaryConv2d(TernaryMatrix weights, ReadOnlySpan<float> bias, int channels, int height, int width, int kernel, int pad, int actBits, ITernaryBackend? backend = null)
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

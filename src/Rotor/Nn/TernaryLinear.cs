using Rotor.Kernels;

namespace Rotor.Nn;

/// <summary>How a <see cref="TernaryLinear"/> treats its input.</summary>
public enum ActivationMode
{
    /// <summary>Quantize each input row to int8 (absmax), as BitNet b1.58; integer kernels.</summary>
    Int8 = 0,
    /// <summary>Keep float inputs; float kernels.</summary>
    Float = 1,
}

/// <summary>y = x W^T + b with W ternary (Out, In) and optional float bias (Out).</summary>
public sealed class TernaryLinear : ILayer
{
    private readonly float[]? _bias;
    private QuantizedActivations? _scratch;

    /// <summary>A layer over packed weights.</summary>
    public TernaryLinear(TernaryMatrix weights, ReadOnlySpan<float> bias = default, ActivationMode mode = ActivationMode.Int8, ITernaryBackend? backend = null)
    {
        Weights = weights ?? throw new ArgumentNullException(nameof(weights));
        if (!bias.IsEmpty)
        {
            Check.Length(bias.Length, weights.Rows, nameof(bias));
            Check.Finite(bias, nameof(bias));
            _bias = bias.ToArray();
        }
        Mode = mode;
        Backend = backend ?? CpuBackend.Default;
    }

    /// <summary>A layer from float weights (Out x In, row-major) through a quantizer.</summary>
    public static TernaryLinear FromFloat(ReadOnlySpan<float> weights, int outFeatures, int inFeatures, ReadOnlySpan<float> bias = default,
        QuantizationMethod method = QuantizationMethod.AbsMean, ScaleMode scaleMode = ScaleMode.PerTensor, ActivationMode mode = ActivationMode.Int8, ITernaryBackend? backend = null)
        => new(TernaryMatrix.Quantize(weights, outFeatures, inFeatures, method, scaleMode), bias, mode, backend);

    /// <summary>A layer with random weights (normal, std 1/sqrt(In)) quantized by absmean; deterministic for a seed.</summary>
    public static TernaryLinear Random(int outFeatures, int inFeatures, int seed, bool bias = false, ActivationMode mode = ActivationMode.Int8, ITernaryBackend? backend = null)
    {
        Check.Positive(outFeatures, nameof(outFeatures)); Check.Positive(inFeatures, nameof(inFeatures));
        var rng = new Random(seed);
        var w = new float[(long)outFeatures * inFeatures];
        float std = 1f / MathF.Sqrt(inFeatures);
        for (int i = 0; i < w.Length; i++) w[i] = (float)NormalSample(rng) * std;
        float[] b = bias ? Enumerable.Range(0, outFeatures).Select(_ => (float)NormalSample(rng) * 0.01f).ToArray() : [];
        return FromFloat(w, outFeatures, inFeatures, b, mode: mode, backend: backend);
    }

    internal static double NormalSample(Random rng) =>
        Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble());

    /// <summary>The packed weights.</summary>
    public TernaryMatrix Weights { get; }
    /// <summary>The bias, or empty.</summary>
    public ReadOnlySpan<float> Bias => _bias;
    /// <summary>Int8 or float activations.</summary>
    public ActivationMode Mode { get; }
    /// <summary>The device that runs the product.</summary>
    public ITernaryBackend Backend { get; }
    /// <inheritdoc/>
    public int InputSize => Weights.Cols;
    /// <inheritdoc/>
    public int OutputSize => Weights.Rows;
    /// <inheritdoc/>
    public string Name => $"TernaryLinear {InputSize}->{OutputSize}";

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        LayerChecks.Batch(this, x, y, batch);
        x = x[..(batch * InputSize)];
        y = y[..(batch * OutputSize)];
        if (Mode == ActivationMode.Float) { Backend.MatMulFloat(Weights, x, y, _bias); return; }
        if (_scratch is null || _scratch.Capacity < batch) _scratch = new QuantizedActivations(batch, InputSize);
        Backend.MatMul(Weights, x, y, _scratch, _bias);
    }

    /// <summary>Weight statistics.</summary>
    public LayerStats Stats()
    {
        var (zeros, plus, minus) = Weights.CountTrits();
        return new LayerStats(Name, (long)Weights.Rows * Weights.Cols, zeros, plus, minus, Weights.AllocatedBytes + (_bias?.Length ?? 0) * sizeof(float));
    }
}

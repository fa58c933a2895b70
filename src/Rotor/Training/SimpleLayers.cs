using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

using Rotor.Nn;

namespace Rotor.Training;

/// <summary>y = max(x, 0); dx = dy where y &gt; 0, else 0.</summary>
public sealed class ReluLayer(int size) : TrainLayer
{
    /// <summary>Features a row.</summary>
    public int Size { get; } = size > 0 ? size : throw new ArgumentOutOfRangeException(nameof(size), size, "size must be positive");
    /// <inheritdoc/>
    public override int InputSize => Size;
    /// <inheritdoc/>
    public override int OutputSize => Size;
    /// <inheritdoc/>
    public override string Name => $"ReLU {Size}";
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("relu", ("size", Size));

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        Ready(batch);
        TensorPrimitives.Max(x[..(batch * Size)], 0f, y[..(batch * Size)]);
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        Ready(batch);
        if (dx.IsEmpty) return;
        int n = batch * Size, i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
            {
                Vector256<float> mask = Vector256.GreaterThan(Vector256.Create(y.Slice(i, 8)), Vector256<float>.Zero);
                (Vector256.Create(dy.Slice(i, 8)) & mask).CopyTo(dx.Slice(i, 8));
            }
        for (; i < n; i++) dx[i] = y[i] > 0f ? dy[i] : 0f;
    }
}

/// <summary>
/// RMSNorm over each row: <c>r = sqrt(mean(x^2) + eps)</c>, <c>y = g * x / r</c>, with a learned gain g (In).
/// Backward: with <c>xh = x / r</c> and <c>u = dy * g</c>: <c>dg = sum_b dy * xh</c>, <c>dx = (u - xh * mean(u * xh)) / r</c>.
/// </summary>
public sealed class RmsNormLayer : TrainLayer
{
    private readonly Parameter _g;
    private float[] _rinv = [];   // (B) 1 / r of the last forward pass
    private float[] _tmp;         // (In) scratch

    /// <summary>A norm over rows of <paramref name="size"/> with gain 1.</summary>
    public RmsNormLayer(int size, float eps = 1e-6f)
    {
        Check.Positive(size, nameof(size));
        if (!(eps > 0)) throw new RotorException($"rmsnorm: eps = {eps}, expected a positive number");
        Size = size; Eps = eps;
        _g = new Parameter("gain", [size], decay: false);
        Array.Fill(_g.Value, 1f);
        _tmp = new float[size];
    }

    /// <summary>Features a row.</summary>
    public int Size { get; }
    /// <summary>Added to the mean square.</summary>
    public float Eps { get; }
    /// <summary>The gain.</summary>
    public Parameter Gain => _g;
    /// <inheritdoc/>
    public override int InputSize => Size;
    /// <inheritdoc/>
    public override int OutputSize => Size;
    /// <inheritdoc/>
    public override string Name => $"RMSNorm {Size}";
    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => [_g];
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("rmsnorm", ("size", Size), ("eps", Eps));

    /// <inheritdoc/>
    protected override void Allocate(int capacity) => _rinv = new float[capacity];

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        Ready(batch);
        for (int b = 0; b < batch; b++) _rinv[b] = RmsNorm.Row(x.Slice(b * Size, Size), _g.Value, Eps, y.Slice(b * Size, Size));
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        Ready(batch);
        Span<float> dg = _g.Grad, xh = _tmp;
        dg.Clear();
        for (int b = 0; b < batch; b++)
        {
            float rinv = _rinv[b];
            ReadOnlySpan<float> dyr = dy.Slice(b * Size, Size);
            TensorPrimitives.Multiply(x.Slice(b * Size, Size), rinv, xh);
            TensorPrimitives.FusedMultiplyAdd(dyr, xh, dg, dg);
            if (dx.IsEmpty) continue;
            Span<float> dxr = dx.Slice(b * Size, Size);
            TensorPrimitives.Multiply(dyr, _g.Value, dxr);                    // u
            float mean = TensorPrimitives.Dot(dxr, xh) / Size;                 // mean(u * xh)
            TensorPrimitives.MultiplyAdd(xh, -mean, dxr, dxr);                 // u - xh * mean
            TensorPrimitives.Multiply(dxr, rinv, dxr);
        }
    }
}

/// <summary>
/// Inverted dropout: in training, each value is kept with probability 1 - p and scaled by 1 / (1 - p), else zeroed;
/// in evaluation, identity. The mask comes from a counter-based hash of (step seed, index), so runs are repeatable
/// and resumable.
/// </summary>
public sealed class DropoutLayer : TrainLayer
{
    private float[] _mask = [];   // (B, Size) 0 or 1 / (1 - p) of the last training pass
    private bool _lastTraining;

    /// <summary>Dropout of probability <paramref name="p"/> in [0, 1).</summary>
    public DropoutLayer(int size, float p)
    {
        Check.Positive(size, nameof(size));
        if (!(p >= 0 && p < 1)) throw new RotorException($"dropout: p = {p}, expected 0 <= p < 1");
        Size = size; P = p;
    }

    /// <summary>Features a row.</summary>
    public int Size { get; }
    /// <summary>Probability of dropping a value.</summary>
    public float P { get; }
    /// <inheritdoc/>
    public override int InputSize => Size;
    /// <inheritdoc/>
    public override int OutputSize => Size;
    /// <inheritdoc/>
    public override string Name => $"Dropout {P}";
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("dropout", ("size", Size), ("p", P));

    /// <inheritdoc/>
    protected override void Allocate(int capacity) => _mask = new float[(long)capacity * Size];

    /// <summary>SplitMix64 finalizer: a well-mixed 64-bit hash of <paramref name="z"/>.</summary>
    internal static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        Ready(batch);
        int n = batch * Size;
        _lastTraining = training && P > 0;
        if (!_lastTraining) { x[..n].CopyTo(y); return; }
        float keep = 1f / (1f - P);
        ulong threshold = (ulong)(P * (double)ulong.MaxValue);
        ulong seed = Mix(StepSeed);
        for (int i = 0; i < n; i++) _mask[i] = Mix(seed + (ulong)i) >= threshold ? keep : 0f;
        TensorPrimitives.Multiply(x[..n], _mask.AsSpan(0, n), y[..n]);
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        Ready(batch);
        if (dx.IsEmpty) return;
        int n = batch * Size;
        if (_lastTraining) TensorPrimitives.Multiply(dy[..n], _mask.AsSpan(0, n), dx[..n]);
        else dy[..n].CopyTo(dx);
    }
}

using System.Numerics.Tensors;

using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// y = q(x) · q(W)^T + b with latent float weights W (Out, In): q(W) = absmean ternary (when ternary), q(x) = per-row
/// absmax of <c>actBits</c> bits (when actBits &gt; 0). Backward by the straight-through estimator:
/// dW = dy^T · q(x), db = sum_b dy, dx = dy · q(W).
/// </summary>
public sealed unsafe class TernaryLinearLayer : TrainLayer
{
    private readonly Parameter _w, _b;
    private readonly Parameter[] _params;
    private readonly float[] _wq;                 // (Out, In) quantized weights of the last forward pass
    private float[] _xq = [];                     // (B, In) quantized input of the last forward pass
    private readonly DenseSource _srcA = new(), _srcB = new();

    /// <summary>A layer with PyTorch's default initialization left to <see cref="Initialize"/>.</summary>
    public TernaryLinearLayer(int inFeatures, int outFeatures, bool bias = true, bool ternary = true, int actBits = 8)
    {
        Check.Positive(inFeatures, nameof(inFeatures)); Check.Positive(outFeatures, nameof(outFeatures));
        if (actBits != 0 && (actBits < 2 || actBits > 16)) throw new RotorException($"linear {inFeatures}->{outFeatures}: act_bits = {actBits}, expected 0 (float) or 2..16");
        In = inFeatures; Out = outFeatures; HasBias = bias; Ternary = ternary; ActBits = actBits;
        _w = new Parameter("weight", [outFeatures, inFeatures], decay: true);
        _b = new Parameter("bias", [outFeatures], decay: false);
        _params = bias ? [_w, _b] : [_w];
        _wq = new float[(long)outFeatures * inFeatures];
    }

    /// <summary>In features.</summary>
    public int In { get; }
    /// <summary>Out features.</summary>
    public int Out { get; }
    /// <summary>Whether a bias is added.</summary>
    public bool HasBias { get; }
    /// <summary>Whether the forward pass uses ternary weights (false: the float twin).</summary>
    public bool Ternary { get; }
    /// <summary>Activation bits (0: float activations).</summary>
    public int ActBits { get; }
    /// <summary>The latent weights (Out, In).</summary>
    public Parameter Weight => _w;
    /// <summary>The bias (Out), also present (unused) without bias.</summary>
    public Parameter Bias => _b;
    /// <summary>The quantized weights of the last forward pass.</summary>
    public ReadOnlySpan<float> QuantizedWeights => _wq;
    /// <inheritdoc/>
    public override int InputSize => In;
    /// <inheritdoc/>
    public override int OutputSize => Out;
    /// <inheritdoc/>
    public override string Name => $"{(Ternary ? "TernaryLinear" : "Linear")} {In}->{Out}";
    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => _params;
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("linear", ("in", In), ("out", Out), ("bias", HasBias ? 1 : 0), ("ternary", Ternary ? 1 : 0), ("act_bits", ActBits));

    /// <summary>PyTorch's default: W and b uniform in ±1/sqrt(In).</summary>
    public void Initialize(Random rng)
    {
        float bound = 1f / MathF.Sqrt(In);
        for (int i = 0; i < _w.Value.Length; i++) _w.Value[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
        if (HasBias) for (int i = 0; i < Out; i++) _b.Value[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
    }

    /// <inheritdoc/>
    protected override void Allocate(int capacity)
    {
        if (ActBits > 0) _xq = new float[(long)capacity * In];
    }

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        TrainContext ctx = Ready(batch);
        x = x[..(batch * In)]; y = y[..(batch * Out)];
        if (Ternary) FakeQuant.TernaryAbsMean(_w.Value, _wq);
        else _w.Value.CopyTo(_wq, 0);
        if (ActBits > 0) FakeQuant.ActivationsAbsMax(x, _xq, In, ActBits);
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * In) : x;
        fixed (float* px = xin, pw = _wq, py = y)
            ctx.Gemm.Multiply(_srcA.Set(px, batch, In, In, false), _srcB.Set(pw, Out, In, In, false), py, Out, accumulate: false);
        if (HasBias)
            for (int b = 0; b < batch; b++) TensorPrimitives.Add(y.Slice(b * Out, Out), _b.Value, y.Slice(b * Out, Out));
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        TrainContext ctx = Ready(batch);
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * In) : x[..(batch * In)];
        dy = dy[..(batch * Out)];
        fixed (float* pdy = dy, px = xin, pgw = _w.Grad, pw = _wq)
        {
            // dW (Out, In) = dy^T (Out, B) · xq (B, In)
            ctx.Gemm.Multiply(_srcA.Set(pdy, Out, batch, Out, true), _srcB.Set(px, In, batch, In, true), pgw, In, accumulate: false);
            if (!dx.IsEmpty)
            {
                // dx (B, In) = dy (B, Out) · Wq (Out, In)
                fixed (float* pdx = dx)
                    ctx.Gemm.Multiply(_srcA.Set(pdy, batch, Out, Out, false), _srcB.Set(pw, In, Out, In, true), pdx, In, accumulate: false);
            }
        }
        if (HasBias)
        {
            Span<float> gb = _b.Grad;
            gb.Clear();
            for (int b = 0; b < batch; b++) TensorPrimitives.Add(gb, dy.Slice(b * Out, Out), gb);
        }
    }
}

using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>
/// The quantizers of the forward pass, in float ("fake quantization"), bit-compatible with Rotor's inference:
/// weights by <see cref="TernaryQuantizer.AbsMean"/> (<c>s = mean|W|</c>, <c>Wq = s * clamp(round(W / (s + eps)), -1, 1)</c>),
/// activations by per-row absmax as <see cref="QuantizedActivations"/> (<c>a = max|x| / 127</c>,
/// <c>xq = a * clamp(round(x / a), -127, 127)</c>). The backward pass treats both as identity (straight-through estimator).
/// </summary>
public static class FakeQuant
{
    /// <summary>Writes the dequantized ternary weights <c>s * trit</c> into <paramref name="wq"/> and returns s.
    /// The trits equal those of <see cref="TernaryQuantizer.AbsMean"/> for the same weights.</summary>
    public static float TernaryAbsMean(ReadOnlySpan<float> w, Span<float> wq)
    {
        if (w.IsEmpty) throw new ArgumentException("cannot quantize an empty weight tensor", nameof(w));
        Check.AtLeast(wq.Length, w.Length, nameof(wq));
        float s = TensorPrimitives.SumOfMagnitudes(w) / w.Length;
        if (!float.IsFinite(s)) Check.Finite(w, "weights");
        float inv = 1f / (s + TernaryQuantizer.Eps);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> vinv = Vector256.Create(inv), vs = Vector256.Create(s), one = Vector256<float>.One;
            for (; i + 8 <= w.Length; i += 8)
            {
                Vector256<float> t = Vector256.Clamp(Vector256.Round(Vector256.Create(w.Slice(i, 8)) * vinv), -one, one);
                (t * vs).CopyTo(wq.Slice(i, 8));
            }
        }
        for (; i < w.Length; i++) wq[i] = Math.Clamp(MathF.Round(w[i] * inv), -1f, 1f) * s;
        return s;
    }

    /// <summary>Per-row absmax fake quantization of <paramref name="x"/> (rows of <paramref name="cols"/>) to
    /// <paramref name="bits"/>-bit integers (8: levels -127..127).</summary>
    public static void ActivationsAbsMax(ReadOnlySpan<float> x, Span<float> xq, int cols, int bits)
    {
        if (bits < 2 || bits > 16) throw new ArgumentOutOfRangeException(nameof(bits), bits, "activation bits must be 2..16");
        Check.AtLeast(xq.Length, x.Length, nameof(xq));
        float levels = (1 << (bits - 1)) - 1;
        int rows = x.Length / cols;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> src = x.Slice(r * cols, cols);
            Span<float> dst = xq.Slice(r * cols, cols);
            float amax = MathF.Abs(TensorPrimitives.MaxMagnitude(src));
            if (amax == 0f) { dst.Clear(); continue; }
            float inv = levels / amax, a = amax / levels;
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> vinv = Vector256.Create(inv), va = Vector256.Create(a), lim = Vector256.Create(levels);
                for (; j + 8 <= cols; j += 8)
                    (Vector256.Clamp(Vector256.Round(Vector256.Create(src.Slice(j, 8)) * vinv), -lim, lim) * va).CopyTo(dst.Slice(j, 8));
            }
            for (; j < cols; j++) dst[j] = Math.Clamp(MathF.Round(src[j] * inv), -levels, levels) * a;
        }
    }
}

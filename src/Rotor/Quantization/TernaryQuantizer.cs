using System.Numerics.Tensors;

namespace Rotor;

/// <summary>How float weights become trits.</summary>
public enum QuantizationMethod
{
    /// <summary>BitNet b1.58: s = mean|W|, W_q = clamp(round(W / (s + eps)), -1, 1), scale s.</summary>
    AbsMean = 0,
    /// <summary>Ternary weight networks: delta = 0.7 * mean|W|, W_q = sign(W) where |W| &gt; delta, scale = mean |W| over the kept weights.</summary>
    Threshold = 1,
}

/// <summary>The error of a quantization: how far <c>scale * W_q</c> is from W.</summary>
/// <param name="Mse">Mean squared error.</param>
/// <param name="MaxAbsError">Largest absolute error.</param>
/// <param name="RelativeError">||W - scale W_q|| / ||W|| (Frobenius).</param>
/// <param name="ZeroShare">Share of weights quantized to 0.</param>
/// <param name="Scale">The scale used.</param>
public readonly record struct QuantizationReport(double Mse, double MaxAbsError, double RelativeError, double ZeroShare, float Scale)
{
    /// <inheritdoc/>
    public override string ToString() => $"scale {Scale:G4}, mse {Mse:G4}, max |err| {MaxAbsError:G4}, relative {RelativeError:P2}, zeros {ZeroShare:P1}";
}

/// <summary>Weight quantizers to {-1, 0, +1} with a scale.</summary>
public static class TernaryQuantizer
{
    /// <summary>The eps of the absmean quantizer, as in BitNet b1.58.</summary>
    public const float Eps = 1e-5f;

    /// <summary>Quantizes <paramref name="weights"/> into <paramref name="trits"/> and returns the scale.</summary>
    /// <exception cref="RotorException">NaN or infinite weights (the first index is named).</exception>
    public static float Quantize(ReadOnlySpan<float> weights, Span<sbyte> trits, QuantizationMethod method) => method switch
    {
        QuantizationMethod.AbsMean => AbsMean(weights, trits),
        QuantizationMethod.Threshold => Threshold(weights, trits),
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown quantization method"),
    };

    /// <summary>BitNet b1.58 absmean: <c>s = mean|W|; trits[i] = clamp(round(W[i] / (s + eps)), -1, 1)</c>; returns s.</summary>
    public static float AbsMean(ReadOnlySpan<float> weights, Span<sbyte> trits)
    {
        Validate(weights, trits);
        float s = TensorPrimitives.SumOfMagnitudes(weights) / weights.Length;
        float inv = 1f / (s + Eps);
        for (int i = 0; i < weights.Length; i++)
            trits[i] = (sbyte)Math.Clamp(MathF.Round(weights[i] * inv), -1f, 1f);
        return s;
    }

    /// <summary>TWN threshold: <c>delta = 0.7 mean|W|; trits[i] = sign(W[i])</c> where <c>|W[i]| &gt; delta</c>, else 0;
    /// returns the mean of |W| over the kept weights (0 when none is kept).</summary>
    public static float Threshold(ReadOnlySpan<float> weights, Span<sbyte> trits)
    {
        Validate(weights, trits);
        float delta = 0.7f * TensorPrimitives.SumOfMagnitudes(weights) / weights.Length;
        double kept = 0; long n = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            float w = weights[i];
            if (MathF.Abs(w) > delta) { trits[i] = (sbyte)(w > 0 ? 1 : -1); kept += MathF.Abs(w); n++; }
            else trits[i] = 0;
        }
        return n == 0 ? 0f : (float)(kept / n);
    }

    /// <summary>Measures the error of <c>scale * trits</c> against <paramref name="weights"/>.</summary>
    public static QuantizationReport Report(ReadOnlySpan<float> weights, ReadOnlySpan<sbyte> trits, float scale)
    {
        Check.Length(trits.Length, weights.Length, nameof(trits));
        double se = 0, norm = 0, max = 0; long zeros = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            double e = weights[i] - scale * trits[i];
            se += e * e; norm += (double)weights[i] * weights[i];
            max = Math.Max(max, Math.Abs(e));
            if (trits[i] == 0) zeros++;
        }
        int len = Math.Max(1, weights.Length);
        return new QuantizationReport(se / len, max, norm == 0 ? 0 : Math.Sqrt(se / norm), (double)zeros / len, scale);
    }

    private static void Validate(ReadOnlySpan<float> weights, Span<sbyte> trits)
    {
        if (weights.IsEmpty) throw new ArgumentException("cannot quantize an empty weight tensor", nameof(weights));
        Check.AtLeast(trits.Length, weights.Length, nameof(trits));
        Check.Finite(weights, nameof(weights));
    }
}

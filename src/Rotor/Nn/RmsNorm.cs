using System.Numerics.Tensors;

namespace Rotor.Nn;

/// <summary>RMSNorm over each row, <c>y = g * x / sqrt(mean(x^2) + eps)</c>, for a <see cref="Sequential"/> (trained by <see cref="Training.RmsNormLayer"/>).</summary>
public sealed class RmsNorm : ILayer
{
    private readonly float[] _gain;

    /// <summary>A norm with gain <paramref name="gain"/> (its length is the row size).</summary>
    public RmsNorm(ReadOnlySpan<float> gain, float eps)
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
        for (int b = 0; b < batch; b++) Row(x.Slice(b * n, n), _gain, Eps, y.Slice(b * n, n));
    }

    /// <summary>One row: <c>y = g * x * rinv</c> with <c>rinv = 1 / sqrt(mean(x^2) + eps)</c>; returns rinv. The
    /// training layer runs the same function, so both give the same floats.</summary>
    public static float Row(ReadOnlySpan<float> x, ReadOnlySpan<float> gain, float eps, Span<float> y)
    {
        float rinv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / x.Length + eps);
        TensorPrimitives.Multiply(x, rinv, y);
        TensorPrimitives.Multiply(y, gain, y);
        return rinv;
    }
}

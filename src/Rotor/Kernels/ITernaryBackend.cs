namespace Rotor.Kernels;

/// <summary>A device that runs ternary products. Model code calls this; it never sees SIMD or CUDA.</summary>
public interface ITernaryBackend
{
    /// <summary>Name for reports, such as "cpu avx512 x2".</summary>
    string Name { get; }

    /// <summary><c>y[i, r] = scale_x[i] * scale_w[r] * sum_j W[r, j] * xq[i, j] + bias[r]</c> for the quantized rows of
    /// <paramref name="x"/>; y is (x.Count, w.Rows) row-major.</summary>
    void MatMul(TernaryMatrix w, QuantizedActivations x, Span<float> y, ReadOnlySpan<float> bias = default);

    /// <summary><c>y = x W^T (+ bias)</c> with float activations x (m, w.Cols), quantized to int8 per row inside
    /// the call into <paramref name="scratch"/>.</summary>
    void MatMul(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, QuantizedActivations scratch, ReadOnlySpan<float> bias = default);

    /// <summary><c>y = x W^T (+ bias)</c> in float arithmetic, without quantizing x.</summary>
    void MatMulFloat(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> bias = default);
}

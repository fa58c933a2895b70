namespace Rotor.Kernels;

/// <summary>A device that runs products with dense (F32, F16, Int8, Q4) weight matrices: embeddings, LM heads, the linear
/// layers of float models. Model code calls this; it never sees SIMD.</summary>
public interface IDenseBackend
{
    /// <summary><c>y[i, r] = sum_j W[r, j] * x[i, j]</c> for the m = x.Length / w.Cols rows of x; y is (m, w.Rows)
    /// row-major. Int8 and Q4 weights quantize x to int8 per row (absmax) inside the call.</summary>
    void MatMul(DenseMatrix w, ReadOnlySpan<float> x, Span<float> y);
}

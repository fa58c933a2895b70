namespace Rotor.Kernels;

public sealed partial class CpuBackend
{
    private QuantizedActivations? _denseScratch;
    private readonly Q4Activations _q4Scratch = new();
    private readonly object _denseLock = new();

    /// <inheritdoc/>
    public void MatMul(DenseMatrix w, ReadOnlySpan<float> x, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.IsEmpty || x.Length % w.Cols != 0) throw new ArgumentException($"x has {x.Length} values, expected a positive multiple of W's {w.Cols} columns", nameof(x));
        int m = x.Length / w.Cols;
        Check.AtLeast(y.Length, (long)m * w.Rows, nameof(y));
        if (w.Type == DenseType.Q4)
        {
            lock (_denseLock)
            {
                _q4Scratch.Pack(x, m, w.Cols, w.PaddedCols);
                DenseGemm.Gemm(w, x, m, null, y, Path, _pool, _q4Scratch);
            }
            return;
        }
        if (w.Type != DenseType.Int8)
        {
            DenseGemm.Gemm(w, x, m, null, y, Path, _pool);
            return;
        }
        lock (_denseLock)
        {
            if (_denseScratch is null || _denseScratch.Cols != w.Cols || _denseScratch.Capacity < m)
                _denseScratch = new QuantizedActivations(Math.Max(m, _denseScratch?.Capacity ?? 1), w.Cols);
            _denseScratch.Quantize(x);
            DenseGemm.Gemm(w, x, m, _denseScratch, y, Path, _pool);
        }
    }
}

public sealed partial class CpuBackend : IAttentionBackend
{
    /// <inheritdoc/>
    public void Attention(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<float> k, ReadOnlySpan<float> v, int kvStride, int startPos, float scale, Span<float> output)
        => AttentionKernel.Run(q, m, heads, kvHeads, headDim, k, v, kvStride, startPos, scale, output, Path, _pool);

    /// <inheritdoc/>
    public void Attention(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, int kvStride, int startPos, float scale, Span<float> output)
        => AttentionKernel.Run(q, m, heads, kvHeads, headDim, k, v, kvStride, startPos, scale, output, Path, _pool);

    /// <inheritdoc/>
    public void AttentionRows(ReadOnlySpan<float> q, int heads, int kvHeads, int headDim,
        ReadOnlySpan<float[]> keys, ReadOnlySpan<float[]> values, ReadOnlySpan<int> positions, int kvStride, float scale, Span<float> output)
        => AttentionKernel.RunRows(q, heads, kvHeads, headDim, keys, values, default, default, positions, kvStride, scale, output, Path, _pool);

    /// <inheritdoc/>
    public void AttentionRows(ReadOnlySpan<float> q, int heads, int kvHeads, int headDim,
        ReadOnlySpan<Half[]> keys, ReadOnlySpan<Half[]> values, ReadOnlySpan<int> positions, int kvStride, float scale, Span<float> output)
        => AttentionKernel.RunRows(q, heads, kvHeads, headDim, default, default, keys, values, positions, kvStride, scale, output, Path, _pool);
}

using System.Numerics.Tensors;

namespace Rotor.Rag.Embeddings;

/// <summary>
/// Sentence-transformers pooling: the mean of the token embeddings where the attention mask is 1, then L2 normalization.
/// Legend: B = batch, T = tokens (padded), H = hidden size.
/// </summary>
public static class Pooling
{
    /// <summary>
    /// <c>destination[b, h] = sum_t mask[b, t] * hidden[b, t, h] / max(1, sum_t mask[b, t])</c>, each row then divided by
    /// its L2 norm (left as zero when the norm is zero). Vectorized over H.
    /// </summary>
    /// <param name="hidden">Token embeddings, (B, T, H) row-major.</param>
    /// <param name="mask">Attention mask, (B, T), 0 or 1.</param>
    /// <param name="destination">Sentence embeddings, (B, H).</param>
    /// <param name="batch">B.</param>
    /// <param name="tokens">T.</param>
    /// <param name="dims">H.</param>
    /// <exception cref="ArgumentException">A span does not have the length its shape implies.</exception>
    public static void MeanPoolNormalize(ReadOnlySpan<float> hidden, ReadOnlySpan<long> mask, Span<float> destination, int batch, int tokens, int dims)
    {
        CheckShapes(hidden, mask, destination, batch, tokens, dims);
        for (int b = 0; b < batch; b++)
        {
            var row = destination.Slice(b * dims, dims);
            row.Clear();
            int count = 0;
            for (int t = 0; t < tokens; t++)
            {
                if (mask[b * tokens + t] == 0) continue;
                TensorPrimitives.Add(row, hidden.Slice((b * tokens + t) * dims, dims), row);
                count++;
            }
            if (count > 1) TensorPrimitives.Divide(row, count, row);
            float norm = TensorPrimitives.Norm(row);
            // sentence-transformers Normalize(): x / max(||x||, 1e-12)
            TensorPrimitives.Divide(row, MathF.Max(norm, 1e-12f), row);
        }
    }

    /// <summary>The obviously correct scalar version of <see cref="MeanPoolNormalize"/>, in double precision: the test oracle.</summary>
    public static void MeanPoolNormalizeReference(ReadOnlySpan<float> hidden, ReadOnlySpan<long> mask, Span<float> destination, int batch, int tokens, int dims)
    {
        CheckShapes(hidden, mask, destination, batch, tokens, dims);
        var sum = new double[dims];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(sum);
            double count = 0;
            for (int t = 0; t < tokens; t++)
            {
                double m = mask[b * tokens + t];
                count += m;
                for (int h = 0; h < dims; h++) sum[h] += m * hidden[(b * tokens + t) * dims + h];
            }
            count = Math.Max(count, 1e-9);
            double sq = 0;
            for (int h = 0; h < dims; h++) { sum[h] /= count; sq += sum[h] * sum[h]; }
            double norm = Math.Max(Math.Sqrt(sq), 1e-12);
            for (int h = 0; h < dims; h++) destination[b * dims + h] = (float)(sum[h] / norm);
        }
    }

    private static void CheckShapes(ReadOnlySpan<float> hidden, ReadOnlySpan<long> mask, Span<float> destination, int batch, int tokens, int dims)
    {
        if (batch < 0 || tokens < 0 || dims <= 0) throw new ArgumentException($"invalid shape (B={batch}, T={tokens}, H={dims})");
        if (hidden.Length != (long)batch * tokens * dims) throw new ArgumentException($"hidden has length {hidden.Length}, expected B*T*H = {(long)batch * tokens * dims}", nameof(hidden));
        if (mask.Length != (long)batch * tokens) throw new ArgumentException($"mask has length {mask.Length}, expected B*T = {(long)batch * tokens}", nameof(mask));
        if (destination.Length != (long)batch * dims) throw new ArgumentException($"destination has length {destination.Length}, expected B*H = {(long)batch * dims}", nameof(destination));
    }
}

using System.Numerics.Tensors;
using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>A device that runs causal multi-head attention over a key/value cache.</summary>
public interface IAttentionBackend
{
    /// <summary>
    /// Causal grouped-query attention for m query rows at positions <c>startPos .. startPos + m - 1</c>:
    /// <c>out[i, h] = sum_t p_t v[t, g]</c> with <c>p = softmax_t(scale * q[i, h] . k[t, g])</c> over
    /// <c>t = 0 .. startPos + i</c>, where head h reads key/value head <c>g = h / (heads / kvHeads)</c>.
    /// q and out are (m, heads * headDim); k and v are (positions, kvStride) with head g at columns
    /// <c>g * headDim ..</c>; they must hold at least <c>startPos + m</c> positions.
    /// </summary>
    void Attention(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<float> k, ReadOnlySpan<float> v, int kvStride, int startPos, float scale, Span<float> output);

    /// <summary>As the float overload, over keys and values stored in half precision (a cache of half the bytes):
    /// each key and value is widened to float exactly before it is used; q, the scores and out stay float.</summary>
    void Attention(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, int kvStride, int startPos, float scale, Span<float> output);
}

/// <summary>The CPU attention kernel: one task a (query row, head) pair, split over the worker threads.</summary>
internal static unsafe class AttentionKernel
{
    private sealed class Job : IParallelWork
    {
        public float* Q, K, V, Out;
        public ushort* KH, VH;   // half keys and values (then K and V are null)
        public int M, Heads, KvHeads, HeadDim, KvStride, StartPos;
        public float Scale;
        public bool Reference;
        [ThreadStatic] private static float[]? t_scores;

        public void Execute(int task)
        {
            int i = task / Heads, h = task % Heads;
            int g = h / (Heads / KvHeads);
            int n = StartPos + i + 1;
            float[] s = t_scores is { } b && b.Length >= n ? b : (t_scores = new float[Math.Max(n, 256)]);
            var q = new ReadOnlySpan<float>(Q + ((long)i * Heads + h) * HeadDim, HeadDim);
            var scores = s.AsSpan(0, n);
            var o = new Span<float>(Out + ((long)i * Heads + h) * HeadDim, HeadDim);
            if (KH != null) { ExecuteHalf(q, scores, o, g, n); return; }
            if (Reference)
            {
                float max = float.NegativeInfinity;
                for (int t = 0; t < n; t++)
                {
                    float* kr = K + (long)t * KvStride + g * HeadDim;
                    float d = 0;
                    for (int j = 0; j < HeadDim; j++) d += q[j] * kr[j];
                    scores[t] = d * Scale;
                    max = MathF.Max(max, scores[t]);
                }
                float sum = 0;
                for (int t = 0; t < n; t++) { scores[t] = MathF.Exp(scores[t] - max); sum += scores[t]; }
                o.Clear();
                for (int t = 0; t < n; t++)
                {
                    float* vr = V + (long)t * KvStride + g * HeadDim;
                    float p = scores[t] / sum;
                    for (int j = 0; j < HeadDim; j++) o[j] += p * vr[j];
                }
                return;
            }
            for (int t = 0; t < n; t++)
                scores[t] = TensorPrimitives.Dot(q, new ReadOnlySpan<float>(K + (long)t * KvStride + g * HeadDim, HeadDim)) * Scale;
            // softmax(s) = exp(s - max) / sum: without the max, large scores overflow exp to infinity.
            TensorPrimitives.Subtract(scores, TensorPrimitives.Max(scores), scores);
            TensorPrimitives.Exp(scores, scores);
            TensorPrimitives.Divide(scores, TensorPrimitives.Sum(scores), scores);
            o.Clear();
            for (int t = 0; t < n; t++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(V + (long)t * KvStride + g * HeadDim, HeadDim), scores[t], o, o);
        }

        /// <summary>One (row, head) over half keys and values: the same steps as the float path, each key or value
        /// row widened exactly (<see cref="DenseGemm.DotF16"/>, <see cref="DenseGemm.WidenF16"/>).</summary>
        private void ExecuteHalf(ReadOnlySpan<float> q, Span<float> scores, Span<float> o, int g, int n)
        {
            if (Reference)
            {
                float max = float.NegativeInfinity;
                for (int t = 0; t < n; t++)
                {
                    Half* kr = (Half*)KH + (long)t * KvStride + g * HeadDim;
                    float d = 0;
                    for (int j = 0; j < HeadDim; j++) d += q[j] * (float)kr[j];
                    scores[t] = d * Scale;
                    max = MathF.Max(max, scores[t]);
                }
                float sum = 0;
                for (int t = 0; t < n; t++) { scores[t] = MathF.Exp(scores[t] - max); sum += scores[t]; }
                o.Clear();
                for (int t = 0; t < n; t++)
                {
                    Half* vr = (Half*)VH + (long)t * KvStride + g * HeadDim;
                    float p = scores[t] / sum;
                    for (int j = 0; j < HeadDim; j++) o[j] += p * (float)vr[j];
                }
                return;
            }
            fixed (float* qp = q)
                for (int t = 0; t < n; t++)
                    scores[t] = DenseGemm.DotF16(KH + (long)t * KvStride + g * HeadDim, qp, HeadDim) * Scale;
            TensorPrimitives.Subtract(scores, TensorPrimitives.Max(scores), scores);
            TensorPrimitives.Exp(scores, scores);
            TensorPrimitives.Divide(scores, TensorPrimitives.Sum(scores), scores);
            o.Clear();
            float[] row = t_row is { } b && b.Length >= HeadDim ? b : (t_row = new float[HeadDim]);
            fixed (float* rp = row)
                for (int t = 0; t < n; t++)
                {
                    DenseGemm.WidenF16(VH + (long)t * KvStride + g * HeadDim, rp, HeadDim);
                    TensorPrimitives.MultiplyAdd(row.AsSpan(0, HeadDim), scores[t], o, o);
                }
        }

        [ThreadStatic] private static float[]? t_row;
    }

    [ThreadStatic] private static Job? t_job;

    public static void Run(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<float> k, ReadOnlySpan<float> v, int kvStride, int startPos, float scale, Span<float> output, KernelPath path, WorkerPool pool)
    {
        CheckArguments(q.Length, m, heads, kvHeads, headDim, k.Length, v.Length, kvStride, startPos, output.Length);
        fixed (float* qp = q) fixed (float* kp = k) fixed (float* vp = v) fixed (float* op = output)
            Start(qp, kp, vp, null, null, m, heads, kvHeads, headDim, kvStride, startPos, scale, op, path, pool);
    }

    /// <summary>The half-precision cache form of <see cref="Run(ReadOnlySpan{float}, int, int, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, float, Span{float}, KernelPath, WorkerPool)"/>.</summary>
    public static void Run(ReadOnlySpan<float> q, int m, int heads, int kvHeads, int headDim,
        ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, int kvStride, int startPos, float scale, Span<float> output, KernelPath path, WorkerPool pool)
    {
        CheckArguments(q.Length, m, heads, kvHeads, headDim, k.Length, v.Length, kvStride, startPos, output.Length);
        fixed (float* qp = q) fixed (Half* kp = k) fixed (Half* vp = v) fixed (float* op = output)
            Start(qp, null, null, (ushort*)kp, (ushort*)vp, m, heads, kvHeads, headDim, kvStride, startPos, scale, op, path, pool);
    }

    private static void CheckArguments(int qLength, int m, int heads, int kvHeads, int headDim, int kLength, int vLength, int kvStride, int startPos, int outLength)
    {
        Check.Positive(m, nameof(m)); Check.Positive(heads, nameof(heads)); Check.Positive(kvHeads, nameof(kvHeads)); Check.Positive(headDim, nameof(headDim));
        Check.NonNegative(startPos, nameof(startPos));
        if (heads % kvHeads != 0) throw new ArgumentException($"heads ({heads}) must be a multiple of kvHeads ({kvHeads})");
        if (kvStride < kvHeads * headDim) throw new ArgumentException($"kvStride {kvStride} is shorter than kvHeads * headDim = {kvHeads * headDim}");
        Check.AtLeast(qLength, (long)m * heads * headDim, "q");
        Check.AtLeast(outLength, (long)m * heads * headDim, "output");
        long positions = (long)startPos + m;
        Check.AtLeast(kLength, (positions - 1) * kvStride + kvHeads * headDim, "k");
        Check.AtLeast(vLength, (positions - 1) * kvStride + kvHeads * headDim, "v");
    }

    private static void Start(float* qp, float* kp, float* vp, ushort* kh, ushort* vh, int m, int heads, int kvHeads, int headDim,
        int kvStride, int startPos, float scale, float* op, KernelPath path, WorkerPool pool)
    {
        long positions = (long)startPos + m;
        var job = t_job ??= new Job();
        job.Q = qp; job.K = kp; job.V = vp; job.KH = kh; job.VH = vh; job.Out = op;
        job.M = m; job.Heads = heads; job.KvHeads = kvHeads; job.HeadDim = headDim; job.KvStride = kvStride;
        job.StartPos = startPos; job.Scale = scale; job.Reference = path == KernelPath.Reference;
        int tasks = m * heads;
        // Short contexts cost less than waking the workers.
        if (pool.Threads == 1 || positions * headDim * tasks < 1 << 16) for (int t = 0; t < tasks; t++) job.Execute(t);
        else pool.Run(job, tasks);
    }
}

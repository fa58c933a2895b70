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

    /// <summary>
    /// The attention of a decode step of several sequences, one query row each: row b of q (B = positions.Length rows)
    /// attends over its own keys[b] and values[b] at positions <c>0 .. positions[b]</c> (its own key and value stored
    /// there already), exactly as <see cref="Attention(ReadOnlySpan{float}, int, int, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, float, Span{float})"/>
    /// with m = 1 and startPos = positions[b] would. The default runs the rows one at a time; a backend may run them
    /// as one job.
    /// </summary>
    void AttentionRows(ReadOnlySpan<float> q, int heads, int kvHeads, int headDim,
        ReadOnlySpan<float[]> keys, ReadOnlySpan<float[]> values, ReadOnlySpan<int> positions, int kvStride, float scale, Span<float> output)
    {
        int w = heads * headDim;
        for (int b = 0; b < positions.Length; b++)
            Attention(q.Slice(b * w, w), 1, heads, kvHeads, headDim, keys[b], values[b], kvStride, positions[b], scale, output.Slice(b * w, w));
    }

    /// <summary>The half-precision cache form of <see cref="AttentionRows(ReadOnlySpan{float}, int, int, int, ReadOnlySpan{float[]}, ReadOnlySpan{float[]}, ReadOnlySpan{int}, int, float, Span{float})"/>.</summary>
    void AttentionRows(ReadOnlySpan<float> q, int heads, int kvHeads, int headDim,
        ReadOnlySpan<Half[]> keys, ReadOnlySpan<Half[]> values, ReadOnlySpan<int> positions, int kvStride, float scale, Span<float> output)
    {
        int w = heads * headDim;
        for (int b = 0; b < positions.Length; b++)
            Attention(q.Slice(b * w, w), 1, heads, kvHeads, headDim, keys[b], values[b], kvStride, positions[b], scale, output.Slice(b * w, w));
    }
}

/// <summary>The CPU attention kernel: one task a (query row, head) pair, split over the worker threads. The rows are
/// consecutive positions of one cache, or (the rows form) one position each of several caches.</summary>
internal static unsafe class AttentionKernel
{
    private sealed class Job : IParallelWork
    {
        public float* Q, K, V, Out;
        public ushort* KH, VH;   // half keys and values (then K and V are null)
        public int M, Heads, KvHeads, HeadDim, KvStride, StartPos;
        public float Scale;
        public bool Reference;
        // The rows form: row i reads RowK[i]/RowV[i] (or the half ones) up to position RowPos[i]; null otherwise.
        public float[][]? RowK, RowV;
        public Half[][]? RowKH, RowVH;
        public int[]? RowPos;
        [ThreadStatic] private static float[]? t_scores;

        public void Execute(int task)
        {
            int i = task / Heads;
            if (RowPos is null) { Compute(task, K, V, KH, VH, StartPos + i + 1); return; }
            // Each task pins its own row's cache for the time it reads it.
            if (RowKH is not null)
                fixed (Half* kh = RowKH[i]) fixed (Half* vh = RowVH![i]) Compute(task, null, null, (ushort*)kh, (ushort*)vh, RowPos[i] + 1);
            else
                fixed (float* k = RowK![i]) fixed (float* v = RowV![i]) Compute(task, k, v, null, null, RowPos[i] + 1);
        }

        /// <summary>Query row task / Heads, head task % Heads, over positions 0 .. n - 1 of K and V (or KH and VH).</summary>
        private void Compute(int task, float* K, float* V, ushort* KH, ushort* VH, int n)
        {
            int i = task / Heads, h = task % Heads;
            int g = h / (Heads / KvHeads);
            float[] s = t_scores is { } b && b.Length >= n ? b : (t_scores = new float[Math.Max(n, 256)]);
            var q = new ReadOnlySpan<float>(Q + ((long)i * Heads + h) * HeadDim, HeadDim);
            var scores = s.AsSpan(0, n);
            var o = new Span<float>(Out + ((long)i * Heads + h) * HeadDim, HeadDim);
            if (KH != null) { ExecuteHalf(q, scores, o, g, n, KH, VH); return; }
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
        private void ExecuteHalf(ReadOnlySpan<float> q, Span<float> scores, Span<float> o, int g, int n, ushort* KH, ushort* VH)
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

    /// <summary>The rows form (<see cref="IAttentionBackend.AttentionRows(ReadOnlySpan{float}, int, int, int, ReadOnlySpan{float[]}, ReadOnlySpan{float[]}, ReadOnlySpan{int}, int, float, Span{float})"/>)
    /// over float caches (<paramref name="keysH"/> empty) or half ones (<paramref name="keys"/> empty): one job for
    /// every (row, head) pair. The caches are referenced from reused per-thread tables during the call only.</summary>
    public static void RunRows(ReadOnlySpan<float> q, int heads, int kvHeads, int headDim, ReadOnlySpan<float[]> keys, ReadOnlySpan<float[]> values,
        ReadOnlySpan<Half[]> keysH, ReadOnlySpan<Half[]> valuesH, ReadOnlySpan<int> positions, int kvStride, float scale, Span<float> output, KernelPath path, WorkerPool pool)
    {
        int m = positions.Length;
        bool half = keys.IsEmpty;
        if ((half ? keysH.Length : keys.Length) < m || (half ? valuesH.Length : values.Length) < m)
            throw new ArgumentException($"{m} rows need as many key and value caches");
        long work = 0;
        for (int b = 0; b < m; b++)
        {
            ArgumentNullException.ThrowIfNull(half ? keysH[b] : keys[b], "keys");
            ArgumentNullException.ThrowIfNull(half ? valuesH[b] : values[b], "values");
            int kLength = half ? keysH[b].Length : keys[b].Length, vLength = half ? valuesH[b].Length : values[b].Length;
            CheckArguments(heads * headDim, 1, heads, kvHeads, headDim, kLength, vLength, kvStride, positions[b], heads * headDim);
            work += (positions[b] + 1L) * headDim * heads;
        }
        Check.AtLeast(q.Length, (long)m * heads * headDim, "q");
        Check.AtLeast(output.Length, (long)m * heads * headDim, "output");
        var job = t_rowsJob ??= new Job();
        fixed (float* qp = q) fixed (float* op = output)
        {
            job.Q = qp; job.Out = op; job.K = job.V = null; job.KH = job.VH = null;
            job.M = m; job.Heads = heads; job.KvHeads = kvHeads; job.HeadDim = headDim; job.KvStride = kvStride;
            job.StartPos = 0; job.Scale = scale; job.Reference = path == KernelPath.Reference;
            var rows = t_rows is { } r && r.Pos.Length >= m ? r : (t_rows = new RowTables(Math.Max(m, 64)));
            if (half) { keysH[..m].CopyTo(rows.KH); valuesH[..m].CopyTo(rows.VH); job.RowKH = rows.KH; job.RowVH = rows.VH; }
            else { keys[..m].CopyTo(rows.K); values[..m].CopyTo(rows.V); job.RowK = rows.K; job.RowV = rows.V; }
            positions.CopyTo(rows.Pos);
            job.RowPos = rows.Pos;
            int tasks = m * heads;
            try
            {
                if (pool.Threads == 1 || work < 1 << 16) for (int t = 0; t < tasks; t++) job.Execute(t);
                else pool.Run(job, tasks);
            }
            finally
            {
                // The tables must not keep caches alive after the call.
                Array.Clear(rows.K); Array.Clear(rows.V); Array.Clear(rows.KH); Array.Clear(rows.VH);
                job.RowK = job.RowV = null; job.RowKH = job.RowVH = null; job.RowPos = null;
            }
        }
    }

    /// <summary>The caches and positions of a rows call, reused by the thread that calls.</summary>
    private sealed class RowTables(int capacity)
    {
        public readonly float[][] K = new float[capacity][], V = new float[capacity][];
        public readonly Half[][] KH = new Half[capacity][], VH = new Half[capacity][];
        public readonly int[] Pos = new int[capacity];
    }

    [ThreadStatic] private static Job? t_rowsJob;
    [ThreadStatic] private static RowTables? t_rows;

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

using System.Numerics.Tensors;
using Rotor.Threading;

namespace Rotor.Kernels;

public sealed partial class CpuBackend : IRowBackend
{
    // Below this many values a call stays on one thread: waking the workers would cost more than the work.
    internal static int RowParallelThreshold = 1 << 16;
    // Values of one task of the gated activation (a multiple of 16 floats, so tasks start on vector boundaries).
    private const int GateChunk = 16 * 1024;

    /// <summary>One row's RMSNorm, the arithmetic every thread count uses.</summary>
    internal static void RmsNormRow(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        float ms = TensorPrimitives.SumOfSquares(x) / x.Length;
        float inv = 1f / MathF.Sqrt(ms + eps);
        TensorPrimitives.Multiply(x, inv, y);
        TensorPrimitives.Multiply(y, weight, y);
    }

    /// <summary>The gated activation of one span, the arithmetic every thread count uses.</summary>
    internal static void GateSpan(Span<float> gate, ReadOnlySpan<float> up, GateActivation act)
    {
        if (act == GateActivation.Relu2)
        {
            TensorPrimitives.Max(gate, 0f, gate);
            TensorPrimitives.Multiply(gate, gate, gate);
            TensorPrimitives.Multiply(gate, up, gate);
        }
        else
        {
            // silu(g) * u = g * sigmoid(g) * u, with sigmoid(g) kept in a thread-local row of the span's length.
            float[] s = t_sigmoid is { } b && b.Length >= gate.Length ? b : (t_sigmoid = new float[gate.Length]);
            Span<float> sg = s.AsSpan(0, gate.Length);
            TensorPrimitives.Sigmoid(gate, sg);
            TensorPrimitives.Multiply(gate, sg, gate);
            TensorPrimitives.Multiply(gate, up, gate);
        }
    }
    [ThreadStatic] private static float[]? t_sigmoid;

    private sealed unsafe class RowJob : IParallelWork
    {
        public float* X, W, Y, Gate, Up;
        public int Width, Rows, Count, RowsPerTask;
        public float Eps;
        public GateActivation Act;
        public bool Norm;
        public QuantizedActivations? Q;   // set: quantize rows of X into Q
        public int NotFinite;             // a quantized row held a NaN or infinite value
        public void Execute(int task)
        {
            if (Q is not null)
            {
                int r0 = task * RowsPerTask, r1 = Math.Min(Rows, r0 + RowsPerTask);
                if (!Q.QuantizeRows(new ReadOnlySpan<float>(X, Rows * Width), r0, r1)) Volatile.Write(ref NotFinite, 1);
            }
            else if (Norm)
            {
                int r0 = task * RowsPerTask, r1 = Math.Min(Rows, r0 + RowsPerTask);
                var w = new ReadOnlySpan<float>(W, Width);
                for (int i = r0; i < r1; i++)
                    RmsNormRow(new ReadOnlySpan<float>(X + (long)i * Width, Width), w, new Span<float>(Y + (long)i * Width, Width), Eps);
            }
            else
            {
                long j0 = (long)task * GateChunk;
                int len = (int)Math.Min(GateChunk, Count - j0);
                GateSpan(new Span<float>(Gate + j0, len), new ReadOnlySpan<float>(Up + j0, len), Act);
            }
        }
    }
    [ThreadStatic] private static RowJob? t_rowJob;

    /// <inheritdoc/>
    public unsafe void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, int n, int width, float eps)
    {
        Check.Positive(width, nameof(width));
        Check.Length(weight.Length, width, nameof(weight));
        Check.AtLeast(x.Length, (long)n * width, nameof(x));
        Check.AtLeast(y.Length, (long)n * width, nameof(y));
        if (n <= 0) return;
        if (_pool.Threads == 1 || n < 2 || (long)n * width < RowParallelThreshold)
        {
            for (int i = 0; i < n; i++) RmsNormRow(x.Slice(i * width, width), weight, y.Slice(i * width, width), eps);
            return;
        }
        fixed (float* xp = x) fixed (float* wp = weight) fixed (float* yp = y)
        {
            var job = t_rowJob ??= new RowJob();
            int tasks = Math.Min(n, _pool.Threads * 4), per = (n + tasks - 1) / tasks;
            job.Q = null; job.Norm = true; job.X = xp; job.W = wp; job.Y = yp; job.Width = width; job.Rows = n; job.Eps = eps; job.RowsPerTask = per;
            try { _pool.Run(job, (n + per - 1) / per); }
            finally { job.X = job.W = job.Y = null; }
        }
    }

    /// <inheritdoc/>
    public unsafe void Quantize(ReadOnlySpan<float> x, QuantizedActivations q)
    {
        ArgumentNullException.ThrowIfNull(q);
        int n = q.RowsOf(x), width = q.Cols;
        if (_pool.Threads == 1 || n < 2 || (long)n * width < RowParallelThreshold)
        {
            q.Quantize(x);
            return;
        }
        fixed (float* xp = x)
        {
            var job = t_rowJob ??= new RowJob();
            int tasks = Math.Min(n, _pool.Threads * 4), per = (n + tasks - 1) / tasks;
            job.Q = q; job.X = xp; job.Width = width; job.Rows = n; job.RowsPerTask = per; job.NotFinite = 0;
            try { _pool.Run(job, (n + per - 1) / per); }
            finally { job.Q = null; job.X = null; }
            if (job.NotFinite != 0) Check.Finite(x, nameof(x));
        }
        q.SetCount(n);
    }

    /// <inheritdoc/>
    public unsafe void GatedActivation(Span<float> gate, ReadOnlySpan<float> up, int count, GateActivation act)
    {
        Check.AtLeast(gate.Length, count, nameof(gate));
        Check.AtLeast(up.Length, count, nameof(up));
        if (count <= 0) return;
        if (_pool.Threads == 1 || count < RowParallelThreshold)
        {
            GateSpan(gate[..count], up[..count], act);
            return;
        }
        fixed (float* gp = gate) fixed (float* up2 = up)
        {
            var job = t_rowJob ??= new RowJob();
            job.Q = null; job.Norm = false; job.Gate = gp; job.Up = up2; job.Count = count; job.Act = act;
            try { _pool.Run(job, (count + GateChunk - 1) / GateChunk); }
            finally { job.Gate = job.Up = null; }
        }
    }
}

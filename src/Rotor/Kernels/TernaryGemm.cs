using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>
/// The CPU driver of the ternary products: validates shapes, takes the kernel path's functions from its row of
/// <see cref="KernelPaths"/>, splits the output rows over the worker threads (small products stay on the calling
/// thread) and calls the path's kernel on each range.
/// </summary>
internal static unsafe class TernaryGemm
{
    // Below this many weight-activation products a call stays on one thread: waking workers would cost more.
    internal static long ParallelThreshold = 1L << 20;

    private sealed class GemmJob : IParallelWork
    {
        public GemmArgs Args;
        public delegate*<in GemmArgs, int, int, void> Kernel;
        public int RowsPerTask;
        public void Execute(int task)
        {
            int r0 = task * RowsPerTask, r1 = Math.Min(Args.N, r0 + RowsPerTask);
            if (r0 < r1) Kernel(Args, r0, r1);
        }
    }

    private sealed class F32Job : IParallelWork
    {
        public GemmF32Args Args;
        public delegate*<byte*, float*, int, float> Dot;
        public int RowsPerTask;
        public void Execute(int task)
        {
            int r0 = task * RowsPerTask, r1 = Math.Min(Args.N, r0 + RowsPerTask);
            for (int r = r0; r < r1; r++)
            {
                byte* w = Args.W + (long)r * Args.RowBytes;
                for (int i = 0; i < Args.M; i++)
                    Args.Store(i, r, Dot(w, Args.X + (long)i * Args.XStride, Args.KBlocks));
            }
        }
    }

    [ThreadStatic] private static GemmJob? t_gemmJob;
    [ThreadStatic] private static F32Job? t_f32Job;
    [ThreadStatic] private static AlignedArray<sbyte>? t_reordered;
    [ThreadStatic] private static AlignedArray<float>? t_reorderedF32;

    /// <summary>The m activation rows (stride <paramref name="stride"/>, whole 256-value blocks of <paramref name="cols"/>)
    /// in the order the I2_256 kernels need for weights in <paramref name="layout"/>, in a buffer of the calling thread
    /// that the workers read until the call returns (<see cref="TernaryLayouts"/>).</summary>
    private static T* Reordered<T>(ref AlignedArray<T>? cache, TernaryLayout layout, T* x, int m, int stride, int cols) where T : unmanaged
    {
        long need = (long)m * cols;
        if (cache is null || cache.Length < need) cache = new AlignedArray<T>(need);
        T* dst = cache.Pointer;
        for (int i = 0; i < m; i++)
            TernaryLayouts.ReorderActivations(layout, new ReadOnlySpan<T>(x + (long)i * stride, cols), new Span<T>(dst + (long)i * cols, cols));
        return dst;
    }

    /// <summary>Tasks for n rows: four contiguous ranges a thread (multiples of 4 rows), claimed dynamically, so that a
    /// thread slowed by its core's other work hands rows to the other (one range a thread is slower for GEMV too).</summary>
    private static (int Tasks, int RowsPerTask) Split(int n, int threads)
    {
        int tasks = threads * 4;
        int per = (n + tasks - 1) / tasks;
        per = (per + 3) & ~3;
        return ((n + per - 1) / per, per);
    }

    public static void Gemm(TernaryMatrix w, QuantizedActivations x, Span<float> y, ReadOnlySpan<float> bias, KernelPath path, WorkerPool pool)
    {
        if (x.Cols != w.Cols) throw new ArgumentException($"shape mismatch: W is {w.Rows}x{w.Cols}, x rows have {x.Cols} values (expected {w.Cols})");
        int m = x.Count, n = w.Rows;
        if (m == 0) throw new ArgumentException("x holds no quantized rows: call Quantize first", nameof(x));
        Check.AtLeast(y.Length, (long)m * n, nameof(y));
        if (!bias.IsEmpty) Check.Length(bias.Length, n, nameof(bias));
        KernelPathInfo info = KernelPaths.Get(path);
        if (!info.IsSupported) throw new PlatformNotSupportedException($"kernel path {path} is not supported here: {info.UnavailableReason}");
        fixed (float* xs = x.ScaleArray) fixed (int* xsum = x.SumArray) fixed (float* ws = w.ScaleArray)
        fixed (float* b = bias) fixed (float* yp = y)
        {
            var job = t_gemmJob ??= new GemmJob();
            job.Args = new GemmArgs
            {
                W = w.DataPointer, RowBytes = w.RowBytes, KBlocks = w.Blocks, N = n,
                X = x.DataPointer, XStride = x.PaddedCols, M = m, XScale = xs, XSum = xsum,
                WScale = ws, WScaleStride = w.ScaleMode == ScaleMode.PerRow ? 1 : 0,
                Bias = bias.IsEmpty ? null : b, Y = yp, YStride = n,
            };
            job.Kernel = info.Gemm;
            // Weights kept in another program's layout: the same kernels, with each row's activation chunks reordered.
            if (w.Layout != TernaryLayout.I2_256)
            {
                job.Args.X = Reordered(ref t_reordered, w.Layout, x.DataPointer, m, x.PaddedCols, w.PaddedCols);
                job.Args.XStride = w.PaddedCols;
            }
            // Once a call, before the split: a path may want the activations in its own layout.
            if (info.PrepareGemm != null) info.PrepareGemm(ref job.Args);
            bool parallel = pool.Threads > 1 && (long)m * n * w.PaddedCols >= ParallelThreshold && n >= 8;
            if (!parallel) job.Kernel(job.Args, 0, n);
            else
            {
                (int tasks, job.RowsPerTask) = Split(n, pool.Threads);
                pool.Run(job, tasks);
            }
        }
        GC.KeepAlive(w); GC.KeepAlive(x);   // their buffers were handed to the kernel as pointers
    }

    public static void GemmF32(TernaryMatrix w, ReadOnlySpan<float> xPadded, int m, int xStride, Span<float> y, ReadOnlySpan<float> bias, KernelPath path, WorkerPool pool)
    {
        int n = w.Rows;
        fixed (float* xp = xPadded) fixed (float* ws = w.ScaleArray) fixed (float* b = bias) fixed (float* yp = y)
        {
            var job = t_f32Job ??= new F32Job();
            job.Args = new GemmF32Args
            {
                W = w.DataPointer, RowBytes = w.RowBytes, KBlocks = w.Blocks, N = n, X = xp, XStride = xStride, M = m,
                WScale = ws, WScaleStride = w.ScaleMode == ScaleMode.PerRow ? 1 : 0, Bias = bias.IsEmpty ? null : b, Y = yp, YStride = n,
            };
            if (w.Layout != TernaryLayout.I2_256)
            {
                job.Args.X = Reordered(ref t_reorderedF32, w.Layout, xp, m, xStride, w.PaddedCols);
                job.Args.XStride = w.PaddedCols;
            }
            job.Dot = KernelPaths.Get(path).DotF32;
            bool parallel = pool.Threads > 1 && (long)m * n * w.PaddedCols >= ParallelThreshold && n >= 8;
            if (!parallel) { job.RowsPerTask = n; job.Execute(0); }
            else
            {
                (int tasks, job.RowsPerTask) = Split(n, pool.Threads);
                pool.Run(job, tasks);
            }
        }
        GC.KeepAlive(w);
    }
}

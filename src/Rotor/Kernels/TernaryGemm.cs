using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>
/// The CPU driver of the ternary products: validates shapes, picks the kernel path, splits the output rows over the
/// worker threads (small products stay on the calling thread) and calls the path's kernel on each range.
/// </summary>
internal static unsafe class TernaryGemm
{
    // Below this many weight-activation products a call stays on one thread: waking workers would cost more.
    internal static long ParallelThreshold = 1L << 20;

    private static delegate*<in GemmArgs, int, int, void> GemmKernel(KernelPath p) => p switch
    {
        KernelPath.Reference => &ReferenceKernels.Gemm,
        KernelPath.Portable => &PortableKernels.Gemm,
        KernelPath.Avx2 => &Avx2Kernels.Gemm,
        KernelPath.Avx512 => &Avx512Kernels.Gemm,
        KernelPath.Avx512Vnni => &Avx512VnniKernels.Gemm,
        KernelPath.Neon => &NeonKernels.Gemm,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    internal static delegate*<byte*, sbyte*, int, int> DotKernel(KernelPath p) => p switch
    {
        KernelPath.Reference => &ReferenceKernels.DotCodes,
        KernelPath.Portable => &PortableKernels.DotCodes,
        KernelPath.Avx2 => &Avx2Kernels.DotCodes,
        KernelPath.Avx512 => &Avx512Kernels.DotCodes,
        KernelPath.Avx512Vnni => &Avx512VnniKernels.DotCodes,
        KernelPath.Neon => &NeonKernels.DotCodes,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    internal static delegate*<byte*, float*, int, float> DotF32Kernel(KernelPath p) => p switch
    {
        KernelPath.Reference => &ReferenceKernels.DotF32,
        KernelPath.Portable => &PortableKernels.DotF32,
        KernelPath.Avx2 => &Avx2Kernels.DotF32,
        KernelPath.Avx512 => &Avx512Kernels.DotF32,
        KernelPath.Avx512Vnni => &Avx512VnniKernels.DotF32,
        KernelPath.Neon => &NeonKernels.DotF32,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

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

    /// <summary>Tasks for n rows: four contiguous ranges a thread (multiples of 4 rows), claimed dynamically, so that a
    /// thread slowed by its core's other work hands rows to the other. One range a thread was measured slower for
    /// GEMV too (4096x4096 m=1, 2 threads: 101 us against 89 us).</summary>
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
        if (!KernelSelector.IsSupported(path)) throw new PlatformNotSupportedException($"kernel path {path} is not supported here");
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
            job.Kernel = GemmKernel(path);
            // The VNNI GEMM streams activations in blocks of rows interleaved per 64 columns, packed once a call.
            if (path == KernelPath.Avx512Vnni && m >= Avx512VnniKernels.GemmMinRows) Avx512VnniKernels.PackActivations(ref job.Args);
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
            job.Dot = DotF32Kernel(path);
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

using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>The CPU backend: a kernel path and a pool of persistent worker threads.</summary>
public sealed partial class CpuBackend : ITernaryBackend, IDenseBackend, IDisposable
{
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool = true;
    private readonly KernelPath? _path;
    private float[] _padded = [];

    /// <summary>A backend with <paramref name="threads"/> threads (default: <see cref="ThreadCount.Default"/>) and a kernel path (default: <see cref="KernelSelector.Current"/>).</summary>
    public CpuBackend(int? threads = null, KernelPath? path = null)
    {
        int t = threads ?? DefaultThreads();
        Check.Positive(t, nameof(threads));
        if (path is { } p && !KernelSelector.IsSupported(p)) throw new PlatformNotSupportedException($"kernel path {p} is not supported on this machine");
        _path = path;
        _pool = new WorkerPool(t);
    }

    private CpuBackend(WorkerPool pool, KernelPath path)
    {
        if (!KernelSelector.IsSupported(path)) throw new PlatformNotSupportedException($"kernel path {path} is not supported on this machine");
        _pool = pool;
        _ownsPool = false;
        _path = path;
    }

    /// <summary>A backend on another kernel path that runs on this one's worker threads, for timing two paths in
    /// alternation (two pools would spin against each other). This backend keeps ownership of the threads: dispose
    /// the returned one first, and never use the two from two threads at once.</summary>
    /// <exception cref="PlatformNotSupportedException">This machine cannot run <paramref name="path"/>.</exception>
    public CpuBackend SharingWorkers(KernelPath path) => new(_pool, path);

    private static readonly Lazy<CpuBackend> s_default = new(() => new CpuBackend());

    /// <summary>A shared backend with the default settings.</summary>
    public static CpuBackend Default => s_default.Value;

    /// <summary>Threads per call, the caller included.</summary>
    public int Threads => _pool.Threads;

    /// <summary>The kernel path this backend runs.</summary>
    public KernelPath Path => _path ?? KernelSelector.Current;

    /// <inheritdoc/>
    public string Name => $"cpu {Path.ToString().ToLowerInvariant()} x{Threads}";

    /// <summary>The process's thread count (<see cref="ThreadCount.Default"/>: <c>--threads</c>, else <c>ROTOR_THREADS</c>,
    /// else every processor).</summary>
    public static int DefaultThreads() => ThreadCount.Default;

    /// <inheritdoc/>
    public void MatMul(TernaryMatrix w, QuantizedActivations x, Span<float> y, ReadOnlySpan<float> bias = default)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(x);
        TernaryGemm.Gemm(w, x, y, bias, Path, _pool);
    }

    /// <inheritdoc/>
    public void MatMul(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, QuantizedActivations scratch, ReadOnlySpan<float> bias = default)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(scratch);
        if (scratch.Cols != w.Cols) throw new ArgumentException($"scratch rows have {scratch.Cols} values, W has {w.Cols} columns");
        scratch.Quantize(x);
        TernaryGemm.Gemm(w, scratch, y, bias, Path, _pool);
    }

    /// <inheritdoc/>
    public void MatMulFloat(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> bias = default)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.Length % w.Cols != 0 || x.IsEmpty) throw new ArgumentException($"x has {x.Length} values, expected a positive multiple of W's {w.Cols} columns", nameof(x));
        int m = x.Length / w.Cols;
        Check.AtLeast(y.Length, (long)m * w.Rows, nameof(y));
        if (!bias.IsEmpty) Check.Length(bias.Length, w.Rows, nameof(bias));
        Check.Finite(x, nameof(x));
        lock (this)
        {
            int need = m * w.PaddedCols;
            if (_padded.Length < need) _padded = new float[need];
            Span<float> p = _padded.AsSpan(0, need);
            for (int i = 0; i < m; i++)
            {
                x.Slice(i * w.Cols, w.Cols).CopyTo(p.Slice(i * w.PaddedCols));
                p.Slice(i * w.PaddedCols + w.Cols, w.PaddedCols - w.Cols).Clear();
            }
            TernaryGemm.GemmF32(w, p, m, w.PaddedCols, y, bias, Path, _pool);
        }
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
    {
        if (_ownsPool) _pool.Dispose();
    }
}

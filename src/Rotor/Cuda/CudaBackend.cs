using System.Runtime.CompilerServices;
using Rotor.Kernels;

namespace Rotor.Cuda;

/// <summary>The elementwise function fused after a product (<c>rotor_act</c> of rotor_cuda.h).</summary>
internal enum CudaActivation
{
    None = 0,
    ReLU = 1,
    Sign = 2,
}

/// <summary>A <see cref="TernaryMatrix"/> resident on the device: the I2_256 rows as they are, and the scales.</summary>
internal sealed class DeviceMatrix : IDisposable
{
    public DeviceMatrix(TernaryMatrix w, CudaStream stream)
    {
        Rows = w.Rows; Cols = w.Cols; RowBytes = w.RowBytes; Blocks = w.Blocks;
        ScaleStride = w.ScaleMode == ScaleMode.PerRow ? 1 : 0;
        Data = new DeviceBuffer((long)w.Rows * w.RowBytes);
        Scales = new DeviceBuffer(w.Scales.Length * sizeof(float));
        UploadI2_256(w, Data, 0, stream);
        Scales.Upload(w.Scales, stream);
        stream.Synchronize();
    }

    /// <summary>Uploads <paramref name="w"/>'s rows in the I2_256 layout the device kernels read to
    /// <paramref name="dst"/> at byte <paramref name="offset"/>: as they are, or converted a slice of rows at a time
    /// from a view of another layout (an upload's source may be reused once it returns).</summary>
    internal static void UploadI2_256(TernaryMatrix w, DeviceBuffer dst, long offset, CudaStream stream)
    {
        if (w.Layout == TernaryLayout.I2_256)
        {
            dst.Upload(w.Data, stream, offset);
            return;
        }
        int rowsPer = Math.Max(1, (8 << 20) / w.RowBytes);   // about 8 MiB a slice
        var staging = new byte[(long)Math.Min(rowsPer, w.Rows) * w.RowBytes];
        for (int r = 0; r < w.Rows; r += rowsPer)
        {
            int n = Math.Min(rowsPer, w.Rows - r);
            w.CopyRowsI2_256(r, n, staging);
            dst.Upload(staging.AsSpan(0, n * w.RowBytes), stream, offset + (long)r * w.RowBytes);
        }
    }

    public int Rows { get; }
    public int Cols { get; }
    public int RowBytes { get; }
    public int Blocks { get; }
    public int ScaleStride { get; }
    public DeviceBuffer Data { get; }     // (Rows, RowBytes) I2_256
    public DeviceBuffer Scales { get; }   // (1) or (Rows)
    public long Bytes => Data.Bytes + Scales.Bytes;

    public void Dispose() { Data.Dispose(); Scales.Dispose(); }
}

/// <summary>
/// The CUDA backend of <see cref="ITernaryBackend"/>: each <see cref="TernaryMatrix"/> is uploaded to the GPU once, on
/// first use, and kept there while the matrix lives (call <see cref="Evict"/> after changing a matrix's rows); every
/// call runs on the backend's own stream and returns when y is back on the host. Integer products equal the CPU's bit
/// for bit. Calls are serialized per backend. When <see cref="Availability"/> says no GPU can be used, take the CPU
/// through <see cref="CreateOrCpu"/>.
/// </summary>
public sealed unsafe class CudaBackend : ITernaryBackend, IDisposable
{
    private static readonly Lazy<CudaAvailability> s_availability = new(CudaAvailability.Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly CudaStream _stream;
    private readonly ConditionalWeakTable<TernaryMatrix, DeviceMatrix> _weights = new();
    private readonly Lock _gate = new();
    private DeviceBuffer? _xq, _xf, _scale, _sum, _bias, _y;
    private bool _disposed;

    /// <summary>Whether the GPU can be used, and why not; probed once per process.</summary>
    public static CudaAvailability Availability => s_availability.Value;

    private CudaBackend(CudaAvailability a)
    {
        Device = a;
        _stream = new CudaStream();
    }

    /// <summary>A backend on the device that <see cref="Availability"/> found.</summary>
    /// <exception cref="CudaException">No usable GPU; the message says why.</exception>
    public static CudaBackend Create()
    {
        CudaAvailability a = Availability;
        if (!a.IsAvailable) throw new CudaException(Native.EInval, $"the CUDA backend is not available: {a.Reason}");
        return new CudaBackend(a);
    }

    /// <summary>A CUDA backend when <see cref="Availability"/> allows, else <see cref="CpuBackend.Default"/>.</summary>
    public static ITernaryBackend CreateOrCpu() => Availability.IsAvailable ? Create() : CpuBackend.Default;

    /// <summary>The device this backend runs on.</summary>
    public CudaAvailability Device { get; }

    /// <inheritdoc/>
    public string Name => $"cuda {Device.DeviceName} sm_{Device.ComputeCapability}";

    internal CudaStream Stream => _stream;

    /// <summary>Whether the library can run <paramref name="path"/> on this device (the wgmma kernels need
    /// compute capability 9.0 and a library built for sm_90a).</summary>
    internal static bool Supports(CudaPath path) => Native.rotor_cuda_path_supported((int)path) == 1;

    /// <summary>The wgmma kernel configurations (two CTAs a multiprocessor, then the warp-specialized ones), each forced by its own path.</summary>
    internal static readonly CudaPath[] WgmmaPaths = [CudaPath.Wgmma128x128, CudaPath.Wgmma128x96, CudaPath.Wgmma128x64, CudaPath.Wgmma128x80,
                                                      CudaPath.Ws256x128, CudaPath.Ws256x80, CudaPath.Ws256x96, CudaPath.Ws128x128,
                                                      CudaPath.Wgmma128x64SplitK];

    internal Lock Gate => _gate;

    /// <summary>Bytes of weights and scales currently resident on the device.</summary>
    public long ResidentBytes
    {
        get { lock (_gate) { long s = 0; foreach (var kv in _weights) s += kv.Value.Bytes; return s; } }
    }

    /// <summary>Uploads <paramref name="w"/> now (it is otherwise uploaded on first use).</summary>
    public void Upload(TernaryMatrix w)
    {
        ArgumentNullException.ThrowIfNull(w);
        lock (_gate) Resident(w);
    }

    /// <summary>Frees the device copy of <paramref name="w"/>; the next product uploads it again.</summary>
    public void Evict(TernaryMatrix w)
    {
        ArgumentNullException.ThrowIfNull(w);
        lock (_gate)
            if (_weights.TryGetValue(w, out DeviceMatrix? d)) { _weights.Remove(w); d.Dispose(); }
    }

    internal DeviceMatrix Resident(TernaryMatrix w)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_weights.TryGetValue(w, out DeviceMatrix? d)) return d;
        d = new DeviceMatrix(w, _stream);
        _weights.Add(w, d);
        return d;
    }

    /// <inheritdoc/>
    public void MatMul(TernaryMatrix w, QuantizedActivations x, Span<float> y, ReadOnlySpan<float> bias = default)
        => MatMul(w, x, y, bias, CudaPath.Auto, CudaActivation.None);

    /// <summary><see cref="MatMul(TernaryMatrix, QuantizedActivations, Span{float}, ReadOnlySpan{float})"/> with a
    /// chosen kernel and a fused activation (tests and benchmarks).</summary>
    internal void MatMul(TernaryMatrix w, QuantizedActivations x, Span<float> y, ReadOnlySpan<float> bias, CudaPath path, CudaActivation act)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(x);
        if (x.Cols != w.Cols) throw new ArgumentException($"shape mismatch: W is {w.Rows}x{w.Cols}, x rows have {x.Cols} values (expected {w.Cols})");
        int m = x.Count, n = w.Rows;
        if (m == 0) throw new ArgumentException("x holds no quantized rows: call Quantize first", nameof(x));
        Rotor.Check.AtLeast(y.Length, (long)m * n, nameof(y));
        if (!bias.IsEmpty) Rotor.Check.Length(bias.Length, n, nameof(bias));
        lock (_gate)
        {
            DeviceMatrix d = Resident(w);
            DeviceBuffer xq = DeviceBuffer.Ensure(ref _xq, (long)m * x.PaddedCols);
            DeviceBuffer sc = DeviceBuffer.Ensure(ref _scale, m * sizeof(float));
            DeviceBuffer su = DeviceBuffer.Ensure(ref _sum, m * sizeof(int));
            xq.Upload(x.Data, _stream);
            sc.Upload(x.Scales, _stream);
            su.Upload(x.Sums, _stream);
            RunGemm(d, xq, x.PaddedCols, sc, su, m, bias, y, path, act);
        }
    }

    /// <inheritdoc/>
    /// <remarks>x is quantized on the GPU (same rounding as <see cref="QuantizedActivations.Quantize"/>); the host
    /// buffers of <paramref name="scratch"/> are checked for shape but not written.</remarks>
    public void MatMul(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, QuantizedActivations scratch, ReadOnlySpan<float> bias = default)
        => MatMul(w, x, y, scratch, bias, CudaPath.Auto, CudaActivation.None);

    internal void MatMul(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, QuantizedActivations scratch, ReadOnlySpan<float> bias, CudaPath path, CudaActivation act)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(scratch);
        if (scratch.Cols != w.Cols) throw new ArgumentException($"scratch rows have {scratch.Cols} values, W has {w.Cols} columns");
        if (x.Length % w.Cols != 0 || x.IsEmpty) throw new ArgumentException($"x has {x.Length} values, expected a positive multiple of W's {w.Cols} columns", nameof(x));
        int m = x.Length / w.Cols, n = w.Rows;
        if (m > scratch.Capacity) throw new ArgumentException($"x has {m} rows, the buffers hold at most {scratch.Capacity}", nameof(x));
        Rotor.Check.AtLeast(y.Length, (long)m * n, nameof(y));
        if (!bias.IsEmpty) Rotor.Check.Length(bias.Length, n, nameof(bias));
        Rotor.Check.Finite(x, nameof(x));
        lock (_gate)
        {
            DeviceMatrix d = Resident(w);
            int padded = w.PaddedCols;
            DeviceBuffer xf = DeviceBuffer.Ensure(ref _xf, (long)x.Length * sizeof(float));
            DeviceBuffer xq = DeviceBuffer.Ensure(ref _xq, (long)m * padded);
            DeviceBuffer sc = DeviceBuffer.Ensure(ref _scale, m * sizeof(float));
            DeviceBuffer su = DeviceBuffer.Ensure(ref _sum, m * sizeof(int));
            xf.Upload(x, _stream);
            Native.Check(Native.rotor_cuda_quantize(xf.Pointer, m, w.Cols, w.Cols, xq.Pointer, padded, sc.Pointer, su.Pointer, _stream.Pointer), "quantizing activations");
            RunGemm(d, xq, padded, sc, su, m, bias, y, path, act);
        }
    }

    /// <inheritdoc/>
    public void MatMulFloat(TernaryMatrix w, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> bias = default)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.Length % w.Cols != 0 || x.IsEmpty) throw new ArgumentException($"x has {x.Length} values, expected a positive multiple of W's {w.Cols} columns", nameof(x));
        int m = x.Length / w.Cols, n = w.Rows;
        Rotor.Check.AtLeast(y.Length, (long)m * n, nameof(y));
        if (!bias.IsEmpty) Rotor.Check.Length(bias.Length, n, nameof(bias));
        Rotor.Check.Finite(x, nameof(x));
        lock (_gate)
        {
            DeviceMatrix d = Resident(w);
            DeviceBuffer xf = DeviceBuffer.Ensure(ref _xf, (long)x.Length * sizeof(float));
            DeviceBuffer yb = DeviceBuffer.Ensure(ref _y, (long)m * n * sizeof(float));
            nint b = UploadBias(bias);
            xf.Upload(x, _stream);
            Native.Check(Native.rotor_cuda_gemm_f32(d.Data.Pointer, d.RowBytes, d.Blocks, n, xf.Pointer, w.Cols, w.Cols, m,
                d.Scales.Pointer, d.ScaleStride, b, yb.Pointer, n, (int)CudaActivation.None, _stream.Pointer), $"float product {n}x{w.Cols}, m = {m}");
            yb.Download(y[..(m * n)], _stream);
        }
    }

    private nint UploadBias(ReadOnlySpan<float> bias)
    {
        if (bias.IsEmpty) return 0;
        DeviceBuffer bb = DeviceBuffer.Ensure(ref _bias, bias.Length * sizeof(float));
        bb.Upload(bias, _stream);
        return bb.Pointer;
    }

    private void RunGemm(DeviceMatrix d, DeviceBuffer xq, int xStride, DeviceBuffer sc, DeviceBuffer su, int m, ReadOnlySpan<float> bias, Span<float> y, CudaPath path, CudaActivation act)
    {
        int n = d.Rows;
        DeviceBuffer yb = DeviceBuffer.Ensure(ref _y, (long)m * n * sizeof(float));
        GemmArgsNative a = Args(d, xq.Pointer, xStride, sc.Pointer, su.Pointer, m, UploadBias(bias), yb.Pointer, n, act);
        Native.Check(Native.rotor_cuda_gemm(&a, (int)path, _stream.Pointer), $"product {n}x{d.Cols}, m = {m}");
        yb.Download(y[..(m * n)], _stream);
    }

    internal static GemmArgsNative Args(DeviceMatrix d, nint xq, int xStride, nint scale, nint sum, int m, nint bias, nint y, int yStride, CudaActivation act) => new()
    {
        W = d.Data.Pointer, X = xq, XScale = scale, XSum = sum, WScale = d.Scales.Pointer, Bias = bias, Y = y,
        RowBytes = d.RowBytes, KBlocks = d.Blocks, N = d.Rows, XStride = xStride, M = m, WScaleStride = d.ScaleStride,
        YStride = yStride, Act = (int)act,
    };

    /// <summary>Frees every device buffer and cached matrix.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var kv in _weights) kv.Value.Dispose();
            _weights.Clear();
            _xq?.Dispose(); _xf?.Dispose(); _scale?.Dispose(); _sum?.Dispose(); _bias?.Dispose(); _y?.Dispose();
            _stream.Dispose();
        }
    }
}

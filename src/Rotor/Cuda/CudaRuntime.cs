using System.Runtime.InteropServices;

namespace Rotor.Cuda;

/// <summary>Thrown when the CUDA library or driver reports a failure; the message names the call and CUDA's error.</summary>
public sealed class CudaException : RotorException
{
    /// <summary>The CUDA error code (cudaError_t), or -1 for an argument that the library refused.</summary>
    public int Code { get; }

    /// <summary>Creates the exception for error <paramref name="code"/>.</summary>
    public CudaException(int code, string message) : base(message) => Code = code;
}

/// <summary>Whether the CUDA backend can run here, and why not when it cannot.</summary>
/// <param name="IsAvailable">True when the library loaded, a driver answered and a device of compute capability 8.0 or
/// newer was initialized.</param>
/// <param name="Reason">Why the GPU is not used (empty when it is).</param>
/// <param name="Device">Device ordinal (<c>ROTOR_CUDA_DEVICE</c>, default 0).</param>
/// <param name="DeviceName">The GPU's name, such as "NVIDIA H100 80GB HBM3".</param>
/// <param name="ComputeCapability">Major * 10 + minor, such as 90.</param>
/// <param name="Multiprocessors">Streaming multiprocessors.</param>
/// <param name="GlobalMemory">Bytes of device memory.</param>
/// <param name="DriverVersion">CUDA driver version, such as 13000.</param>
/// <param name="RuntimeVersion">CUDA runtime version the library was built with.</param>
public sealed record CudaAvailability(bool IsAvailable, string Reason, int Device = 0, string DeviceName = "", int ComputeCapability = 0,
    int Multiprocessors = 0, long GlobalMemory = 0, int DriverVersion = 0, int RuntimeVersion = 0)
{
    /// <summary>One line for <c>rotor info</c>: the device, or "not used: reason".</summary>
    public override string ToString() => IsAvailable
        ? $"{DeviceName} (device {Device}, sm_{ComputeCapability}, {Multiprocessors} SMs, {GlobalMemory / (1L << 30)} GiB, driver {Version(DriverVersion)}, runtime {Version(RuntimeVersion)})"
        : $"not used: {Reason}";

    private static string Version(int v) => $"{v / 1000}.{v % 1000 / 10}";

    /// <summary>Probes once: library, ABI, driver, device count, device initialization.</summary>
    internal static CudaAvailability Probe()
    {
        string? flag = Environment.GetEnvironmentVariable("ROTOR_CUDA");
        if (flag is "0" or "off" or "false") return new(false, $"disabled by ROTOR_CUDA={flag}");
        int device = 0;
        string? dv = Environment.GetEnvironmentVariable("ROTOR_CUDA_DEVICE");
        if (!string.IsNullOrWhiteSpace(dv) && (!int.TryParse(dv, out device) || device < 0))
            return new(false, $"ROTOR_CUDA_DEVICE={dv} is not a device number");
        int abi;
        try { abi = Native.rotor_cuda_abi(); }
        catch (DllNotFoundException e) when (e.Message.StartsWith("ROTOR_CUDA_LIB=", StringComparison.Ordinal)) { return new(false, e.Message); }
        catch (DllNotFoundException)
        {
            return new(false, $"{Native.FileNames()[0]} was not found or could not be loaded (looked at ROTOR_CUDA_LIB, {AppContext.BaseDirectory} and the library path); build it from native/cuda, see docs/CUDA.md");
        }
        catch (EntryPointNotFoundException e) { return new(false, $"{Native.FileNames()[0]} is not Rotor's CUDA library: {FirstLine(e.Message)}"); }
        catch (BadImageFormatException e) { return new(false, $"{Native.FileNames()[0]} is built for another architecture: {FirstLine(e.Message)}"); }
        if (abi != Native.Abi) return new(false, $"{Native.FileNames()[0]} has ABI {abi}, this Rotor needs {Native.Abi}: rebuild native/cuda");
        unsafe
        {
            int count;
            int rc0 = Native.rotor_cuda_device_count(&count);
            if (rc0 == 100) return new(false, "no CUDA device found (cudaErrorNoDevice: no GPU, or no NVIDIA driver exposing one)");
            if (rc0 != 0) return new(false, $"the CUDA driver cannot be used: {Native.LastError()}");
            if (count == 0) return new(false, "the CUDA driver reports no device");
            if (device >= count) return new(false, $"ROTOR_CUDA_DEVICE={device} but there are {count} devices");
            byte* name = stackalloc byte[256];
            int major, minor, sms, driver, runtime;
            long mem;
            int rc = Native.rotor_cuda_init(device, name, 256, &major, &minor, &sms, &mem, &driver, &runtime);
            string n = Marshal.PtrToStringUTF8((nint)name) ?? "";
            if (rc != 0) return new(false, $"device {device} ({n}) cannot run the kernels: {Native.LastError()}", device, n, major * 10 + minor);
            return new(true, "", device, n, major * 10 + minor, sms, mem, driver, runtime);
        }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();
}

/// <summary>A block of device memory (cudaMalloc), freed with the handle.</summary>
internal sealed unsafe class DeviceBuffer : SafeHandle
{
    public DeviceBuffer(long bytes) : base(0, true)
    {
        Check.Positive(bytes, nameof(bytes));
        nint p;
        Native.Check(Native.rotor_cuda_malloc(&p, (nuint)bytes), $"allocating {bytes} bytes of device memory");
        SetHandle(p);
        Bytes = bytes;
    }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }
    public override bool IsInvalid => handle == 0;
    /// <summary>The device address; the buffer must stay alive while work that uses it is queued.</summary>
    public nint Pointer => IsClosed ? throw new ObjectDisposedException(nameof(DeviceBuffer)) : handle;
    protected override bool ReleaseHandle() => Native.rotor_cuda_free(handle) == 0;

    /// <summary>Copies <paramref name="src"/> to byte offset <paramref name="offset"/>; the source may be reused on return.</summary>
    public void Upload<T>(ReadOnlySpan<T> src, CudaStream stream, long offset = 0) where T : unmanaged
    {
        long bytes = (long)src.Length * sizeof(T);
        if (bytes == 0) return;
        if (offset < 0 || offset + bytes > Bytes) throw new ArgumentException($"upload of {bytes} bytes at offset {offset} overruns a device buffer of {Bytes} bytes");
        fixed (T* p = src) Native.Check(Native.rotor_cuda_memcpy_h2d(Pointer + (nint)offset, (nint)p, (nuint)bytes, stream.Pointer), "copy to device");
    }

    /// <summary>Copies to <paramref name="dst"/> from byte offset <paramref name="offset"/> and waits for the stream.</summary>
    public void Download<T>(Span<T> dst, CudaStream stream, long offset = 0) where T : unmanaged
    {
        long bytes = (long)dst.Length * sizeof(T);
        if (bytes == 0) return;
        if (offset < 0 || offset + bytes > Bytes) throw new ArgumentException($"download of {bytes} bytes at offset {offset} overruns a device buffer of {Bytes} bytes");
        fixed (T* p = dst)
        {
            Native.Check(Native.rotor_cuda_memcpy_d2h((nint)p, Pointer + (nint)offset, (nuint)bytes, stream.Pointer), "copy from device");
            stream.Synchronize();
        }
    }

    /// <summary>A buffer of at least <paramref name="bytes"/>: <paramref name="buffer"/> itself, or a new one.</summary>
    public static DeviceBuffer Ensure(ref DeviceBuffer? buffer, long bytes)
    {
        if (buffer is { } b && b.Bytes >= bytes) return b;
        buffer?.Dispose();
        return buffer = new DeviceBuffer(Math.Max(bytes, 256));
    }
}

/// <summary>Page-locked host memory (cudaMallocHost) for copies that a CUDA graph replays.</summary>
internal sealed unsafe class PinnedBuffer : SafeHandle
{
    public PinnedBuffer(long bytes) : base(0, true)
    {
        Check.Positive(bytes, nameof(bytes));
        nint p;
        Native.Check(Native.rotor_cuda_host_alloc(&p, (nuint)bytes), $"allocating {bytes} bytes of page-locked memory");
        SetHandle(p);
        Bytes = bytes;
    }

    public long Bytes { get; }
    public override bool IsInvalid => handle == 0;
    public nint Pointer => IsClosed ? throw new ObjectDisposedException(nameof(PinnedBuffer)) : handle;
    public Span<T> AsSpan<T>(int count) where T : unmanaged
    {
        if ((long)count * sizeof(T) > Bytes) throw new ArgumentOutOfRangeException(nameof(count), count, $"a pinned buffer of {Bytes} bytes holds fewer");
        return new Span<T>((void*)Pointer, count);
    }
    protected override bool ReleaseHandle() => Native.rotor_cuda_host_free(handle) == 0;
}

/// <summary>A non-blocking CUDA stream.</summary>
internal sealed unsafe class CudaStream : SafeHandle
{
    public CudaStream() : base(0, true)
    {
        nint s;
        Native.Check(Native.rotor_cuda_stream_create(&s), "creating a stream");
        SetHandle(s);
    }

    public override bool IsInvalid => handle == 0;
    public nint Pointer => IsClosed ? throw new ObjectDisposedException(nameof(CudaStream)) : handle;
    public void Synchronize() => Native.Check(Native.rotor_cuda_stream_sync(Pointer), "waiting for the stream");
    protected override bool ReleaseHandle() => Native.rotor_cuda_stream_destroy(handle) == 0;
}

/// <summary>An instantiated CUDA graph (cudaGraphExec_t), captured from a stream.</summary>
internal sealed unsafe class CudaGraph : SafeHandle
{
    private CudaGraph(nint exec) : base(0, true) => SetHandle(exec);

    /// <summary>Captures what <paramref name="record"/> queues on <paramref name="stream"/> into a graph.</summary>
    public static CudaGraph Capture(CudaStream stream, Action record)
    {
        Native.Check(Native.rotor_cuda_graph_begin(stream.Pointer), "starting a graph capture");
        nint exec;
        try { record(); }
        catch
        {
            Native.rotor_cuda_graph_end(stream.Pointer, &exec);  // leave the stream usable; the capture is invalid anyway
            if (exec != 0) Native.rotor_cuda_graph_destroy(exec);
            throw;
        }
        Native.Check(Native.rotor_cuda_graph_end(stream.Pointer, &exec), "ending the graph capture");
        return new CudaGraph(exec);
    }

    public override bool IsInvalid => handle == 0;
    public void Launch(CudaStream stream) => Native.Check(Native.rotor_cuda_graph_launch(handle, stream.Pointer), "launching a graph");
    protected override bool ReleaseHandle() => Native.rotor_cuda_graph_destroy(handle) == 0;
}

/// <summary>A pair of CUDA events that time the work queued between <see cref="Start"/> and <see cref="StopMs"/>.</summary>
internal sealed unsafe class CudaTimer : IDisposable
{
    private nint _a, _b;

    public CudaTimer()
    {
        nint a, b;
        Native.Check(Native.rotor_cuda_event_create(&a), "creating an event");
        _a = a;
        Native.Check(Native.rotor_cuda_event_create(&b), "creating an event");
        _b = b;
    }

    public void Start(CudaStream s) => Native.Check(Native.rotor_cuda_event_record(_a, s.Pointer), "recording an event");

    /// <summary>Records the end, waits for it and returns the milliseconds between the two events.</summary>
    public float StopMs(CudaStream s)
    {
        Native.Check(Native.rotor_cuda_event_record(_b, s.Pointer), "recording an event");
        float ms;
        Native.Check(Native.rotor_cuda_event_elapsed_ms(_a, _b, &ms), "timing events");
        return ms;
    }

    public void Dispose()
    {
        if (_a != 0) Native.rotor_cuda_event_destroy(_a);
        if (_b != 0) Native.rotor_cuda_event_destroy(_b);
        _a = _b = 0;
    }
}

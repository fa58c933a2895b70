using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Rotor;

/// <summary>
/// A zeroed buffer whose first element is 64-byte aligned, so that SIMD loads of aligned rows never cross a cache line,
/// and whose address never changes: it can be handed to kernels. Small buffers are arrays on the pinned object heap.
/// Large ones asked for with <c>hugePages</c> (weight matrices) are native memory aligned to 2 MiB whose whole 2 MiB chunks
/// are, on Linux, marked <c>MADV_HUGEPAGE</c> before first touch, so that the kernel backs them with 2 MiB pages where transparent huge pages
/// are enabled (<c>always</c> or <c>madvise</c>): a weight matrix then costs one TLB entry per 2 MiB instead of 512, which
/// matters when a decoder streams hundreds of MiB of weights per token. <c>ROTOR_HUGEPAGES=0</c> turns this off.
/// Native memory is freed by the finalizer; code that hands <see cref="Pointer"/> to a kernel keeps the owner alive
/// (<see cref="GC.KeepAlive"/>) until the kernel returns.
/// </summary>
internal sealed unsafe class AlignedArray<T> where T : unmanaged
{
    public const int Alignment = 64;
    private const long HugePageBytes = 2L << 20;
    /// <summary>Buffers at least this large use huge pages when asked to.</summary>
    public const long HugePageThreshold = 2L << 20;
    private readonly T[]? _array;
    private readonly int _offset;
    private readonly void* _native;
    private readonly long _nativeBytes;

    public AlignedArray(long length, bool hugePages = false)
    {
        Check.NonNegative(length, nameof(length));
        int pad = (Alignment + sizeof(T) - 1) / sizeof(T);
        if (length + pad > Array.MaxLength) throw new RotorException($"buffer of {length} elements is too large");
        Length = (int)length;
        long bytes = length * sizeof(T);
        if (hugePages && bytes >= HugePageThreshold && HugePagesWanted)
        {
            // The size is not rounded up: only the whole 2 MiB chunks are advised, the tail stays in 4 KiB pages, so
            // that no memory is spent on padding (a 6912 x 2560 matrix of 4.4 MB would take 6 MB in whole huge pages).
            _nativeBytes = bytes;
            _native = NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePageBytes);
            long whole = bytes / HugePageBytes * HugePageBytes;
            if (OperatingSystem.IsLinux()) _ = LinuxMemory.madvise(_native, (nuint)whole, LinuxMemory.MadvHugePage);   // advice only: ignore failure
            NativeMemory.Clear(_native, (nuint)bytes);
            GC.AddMemoryPressure(_nativeBytes);
            return;
        }
        _array = GC.AllocateArray<T>((int)length + pad, pinned: true);
        nint addr = (nint)Unsafe.AsPointer(ref _array[0]);
        _offset = (int)(((Alignment - addr % Alignment) % Alignment) / sizeof(T));
    }

    ~AlignedArray()
    {
        if (_native == null) return;
        NativeMemory.AlignedFree(_native);
        GC.RemoveMemoryPressure(_nativeBytes);
    }

    public int Length { get; }
    /// <summary>Whether the buffer is native memory advised for huge pages.</summary>
    public bool IsNative => _native != null;
    public Span<T> Span => _native != null ? new Span<T>(_native, Length) : _array.AsSpan(_offset, Length);
    public T* Pointer => _native != null ? (T*)_native : (T*)Unsafe.AsPointer(ref _array![_offset]);

    private static readonly bool HugePagesWanted = Environment.GetEnvironmentVariable("ROTOR_HUGEPAGES") != "0";
}

internal static unsafe partial class LinuxMemory
{
    public const int MadvHugePage = 14;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int madvise(void* addr, nuint length, int advice);
}

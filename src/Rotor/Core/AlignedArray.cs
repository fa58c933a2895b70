using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Rotor;

/// <summary>
/// A buffer (zeroed unless asked not to be) whose first element is 64-byte aligned, so that SIMD loads of aligned rows never cross a cache line,
/// and whose address never changes: it can be handed to kernels. Small buffers are arrays on the pinned object heap.
/// Larger ones asked for with <c>hugePages</c> (weight matrices) are native memory in 2 MiB-aligned regions marked
/// <c>MADV_HUGEPAGE</c> on Linux before first touch: slices of a shared <see cref="HugePageArena"/> region up to 32 MiB,
/// a buffer of their own above that. The kernel then backs them with 2 MiB pages where transparent huge pages
/// are enabled (<c>always</c> or <c>madvise</c>): a weight matrix then costs one TLB entry per 2 MiB instead of 512, which
/// matters when a decoder streams hundreds of MiB of weights per token. <c>ROTOR_HUGEPAGES=0</c> turns this off.
/// Native memory is freed by the finalizer; code that hands <see cref="Pointer"/> to a kernel keeps the owner alive
/// (<see cref="GC.KeepAlive"/>) until the kernel returns.
/// </summary>
internal sealed unsafe class AlignedArray<T> where T : unmanaged
{
    public const int Alignment = 64;
    private const long HugePageBytes = 2L << 20;
    /// <summary>Buffers at least this large use huge pages when asked to (smaller ones live in the caches anyway).</summary>
    public const long HugePageThreshold = 256L << 10;
    private readonly T[]? _array;
    private readonly int _offset;
    private readonly void* _native;
    private readonly long _nativeBytes;
    private readonly object? _region;   // the HugePageArena region of an arena slice

    /// <summary>A buffer of <paramref name="length"/> elements; with <paramref name="zeroed"/> false its contents are
    /// undefined until written (for owners that write every element before reading any: their pages are then first
    /// touched by those writes, once, instead of by a clear and again by the writes).</summary>
    public AlignedArray(long length, bool hugePages = false, bool zeroed = true)
    {
        Check.NonNegative(length, nameof(length));
        int pad = (Alignment + sizeof(T) - 1) / sizeof(T);
        if (length + pad > Array.MaxLength) throw new RotorException($"buffer of {length} elements is too large");
        Length = (int)length;
        long bytes = length * sizeof(T);
        if (hugePages && bytes >= HugePageThreshold && HugePagesWanted)
        {
            if (bytes <= HugePageArena.RegionBytes)
            {
                // Packed with other weight buffers into a huge-page region: no padding, the tail in huge pages too.
                (nint p, _region) = HugePageArena.Rent(bytes, zeroed);
                _native = (void*)p;
                return;
            }
            // Larger: a buffer of its own whose whole 2 MiB chunks are advised; the tail stays in 4 KiB pages, so that no
            // memory goes to padding.
            _nativeBytes = bytes;
            _native = NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePageBytes);
            long whole = bytes / HugePageBytes * HugePageBytes;
            if (OperatingSystem.IsLinux()) _ = LinuxMemory.madvise(_native, (nuint)whole, LinuxMemory.MadvHugePage);   // advice only: ignore failure
            if (zeroed) NativeMemory.Clear(_native, (nuint)bytes);
            GC.AddMemoryPressure(_nativeBytes);
            return;
        }
        _array = zeroed ? GC.AllocateArray<T>((int)length + pad, pinned: true) : GC.AllocateUninitializedArray<T>((int)length + pad, pinned: true);
        nint addr = (nint)Unsafe.AsPointer(ref _array[0]);
        _offset = (int)(((Alignment - addr % Alignment) % Alignment) / sizeof(T));
    }

    ~AlignedArray()
    {
        if (_native == null) return;
        if (_region is not null) { HugePageArena.Release(_region); return; }
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

    public const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    public const int MapPrivate = 0x02, MapAnonymous = 0x20;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int madvise(void* addr, nuint length, int advice);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int mprotect(nint addr, nuint length, int prot);
}

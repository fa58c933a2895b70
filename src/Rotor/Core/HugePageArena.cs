using System.Runtime.InteropServices;

namespace Rotor;

/// <summary>
/// Weight buffers packed into 32 MiB regions of native memory that are aligned to 2 MiB and advised
/// <c>MADV_HUGEPAGE</c> as a whole, so that matrices smaller than a huge page (2560 x 2560 ternary weights are 1.6 MB)
/// and the tails of larger ones sit in 2 MiB pages too, without padding each matrix to a page. A slice is 64-byte
/// aligned and zeroed when handed out; memory is committed only where slices were written, so an unused region end costs
/// nothing but address space. Slices are bump-allocated and not reused one by one: a region is freed when its last slice
/// is released (or, the current region, starts again from its beginning). Thread-safe.
/// </summary>
internal static unsafe class HugePageArena
{
    /// <summary>Bytes a region.</summary>
    public const long RegionBytes = 32L << 20;
    private const long HugePage = 2L << 20;
    private static readonly Lock s_lock = new();
    private static Region? s_current;

    /// <summary>Regions alive (for tests).</summary>
    public static int LiveRegions { get; private set; }

    /// <summary>A 64-byte aligned slice of <paramref name="bytes"/> (at most <see cref="RegionBytes"/>), zeroed unless
    /// <paramref name="zeroed"/> is false, and the region to give it back to with <see cref="Release"/>.</summary>
    public static (nint Pointer, object Region) Rent(long bytes, bool zeroed = true)
    {
        if (bytes <= 0 || bytes > RegionBytes) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"a slice must be 1 to {RegionBytes} bytes");
        long size = (bytes + 63) & ~63L;
        Region r;
        long offset;
        lock (s_lock)
        {
            if (s_current is null || s_current.Used + size > RegionBytes) s_current = new Region();
            r = s_current;
            offset = r.Used;
            r.Used += size;
            r.Live++;
        }
        byte* p = r.Base + offset;
        if (zeroed) NativeMemory.Clear(p, (nuint)bytes);
        return ((nint)p, r);
    }

    /// <summary>Gives back a slice rented from <paramref name="region"/>.</summary>
    public static void Release(object region)
    {
        var r = (Region)region;
        lock (s_lock)
        {
            if (--r.Live > 0) return;
            if (ReferenceEquals(r, s_current)) { r.Used = 0; return; }   // keep the current region, from its start
            r.Free();
        }
    }

    private sealed class Region
    {
        public readonly byte* Base;
        public long Used;
        public int Live;

        public Region()
        {
            Base = (byte*)NativeMemory.AlignedAlloc((nuint)RegionBytes, (nuint)HugePage);
            if (OperatingSystem.IsLinux()) _ = LinuxMemory.madvise(Base, (nuint)RegionBytes, LinuxMemory.MadvHugePage);   // advice only
            GC.AddMemoryPressure(RegionBytes);
            LiveRegions++;
        }

        public void Free()
        {
            NativeMemory.AlignedFree(Base);
            GC.RemoveMemoryPressure(RegionBytes);
            LiveRegions--;
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>Memory hints for code outside the kernels (an index walking its graph), so that it never calls SIMD
/// intrinsics itself.</summary>
public static unsafe class CacheHints
{
    /// <summary>Asks for the 64-byte cache lines of <c>[p, p + bytes)</c> in every cache level; a hint only, never a
    /// fault on a bad address, and nothing on processors without a prefetch instruction (.NET has none for Arm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(void* p, int bytes = 64)
    {
        if (!Sse.IsSupported) return;
        for (int o = 0; o < bytes; o += 64) Sse.Prefetch0((byte*)p + o);
    }
}

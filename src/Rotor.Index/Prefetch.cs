using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Index;

/// <summary>
/// Cache-line prefetch hints for graph traversal: <c>prefetcht0</c> on x86, nothing elsewhere. A hint never faults and
/// never changes a result, so callers may prefetch any address they are about to read.
/// </summary>
internal static unsafe class Prefetch
{
    /// <summary>Asks for the 64-byte cache line holding <paramref name="address"/> in every cache level.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Line(void* address)
    {
        if (Sse.IsSupported) Sse.Prefetch0(address);
    }

    /// <summary>Asks for every cache line of the <paramref name="bytes"/> bytes from <paramref name="address"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Lines(void* address, int bytes)
    {
        if (!Sse.IsSupported) return;
        byte* p = (byte*)address;
        for (int o = 0; o < bytes; o += 64) Sse.Prefetch0(p + o);
    }
}

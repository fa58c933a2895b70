using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Rotor.Cli.Bench;

/// <summary>
/// How much faster <c>threads</c> threads run a pure compute loop (16-bit multiplies and adds in registers, no memory
/// traffic) than one thread. 2.0 with two threads means two full cores; near 1.0 means the two vCPUs share
/// one physical core (SMT siblings) or another tenant is running, and compute-bound multi-thread figures of that run
/// cannot scale whatever the kernel does.
/// </summary>
internal static class ComputeScaling
{
    public static double Measure(int threads)
    {
        const int Iters = 4_000_000;
        Loop(10_000);
        double one = Rate(1, Iters), all = Rate(threads, Iters);
        return all / one;
    }

    private static double Rate(int threads, int iters)
    {
        double best = 0;
        for (int rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Loop(iters));
            best = Math.Max(best, threads * (double)iters / sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static short Loop(int n)
    {
        Vector256<byte> a0 = Vector256.Create((byte)1), a1 = Vector256.Create((byte)2), a2 = Vector256.Create((byte)3), a3 = Vector256.Create((byte)4);
        Vector256<sbyte> b = Vector256.Create((sbyte)3);
        Vector256<short> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int i = 0; i < n; i++)
        {
            c0 += Mad(a0, b); c1 += Mad(a1, b); c2 += Mad(a2, b); c3 += Mad(a3, b);
            b = (b.AsByte() ^ a0).AsSByte();
        }
        return (c0 + c1 + c2 + c3)[0];
    }

    // vpmullw + vpaddw where AVX2 exists; any vector unit elsewhere.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mad(Vector256<byte> a, Vector256<sbyte> b) => a.AsInt16() * b.AsInt16();
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using BenchmarkDotNet.Attributes;

/// <summary>
/// Throughput of the instruction pairs a ternary product can be built on, 8 independent chains so that latency is
/// hidden: vpmaddubsw + vpaddw (64 byte products a pair, the kernels' choice), and the table lookups of a LUT kernel,
/// vpermw + vpaddw (32 lanes a lookup: 3 weights a lane with a 27-entry int16 table, 96 products) and
/// vpermb + vpaddb. A LUT kernel beats vpmaddubsw only if a lookup costs under 1.5 vpmaddubsw (96 / 64).
/// Run: <c>dotnet run -c Release --project bench/Rotor.Benchmarks -- --filter '*IsaThroughput*'</c>.
/// </summary>
public class IsaThroughput
{
    private const int N = 1 << 20;

    [GlobalSetup]
    public void Check()
    {
        if (!Avx512Vbmi.IsSupported) throw new PlatformNotSupportedException("IsaThroughput needs AVX-512 VBMI");
    }

    /// <summary>8 x (vpmaddubsw + vpaddw) an iteration.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = N * 8)]
    public short MaddubsAdd() => Maddubs(N, Vector512.Create((byte)1), Vector512.Create((sbyte)3))[0];

    /// <summary>8 x (vpermw + vpaddw) an iteration.</summary>
    [Benchmark(OperationsPerInvoke = N * 8)]
    public short PermwAdd() => Permw(N, Vector512.Create((short)5), Vector512.Create((short)3))[0];

    /// <summary>8 x (vpermb + vpaddb) an iteration.</summary>
    [Benchmark(OperationsPerInvoke = N * 8)]
    public byte PermbAdd() => Permb(N, Vector512.Create((byte)5), Vector512.Create((byte)3))[0];

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<short> Maddubs(int n, Vector512<byte> a, Vector512<sbyte> b)
    {
        Vector512<short> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<byte> a1 = a + Vector512<byte>.One, a2 = a1 + Vector512<byte>.One, a3 = a2 + Vector512<byte>.One;
        Vector512<sbyte> b2 = b + Vector512<sbyte>.One;
        for (int i = 0; i < n; i++)
        {
            // eight distinct operand pairs: with c4..c7 on (a.., b) as well, the JIT computes each product once for
            // two chains and the benchmark would count half the work.
            c0 += Avx512BW.MultiplyAddAdjacent(a, b); c1 += Avx512BW.MultiplyAddAdjacent(a1, b);
            c2 += Avx512BW.MultiplyAddAdjacent(a2, b); c3 += Avx512BW.MultiplyAddAdjacent(a3, b);
            c4 += Avx512BW.MultiplyAddAdjacent(a, b2); c5 += Avx512BW.MultiplyAddAdjacent(a1, b2);
            c6 += Avx512BW.MultiplyAddAdjacent(a2, b2); c7 += Avx512BW.MultiplyAddAdjacent(a3, b2);
            b = (b.AsByte() ^ a).AsSByte(); b2 = (b2.AsByte() ^ a).AsSByte();
        }
        return c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<short> Permw(int n, Vector512<short> table, Vector512<short> ix)
    {
        Vector512<short> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<short> i1 = ix + Vector512<short>.One, i2 = i1 + Vector512<short>.One, i3 = i2 + Vector512<short>.One;
        Vector512<short> table2 = table + Vector512<short>.One;
        for (int i = 0; i < n; i++)
        {
            c0 += Avx512BW.PermuteVar32x16(table, ix); c1 += Avx512BW.PermuteVar32x16(table, i1);
            c2 += Avx512BW.PermuteVar32x16(table, i2); c3 += Avx512BW.PermuteVar32x16(table, i3);
            c4 += Avx512BW.PermuteVar32x16(table2, ix); c5 += Avx512BW.PermuteVar32x16(table2, i1);
            c6 += Avx512BW.PermuteVar32x16(table2, i2); c7 += Avx512BW.PermuteVar32x16(table2, i3);
            table ^= ix; table2 ^= ix;
        }
        return c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<byte> Permb(int n, Vector512<byte> table, Vector512<byte> ix)
    {
        Vector512<byte> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<byte> i1 = ix + Vector512<byte>.One, i2 = i1 + Vector512<byte>.One, i3 = i2 + Vector512<byte>.One;
        Vector512<byte> table2 = table + Vector512<byte>.One;
        for (int i = 0; i < n; i++)
        {
            c0 += Avx512Vbmi.PermuteVar64x8(table, ix); c1 += Avx512Vbmi.PermuteVar64x8(table, i1);
            c2 += Avx512Vbmi.PermuteVar64x8(table, i2); c3 += Avx512Vbmi.PermuteVar64x8(table, i3);
            c4 += Avx512Vbmi.PermuteVar64x8(table2, ix); c5 += Avx512Vbmi.PermuteVar64x8(table2, i1);
            c6 += Avx512Vbmi.PermuteVar64x8(table2, i2); c7 += Avx512Vbmi.PermuteVar64x8(table2, i3);
            table ^= ix; table2 ^= ix;
        }
        return c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    }
}

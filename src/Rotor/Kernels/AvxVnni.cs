using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>
/// AVX-VNNI kernels (the VEX, 256-bit vpdpbusd of Intel's Alder Lake and later and AMD's Zen 5, on processors with or
/// without AVX-512): the <see cref="Avx2Kernels"/> layout (a block's first 32 bytes hold columns 64q + 0..31 of slice
/// q, the last 32 bytes columns 64q + 32..63), with each group of four code x activation products added into an int32
/// lane by one instruction instead of vpmaddubsw + vpaddw + a periodic widening.
/// </summary>
internal unsafe struct AvxVnniKernels : ITernaryKernels
{
    /// <summary>Adds the products of one 32-byte half block (four slices of 32 codes) with x into two accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Half(byte* w, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        Vector256<byte> m = Vector256.Create((byte)3);
        Vector256<ushort> v = Vector256.Load(w).AsUInt16();
        a = AvxVnni.MultiplyWideningAndAdd(a, v.AsByte() & m, Vector256.Load(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, (v >> 2).AsByte() & m, Vector256.Load(x + 64));
        a = AvxVnni.MultiplyWideningAndAdd(a, (v >> 4).AsByte() & m, Vector256.Load(x + 128));
        b = AvxVnni.MultiplyWideningAndAdd(b, (v >> 6).AsByte() & m, Vector256.Load(x + 192));
    }

    /// <summary>A row's dot product as eight int32 lanes still to be summed: four accumulators, two a half block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotAcc(byte* w, sbyte* x, int kBlocks)
    {
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int kb = 0; kb < kBlocks; kb++)
        {
            Half(w + kb * 64, x + kb * 256, ref a0, ref a1);
            Half(w + kb * 64 + 32, x + kb * 256 + 32, ref a2, ref a3);
        }
        return (a0 + a1) + (a2 + a3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks) => Vector256.Sum(DotAcc(w, x, kBlocks));

    /// <summary>One weight row against four activation rows: each half block is unpacked once for the four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows1x4(byte* w, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<byte> m = Vector256.Create((byte)3);
        for (int kb = 0; kb < kBlocks; kb++)
        {
            for (int h = 0; h < 64; h += 32)
            {
                Vector256<ushort> v = Vector256.Load(w + kb * 64 + h).AsUInt16();
                Vector256<byte> s0 = v.AsByte() & m, s1 = (v >> 2).AsByte() & m, s2 = (v >> 4).AsByte() & m, s3 = (v >> 6).AsByte() & m;
                sbyte* xp = x + kb * 256 + h;
                c0 = Slices(c0, s0, s1, s2, s3, xp);
                c1 = Slices(c1, s0, s1, s2, s3, xp + xs);
                c2 = Slices(c2, s0, s1, s2, s3, xp + 2 * xs);
                c3 = Slices(c3, s0, s1, s2, s3, xp + 3 * xs);
            }
        }
        dots[0] = Vector256.Sum(c0); dots[1] = Vector256.Sum(c1); dots[2] = Vector256.Sum(c2); dots[3] = Vector256.Sum(c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Slices(Vector256<int> c, Vector256<byte> s0, Vector256<byte> s1, Vector256<byte> s2, Vector256<byte> s3, sbyte* xp)
    {
        c = AvxVnni.MultiplyWideningAndAdd(c, s0, Vector256.Load(xp));
        c = AvxVnni.MultiplyWideningAndAdd(c, s1, Vector256.Load(xp + 64));
        c = AvxVnni.MultiplyWideningAndAdd(c, s2, Vector256.Load(xp + 128));
        return AvxVnni.MultiplyWideningAndAdd(c, s3, Vector256.Load(xp + 192));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        int* d = stackalloc int[4];
        if (a.M < 4)
        {
            // GEMV: the AVX2 kernel. On an Intel Xeon with AVX-VNNI (the GPU machine's host, 4 threads) the vpdpbusd
            // GEMV was 1.09-1.15x faster with W in cache but 0.73-0.80x from DRAM, which is where a model decodes.
            Avx2Kernels.Gemm(a, r0, r1);
            return;
        }
        const int RowTile = 64;   // activation rows kept in L2 while the thread's weight rows pass over them
        for (int i0 = 0; i0 < a.M; i0 += RowTile)
        {
            int iEnd = Math.Min(i0 + RowTile, a.M);
            for (int r = r0; r < r1; r++)
            {
                byte* w = a.W + (long)r * a.RowBytes;
                int i = i0;
                for (; i + 4 <= iEnd; i += 4)
                {
                    Rows1x4(w, a.X + (long)i * a.XStride, a.XStride, a.KBlocks, d);
                    a.Store(i, r, d[0]); a.Store(i + 1, r, d[1]); a.Store(i + 2, r, d[2]); a.Store(i + 3, r, d[3]);
                }
                for (; i < iEnd; i++) a.Store(i, r, DotCodes(w, a.X + (long)i * a.XStride, a.KBlocks));
            }
        }
    }

    public static float DotF32(byte* w, float* x, int kBlocks) => Avx2Kernels.DotF32(w, x, kBlocks);
}

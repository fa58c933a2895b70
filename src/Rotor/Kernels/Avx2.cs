using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>
/// AVX2 kernels: as <see cref="Avx512Kernels"/> with 32-byte halves. The first 32 bytes of a block hold columns
/// 64q + 0..31 (q = slice), the last 32 bytes columns 64q + 32..63.
/// </summary>
internal unsafe struct Avx2Kernels : ITernaryKernels
{
    // 8 vpmaddubsw results a block go into one int16 accumulator: 8 * 8 * 508 = 32512 <= 32767.
    private const int Chunk = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Half(byte* w, sbyte* x)
    {
        Vector256<byte> m = Vector256.Create((byte)3);
        Vector256<ushort> v = Vector256.Load(w).AsUInt16();
        return (Avx2.MultiplyAddAdjacent(v.AsByte() & m, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent((v >> 2).AsByte() & m, Vector256.Load(x + 64)))
             + (Avx2.MultiplyAddAdjacent((v >> 4).AsByte() & m, Vector256.Load(x + 128)) + Avx2.MultiplyAddAdjacent((v >> 6).AsByte() & m, Vector256.Load(x + 192)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Widen(Vector256<short> a) => Avx2.MultiplyAddAdjacent(a, Vector256<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        Vector256<int> acc = Vector256<int>.Zero;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector256<short> a = Vector256<short>.Zero;
            for (int kb = kb0; kb < end; kb++)
                a += Half(w + kb * 64, x + kb * 256) + Half(w + kb * 64 + 32, x + kb * 256 + 32);
            acc += Widen(a);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>One weight row against two activation rows: each half block is unpacked once for both.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows1x2(byte* w, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default;
        Vector256<byte> m = Vector256.Create((byte)3);
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector256<short> a0 = default, a1 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                for (int h = 0; h < 64; h += 32)
                {
                    Vector256<ushort> v = Vector256.Load(w + kb * 64 + h).AsUInt16();
                    Vector256<byte> s0 = v.AsByte() & m, s1 = (v >> 2).AsByte() & m, s2 = (v >> 4).AsByte() & m, s3 = (v >> 6).AsByte() & m;
                    sbyte* xp = x + kb * 256 + h;
                    a0 += (Avx2.MultiplyAddAdjacent(s0, Vector256.Load(xp)) + Avx2.MultiplyAddAdjacent(s1, Vector256.Load(xp + 64)))
                        + (Avx2.MultiplyAddAdjacent(s2, Vector256.Load(xp + 128)) + Avx2.MultiplyAddAdjacent(s3, Vector256.Load(xp + 192)));
                    xp += xs;
                    a1 += (Avx2.MultiplyAddAdjacent(s0, Vector256.Load(xp)) + Avx2.MultiplyAddAdjacent(s1, Vector256.Load(xp + 64)))
                        + (Avx2.MultiplyAddAdjacent(s2, Vector256.Load(xp + 128)) + Avx2.MultiplyAddAdjacent(s3, Vector256.Load(xp + 192)));
                }
            }
            c0 += Widen(a0); c1 += Widen(a1);
        }
        dots[0] = Vector256.Sum(c0); dots[1] = Vector256.Sum(c1);
    }

    /// <summary>Two weight rows against one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2x1(byte* w, int rb, sbyte* x, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector256<short> a0 = default, a1 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                byte* wp = w + kb * 64;
                sbyte* xp = x + kb * 256;
                Sse.Prefetch0(wp + 2 * rb); Sse.Prefetch0(wp + 3 * rb); // the next two rows, for cold GEMVs
                a0 += Half(wp, xp) + Half(wp + 32, xp + 32);
                a1 += Half(wp + rb, xp) + Half(wp + rb + 32, xp + 32);
            }
            c0 += Widen(a0); c1 += Widen(a1);
        }
        dots[0] = Vector256.Sum(c0); dots[1] = Vector256.Sum(c1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        int* d = stackalloc int[4];
        if (a.M < 2)
        {
            sbyte* x = a.X;
            int r = r0;
            for (; r + 2 <= r1; r += 2)
            {
                Rows2x1(a.W + (long)r * a.RowBytes, a.RowBytes, x, a.KBlocks, d);
                a.Store(0, r, d[0]); a.Store(0, r + 1, d[1]);
            }
            for (; r < r1; r++) a.Store(0, r, DotCodes(a.W + (long)r * a.RowBytes, x, a.KBlocks));
            return;
        }
        const int RowTile = 64;
        for (int i0 = 0; i0 < a.M; i0 += RowTile)
        {
            int iEnd = Math.Min(i0 + RowTile, a.M);
            for (int r = r0; r < r1; r++)
            {
                byte* w = a.W + (long)r * a.RowBytes;
                int i = i0;
                for (; i + 2 <= iEnd; i += 2)
                {
                    Rows1x2(w, a.X + (long)i * a.XStride, a.XStride, a.KBlocks, d);
                    a.Store(i, r, d[0]); a.Store(i + 1, r, d[1]);
                }
                for (; i < iEnd; i++) a.Store(i, r, DotCodes(w, a.X + (long)i * a.XStride, a.KBlocks));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(byte* w, float* x, int kBlocks)
    {
        Vector256<float> acc0 = default, acc1 = default;
        Vector256<float> one = Vector256<float>.One;
        Vector256<byte> m = Vector256.Create((byte)3);
        for (int kb = 0; kb < kBlocks; kb++)
        {
            for (int h = 0; h < 64; h += 32)
            {
                Vector256<ushort> v = Vector256.Load(w + kb * 64 + h).AsUInt16();
                for (int q = 0; q < 4; q++)
                {
                    Vector256<byte> s = (v >> (2 * q)).AsByte() & m;
                    float* xp = x + kb * 256 + q * 64 + h;
                    for (int e = 0; e < 32; e += 16)
                    {
                        Vector128<byte> part = e == 0 ? s.GetLower() : s.GetUpper();
                        Vector256<float> w0 = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(part)) - one;
                        Vector256<float> w1 = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(part, 8))) - one;
                        acc0 = Fma.MultiplyAdd(w0, Vector256.Load(xp + e), acc0);
                        acc1 = Fma.MultiplyAdd(w1, Vector256.Load(xp + e + 8), acc1);
                    }
                }
            }
        }
        return Vector256.Sum(acc0 + acc1);
    }
}

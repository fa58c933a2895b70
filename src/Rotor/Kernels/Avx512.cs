using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>
/// AVX-512 BW kernels. One 64-byte load holds a 256-weight block; shifting by 0, 2, 4, 6 and masking gives four
/// vectors of 64 codes that line up with four contiguous 64-byte slices of x. vpmaddubsw multiplies the unsigned codes
/// (0..2) by the signed activations (-127..127) and adds pairs into int16: at most 2 * 2 * 127 = 508 a lane.
/// </summary>
internal unsafe struct Avx512Kernels : ITernaryKernels
{
    // int16 accumulation over Chunk blocks: 4 vpmaddubsw results a block, 16 * 4 * 508 = 32512 <= 32767.
    private const int Chunk = 16;
    // Activation rows kept hot in L2 per pass over W in the GEMM: 64 rows * 6912 bytes = 442 KB.
    private const int RowTile = 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Mad(Vector512<byte> codes, sbyte* x) =>
        Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load(x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Widen(Vector512<short> a) =>
        Avx512BW.MultiplyAddAdjacent(a, Vector512<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Unpack(byte* p, out Vector512<byte> s0, out Vector512<byte> s1, out Vector512<byte> s2, out Vector512<byte> s3)
    {
        Vector512<byte> m = Vector512.Create((byte)3);
        Vector512<ushort> v = Vector512.Load(p).AsUInt16();
        s0 = v.AsByte() & m;
        s1 = (v >> 2).AsByte() & m;
        s2 = (v >> 4).AsByte() & m;
        s3 = (v >> 6).AsByte() & m;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Block(byte* w, sbyte* x)
    {
        Unpack(w, out var s0, out var s1, out var s2, out var s3);
        return (Mad(s0, x) + Mad(s1, x + 64)) + (Mad(s2, x + 128) + Mad(s3, x + 192));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks) => Vector512.Sum(DotAcc(w, x, kBlocks));

    /// <summary>The dot product of one row as 16 int32 lanes still to be summed. With <paramref name="prefetch"/> (a
    /// constant at every call, so the JIT drops the branch) it also prefetches the weight stream
    /// <see cref="PrefetchBytes"/> ahead, one cache line a block: a GEMV reads its rows one after another.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> DotAcc(byte* w, sbyte* x, int kBlocks, bool prefetch = false)
    {
        Vector512<int> acc = Vector512<int>.Zero;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector512<short> a = Vector512<short>.Zero;
            for (int kb = kb0; kb < end; kb++)
            {
                if (prefetch) Sse.Prefetch0(w + kb * 64 + PrefetchBytes);
                a += Block(w + kb * 64, x + kb * 256);
            }
            acc += Widen(a);
        }
        return acc;
    }

    // Distance of the GEMV's software prefetch: 32 cache lines, about 1.5 us of DRAM stream at 25 GB/s.
    private const int PrefetchBytes = 2048;

    /// <summary>The four lane sums of <paramref name="a"/>..<paramref name="d"/>, in that order: one reduction tree for
    /// four rows (about 3 operations a row against 11 for a separate <see cref="Vector512.Sum{T}(Vector512{T})"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> Sum4(Vector512<int> a, Vector512<int> b, Vector512<int> c, Vector512<int> d)
    {
        Vector256<int> a8 = a.GetLower() + a.GetUpper(), b8 = b.GetLower() + b.GetUpper();
        Vector256<int> c8 = c.GetLower() + c.GetUpper(), d8 = d.GetLower() + d.GetUpper();
        // hadd(a, b) = a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7 (per 128-bit lane)
        Vector256<int> ab = Avx2.HorizontalAdd(a8, b8), cd = Avx2.HorizontalAdd(c8, d8);
        Vector256<int> abcd = Avx2.HorizontalAdd(ab, cd);   // a(0..3) b(0..3) c(0..3) d(0..3) | a(4..7) b(4..7) c(4..7) d(4..7)
        return abcd.GetLower() + abcd.GetUpper();
    }

    /// <summary>One weight row against four activation rows: each block is unpacked once for the four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows1x4(byte* w, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector512<short> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                Unpack(w + kb * 64, out var s0, out var s1, out var s2, out var s3);
                sbyte* xp = x + kb * 256;
                a0 += (Mad(s0, xp) + Mad(s1, xp + 64)) + (Mad(s2, xp + 128) + Mad(s3, xp + 192));
                xp += xs;
                a1 += (Mad(s0, xp) + Mad(s1, xp + 64)) + (Mad(s2, xp + 128) + Mad(s3, xp + 192));
                xp += xs;
                a2 += (Mad(s0, xp) + Mad(s1, xp + 64)) + (Mad(s2, xp + 128) + Mad(s3, xp + 192));
                xp += xs;
                a3 += (Mad(s0, xp) + Mad(s1, xp + 64)) + (Mad(s2, xp + 128) + Mad(s3, xp + 192));
            }
            c0 += Widen(a0); c1 += Widen(a1); c2 += Widen(a2); c3 += Widen(a3);
        }
        dots[0] = Vector512.Sum(c0); dots[1] = Vector512.Sum(c1); dots[2] = Vector512.Sum(c2); dots[3] = Vector512.Sum(c3);
    }

    /// <summary>Two weight rows against four activation rows: 8 int16 and 8 int32 accumulators, 8 unpacked vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2x4(byte* w, int rb, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector512<int> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector512<short> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                Unpack(w + kb * 64, out var s0, out var s1, out var s2, out var s3);
                Unpack(w + rb + kb * 64, out var t0, out var t1, out var t2, out var t3);
                sbyte* xp = x + kb * 256;
                Vector512<sbyte> x0 = Vector512.Load(xp), x1 = Vector512.Load(xp + 64), x2 = Vector512.Load(xp + 128), x3 = Vector512.Load(xp + 192);
                a00 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a10 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a01 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a11 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a02 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a12 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a03 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a13 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
            }
            c00 += Widen(a00); c01 += Widen(a01); c02 += Widen(a02); c03 += Widen(a03);
            c10 += Widen(a10); c11 += Widen(a11); c12 += Widen(a12); c13 += Widen(a13);
        }
        dots[0] = Vector512.Sum(c00); dots[1] = Vector512.Sum(c01); dots[2] = Vector512.Sum(c02); dots[3] = Vector512.Sum(c03);
        dots[4] = Vector512.Sum(c10); dots[5] = Vector512.Sum(c11); dots[6] = Vector512.Sum(c12); dots[7] = Vector512.Sum(c13);
    }


    /// <summary>Two weight rows against eight activation rows: 16 int16 accumulators, 8 unpacked vectors, the int32
    /// sums kept in memory (touched once per chunk). Fewer unpacks and loads a vpmaddubsw than <see cref="Rows2x4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2x8(byte* w, int rb, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector512<int>* c = stackalloc Vector512<int>[16];
        for (int e = 0; e < 16; e++) c[e] = default;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector512<short> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default, a07 = default, a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default, a17 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                Unpack(w + kb * 64, out var s0, out var s1, out var s2, out var s3);
                Unpack(w + rb + kb * 64, out var t0, out var t1, out var t2, out var t3);
                sbyte* xp = x + kb * 256;
                Vector512<sbyte> x0, x1, x2, x3;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a00 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a10 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a01 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a11 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a02 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a12 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a03 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a13 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a04 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a14 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a05 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a15 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a06 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a16 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
                xp += xs;
                x0 = Vector512.Load(xp); x1 = Vector512.Load(xp + 64); x2 = Vector512.Load(xp + 128); x3 = Vector512.Load(xp + 192);
                a07 += (Avx512BW.MultiplyAddAdjacent(s0, x0) + Avx512BW.MultiplyAddAdjacent(s1, x1)) + (Avx512BW.MultiplyAddAdjacent(s2, x2) + Avx512BW.MultiplyAddAdjacent(s3, x3));
                a17 += (Avx512BW.MultiplyAddAdjacent(t0, x0) + Avx512BW.MultiplyAddAdjacent(t1, x1)) + (Avx512BW.MultiplyAddAdjacent(t2, x2) + Avx512BW.MultiplyAddAdjacent(t3, x3));
            }
            c[0] += Widen(a00); c[1] += Widen(a01); c[2] += Widen(a02); c[3] += Widen(a03); c[4] += Widen(a04); c[5] += Widen(a05); c[6] += Widen(a06); c[7] += Widen(a07);
            c[8] += Widen(a10); c[9] += Widen(a11); c[10] += Widen(a12); c[11] += Widen(a13); c[12] += Widen(a14); c[13] += Widen(a15); c[14] += Widen(a16); c[15] += Widen(a17);
        }
        for (int e = 0; e < 16; e++) dots[e] = Vector512.Sum(c[e]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        int* d = stackalloc int[16];
        if (a.M < 4)
        {
            // GEMV: one row after another, so that W streams linearly from memory: with four rows interleaved (x
            // loaded once for four) the hardware prefetcher loses the four short streams, even with software
            // prefetches, and a GEMV from DRAM is slower although one in cache is faster.
            // Four rows' sums are reduced together (the rows are still read one after another).
            for (int i = 0; i < a.M; i++)
            {
                sbyte* x = a.X + (long)i * a.XStride;
                int r = r0;
                for (; r + 4 <= r1; r += 4)
                {
                    byte* w = a.W + (long)r * a.RowBytes;
                    Vector512<int> d0 = DotAcc(w, x, a.KBlocks, prefetch: true), d1 = DotAcc(w + a.RowBytes, x, a.KBlocks, prefetch: true);
                    Vector512<int> d2 = DotAcc(w + 2L * a.RowBytes, x, a.KBlocks, prefetch: true), d3 = DotAcc(w + 3L * a.RowBytes, x, a.KBlocks, prefetch: true);
                    Vector128<int> sums = Sum4(d0, d1, d2, d3);
                    a.Store(i, r, sums[0]); a.Store(i, r + 1, sums[1]); a.Store(i, r + 2, sums[2]); a.Store(i, r + 3, sums[3]);
                }
                for (; r < r1; r++) a.Store(i, r, DotCodes(a.W + (long)r * a.RowBytes, x, a.KBlocks));
            }
            return;
        }
        for (int i0 = 0; i0 < a.M; i0 += RowTile)
        {
            int iEnd = Math.Min(i0 + RowTile, a.M);
            int r = r0;
            for (; r + 2 <= r1; r += 2)
            {
                byte* w = a.W + (long)r * a.RowBytes;
                int i = i0;
                // 2x8 while eight activation rows fit L1 beside the weights (8 x 3072 bytes), else 2x4.
                for (; i + 8 <= iEnd && a.KBlocks <= 12; i += 8)
                {
                    Rows2x8(w, a.RowBytes, a.X + (long)i * a.XStride, a.XStride, a.KBlocks, d);
                    for (int t = 0; t < 8; t++) { a.Store(i + t, r, d[t]); a.Store(i + t, r + 1, d[8 + t]); }
                }
                for (; i + 4 <= iEnd; i += 4)
                {
                    Rows2x4(w, a.RowBytes, a.X + (long)i * a.XStride, a.XStride, a.KBlocks, d);
                    a.Store(i, r, d[0]); a.Store(i + 1, r, d[1]); a.Store(i + 2, r, d[2]); a.Store(i + 3, r, d[3]);
                    a.Store(i, r + 1, d[4]); a.Store(i + 1, r + 1, d[5]); a.Store(i + 2, r + 1, d[6]); a.Store(i + 3, r + 1, d[7]);
                }
                for (; i < iEnd; i++)
                {
                    sbyte* x = a.X + (long)i * a.XStride;
                    a.Store(i, r, DotCodes(w, x, a.KBlocks));
                    a.Store(i, r + 1, DotCodes(w + a.RowBytes, x, a.KBlocks));
                }
            }
            for (; r < r1; r++)
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(byte* w, float* x, int kBlocks)
    {
        Vector512<float> acc0 = default, acc1 = default;
        Vector512<float> one = Vector512<float>.One;
        for (int kb = 0; kb < kBlocks; kb++)
        {
            Unpack(w + kb * 64, out var s0, out var s1, out var s2, out var s3);
            float* xp = x + kb * 256;
            acc0 = Slice(s0, xp, acc0, ref acc1, one);
            acc0 = Slice(s1, xp + 64, acc0, ref acc1, one);
            acc0 = Slice(s2, xp + 128, acc0, ref acc1, one);
            acc0 = Slice(s3, xp + 192, acc0, ref acc1, one);
        }
        return Vector512.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Slice(Vector512<byte> codes, float* x, Vector512<float> acc0, ref Vector512<float> acc1, Vector512<float> one)
    {
        Vector256<byte> lo = codes.GetLower(), hi = codes.GetUpper();
        Vector512<float> w0 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo.GetLower())) - one;
        Vector512<float> w1 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo.GetUpper())) - one;
        Vector512<float> w2 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi.GetLower())) - one;
        Vector512<float> w3 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi.GetUpper())) - one;
        acc0 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x), acc0);
        acc1 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x + 16), acc1);
        acc0 = Avx512F.FusedMultiplyAdd(w2, Vector512.Load(x + 32), acc0);
        acc1 = Avx512F.FusedMultiplyAdd(w3, Vector512.Load(x + 48), acc1);
        return acc0;
    }
}

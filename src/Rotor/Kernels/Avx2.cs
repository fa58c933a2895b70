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
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector256<short> a0 = default, a1 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                for (int h = 0; h < 64; h += 32)
                {
                    Unpack(w + kb * 64 + h, out var s0, out var s1, out var s2, out var s3);
                    sbyte* xp = x + kb * 256 + h;
                    a0 += Mad4(s0, s1, s2, s3, xp);
                    a1 += Mad4(s0, s1, s2, s3, xp + xs);
                }
            }
            c0 += Widen(a0); c1 += Widen(a1);
        }
        dots[0] = Vector256.Sum(c0); dots[1] = Vector256.Sum(c1);
    }

    /// <summary>Two weight rows, at <paramref name="w"/> and <paramref name="w"/> + <paramref name="offset"/>, against one
    /// activation row (the GEMV's rows left after <see cref="Rows4x1"/>'s quarters). Each half block's four activation
    /// vectors are loaded once for both rows; pointers advance by a block and the mask stays in a register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2x1(byte* w, nint offset, int rb, sbyte* x, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default;
        Vector256<byte> m = Vector256.Create((byte)3);
        byte* w0 = w, w1 = w + offset;
        nint ahead = 2 * (nint)rb;   // two rows further down each stream, for cold GEMVs
        sbyte* xp = x;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            Vector256<short> a0 = default, a1 = default;
            for (int n = Math.Min(Chunk, kBlocks - kb0); n > 0; n--)
            {
                Sse.Prefetch0(w0 + ahead); Sse.Prefetch0(w1 + ahead);
                var x0 = Vector256.Load(xp); var x1 = Vector256.Load(xp + 64); var x2 = Vector256.Load(xp + 128); var x3 = Vector256.Load(xp + 192);
                a0 += Codes(Vector256.Load(w0), m, x0, x1, x2, x3);
                a1 += Codes(Vector256.Load(w1), m, x0, x1, x2, x3);
                x0 = Vector256.Load(xp + 32); x1 = Vector256.Load(xp + 96); x2 = Vector256.Load(xp + 160); x3 = Vector256.Load(xp + 224);
                a0 += Codes(Vector256.Load(w0 + 32), m, x0, x1, x2, x3);
                a1 += Codes(Vector256.Load(w1 + 32), m, x0, x1, x2, x3);
                w0 += 64; w1 += 64; xp += 256;
            }
            c0 += Widen(a0); c1 += Widen(a1);
        }
        dots[0] = Vector256.Sum(c0); dots[1] = Vector256.Sum(c1);
    }

    /// <summary><see cref="Rows2x1"/> for four weight rows, at <paramref name="w"/> + j * <paramref name="offset"/>
    /// (j &lt; 4). The GEMV passes rows from the four quarters of its range: four sequential weight streams that the
    /// hardware prefetchers follow side by side, where adjacent rows make one stream that a single core reads from DRAM
    /// well below its bandwidth (docs/KERNELS.md).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4x1(byte* w, nint offset, int rb, sbyte* x, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<byte> m = Vector256.Create((byte)3);
        byte* w0 = w, w1 = w + offset, w2 = w + 2 * offset, w3 = w + 3 * offset;
        nint ahead = 2 * (nint)rb;
        sbyte* xp = x;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            Vector256<short> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int n = Math.Min(Chunk, kBlocks - kb0); n > 0; n--)
            {
                Sse.Prefetch0(w0 + ahead); Sse.Prefetch0(w1 + ahead); Sse.Prefetch0(w2 + ahead); Sse.Prefetch0(w3 + ahead);
                for (int h = 0; h < 64; h += 32)
                {
                    var x0 = Vector256.Load(xp + h); var x1 = Vector256.Load(xp + 64 + h); var x2 = Vector256.Load(xp + 128 + h); var x3 = Vector256.Load(xp + 192 + h);
                    a0 += Codes(Vector256.Load(w0 + h), m, x0, x1, x2, x3);
                    a1 += Codes(Vector256.Load(w1 + h), m, x0, x1, x2, x3);
                    a2 += Codes(Vector256.Load(w2 + h), m, x0, x1, x2, x3);
                    a3 += Codes(Vector256.Load(w3 + h), m, x0, x1, x2, x3);
                }
                w0 += 64; w1 += 64; w2 += 64; w3 += 64; xp += 256;
            }
            c0 += Widen(a0); c1 += Widen(a1); c2 += Widen(a2); c3 += Widen(a3);
        }
        Vector256<int> abcd = Avx2.HorizontalAdd(Avx2.HorizontalAdd(c0, c1), Avx2.HorizontalAdd(c2, c3));
        (abcd.GetLower() + abcd.GetUpper()).Store(dots);
    }

    /// <summary>The four codes of a 32-byte half block <paramref name="v"/> times the four activation vectors, summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Codes(Vector256<byte> v, Vector256<byte> m, Vector256<sbyte> x0, Vector256<sbyte> x1, Vector256<sbyte> x2, Vector256<sbyte> x3)
    {
        Vector256<ushort> u = v.AsUInt16();
        return (Avx2.MultiplyAddAdjacent(v & m, x0) + Avx2.MultiplyAddAdjacent((u >> 2).AsByte() & m, x1))
             + (Avx2.MultiplyAddAdjacent((u >> 4).AsByte() & m, x2) + Avx2.MultiplyAddAdjacent((u >> 6).AsByte() & m, x3));
    }

    /// <summary>One weight row against four activation rows: each half block is unpacked once for the four; the
    /// activations are read from memory operands (four rows of x stay in L1 while a block of weight rows passes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows1x4(byte* w, sbyte* x, int xs, int kBlocks, int* dots)
    {
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector256<short> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int kb = kb0; kb < end; kb++)
            {
                for (int h = 0; h < 64; h += 32)
                {
                    Unpack(w + kb * 64 + h, out var s0, out var s1, out var s2, out var s3);
                    sbyte* xp = x + kb * 256 + h;
                    a0 += Mad4(s0, s1, s2, s3, xp);
                    a1 += Mad4(s0, s1, s2, s3, xp + xs);
                    a2 += Mad4(s0, s1, s2, s3, xp + 2 * xs);
                    a3 += Mad4(s0, s1, s2, s3, xp + 3 * xs);
                }
            }
            c0 += Widen(a0); c1 += Widen(a1); c2 += Widen(a2); c3 += Widen(a3);
        }
        // One reduction tree for the four rows: hadd pairs, then the two 128-bit halves.
        Vector256<int> abcd = Avx2.HorizontalAdd(Avx2.HorizontalAdd(c0, c1), Avx2.HorizontalAdd(c2, c3));
        (abcd.GetLower() + abcd.GetUpper()).Store(dots);
    }

    /// <summary>The four code vectors of a 32-byte half block (bit pairs 0, 2, 4, 6 of each byte).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack(byte* p, out Vector256<byte> s0, out Vector256<byte> s1, out Vector256<byte> s2, out Vector256<byte> s3)
    {
        Vector256<byte> m = Vector256.Create((byte)3);
        Vector256<ushort> v = Vector256.Load(p).AsUInt16();
        s0 = v.AsByte() & m; s1 = (v >> 2).AsByte() & m; s2 = (v >> 4).AsByte() & m; s3 = (v >> 6).AsByte() & m;
    }

    /// <summary>The four codes of a half block times x's four 64-byte slices at <paramref name="xp"/>, summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mad4(Vector256<byte> s0, Vector256<byte> s1, Vector256<byte> s2, Vector256<byte> s3, sbyte* xp) =>
        (Avx2.MultiplyAddAdjacent(s0, Vector256.Load(xp)) + Avx2.MultiplyAddAdjacent(s1, Vector256.Load(xp + 64)))
        + (Avx2.MultiplyAddAdjacent(s2, Vector256.Load(xp + 128)) + Avx2.MultiplyAddAdjacent(s3, Vector256.Load(xp + 192)));

    // Bytes of weight rows in one pass of the GEMM: the block stays in L2 while every group of four activation rows
    // (at most 4 * 6912 bytes, in L1) runs over it, so W comes from memory once a call. A quarter of a 256-512 KB L2,
    // leaving room for the activations and the output lines (blocks of half the L2 were slower).
    private const int WeightBlockBytes = 64 * 1024;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        int* d = stackalloc int[4];
        if (a.M < 2)
        {
            // The range as four quarters read side by side (four weight streams), the last rows in a pair and alone.
            sbyte* x = a.X;
            int quarter = (r1 - r0) / 4;
            nint offset = (nint)quarter * a.RowBytes;
            for (int r = r0; r < r0 + quarter; r++)
            {
                Rows4x1(a.W + (long)r * a.RowBytes, offset, a.RowBytes, x, a.KBlocks, d);
                a.Store(0, r, d[0]); a.Store(0, r + quarter, d[1]); a.Store(0, r + 2 * quarter, d[2]); a.Store(0, r + 3 * quarter, d[3]);
            }
            int rest = r0 + 4 * quarter;
            for (; rest + 2 <= r1; rest += 2)
            {
                Rows2x1(a.W + (long)rest * a.RowBytes, a.RowBytes, a.RowBytes, x, a.KBlocks, d);
                a.Store(0, rest, d[0]); a.Store(0, rest + 1, d[1]);
            }
            if (rest < r1) a.Store(0, rest, DotCodes(a.W + (long)rest * a.RowBytes, x, a.KBlocks));
            return;
        }
        int blockRows = Math.Max(4, WeightBlockBytes / a.RowBytes);
        for (int rb0 = r0; rb0 < r1; rb0 += blockRows)
        {
            int rbEnd = Math.Min(rb0 + blockRows, r1);
            int i = 0;
            for (; i + 4 <= a.M; i += 4)
            {
                sbyte* x = a.X + (long)i * a.XStride;
                for (int r = rb0; r < rbEnd; r++)
                {
                    Rows1x4(a.W + (long)r * a.RowBytes, x, a.XStride, a.KBlocks, d);
                    a.Store(i, r, d[0]); a.Store(i + 1, r, d[1]); a.Store(i + 2, r, d[2]); a.Store(i + 3, r, d[3]);
                }
            }
            if (a.M - i >= 2)
            {
                sbyte* x = a.X + (long)i * a.XStride;
                for (int r = rb0; r < rbEnd; r++)
                {
                    Rows1x2(a.W + (long)r * a.RowBytes, x, a.XStride, a.KBlocks, d);
                    a.Store(i, r, d[0]); a.Store(i + 1, r, d[1]);
                }
                i += 2;
            }
            if (i < a.M)
            {
                sbyte* x = a.X + (long)i * a.XStride;
                for (int r = rb0; r < rbEnd; r++) a.Store(i, r, DotCodes(a.W + (long)r * a.RowBytes, x, a.KBlocks));
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

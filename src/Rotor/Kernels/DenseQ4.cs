using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>
/// Activation rows quantized to int8 per row (absmax, as <see cref="QuantizedActivations"/>) and packed for the
/// <see cref="DenseType.Q4"/> kernels. Rows go in groups of up to <see cref="DenseQ4.MaxRows"/> (8); the group of rows
/// <c>f .. f + mr - 1</c> (f a multiple of 8) starts at byte <c>f * supers * 576</c>. Within a group, superblock s (columns
/// 512s .. 512s + 511) takes <c>mr * 576</c> bytes: <c>int32 corr[mr][16]</c>, then the mr rows' 512 int8 values in
/// column order. <c>corr[i][l] = -8 * sum</c> of row i's values in block l of the superblock (the columns
/// <c>64t + 4l + e</c>): the kernels multiply the stored nibbles u = q + 8 and start each lane from corr, so that a
/// lane ends with <c>sum q * x</c> of its block.
/// </summary>
internal sealed unsafe class Q4Activations
{
    /// <summary>Bytes one superblock of one row takes (the corrections and the values).</summary>
    public const int RowSuperBytes = DenseQ4.CorrBytes + DenseMatrix.Q4SuperCols;
    private AlignedArray<byte> _packed = new(0);
    private AlignedArray<sbyte> _row = new(0);
    private float[] _scales = [];

    /// <summary>Rows packed by the last <see cref="Pack"/>.</summary>
    public int Rows { get; private set; }
    /// <summary>Superblocks a row.</summary>
    public int Supers { get; private set; }
    /// <summary>Per-row scales (absmax / 127).</summary>
    public float[] Scales => _scales;
    /// <summary>The packed groups.</summary>
    public byte* Pointer => _packed.Pointer;

    /// <summary>The start of the group that holds row <paramref name="first"/> (a multiple of 4).</summary>
    public byte* Group(int first) => _packed.Pointer + (long)first * Supers * RowSuperBytes;

    /// <summary>Quantizes and packs m rows of <paramref name="cols"/> values for a matrix of
    /// <paramref name="paddedCols"/> (a multiple of 512) columns.</summary>
    public void Pack(ReadOnlySpan<float> x, int m, int cols, int paddedCols)
    {
        Check.Finite(x, nameof(x));
        int supers = paddedCols / DenseMatrix.Q4SuperCols;
        long bytes = (long)m * supers * RowSuperBytes;
        if (_packed.Length < bytes) _packed = new AlignedArray<byte>(bytes);
        if (_row.Length < paddedCols) _row = new AlignedArray<sbyte>(paddedCols);
        if (_scales.Length < m) _scales = new float[m];
        Rows = m; Supers = supers;
        Span<sbyte> row = _row.Span[..paddedCols];
        sbyte* q = _row.Pointer;
        for (int i = 0; i < m; i++)
        {
            (_scales[i], _) = QuantizedActivations.QuantizeRow(x.Slice(i * cols, cols), row);
            int g = i / DenseQ4.MaxRows * DenseQ4.MaxRows, mr = Math.Min(DenseQ4.MaxRows, m - g), ii = i - g;
            byte* group = Group(g);
            for (int s = 0; s < supers; s++)
            {
                byte* sb = group + (long)s * mr * RowSuperBytes;
                int* corr = (int*)sb + ii * 16;
                sbyte* src = q + s * DenseMatrix.Q4SuperCols;
                new ReadOnlySpan<sbyte>(src, DenseMatrix.Q4SuperCols).CopyTo(new Span<sbyte>(sb + mr * DenseQ4.CorrBytes + ii * DenseMatrix.Q4SuperCols, DenseMatrix.Q4SuperCols));
                for (int l = 0; l < 16; l++)
                {
                    int sum = 0;
                    for (int t = 0; t < 8; t++)
                        for (int e = 0; e < 4; e++) sum += src[64 * t + 4 * l + e];
                    corr[l] = -8 * sum;
                }
            }
        }
        GC.KeepAlive(_row);
    }
}

/// <summary>
/// The dot products of <see cref="DenseType.Q4"/> weight rows with packed int8 activations (<see cref="Q4Activations"/>),
/// one kernel a path with one contract:
/// <c>void dot(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y)</c> computes, for the nrows
/// consecutive weight rows at w (supers * 256 bytes of nibbles each) and d (supers * 16 half block scales each) and the
/// mr &lt;= <see cref="MaxRows"/> activation rows of the group xg,
/// <c>y[r * mr + i] = sum_s sum_l d[s, l] * (corr_i[s, l] + sum_{t, e} u[s, t, l, e] * x_i[512 s + 64 t + 4 l + e])</c>,
/// which is <c>sum d * (u - 8) * x</c> for the corrections that <see cref="Q4Activations"/> writes: the integer sum of
/// each block is exact in 32 bits (32 * 15 * 127 plus the correction is far below 2^31), the block scales multiply in
/// float.
/// A row group is read once from memory for all mr activation rows (the driver runs the groups of a batch over the
/// same few weight rows while they are in the cache).
/// </summary>
internal static unsafe class DenseQ4
{
    /// <summary>Activation rows a kernel call takes at most: the generated AVX-512 kernel keeps two accumulators a row
    /// beside the 8 code vectors, 4 loads, the scales and the mask (26 of the 32 registers at 8 rows).</summary>
    public const int MaxRows = 8;
    /// <summary>Bytes of block corrections a superblock of one activation row: 16 int32.</summary>
    public const int CorrBytes = 64;

    /// <summary>The definition, scalar: the tests' oracle and the reference path.</summary>
    public static void DotReference(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y)
    {
        for (int r = 0; r < nrows; r++)
        {
            byte* wr = w + (long)r * supers * DenseMatrix.Q4SuperBytes;
            ushort* dr = d + (long)r * supers * 16;
            for (int i = 0; i < mr; i++)
            {
                float sum = 0;
                for (int s = 0; s < supers; s++)
                {
                    byte* sb = xg + (long)s * mr * Q4Activations.RowSuperBytes;
                    int* corr = (int*)sb + i * 16;
                    sbyte* x = (sbyte*)(sb + mr * CorrBytes + i * DenseMatrix.Q4SuperCols);
                    for (int l = 0; l < 16; l++)
                    {
                        int acc = corr[l];
                        for (int t = 0; t < 8; t++)
                            for (int e = 0; e < 4; e++)
                            {
                                int b = wr[s * DenseMatrix.Q4SuperBytes + 64 * (t >> 1) + 4 * l + e];
                                int u = (t & 1) == 0 ? b & 0xF : b >> 4;
                                acc += u * x[64 * t + 4 * l + e];
                            }
                        sum += (float)BitConverter.UInt16BitsToHalf(dr[s * 16 + l]) * acc;
                    }
                }
                y[r * mr + i] = sum;
            }
        }
    }

    private static readonly float Pow2To112 = BitConverter.Int32BitsToSingle((127 + 112) << 23);

    /// <summary>Four halves widened to floats (the magic multiply of <see cref="DenseGemm.DotF16"/>; finite halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Halves4(ushort* p)
    {
        Vector128<uint> h = Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)p).AsUInt16());
        Vector128<float> f = Vector128.AsSingle(Vector128.ShiftLeft(h & Vector128.Create(0x7fffu), 13)) * Vector128.Create(Pow2To112);
        return Vector128.AsSingle(Vector128.AsUInt32(f) | Vector128.ShiftLeft(h & Vector128.Create(0x8000u), 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves8(ushort* p)
    {
        Vector256<uint> h = Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe());
        Vector256<float> f = Vector256.AsSingle(Vector256.ShiftLeft(h & Vector256.Create(0x7fffu), 13)) * Vector256.Create(Pow2To112);
        return Vector256.AsSingle(Vector256.AsUInt32(f) | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Halves16(ushort* p)
    {
        Vector512<uint> h = Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe());
        Vector512<float> f = Vector512.AsSingle(Vector512.ShiftLeft(h & Vector512.Create(0x7fffu), 13)) * Vector512.Create(Pow2To112);
        return Vector512.AsSingle(Vector512.AsUInt32(f) | Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16));
    }

    /// <summary>Any platform, 128-bit vectors: a quarter of a superblock (lanes 4q .. 4q + 3, 16 bytes of each step) at a
    /// time; the products of a byte position add up over the 8 steps in 16 bits (8 * 15 * 127 fits), then each lane's
    /// four positions are summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotPortable(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y)
    {
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        for (int r = 0; r < nrows; r++)
        {
            byte* wr = w + (long)r * supers * DenseMatrix.Q4SuperBytes;
            ushort* dr = d + (long)r * supers * 16;
            for (int i = 0; i < mr; i++)
            {
                Vector128<float> acc = Vector128<float>.Zero;
                for (int s = 0; s < supers; s++)
                {
                    byte* sb = xg + (long)s * mr * Q4Activations.RowSuperBytes;
                    int* corr = (int*)sb + i * 16;
                    sbyte* x = (sbyte*)(sb + mr * CorrBytes + i * DenseMatrix.Q4SuperCols);
                    byte* ws = wr + s * DenseMatrix.Q4SuperBytes;
                    for (int q = 0; q < 4; q++)
                    {
                        Vector128<short> lo = Vector128<short>.Zero, hi = Vector128<short>.Zero;
                        for (int k = 0; k < 4; k++)
                        {
                            Vector128<byte> p = Vector128.Load(ws + 64 * k + 16 * q);
                            Vector128<byte> u0 = p & mask, u1 = Vector128.ShiftRightLogical(p, 4);
                            Vector128<sbyte> x0 = Vector128.Load(x + 128 * k + 16 * q), x1 = Vector128.Load(x + 128 * k + 64 + 16 * q);
                            lo += Vector128.WidenLower(u0).AsInt16() * Vector128.WidenLower(x0) + Vector128.WidenLower(u1).AsInt16() * Vector128.WidenLower(x1);
                            hi += Vector128.WidenUpper(u0).AsInt16() * Vector128.WidenUpper(x0) + Vector128.WidenUpper(u1).AsInt16() * Vector128.WidenUpper(x1);
                        }
                        Vector128<int> lanes = Vector128.Create(
                            Vector128.Sum(Vector128.WidenLower(lo)), Vector128.Sum(Vector128.WidenUpper(lo)),
                            Vector128.Sum(Vector128.WidenLower(hi)), Vector128.Sum(Vector128.WidenUpper(hi)));
                        lanes += Vector128.Load(corr + 4 * q);
                        acc += Vector128.ConvertToSingle(lanes) * Halves4(dr + s * 16 + 4 * q);
                    }
                }
                y[r * mr + i] = Vector128.Sum(acc);
            }
        }
    }

    /// <summary>AVX2, 256-bit. Without AVX-VNNI: <see cref="TwoRowsAvx2"/>, two activation rows a weight row at a time
    /// (the last one alone when mr is odd). With AVX-VNNI: half a superblock (lanes 8h .. 8h + 7) at a time, one
    /// vpdpbusd a 32-byte step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotAvx2(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y)
    {
        if (!AvxVnni.IsSupported)
        {
            if (mr == 1 && nrows >= 2)
            {
                // One activation row: weight rows from the two halves of the range side by side, two streams.
                int half = nrows / 2;
                long rowBytes = (long)supers * DenseMatrix.Q4SuperBytes, rowScales = (long)supers * 16;
                for (int r = 0; r < half; r++)
                    TwoWeightRowsAvx2(w + r * rowBytes, d + r * rowScales, half * rowBytes, half * rowScales, supers, xg, y + r, y + r + half);
                if ((nrows & 1) != 0) OneRowAvx2(w + (nrows - 1) * rowBytes, d + (nrows - 1) * rowScales, supers, xg, 1, 0, y + nrows - 1);
                return;
            }
            for (int r = 0; r < nrows; r++)
            {
                byte* wr = w + (long)r * supers * DenseMatrix.Q4SuperBytes;
                ushort* dr = d + (long)r * supers * 16;
                int i = 0;
                for (; i + 2 <= mr; i += 2) TwoRowsAvx2(wr, dr, supers, xg, mr, i, y + r * mr + i);
                if (i < mr) OneRowAvx2(wr, dr, supers, xg, mr, i, y + r * mr + i);
            }
            return;
        }
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int r = 0; r < nrows; r++)
        {
            byte* wr = w + (long)r * supers * DenseMatrix.Q4SuperBytes;
            ushort* dr = d + (long)r * supers * 16;
            for (int i = 0; i < mr; i++)
            {
                Vector256<float> acc = Vector256<float>.Zero;
                for (int s = 0; s < supers; s++)
                {
                    byte* sb = xg + (long)s * mr * Q4Activations.RowSuperBytes;
                    int* corr = (int*)sb + i * 16;
                    sbyte* x = (sbyte*)(sb + mr * CorrBytes + i * DenseMatrix.Q4SuperCols);
                    byte* ws = wr + s * DenseMatrix.Q4SuperBytes;
                    for (int h = 0; h < 2; h++)
                    {
                        Vector256<int> a = Avx.LoadVector256(corr + 8 * h);
                        for (int k = 0; k < 4; k++)
                        {
                            if (h == 0 && i == 0) Sse.Prefetch0(ws + 64 * k + DenseGemm.PrefetchBytes);   // the next rows' stream
                            Vector256<byte> p = Avx.LoadVector256(ws + 64 * k + 32 * h);
                            a = AvxVnni.MultiplyWideningAndAdd(a, p & mask, Avx.LoadVector256(x + 128 * k + 32 * h));
                            a = AvxVnni.MultiplyWideningAndAdd(a, Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & mask, Avx.LoadVector256(x + 128 * k + 64 + 32 * h));
                        }
                        acc = Fma.IsSupported
                            ? Fma.MultiplyAdd(Avx.ConvertToVector256Single(a), Halves8(dr + s * 16 + 8 * h), acc)
                            : acc + Avx.ConvertToVector256Single(a) * Halves8(dr + s * 16 + 8 * h);
                    }
                }
                y[r * mr + i] = Vector256.Sum(acc);
            }
        }
    }

    /// <summary>
    /// One Q4 weight row (<paramref name="wr"/>, <paramref name="dr"/>) against activation row <paramref name="i"/> of
    /// the group xg of mr rows into y[0], on AVX2 without VNNI: both halves of a superblock at once, each half's
    /// vpmaddubsw results (pairs at most 2 * 15 * 127 = 3810) summed in int16 over the whole superblock (eight of them a
    /// lane: at most 30480, no overflow) before one vpmaddwd, so a superblock costs 16 vpmaddubsw and 2 vpmaddwd; the
    /// halves go to two float accumulators (independent FMA chains).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OneRowAvx2(byte* wr, ushort* dr, int supers, byte* xg, int mr, int i, float* y)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        for (int s = 0; s < supers; s++)
        {
            byte* ws = Super(wr, xg, mr, i, s, out int* corr, out sbyte* x);
            Vector256<short> s0 = default, s1 = default;
            for (int k = 0; k < 4; k++)
            {
                Split(ws + 64 * k, mask, out var l0, out var h0, out var l1, out var h1);
                Mad(l0, h0, l1, h1, x + 128 * k, ref s0, ref s1);
            }
            Vector256<float> f0 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr) + Avx2.MultiplyAddAdjacent(s0, ones));
            Vector256<float> f1 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr + 8) + Avx2.MultiplyAddAdjacent(s1, ones));
            Vector256<float> d0 = Halves8(dr + s * 16), d1 = Halves8(dr + s * 16 + 8);
            acc0 = Fma.IsSupported ? Fma.MultiplyAdd(f0, d0, acc0) : acc0 + f0 * d0;
            acc1 = Fma.IsSupported ? Fma.MultiplyAdd(f1, d1, acc1) : acc1 + f1 * d1;
        }
        y[0] = Vector256.Sum(acc0 + acc1);
    }

    /// <summary><see cref="OneRowAvx2"/> for two weight rows, at wr / dr and wr + wOffset / dr + dOffset, against the one
    /// activation row of the group xg (mr = 1) into y0 and y1: the same operations in the same order a row, so each
    /// result is bit for bit OneRowAvx2's; the two rows are two weight streams a core reads side by side.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TwoWeightRowsAvx2(byte* wr, ushort* dr, long wOffset, long dOffset, int supers, byte* xg, float* y0, float* y1)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, b0 = a0, b1 = a0;
        byte* wr1 = wr + wOffset;
        ushort* dr1 = dr + dOffset;
        for (int s = 0; s < supers; s++)
        {
            byte* ws = Super(wr, xg, 1, 0, s, out int* corr, out sbyte* x);
            byte* ws1 = Super(wr1, xg, 1, 0, s, out _, out _);
            Vector256<short> s0 = default, s1 = default, t0 = default, t1 = default;
            for (int k = 0; k < 4; k++)
            {
                Split(ws + 64 * k, mask, out var l0, out var h0, out var l1, out var h1);
                Mad(l0, h0, l1, h1, x + 128 * k, ref s0, ref s1);
                Split(ws1 + 64 * k, mask, out l0, out h0, out l1, out h1);
                Mad(l0, h0, l1, h1, x + 128 * k, ref t0, ref t1);
            }
            Vector256<int> c0 = Avx.LoadVector256(corr), c1 = Avx.LoadVector256(corr + 8);
            Vector256<float> f0 = Avx.ConvertToVector256Single(c0 + Avx2.MultiplyAddAdjacent(s0, ones));
            Vector256<float> f1 = Avx.ConvertToVector256Single(c1 + Avx2.MultiplyAddAdjacent(s1, ones));
            Vector256<float> g0 = Avx.ConvertToVector256Single(c0 + Avx2.MultiplyAddAdjacent(t0, ones));
            Vector256<float> g1 = Avx.ConvertToVector256Single(c1 + Avx2.MultiplyAddAdjacent(t1, ones));
            Vector256<float> d0 = Halves8(dr + s * 16), d1 = Halves8(dr + s * 16 + 8);
            Vector256<float> e0 = Halves8(dr1 + s * 16), e1 = Halves8(dr1 + s * 16 + 8);
            if (Fma.IsSupported)
            {
                a0 = Fma.MultiplyAdd(f0, d0, a0); a1 = Fma.MultiplyAdd(f1, d1, a1);
                b0 = Fma.MultiplyAdd(g0, e0, b0); b1 = Fma.MultiplyAdd(g1, e1, b1);
            }
            else
            {
                a0 += f0 * d0; a1 += f1 * d1;
                b0 += g0 * e0; b1 += g1 * e1;
            }
        }
        *y0 = Vector256.Sum(a0 + a1);
        *y1 = Vector256.Sum(b0 + b1);
    }

    /// <summary><see cref="OneRowAvx2"/> for activation rows i and i + 1 (y[0], y[1]): a superblock's bytes are loaded
    /// and unpacked once for both rows; each row keeps its own int16 sums and one float accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TwoRowsAvx2(byte* wr, ushort* dr, int supers, byte* xg, int mr, int i, float* y)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        for (int s = 0; s < supers; s++)
        {
            byte* ws = Super(wr, xg, mr, i, s, out int* corr, out sbyte* x);
            sbyte* x2 = x + DenseMatrix.Q4SuperCols;
            Vector256<short> s0 = default, s1 = default, t0 = default, t1 = default;
            for (int k = 0; k < 4; k++)
            {
                Split(ws + 64 * k, mask, out var l0, out var h0, out var l1, out var h1);
                Mad(l0, h0, l1, h1, x + 128 * k, ref s0, ref s1);
                Mad(l0, h0, l1, h1, x2 + 128 * k, ref t0, ref t1);
            }
            Vector256<float> d0 = Halves8(dr + s * 16), d1 = Halves8(dr + s * 16 + 8);
            Vector256<float> f0 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr) + Avx2.MultiplyAddAdjacent(s0, ones));
            Vector256<float> f1 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr + 8) + Avx2.MultiplyAddAdjacent(s1, ones));
            Vector256<float> g0 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr + 16) + Avx2.MultiplyAddAdjacent(t0, ones));
            Vector256<float> g1 = Avx.ConvertToVector256Single(Avx.LoadVector256(corr + 24) + Avx2.MultiplyAddAdjacent(t1, ones));
            if (Fma.IsSupported)
            {
                acc0 = Fma.MultiplyAdd(f1, d1, Fma.MultiplyAdd(f0, d0, acc0));
                acc1 = Fma.MultiplyAdd(g1, d1, Fma.MultiplyAdd(g0, d0, acc1));
            }
            else
            {
                acc0 = acc0 + f0 * d0 + f1 * d1;
                acc1 = acc1 + g0 * d0 + g1 * d1;
            }
        }
        y[0] = Vector256.Sum(acc0);
        y[1] = Vector256.Sum(acc1);
    }

    /// <summary>Superblock s of weight row wr (returned, its stream prefetched <see cref="DenseGemm.PrefetchBytes"/>
    /// ahead: a GEMV reads its rows one after another) and, of activation row i of the group xg of mr rows, its block
    /// corrections and values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Super(byte* wr, byte* xg, int mr, int i, int s, out int* corr, out sbyte* x)
    {
        byte* sb = xg + (long)s * mr * Q4Activations.RowSuperBytes;
        corr = (int*)sb + i * 16;
        x = (sbyte*)(sb + mr * CorrBytes + i * DenseMatrix.Q4SuperCols);
        byte* ws = wr + (long)s * DenseMatrix.Q4SuperBytes;
        byte* ahead = ws + DenseGemm.PrefetchBytes;
        Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
        return ws;
    }

    /// <summary>The low and high nibbles of the 64 bytes at p: halves 0 (l0, h0) and 1 (l1, h1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Split(byte* p, Vector256<byte> mask, out Vector256<byte> l0, out Vector256<byte> h0, out Vector256<byte> l1, out Vector256<byte> h1)
    {
        Vector256<byte> p0 = Avx.LoadVector256(p), p1 = Avx.LoadVector256(p + 32);
        l0 = p0 & mask; h0 = Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & mask;
        l1 = p1 & mask; h1 = Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & mask;
    }

    /// <summary>One 64-byte step of a superblock against the 128 activations at x: half 0's products into s0, half
    /// 1's into s1 (int16, see <see cref="OneRowAvx2"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mad(Vector256<byte> l0, Vector256<byte> h0, Vector256<byte> l1, Vector256<byte> h1, sbyte* x, ref Vector256<short> s0, ref Vector256<short> s1)
    {
        s0 += Avx2.MultiplyAddAdjacent(l0, Avx.LoadVector256(x)) + Avx2.MultiplyAddAdjacent(h0, Avx.LoadVector256(x + 64));
        s1 += Avx2.MultiplyAddAdjacent(l1, Avx.LoadVector256(x + 32)) + Avx2.MultiplyAddAdjacent(h1, Avx.LoadVector256(x + 96));
    }

    /// <summary>AVX-512 BW: a whole superblock a step, each block in its own int32 lane; vpmaddubsw and vpmaddwd as
    /// <see cref="DotAvx2"/> (the VNNI path does the pair in one instruction).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotAvx512(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        for (int r = 0; r < nrows; r++)
        {
            byte* wr = w + (long)r * supers * DenseMatrix.Q4SuperBytes;
            ushort* dr = d + (long)r * supers * 16;
            for (int i = 0; i < mr; i++)
            {
                Vector512<float> acc = Vector512<float>.Zero;
                for (int s = 0; s < supers; s++)
                {
                    byte* sb = xg + (long)s * mr * Q4Activations.RowSuperBytes;
                    sbyte* x = (sbyte*)(sb + mr * CorrBytes + i * DenseMatrix.Q4SuperCols);
                    byte* ws = wr + s * DenseMatrix.Q4SuperBytes;
                    Vector512<int> a = Vector512.Load((int*)sb + i * 16);
                    for (int k = 0; k < 4; k++)
                    {
                        Vector512<byte> p = Vector512.Load(ws + 64 * k);
                        Vector512<byte> u0 = p & mask, u1 = Avx512BW.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & mask;
                        a += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u0, Vector512.Load(x + 128 * k)), ones);
                        a += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u1, Vector512.Load(x + 128 * k + 64)), ones);
                    }
                    acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(a), Halves16(dr + s * 16), acc);
                }
                y[r * mr + i] = Vector512.Sum(acc);
            }
        }
    }

    /// <summary>AVX-512 VNNI: the generated kernels of <see cref="VnniCode.Q4"/>, one a row count.</summary>
    public static void DotVnni(byte* w, ushort* d, int supers, byte* xg, int mr, int nrows, float* y) =>
        VnniCode.Q4(mr, w, d, supers, xg, nrows, y);
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>
/// Products with a <see cref="DenseMatrix"/>: <c>y[i, r] = sum_j W[r, j] * x[i, j]</c> for m activation rows.
/// F32 and F16 weights multiply float activations: one activation row meets each F16 weight widened in registers;
/// several go through the path's 4 x 4 float tile, F16 widened once a call into a small panel that every group of four
/// activation rows reads. Int8 weights multiply activations quantized to int8 per row (absmax, as the ternary
/// products do): <c>y[i, r] = xScale[i] * wScale[r] * sum_j q[r, j] * xq[i, j]</c>, exact in 32-bit integers since
/// |q|, |xq| &lt;= 127 and rows are far shorter than 2^31 / 127^2. Q4 weights multiply the same int8 activations, packed
/// by <see cref="Q4Activations"/>, through the path's <see cref="DenseQ4"/> kernel.
/// Every type reads W once a call: a weight row (or a chunk of rows, for Q4) meets every activation row while it is in
/// the cache.
/// </summary>
internal static unsafe class DenseGemm
{
    /// <summary>The int8 dot product over <paramref name="n"/> values (a multiple of 256), scalar: the oracle.</summary>
    public static int DotInt8Reference(sbyte* w, sbyte* x, int n)
    {
        int s = 0;
        for (int j = 0; j < n; j++) s += w[j] * x[j];
        return s;
    }

    /// <summary>AVX2: |w| (unsigned) times x with w's sign (vpsignb), pairs summed to 16 bits (at most 2 * 127 * 127,
    /// which fits), then to 32 bits with vpmaddwd.</summary>
    public static int DotInt8Avx2(sbyte* w, sbyte* x, int n)
    {
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero;
        Vector256<short> ones = Vector256.Create((short)1);
        for (int j = 0; j < n; j += 64)
        {
            Sse.Prefetch0(w + j + PrefetchBytes);   // rows are read one after another, so this runs into the next row
            Vector256<sbyte> w0 = Avx.LoadVector256(w + j), w1 = Avx.LoadVector256(w + j + 32);
            Vector256<sbyte> x0 = Avx.LoadVector256(x + j), x1 = Avx.LoadVector256(x + j + 32);
            Vector256<short> p0 = Avx2.MultiplyAddAdjacent(Avx2.Abs(w0), Avx2.Sign(x0, w0));
            Vector256<short> p1 = Avx2.MultiplyAddAdjacent(Avx2.Abs(w1), Avx2.Sign(x1, w1));
            acc0 += Avx2.MultiplyAddAdjacent(p0, ones);
            acc1 += Avx2.MultiplyAddAdjacent(p1, ones);
        }
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>Distance of the software prefetch of the one-row products (an LM head's GEMV reads its rows one after
    /// another, and a prefetch past the last row is harmless): 32 cache lines, well ahead of a DRAM stream's latency;
    /// the hardware prefetchers alone leave a single core's stream far below its bandwidth on some machines.</summary>
    internal const int PrefetchBytes = 2048;

    /// <summary>Any platform: widen to 16 bits, multiply (|product| &lt;= 127^2 fits), widen to 32 bits and add.</summary>
    public static int DotInt8Portable(sbyte* w, sbyte* x, int n)
    {
        Vector128<int> acc = Vector128<int>.Zero;
        for (int j = 0; j < n; j += 16)
        {
            Vector128<sbyte> wv = Vector128.Load(w + j), xv = Vector128.Load(x + j);
            Vector128<short> lo = Vector128.WidenLower(wv) * Vector128.WidenLower(xv);
            Vector128<short> hi = Vector128.WidenUpper(wv) * Vector128.WidenUpper(xv);
            acc += Vector128.WidenLower(lo) + Vector128.WidenUpper(lo) + Vector128.WidenLower(hi) + Vector128.WidenUpper(hi);
        }
        return Vector128.Sum(acc);
    }

    /// <summary>Four int8 dot products with one weight row, <c>sums[i] = sum_j w[j] * x[i * xStride + j]</c> for
    /// i &lt; 4, over n values (a multiple of 256), scalar: the oracle of the four-row kernels.</summary>
    public static void DotInt8x4Reference(sbyte* w, sbyte* x, long xStride, int n, int* sums)
    {
        for (int i = 0; i < 4; i++) sums[i] = DotInt8Reference(w, x + i * xStride, n);
    }

    /// <summary>AVX2, four activation rows a weight load: |w| is formed once and multiplies each row's x with w's
    /// sign (vpsignb), as <see cref="DotInt8Avx2"/> does for one.</summary>
    public static void DotInt8x4Avx2(sbyte* w, sbyte* x, long xStride, int n, int* sums)
    {
        Vector256<int> a0 = Vector256<int>.Zero, a1 = a0, a2 = a0, a3 = a0;
        Vector256<short> ones = Vector256.Create((short)1);
        sbyte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int j = 0; j < n; j += 32)
        {
            Vector256<sbyte> wv = Avx.LoadVector256(w + j);
            Vector256<byte> aw = Avx2.Abs(wv);
            a0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Avx.LoadVector256(x0 + j), wv)), ones);
            a1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Avx.LoadVector256(x1 + j), wv)), ones);
            a2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Avx.LoadVector256(x2 + j), wv)), ones);
            a3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(Avx.LoadVector256(x3 + j), wv)), ones);
        }
        sums[0] = Vector256.Sum(a0); sums[1] = Vector256.Sum(a1); sums[2] = Vector256.Sum(a2); sums[3] = Vector256.Sum(a3);
    }

    /// <summary>AVX-512 BW, four activation rows a weight load: AVX-512 has no vpsignb, so each row's x takes w's sign
    /// by a masked negation (x is never -128, so -x fits); |w| times that with vpmaddubsw (pairs at most 2 * 127^2,
    /// which fits 16 bits), widened with vpmaddwd.</summary>
    public static void DotInt8x4Avx512(sbyte* w, sbyte* x, long xStride, int n, int* sums)
    {
        Vector512<int> a0 = Vector512<int>.Zero, a1 = a0, a2 = a0, a3 = a0;
        Vector512<short> ones = Vector512.Create((short)1);
        sbyte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int j = 0; j < n; j += 64)
        {
            Vector512<sbyte> wv = Vector512.Load(w + j);
            Vector512<byte> aw = Avx512BW.Abs(wv);
            Vector512<sbyte> neg = Vector512.LessThan(wv, Vector512<sbyte>.Zero);
            Vector512<sbyte> v0 = Vector512.Load(x0 + j), v1 = Vector512.Load(x1 + j), v2 = Vector512.Load(x2 + j), v3 = Vector512.Load(x3 + j);
            a0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(aw, Vector512.ConditionalSelect(neg, -v0, v0)), ones);
            a1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(aw, Vector512.ConditionalSelect(neg, -v1, v1)), ones);
            a2 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(aw, Vector512.ConditionalSelect(neg, -v2, v2)), ones);
            a3 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(aw, Vector512.ConditionalSelect(neg, -v3, v3)), ones);
        }
        sums[0] = Vector512.Sum(a0); sums[1] = Vector512.Sum(a1); sums[2] = Vector512.Sum(a2); sums[3] = Vector512.Sum(a3);
    }

    /// <summary>Any platform, four activation rows a weight load: w is widened to 16 bits once for the four rows.</summary>
    public static void DotInt8x4Portable(sbyte* w, sbyte* x, long xStride, int n, int* sums)
    {
        Vector128<int> a0 = Vector128<int>.Zero, a1 = a0, a2 = a0, a3 = a0;
        sbyte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int j = 0; j < n; j += 16)
        {
            Vector128<sbyte> wv = Vector128.Load(w + j);
            Vector128<short> wl = Vector128.WidenLower(wv), wh = Vector128.WidenUpper(wv);
            a0 += Products(wl, wh, Vector128.Load(x0 + j));
            a1 += Products(wl, wh, Vector128.Load(x1 + j));
            a2 += Products(wl, wh, Vector128.Load(x2 + j));
            a3 += Products(wl, wh, Vector128.Load(x3 + j));
        }
        sums[0] = Vector128.Sum(a0); sums[1] = Vector128.Sum(a1); sums[2] = Vector128.Sum(a2); sums[3] = Vector128.Sum(a3);

        // |product| <= 127^2 fits 16 bits; the four widened quarters add in 32.
        static Vector128<int> Products(Vector128<short> wl, Vector128<short> wh, Vector128<sbyte> xv)
        {
            Vector128<short> lo = wl * Vector128.WidenLower(xv), hi = wh * Vector128.WidenUpper(xv);
            return Vector128.WidenLower(lo) + Vector128.WidenUpper(lo) + Vector128.WidenLower(hi) + Vector128.WidenUpper(hi);
        }
    }

    private static readonly float Pow2To112 = BitConverter.Int32BitsToSingle((127 + 112) << 23);

    /// <summary>
    /// <c>sum_j w[j] * x[j]</c> with half-precision w widened in registers (.NET has no F16C intrinsic): the magnitude
    /// bits shifted into a float's place are the value times 2^-112 for normal and subnormal halves alike, so one
    /// multiply by 2^112 restores it. Each half is sign-extended to 32 bits and shifted left by 13: its sign lands in
    /// bit 31 with copies in bits 28-30, which one mask clears. Weights are finite, so infinities and NaNs, which this
    /// maps to large finite values, do not occur.
    /// </summary>
    public static float DotF16(ushort* w, float* x, int n)
    {
        int j = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
            for (; j + 32 <= n; j += 32)
            {
                Vector512<short> h = Vector512.Load((short*)w + j);
                Vector512<float> flo = Widen(Vector512.WidenLower(h)), fhi = Widen(Vector512.WidenUpper(h));
                acc0 = Vector512.FusedMultiplyAdd(flo, Vector512.Load(x + j), acc0);
                acc1 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x + j + 16), acc1);
            }
            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            for (; j + 16 <= n; j += 16)
            {
                Vector256<short> h = Vector256.Load((short*)w + j);
                Vector256<float> flo = Widen(Vector256.WidenLower(h)), fhi = Widen(Vector256.WidenUpper(h));
                acc0 = Vector256.FusedMultiplyAdd(flo, Vector256.Load(x + j), acc0);
                acc1 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x + j + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; j < n; j++) sum += (float)BitConverter.UInt16BitsToHalf(w[j]) * x[j];
        return sum;
    }

    /// <summary>Activation rows the few-row F16 kernels take at most (<see cref="DotF16x4Reference"/>).</summary>
    public const int F16Rows = 4;

    /// <summary>
    /// One F16 weight row against mr (1..4) activation rows at <c>x + i * xStride</c>, n values each:
    /// <c>sums[i] = sum_j w[j] * x[i, j]</c>. Scalar: the oracle of the few-row F16 kernels, which widen each half
    /// once in registers for all the rows (no float panel in memory), the route of small batches.
    /// </summary>
    public static void DotF16x4Reference(ushort* w, float* x, long xStride, int n, int mr, float* sums)
    {
        for (int i = 0; i < mr; i++)
        {
            float s = 0;
            for (int j = 0; j < n; j++) s += (float)BitConverter.UInt16BitsToHalf(w[j]) * x[i * xStride + j];
            sums[i] = s;
        }
    }

    /// <summary><see cref="DotF16"/> of two weight rows against the same activations, each result bit for bit
    /// <see cref="DotF16"/>'s (the same operations in the same order a row): with 256-bit vectors the two rows share each
    /// activation load; with 512-bit ones it is two calls.</summary>
    public static void DotF16Rows2(ushort* w0, ushort* w1, float* x, int n, float* sums)
    {
        if (Vector512.IsHardwareAccelerated || !Vector256.IsHardwareAccelerated || n < 16)
        {
            sums[0] = DotF16(w0, x, n); sums[1] = DotF16(w1, x, n);
            return;
        }
        Vector256<float> a0 = Vector256<float>.Zero, b0 = a0, a1 = a0, b1 = a0;
        int j = 0;
        for (; j + 16 <= n; j += 16)
        {
            Vector256<float> xl = Vector256.Load(x + j), xh = Vector256.Load(x + j + 8);
            Vector256<short> h0 = Vector256.Load((short*)w0 + j), h1 = Vector256.Load((short*)w1 + j);
            a0 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(h0)), xl, a0);
            b0 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(h0)), xh, b0);
            a1 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(h1)), xl, a1);
            b1 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(h1)), xh, b1);
        }
        float s0 = Vector256.Sum(a0 + b0), s1 = Vector256.Sum(a1 + b1);
        for (; j < n; j++)
        {
            s0 += (float)BitConverter.UInt16BitsToHalf(w0[j]) * x[j];
            s1 += (float)BitConverter.UInt16BitsToHalf(w1[j]) * x[j];
        }
        sums[0] = s0; sums[1] = s1;
    }

    /// <summary><see cref="DotF16x4Reference"/> with 256-bit vectors: 16 halves a step are widened as
    /// <see cref="DotF16"/> does, then meet the rows' activations in two accumulators a row (eight independent
    /// multiply-add chains). Fewer than four rows repeat the first row's activations; their sums are dropped.</summary>
    public static void DotF16x4Avx2(ushort* w, float* x, long xStride, int n, int mr, float* sums)
    {
        float* x0 = x, x1 = mr > 1 ? x + xStride : x, x2 = mr > 2 ? x + 2 * xStride : x, x3 = mr > 3 ? x + 3 * xStride : x;
        Vector256<float> a0 = Vector256<float>.Zero, b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        int j = 0;
        for (; j + 16 <= n; j += 16)
        {
            Vector256<short> h = Vector256.Load((short*)w + j);
            Vector256<float> lo = Widen(Vector256.WidenLower(h)), hi = Widen(Vector256.WidenUpper(h));
            a0 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x0 + j), a0); b0 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x0 + j + 8), b0);
            a1 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x1 + j), a1); b1 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x1 + j + 8), b1);
            a2 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x2 + j), a2); b2 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x2 + j + 8), b2);
            a3 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x3 + j), a3); b3 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x3 + j + 8), b3);
        }
        Vector128<float> s = Vector128.Create(Vector256.Sum(a0 + b0), Vector256.Sum(a1 + b1), Vector256.Sum(a2 + b2), Vector256.Sum(a3 + b3));
        for (int i = 0; i < mr; i++)
        {
            float* xi = x + i * xStride;
            float t = s.GetElement(i);
            for (int jj = j; jj < n; jj++) t += (float)BitConverter.UInt16BitsToHalf(w[jj]) * xi[jj];
            sums[i] = t;
        }
    }

    /// <summary>Weight rows of a float tile: a tile kernel multiplies this many weight rows with up to
    /// <see cref="TileRows"/> activation rows.</summary>
    public const int TileRows = 4;

    /// <summary>
    /// The float tile product, scalar: the oracle of the tile kernels. For weight rows r &lt; 4 at
    /// <c>w + r * wStride</c> and activation rows i &lt; mr (1..4) at <c>x + i * xStride</c>, all k long (any k &gt;= 0):
    /// <c>sums[r * 4 + i] = sum_j w[r * wStride + j] * x[i * xStride + j]</c>. Entries with i &gt;= mr are not written.
    /// </summary>
    public static void TileF32Reference(float* w, long wStride, float* x, long xStride, int k, int mr, float* sums)
    {
        for (int r = 0; r < TileRows; r++)
            for (int i = 0; i < mr; i++)
            {
                float s = 0;
                for (int j = 0; j < k; j++) s += w[r * wStride + j] * x[i * xStride + j];
                sums[r * TileRows + i] = s;
            }
    }

    /// <summary><see cref="TileF32Reference"/> with 512-bit vectors: a 4 x 4 register tile (16 accumulators) loads each
    /// weight vector once for four activation rows and each activation vector once for four weight rows, so a
    /// multiply-add costs half a load; fewer than four activation rows run one at a time (4 x 1).</summary>
    public static void TileF32Avx512(float* w, long wStride, float* x, long xStride, int k, int mr, float* sums)
    {
        int j = 0, k16 = k & ~15;
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        if (mr == TileRows)
        {
            Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            Vector512<float> a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
            for (; j < k16; j += 16)
            {
                Vector512<float> v0 = Vector512.Load(w0 + j), v1 = Vector512.Load(w1 + j), v2 = Vector512.Load(w2 + j), v3 = Vector512.Load(w3 + j);
                Vector512<float> xv = Vector512.Load(x0 + j);
                a00 = Vector512.FusedMultiplyAdd(v0, xv, a00); a10 = Vector512.FusedMultiplyAdd(v1, xv, a10);
                a20 = Vector512.FusedMultiplyAdd(v2, xv, a20); a30 = Vector512.FusedMultiplyAdd(v3, xv, a30);
                xv = Vector512.Load(x1 + j);
                a01 = Vector512.FusedMultiplyAdd(v0, xv, a01); a11 = Vector512.FusedMultiplyAdd(v1, xv, a11);
                a21 = Vector512.FusedMultiplyAdd(v2, xv, a21); a31 = Vector512.FusedMultiplyAdd(v3, xv, a31);
                xv = Vector512.Load(x2 + j);
                a02 = Vector512.FusedMultiplyAdd(v0, xv, a02); a12 = Vector512.FusedMultiplyAdd(v1, xv, a12);
                a22 = Vector512.FusedMultiplyAdd(v2, xv, a22); a32 = Vector512.FusedMultiplyAdd(v3, xv, a32);
                xv = Vector512.Load(x3 + j);
                a03 = Vector512.FusedMultiplyAdd(v0, xv, a03); a13 = Vector512.FusedMultiplyAdd(v1, xv, a13);
                a23 = Vector512.FusedMultiplyAdd(v2, xv, a23); a33 = Vector512.FusedMultiplyAdd(v3, xv, a33);
            }
            sums[0] = Vector512.Sum(a00); sums[1] = Vector512.Sum(a01); sums[2] = Vector512.Sum(a02); sums[3] = Vector512.Sum(a03);
            sums[4] = Vector512.Sum(a10); sums[5] = Vector512.Sum(a11); sums[6] = Vector512.Sum(a12); sums[7] = Vector512.Sum(a13);
            sums[8] = Vector512.Sum(a20); sums[9] = Vector512.Sum(a21); sums[10] = Vector512.Sum(a22); sums[11] = Vector512.Sum(a23);
            sums[12] = Vector512.Sum(a30); sums[13] = Vector512.Sum(a31); sums[14] = Vector512.Sum(a32); sums[15] = Vector512.Sum(a33);
        }
        else
        {
            for (int i = 0; i < mr; i++)
            {
                Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                float* xi = x + i * xStride;
                for (j = 0; j < k16; j += 16)
                {
                    Vector512<float> xv = Vector512.Load(xi + j);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + j), xv, a0); a1 = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + j), xv, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + j), xv, a2); a3 = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + j), xv, a3);
                }
                sums[i] = Vector512.Sum(a0); sums[4 + i] = Vector512.Sum(a1); sums[8 + i] = Vector512.Sum(a2); sums[12 + i] = Vector512.Sum(a3);
            }
        }
        TileTail(w, wStride, x, xStride, k16, k, mr, sums);
    }

    /// <summary><see cref="TileF32Reference"/> with 256-bit vectors: sixteen registers hold a 4 x 2 tile (8
    /// accumulators, 4 weight vectors, 1 activation vector), so four activation rows run as two pairs; an odd one runs
    /// alone (4 x 1).</summary>
    public static void TileF32Avx2(float* w, long wStride, float* x, long xStride, int k, int mr, float* sums)
    {
        int k8 = k & ~7;
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        int i = 0;
        for (; i + 2 <= mr; i += 2)
        {
            Vector256<float> a00 = Vector256<float>.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            float* x0 = x + i * xStride, x1 = x0 + xStride;
            for (int j = 0; j < k8; j += 8)
            {
                Vector256<float> v0 = Vector256.Load(w0 + j), v1 = Vector256.Load(w1 + j), v2 = Vector256.Load(w2 + j), v3 = Vector256.Load(w3 + j);
                Vector256<float> xv = Vector256.Load(x0 + j);
                a00 = Vector256.FusedMultiplyAdd(v0, xv, a00); a10 = Vector256.FusedMultiplyAdd(v1, xv, a10);
                a20 = Vector256.FusedMultiplyAdd(v2, xv, a20); a30 = Vector256.FusedMultiplyAdd(v3, xv, a30);
                xv = Vector256.Load(x1 + j);
                a01 = Vector256.FusedMultiplyAdd(v0, xv, a01); a11 = Vector256.FusedMultiplyAdd(v1, xv, a11);
                a21 = Vector256.FusedMultiplyAdd(v2, xv, a21); a31 = Vector256.FusedMultiplyAdd(v3, xv, a31);
            }
            sums[i] = Vector256.Sum(a00); sums[i + 1] = Vector256.Sum(a01); sums[4 + i] = Vector256.Sum(a10); sums[5 + i] = Vector256.Sum(a11);
            sums[8 + i] = Vector256.Sum(a20); sums[9 + i] = Vector256.Sum(a21); sums[12 + i] = Vector256.Sum(a30); sums[13 + i] = Vector256.Sum(a31);
        }
        for (; i < mr; i++)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            float* xi = x + i * xStride;
            for (int j = 0; j < k8; j += 8)
            {
                Vector256<float> xv = Vector256.Load(xi + j);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + j), xv, a0); a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + j), xv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + j), xv, a2); a3 = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + j), xv, a3);
            }
            sums[i] = Vector256.Sum(a0); sums[4 + i] = Vector256.Sum(a1); sums[8 + i] = Vector256.Sum(a2); sums[12 + i] = Vector256.Sum(a3);
        }
        TileTail(w, wStride, x, xStride, k8, k, mr, sums);
    }

    /// <summary><see cref="TileF32Reference"/> with 128-bit vectors on any platform (Arm has 32 registers: the 4 x 4
    /// tile fits); a multiply then an add, not fused.</summary>
    public static void TileF32Portable(float* w, long wStride, float* x, long xStride, int k, int mr, float* sums)
    {
        int k4 = k & ~3;
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        if (mr == TileRows)
        {
            Vector128<float> a00 = Vector128<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            Vector128<float> a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
            for (int j = 0; j < k4; j += 4)
            {
                Vector128<float> v0 = Vector128.Load(w0 + j), v1 = Vector128.Load(w1 + j), v2 = Vector128.Load(w2 + j), v3 = Vector128.Load(w3 + j);
                Vector128<float> xv = Vector128.Load(x0 + j);
                a00 += v0 * xv; a10 += v1 * xv; a20 += v2 * xv; a30 += v3 * xv;
                xv = Vector128.Load(x1 + j);
                a01 += v0 * xv; a11 += v1 * xv; a21 += v2 * xv; a31 += v3 * xv;
                xv = Vector128.Load(x2 + j);
                a02 += v0 * xv; a12 += v1 * xv; a22 += v2 * xv; a32 += v3 * xv;
                xv = Vector128.Load(x3 + j);
                a03 += v0 * xv; a13 += v1 * xv; a23 += v2 * xv; a33 += v3 * xv;
            }
            sums[0] = Vector128.Sum(a00); sums[1] = Vector128.Sum(a01); sums[2] = Vector128.Sum(a02); sums[3] = Vector128.Sum(a03);
            sums[4] = Vector128.Sum(a10); sums[5] = Vector128.Sum(a11); sums[6] = Vector128.Sum(a12); sums[7] = Vector128.Sum(a13);
            sums[8] = Vector128.Sum(a20); sums[9] = Vector128.Sum(a21); sums[10] = Vector128.Sum(a22); sums[11] = Vector128.Sum(a23);
            sums[12] = Vector128.Sum(a30); sums[13] = Vector128.Sum(a31); sums[14] = Vector128.Sum(a32); sums[15] = Vector128.Sum(a33);
        }
        else
        {
            for (int i = 0; i < mr; i++)
            {
                Vector128<float> a0 = Vector128<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                float* xi = x + i * xStride;
                for (int j = 0; j < k4; j += 4)
                {
                    Vector128<float> xv = Vector128.Load(xi + j);
                    a0 += Vector128.Load(w0 + j) * xv; a1 += Vector128.Load(w1 + j) * xv;
                    a2 += Vector128.Load(w2 + j) * xv; a3 += Vector128.Load(w3 + j) * xv;
                }
                sums[i] = Vector128.Sum(a0); sums[4 + i] = Vector128.Sum(a1); sums[8 + i] = Vector128.Sum(a2); sums[12 + i] = Vector128.Sum(a3);
            }
        }
        TileTail(w, wStride, x, xStride, k4, k, mr, sums);
    }

    /// <summary>Adds columns [from, k) of the tile product to sums (the columns a vector loop leaves).</summary>
    private static void TileTail(float* w, long wStride, float* x, long xStride, int from, int k, int mr, float* sums)
    {
        if (from == k) return;
        for (int r = 0; r < TileRows; r++)
            for (int i = 0; i < mr; i++)
            {
                float s = 0;
                for (int j = from; j < k; j++) s += w[r * wStride + j] * x[i * xStride + j];
                sums[r * TileRows + i] += s;
            }
    }

    /// <summary>Widens n halves to floats with <see cref="DotF16"/>'s magic multiply (exact for finite halves).</summary>
    public static void WidenF16(ushort* w, float* dst, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; j + 32 <= n; j += 32)
            {
                Vector512<short> h = Vector512.Load((short*)w + j);
                Widen(Vector512.WidenLower(h)).Store(dst + j);
                Widen(Vector512.WidenUpper(h)).Store(dst + j + 16);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; j + 16 <= n; j += 16)
            {
                Vector256<short> h = Vector256.Load((short*)w + j);
                Widen(Vector256.WidenLower(h)).Store(dst + j);
                Widen(Vector256.WidenUpper(h)).Store(dst + j + 8);
            }
        for (; j < n; j++) dst[j] = (float)BitConverter.UInt16BitsToHalf(w[j]);
    }

    /// <summary>Sign-extended half bits to floats (see <see cref="DotF16"/>): shift, clear the sign's copies, scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(Vector512<int> h) =>
        Vector512.AsSingle(Vector512.ShiftLeft(h, 13) & Vector512.Create(HalfBits)) * Vector512.Create(Pow2To112);

    /// <inheritdoc cref="Widen(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(Vector256<int> h) =>
        Vector256.AsSingle(Vector256.ShiftLeft(h, 13) & Vector256.Create(HalfBits)) * Vector256.Create(Pow2To112);

    /// <summary>Bit 31 (the sign) and bits 0-27 (a half's magnitude shifted by 13) of a 32-bit lane.</summary>
    private const int HalfBits = unchecked((int)0x8FFFFFFF);

    private sealed class Job : IParallelWork
    {
        public DenseMatrix? W;
        public float* X; public int XStride; public int M;
        public sbyte* Xq; public int XqStride; public float* XScale;
        public float* Y; public int YStride;
        public int RowsPerTask;
        public bool Reference;
        public delegate*<sbyte*, sbyte*, int, int> Dot;
        public delegate*<sbyte*, sbyte*, long, int, int*, void> Dot4;
        public delegate*<byte*, ushort*, int, byte*, int, int, float*, void> DotQ4;
        public delegate*<float*, long, float*, long, int, int, float*, void> Tile;
        public delegate*<ushort*, float*, long, int, int, float*, void> DotF16x4;
        public Q4Activations? X4;
        [ThreadStatic] private static float[]? t_row;
        [ThreadStatic] private static float[]? t_panel, t_acc;

        public void Execute(int task)
        {
            DenseMatrix w = W!;
            int r0 = task * RowsPerTask, r1 = Math.Min(w.Rows, r0 + RowsPerTask);
            int k = w.Cols;
            byte* data = w.DataPointer;
            switch (w.Type)
            {
                // One activation row: each half is widened in registers and meets its one activation (memory-bound).
                // The range is read as two halves side by side: two weight streams keep one core's reads from DRAM
                // going where one stream leaves it waiting (as the ternary GEMVs do).
                case DenseType.F16 when !Reference && M == 1:
                    {
                        int half = (r1 - r0) / 2;
                        long offset = (long)half * w.RowStride;
                        float* two = stackalloc float[2];
                        for (int r = r0; r < r0 + half; r++)
                        {
                            ushort* p = (ushort*)(data + (long)r * w.RowStride);
                            DotF16Rows2(p, (ushort*)((byte*)p + offset), X, k, two);
                            Y[r] = two[0]; Y[r + half] = two[1];
                        }
                        if (((r1 - r0) & 1) != 0) Y[r1 - 1] = DotF16((ushort*)(data + (long)(r1 - 1) * w.RowStride), X, k);
                        break;
                    }
                // A few activation rows, on a path with a few-row F16 kernel: each half is widened once in registers
                // for all of them; a float panel would cost a store and a load of every weight for little reuse.
                case DenseType.F16 when !Reference && DotF16x4 != null && M <= F16Rows:
                    {
                        float* four = stackalloc float[F16Rows];
                        for (int r = r0; r < r1; r++)
                        {
                            DotF16x4((ushort*)(data + (long)r * w.RowStride), X, XStride, k, M, four);
                            for (int i = 0; i < M; i++) Y[(long)i * YStride + r] = four[i];
                        }
                        break;
                    }
                case DenseType.F32 when !Reference:
                case DenseType.F16 when !Reference:
                    TiledRows(w, r0, r1);
                    break;
                // The reference path: plain loops.
                case DenseType.F32:
                case DenseType.F16:
                    {
                        float[]? buf = null;
                        if (w.Type == DenseType.F16) { buf = t_row; if (buf is null || buf.Length < k) t_row = buf = new float[k]; }
                        for (int r = r0; r < r1; r++)
                        {
                            byte* p = data + (long)r * w.RowStride;
                            ReadOnlySpan<float> row;
                            if (w.Type == DenseType.F32) row = new ReadOnlySpan<float>(p, k);
                            else
                            {
                                for (int j = 0; j < k; j++) buf![j] = (float)((Half*)p)[j];
                                row = buf.AsSpan(0, k);
                            }
                            for (int i = 0; i < M; i++)
                            {
                                var x = new ReadOnlySpan<float>(X + (long)i * XStride, k);
                                float s = 0;
                                for (int j = 0; j < k; j++) s += row[j] * x[j];
                                Y[(long)i * YStride + r] = s;
                            }
                        }
                        break;
                    }
                case DenseType.Int8:
                    {
                        // Each weight row meets every activation row while it is in L1, four at a time: W is read
                        // from memory once whatever the batch, and |w| is formed once for four rows.
                        int n = w.PaddedCols;
                        float[] ws = w.ScaleArray;
                        int* four = stackalloc int[4];
                        for (int r = r0; r < r1; r++)
                        {
                            sbyte* p = (sbyte*)(data + (long)r * w.RowStride);
                            int i = 0;
                            for (; i + 4 <= M; i += 4)
                            {
                                Dot4(p, Xq + (long)i * XqStride, XqStride, n, four);
                                for (int q = 0; q < 4; q++) Y[(long)(i + q) * YStride + r] = four[q] * XScale[i + q] * ws[r];
                            }
                            for (; i < M; i++)
                                Y[(long)i * YStride + r] = Dot(p, Xq + (long)i * XqStride, n) * XScale[i] * ws[r];
                        }
                        break;
                    }
                case DenseType.Q4:
                    {
                        // Chunks of Q4Chunk rows (46 KB at 2560 columns: they stay in L2) meet every group of
                        // activation rows, so W is read from memory once whatever the batch.
                        Q4Activations x4 = X4!;
                        int supers = w.Q4Superblocks;
                        float[] xs = x4.Scales;
                        if (M == 1)
                        {
                            // One activation row: the whole range in one call, so a path may read it as two streams
                            // (chunks only serve W's reuse across activation groups).
                            DotQ4(data + (long)r0 * w.RowStride, w.BlockScalePointer + (long)r0 * supers * DenseMatrix.Q4Blocks, supers, x4.Group(0), 1, r1 - r0, Y + r0);
                            for (int r = r0; r < r1; r++) Y[r] *= xs[0];
                            break;
                        }
                        float* tmp = stackalloc float[Q4Chunk * DenseQ4.MaxRows];
                        ushort* d = w.BlockScalePointer;
                        for (int c0 = r0; c0 < r1; c0 += Q4Chunk)
                        {
                            int rows = Math.Min(Q4Chunk, r1 - c0);
                            byte* wr = data + (long)c0 * w.RowStride;
                            ushort* dr = d + (long)c0 * supers * DenseMatrix.Q4Blocks;
                            for (int g = 0; g < M; g += DenseQ4.MaxRows)
                            {
                                int mr = Math.Min(DenseQ4.MaxRows, M - g);
                                DotQ4(wr, dr, supers, x4.Group(g), mr, rows, tmp);
                                for (int rr = 0; rr < rows; rr++)
                                    for (int i = 0; i < mr; i++) Y[(long)(g + i) * YStride + c0 + rr] = tmp[rr * mr + i] * xs[g + i];
                            }
                        }
                        break;
                    }
            }
        }

        /// <summary>
        /// Weight rows [r0, r1) times every activation row through the path's 4 x 4 float tile: four weight rows at a
        /// time, in column chunks of at most <see cref="PanelCols"/>. An F16 chunk is widened once into a float panel
        /// (4 x chunk, in L1) that every group of four activation rows then reads, so each weight is read from memory
        /// and widened once a call whatever the batch. F32 rows are read in place (through the panel only for the last,
        /// incomplete group of four). The partial sums of the chunks add up in a (M, 4) buffer, written to y once.
        /// </summary>
        private void TiledRows(DenseMatrix w, int r0, int r1)
        {
            int k = w.Cols, m = M;
            int chunks = (k + PanelCols - 1) / PanelCols;
            int kc = Math.Min(k, ((k + chunks - 1) / chunks + 15) & ~15);   // a multiple of 16 but for a lone chunk
            float[] panel = t_panel is { } pb && pb.Length >= TileRows * kc ? pb : (t_panel = GC.AllocateArray<float>(TileRows * PanelCols, pinned: true));
            float[] acc = t_acc is { } ab && ab.Length >= TileRows * m ? ab : (t_acc = GC.AllocateArray<float>(TileRows * Math.Max(m, 64), pinned: true));
            float* sums = stackalloc float[TileRows * TileRows];
            byte* data = w.DataPointer;
            fixed (float* pp = panel) fixed (float* ap = acc)
            {
                for (int r = r0; r < r1; r += TileRows)
                {
                    int rows = Math.Min(TileRows, r1 - r);
                    for (int c0 = 0; c0 < k; c0 += kc)
                    {
                        int n = Math.Min(kc, k - c0);
                        float* wp = pp;
                        long ws = kc;
                        if (w.Type == DenseType.F32 && rows == TileRows) { wp = (float*)(data + (long)r * w.RowStride) + c0; ws = w.RowStride / sizeof(float); }
                        else
                        {
                            // Rows past r1 repeat the last row: the tile always reads four valid rows; their sums are dropped.
                            for (int rr = 0; rr < TileRows; rr++)
                            {
                                byte* row = data + (long)(r + Math.Min(rr, rows - 1)) * w.RowStride;
                                if (w.Type == DenseType.F16) WidenF16((ushort*)row + c0, pp + rr * kc, n);
                                else new ReadOnlySpan<float>((float*)row + c0, n).CopyTo(new Span<float>(pp + rr * kc, n));
                            }
                        }
                        // The next chunk's F16 rows, prefetched a share before each tile call so that their reads
                        // overlap this chunk's arithmetic instead of stalling the next widening.
                        int nr = c0 + kc < k ? r : r + TileRows, nc0 = c0 + kc < k ? c0 + kc : 0;
                        int nn = nr < r1 ? Math.Min(kc, k - nc0) : 0;
                        int groups = (m + TileRows - 1) / TileRows, lines = (nn * 2 + 63) / 64, share = (lines + groups - 1) / groups;
                        for (int i = 0, g = 0; i < m; i += TileRows, g++)
                        {
                            int mr = Math.Min(TileRows, m - i);
                            if (w.Type == DenseType.F16 && nn > 0)
                                for (int rr = 0; rr < TileRows && nr + rr < r1; rr++)
                                {
                                    int l0 = g * share, l1 = Math.Min(lines, l0 + share);
                                    if (l1 > l0) CacheHints.Prefetch(data + (long)(nr + rr) * w.RowStride + nc0 * 2L + l0 * 64L, (l1 - l0) * 64);
                                }
                            Tile(wp, ws, X + (long)i * XStride + c0, XStride, n, mr, sums);
                            for (int q = 0; q < mr; q++)
                            {
                                float* a = ap + (i + q) * TileRows;
                                if (c0 == 0) for (int rr = 0; rr < TileRows; rr++) a[rr] = sums[rr * TileRows + q];
                                else for (int rr = 0; rr < TileRows; rr++) a[rr] += sums[rr * TileRows + q];
                            }
                        }
                    }
                    for (int i = 0; i < m; i++)
                        for (int rr = 0; rr < rows; rr++) Y[(long)i * YStride + r + rr] = ap[i * TileRows + rr];
                }
            }
        }
    }

    /// <summary>Columns of a float tile chunk at most: four rows of them (16 KB) stay in L1 beside the activations.</summary>
    private const int PanelCols = 1024;

    [ThreadStatic] private static Job? t_job;

    /// <summary>Weight rows of a Q4 kernel call.</summary>
    private const int Q4Chunk = 32;

    /// <summary>y (m x w.Rows) = x (m x w.Cols) W^T; <paramref name="xq"/> holds the int8 rows of x when W is Int8,
    /// <paramref name="x4"/> the packed ones when W is Q4.</summary>
    public static void Gemm(DenseMatrix w, ReadOnlySpan<float> x, int m, QuantizedActivations? xq, Span<float> y, KernelPath path, WorkerPool pool, Q4Activations? x4 = null)
    {
        if (w.Type == DenseType.Q4 && (x4 is null || x4.Rows != m || x4.Supers != w.Q4Superblocks))
            throw new ArgumentException("a Q4 product needs the activations packed for it", nameof(x4));
        fixed (float* xp = x) fixed (float* yp = y)
        {
            var job = t_job ??= new Job();
            job.W = w; job.X = xp; job.XStride = w.Cols; job.M = m; job.Y = yp; job.YStride = w.Rows;
            job.Reference = path == KernelPath.Reference;
            job.Dot = KernelPaths.Get(path).DotInt8;
            job.Dot4 = KernelPaths.Get(path).DotInt8x4;
            job.DotQ4 = KernelPaths.Get(path).DotQ4;
            job.Tile = KernelPaths.Get(path).TileF32;
            job.DotF16x4 = KernelPaths.Get(path).DotF16x4;
            job.X4 = x4;
            float[]? xs = xq?.ScaleArray;
            fixed (float* xsp = xs)
            {
                if (xq is not null) { job.Xq = xq.DataPointer; job.XqStride = xq.PaddedCols; job.XScale = xsp; }
                long work = (long)m * w.Rows * w.Cols;
                int tasks = pool.Threads > 1 && work >= TernaryGemm.ParallelThreshold && w.Rows >= 64 ? pool.Threads * 4 : 1;
                job.RowsPerTask = (w.Rows + tasks - 1) / tasks;
                tasks = (w.Rows + job.RowsPerTask - 1) / job.RowsPerTask;
                pool.Run(job, tasks);
            }
            job.W = null; job.X4 = null;
        }
        GC.KeepAlive(w); GC.KeepAlive(xq); GC.KeepAlive(x4);
    }
}

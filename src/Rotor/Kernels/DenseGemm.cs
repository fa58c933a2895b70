using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Rotor.Threading;

namespace Rotor.Kernels;

/// <summary>
/// Products with a <see cref="DenseMatrix"/>: <c>y[i, r] = sum_j W[r, j] * x[i, j]</c> for m activation rows.
/// F32 and F16 weights multiply float activations (F16 rows are widened to float a row at a time, so a row is read
/// once for all m activations). Int8 weights multiply activations quantized to int8 per row (absmax, as the ternary
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
            Vector256<sbyte> w0 = Avx.LoadVector256(w + j), w1 = Avx.LoadVector256(w + j + 32);
            Vector256<sbyte> x0 = Avx.LoadVector256(x + j), x1 = Avx.LoadVector256(x + j + 32);
            Vector256<short> p0 = Avx2.MultiplyAddAdjacent(Avx2.Abs(w0), Avx2.Sign(x0, w0));
            Vector256<short> p1 = Avx2.MultiplyAddAdjacent(Avx2.Abs(w1), Avx2.Sign(x1, w1));
            acc0 += Avx2.MultiplyAddAdjacent(p0, ones);
            acc1 += Avx2.MultiplyAddAdjacent(p1, ones);
        }
        return Vector256.Sum(acc0 + acc1);
    }

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
    /// multiply by 2^112 restores it; the sign bit moves across. Weights are finite, so infinities and NaNs, which
    /// this maps to large finite values, do not occur.
    /// </summary>
    public static float DotF16(ushort* w, float* x, int n)
    {
        int j = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero, scale = Vector512.Create(Pow2To112);
            Vector512<uint> mag = Vector512.Create(0x7fffu), sign = Vector512.Create(0x8000u);
            for (; j + 32 <= n; j += 32)
            {
                Vector512<ushort> h = Vector512.Load(w + j);
                Vector512<uint> lo = Vector512.WidenLower(h), hi = Vector512.WidenUpper(h);
                Vector512<float> flo = Vector512.AsSingle(Vector512.ShiftLeft(lo & mag, 13)) * scale;
                Vector512<float> fhi = Vector512.AsSingle(Vector512.ShiftLeft(hi & mag, 13)) * scale;
                flo = Vector512.AsSingle(Vector512.AsUInt32(flo) | Vector512.ShiftLeft(lo & sign, 16));
                fhi = Vector512.AsSingle(Vector512.AsUInt32(fhi) | Vector512.ShiftLeft(hi & sign, 16));
                acc0 = Vector512.FusedMultiplyAdd(flo, Vector512.Load(x + j), acc0);
                acc1 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x + j + 16), acc1);
            }
            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero, scale = Vector256.Create(Pow2To112);
            Vector256<uint> mag = Vector256.Create(0x7fffu), sign = Vector256.Create(0x8000u);
            for (; j + 16 <= n; j += 16)
            {
                Vector256<ushort> h = Vector256.Load(w + j);
                Vector256<uint> lo = Vector256.WidenLower(h), hi = Vector256.WidenUpper(h);
                Vector256<float> flo = Vector256.AsSingle(Vector256.ShiftLeft(lo & mag, 13)) * scale;
                Vector256<float> fhi = Vector256.AsSingle(Vector256.ShiftLeft(hi & mag, 13)) * scale;
                flo = Vector256.AsSingle(Vector256.AsUInt32(flo) | Vector256.ShiftLeft(lo & sign, 16));
                fhi = Vector256.AsSingle(Vector256.AsUInt32(fhi) | Vector256.ShiftLeft(hi & sign, 16));
                acc0 = Vector256.FusedMultiplyAdd(flo, Vector256.Load(x + j), acc0);
                acc1 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x + j + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; j < n; j++) sum += (float)BitConverter.UInt16BitsToHalf(w[j]) * x[j];
        return sum;
    }

    /// <summary>Four dot products at once, <c>y[i] = sum_j w[j] * x[i * xStride + j]</c> for i &lt; 4: each group of
    /// halves is widened once (as <see cref="DotF16"/> does) for the four activation rows, so a batch of activation rows
    /// costs one weight read and one widening per row of W.</summary>
    public static void DotF16x4(ushort* w, float* x, long xStride, int n, float* y)
    {
        int j = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0, scale = Vector512.Create(Pow2To112);
            Vector512<uint> mag = Vector512.Create(0x7fffu), sign = Vector512.Create(0x8000u);
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
            for (; j + 32 <= n; j += 32)
            {
                Vector512<ushort> h = Vector512.Load(w + j);
                Vector512<uint> lo = Vector512.WidenLower(h), hi = Vector512.WidenUpper(h);
                Vector512<float> flo = Vector512.AsSingle(Vector512.AsUInt32(Vector512.AsSingle(Vector512.ShiftLeft(lo & mag, 13)) * scale) | Vector512.ShiftLeft(lo & sign, 16));
                Vector512<float> fhi = Vector512.AsSingle(Vector512.AsUInt32(Vector512.AsSingle(Vector512.ShiftLeft(hi & mag, 13)) * scale) | Vector512.ShiftLeft(hi & sign, 16));
                a0 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x0 + j + 16), Vector512.FusedMultiplyAdd(flo, Vector512.Load(x0 + j), a0));
                a1 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x1 + j + 16), Vector512.FusedMultiplyAdd(flo, Vector512.Load(x1 + j), a1));
                a2 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x2 + j + 16), Vector512.FusedMultiplyAdd(flo, Vector512.Load(x2 + j), a2));
                a3 = Vector512.FusedMultiplyAdd(fhi, Vector512.Load(x3 + j + 16), Vector512.FusedMultiplyAdd(flo, Vector512.Load(x3 + j), a3));
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, scale = Vector256.Create(Pow2To112);
            Vector256<uint> mag = Vector256.Create(0x7fffu), sign = Vector256.Create(0x8000u);
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
            for (; j + 16 <= n; j += 16)
            {
                Vector256<ushort> h = Vector256.Load(w + j);
                Vector256<uint> lo = Vector256.WidenLower(h), hi = Vector256.WidenUpper(h);
                Vector256<float> flo = Vector256.AsSingle(Vector256.AsUInt32(Vector256.AsSingle(Vector256.ShiftLeft(lo & mag, 13)) * scale) | Vector256.ShiftLeft(lo & sign, 16));
                Vector256<float> fhi = Vector256.AsSingle(Vector256.AsUInt32(Vector256.AsSingle(Vector256.ShiftLeft(hi & mag, 13)) * scale) | Vector256.ShiftLeft(hi & sign, 16));
                a0 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x0 + j + 8), Vector256.FusedMultiplyAdd(flo, Vector256.Load(x0 + j), a0));
                a1 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x1 + j + 8), Vector256.FusedMultiplyAdd(flo, Vector256.Load(x1 + j), a1));
                a2 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x2 + j + 8), Vector256.FusedMultiplyAdd(flo, Vector256.Load(x2 + j), a2));
                a3 = Vector256.FusedMultiplyAdd(fhi, Vector256.Load(x3 + j + 8), Vector256.FusedMultiplyAdd(flo, Vector256.Load(x3 + j), a3));
            }
            s0 = Vector256.Sum(a0); s1 = Vector256.Sum(a1); s2 = Vector256.Sum(a2); s3 = Vector256.Sum(a3);
        }
        for (; j < n; j++)
        {
            float v = (float)BitConverter.UInt16BitsToHalf(w[j]);
            s0 += v * x[j]; s1 += v * x[xStride + j]; s2 += v * x[2 * xStride + j]; s3 += v * x[3 * xStride + j];
        }
        y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
    }

    /// <summary>Widens n halves to floats with <see cref="DotF16"/>'s magic multiply (exact for finite halves).</summary>
    public static void WidenF16(ushort* w, float* dst, int n)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> scale = Vector256.Create(Pow2To112);
            Vector256<uint> mag = Vector256.Create(0x7fffu), sign = Vector256.Create(0x8000u);
            for (; j + 16 <= n; j += 16)
            {
                Vector256<ushort> h = Vector256.Load(w + j);
                Vector256<uint> lo = Vector256.WidenLower(h), hi = Vector256.WidenUpper(h);
                Vector256<float> flo = Vector256.AsSingle(Vector256.ShiftLeft(lo & mag, 13)) * scale;
                Vector256<float> fhi = Vector256.AsSingle(Vector256.ShiftLeft(hi & mag, 13)) * scale;
                Vector256.AsSingle(Vector256.AsUInt32(flo) | Vector256.ShiftLeft(lo & sign, 16)).Store(dst + j);
                Vector256.AsSingle(Vector256.AsUInt32(fhi) | Vector256.ShiftLeft(hi & sign, 16)).Store(dst + j + 8);
            }
        }
        for (; j < n; j++) dst[j] = (float)BitConverter.UInt16BitsToHalf(w[j]);
    }

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
        public Q4Activations? X4;
        [ThreadStatic] private static float[]? t_row;

        public void Execute(int task)
        {
            DenseMatrix w = W!;
            int r0 = task * RowsPerTask, r1 = Math.Min(w.Rows, r0 + RowsPerTask);
            int k = w.Cols;
            byte* data = w.DataPointer;
            switch (w.Type)
            {
                // Widened in registers: four activation rows at a time share each weight row's widening.
                case DenseType.F16 when !Reference:
                    {
                        float* four = stackalloc float[4];
                        for (int r = r0; r < r1; r++)
                        {
                            ushort* p = (ushort*)(data + (long)r * w.RowStride);
                            int i = 0;
                            for (; i + 4 <= M; i += 4)
                            {
                                DotF16x4(p, X + (long)i * XStride, XStride, k, four);
                                for (int q = 0; q < 4; q++) Y[(long)(i + q) * YStride + r] = four[q];
                            }
                            for (; i < M; i++) Y[(long)i * YStride + r] = DotF16(p, X + (long)i * XStride, k);
                        }
                        break;
                    }
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
                                if (Reference) for (int j = 0; j < k; j++) buf![j] = (float)((Half*)p)[j];
                                else fixed (float* b = buf) WidenF16((ushort*)p, b, k);
                                row = buf.AsSpan(0, k);
                            }
                            for (int i = 0; i < M; i++)
                            {
                                var x = new ReadOnlySpan<float>(X + (long)i * XStride, k);
                                float s;
                                if (Reference) { s = 0; for (int j = 0; j < k; j++) s += row[j] * x[j]; }
                                else s = TensorPrimitives.Dot(row, x);
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
    }

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

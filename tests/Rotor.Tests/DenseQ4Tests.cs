using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary>The Q4 dense format and its products: quantization against the block formula, every path's kernel against
/// the scalar reference on random codes, scales and activations (1 to 8 activation rows, 1 to 33 weight rows, one to
/// five superblocks, extreme values), and the whole product on every path and 1-3 threads against the plain formula
/// over the stored weights (odd sizes, rows that are not whole superblocks, batches of 1 to 16 rows).</summary>
[Collection("kernels")]
public unsafe class DenseQ4Tests
{
    public static TheoryData<KernelPath> AllPaths() => DenseKernelTests.AllPaths();

    [Fact]
    public void QuantizationFollowsTheBlockFormula()
    {
        foreach (int k in new[] { 1, 31, 64, 512, 1000 })
        {
            float[] wf = TestData.Floats(3 * k, k, 2f);
            wf[0] = 5f;   // an outlier: its block's scale is 5 / -8
            if (k > 64) wf[64] = -5f;   // the same block: a tie of magnitudes goes to the positive weight
            var w = DenseMatrix.FromFloat(wf, 3, k, DenseType.Q4);
            Assert.Equal(512 * ((k + 511) / 512), w.PaddedCols);
            Assert.Equal(w.PaddedCols / 2, w.RowStride);
            Assert.Equal(3L * w.PaddedCols / 2 + 3L * w.PaddedCols / 32 * 2, w.AllocatedBytes);
            float[] back = w.ToFloat();
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < k; c++)
                {
                    int s = c / 512, l = c % 64 / 4;
                    float d = (float)BitConverter.UInt16BitsToHalf(w.BlockScales[r * (w.PaddedCols / 32) + 16 * s + l]);
                    // The block's members: columns 512s + 64t + 4l + e; the largest |w| sets d = m / -8 (rounded to half),
                    // the positive one of a tie.
                    float max = float.NegativeInfinity, min = float.PositiveInfinity;
                    for (int t = 0; t < 8; t++)
                        for (int e = 0; e < 4; e++)
                        {
                            int cc = 512 * s + 64 * t + 4 * l + e;
                            float v = cc < k ? wf[r * k + cc] : 0;
                            max = Math.Max(max, v); min = Math.Min(min, v);
                        }
                    float m = max >= -min ? max : min;
                    Assert.Equal((float)(Half)(m / -8f), d);
                    float q = d == 0 ? 0 : Math.Clamp(MathF.Round(wf[r * k + c] / d), -8, 7);
                    Assert.Equal(q * d, back[r * k + c]);
                    Assert.True(MathF.Abs(back[r * k + c] - wf[r * k + c]) <= MathF.Abs(d) * 1.001f + 1e-6f, $"k={k} [{r},{c}]: {back[r * k + c]} vs {wf[r * k + c]}, d {d}");
                }
            Assert.Equal(5f, back[0]);
        }
    }

    [Fact]
    public void ZeroRowsStayZero()
    {
        var w = DenseMatrix.FromFloat(new float[2 * 40], 2, 40, DenseType.Q4);
        Assert.All(w.ToFloat(), v => Assert.Equal(0f, v));
        using var be = new CpuBackend(1);
        var y = new float[2];
        be.MatMul(w, TestData.Floats(40, 1), y);
        Assert.Equal([0f, 0f], y);
    }

    private static List<(string Name, nint Fn)> Kernels()
    {
        var list = new List<(string, nint)>();
        foreach (var p in KernelSelector.Supported) list.Add((p.ToString(), (nint)KernelPaths.Get(p).DotQ4));
        return list;
    }

    [Fact]
    public void KernelsMatchTheReference()
    {
        int seed = 0;
        foreach (int supers in new[] { 1, 2, 5 })
        foreach (int mr in new[] { 1, 2, 3, 5, 8 })
        foreach (int nrows in new[] { 1, 2, 3, 8, 33 })
        foreach (int mode in new[] { 0, 1, 2 })
        {
            // 1: nibbles 0 or 15 and values +-127; 2: every nibble 15 and every value of a row +127 or -127, the largest
            // int16 partial sums a kernel can form (eight vpmaddubsw pairs of 2 * 15 * 127 a lane).
            bool extreme = mode > 0;
            seed++;
            var rnd = new Random(seed);
            int wBytes = nrows * supers * 256, scales = nrows * supers * 16;
            var w = new AlignedArray<byte>(wBytes);
            var d = new AlignedArray<ushort>(scales);
            var xg = new AlignedArray<byte>((long)mr * supers * Q4Activations.RowSuperBytes);
            for (int i = 0; i < wBytes; i++) w.Span[i] = mode == 2 ? (byte)0xFF : extreme ? (byte)(rnd.Next(2) == 0 ? 0x00 : 0xFF) : (byte)rnd.Next(256);
            for (int i = 0; i < scales; i++) d.Span[i] = BitConverter.HalfToUInt16Bits((Half)((rnd.NextDouble() * 2 - 1) * (i % 7 == 0 ? 1e-6 : 0.05)));
            for (int s = 0; s < supers; s++)
            {
                byte* sb = xg.Pointer + (long)s * mr * Q4Activations.RowSuperBytes;
                for (int i = 0; i < mr * 16; i++) ((int*)sb)[i] = rnd.Next(-100000, 100000);
                for (int i = 0; i < mr * 512; i++) ((sbyte*)sb)[mr * 64 + i] = mode == 2 ? (sbyte)(i / 512 % 2 == 0 ? 127 : -127) : extreme ? (sbyte)(rnd.Next(2) == 0 ? -127 : 127) : (sbyte)rnd.Next(-127, 128);
            }
            var expected = new float[nrows * mr];
            var got = new float[nrows * mr];
            fixed (float* e = expected) DenseQ4.DotReference(w.Pointer, d.Pointer, supers, xg.Pointer, mr, nrows, e);
            foreach (var (name, fn) in Kernels())
            {
                Array.Fill(got, float.NaN);
                fixed (float* g = got)
                    ((delegate*<byte*, ushort*, int, byte*, int, int, float*, void>)fn)(w.Pointer, d.Pointer, supers, xg.Pointer, mr, nrows, g);
                for (int i = 0; i < got.Length; i++)
                {
                    // Block sums are exact integers; only the float accumulation order of the block products differs.
                    double mag = 0;
                    int r = i / mr;
                    for (int b = 0; b < supers * 16; b++) mag += Math.Abs((float)BitConverter.UInt16BitsToHalf(d.Span[r * supers * 16 + b])) * (32 * 8 * 127 + 100000);
                    Assert.True(Math.Abs(expected[i] - got[i]) <= 1e-6 * mag, $"{name} supers={supers} mr={mr} nrows={nrows} mode={mode} [{i}]: {got[i]} vs {expected[i]}");
                }
            }
            GC.KeepAlive(w); GC.KeepAlive(d); GC.KeepAlive(xg);
        }
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void MatMulMatchesFormula(KernelPath path)
    {
        long saved = TernaryGemm.ParallelThreshold;
        TernaryGemm.ParallelThreshold = 1;   // split even small products over the threads
        try
        {
            int seed = 0;
            foreach (int n in new[] { 1, 7, 33, 65 })
            foreach (int k in new[] { 1, 15, 300, 512, 1100 })
            foreach (int m in new[] { 1, 2, 5, 9, 16 })
            foreach (int threads in new[] { 1, 3 })
            {
                seed++;
                float[] wf = TestData.Floats(n * k, seed);
                float[] x = TestData.Floats(m * k, seed + 500, 3f);
                var w = DenseMatrix.FromFloat(wf, n, k, DenseType.Q4);
                using var be = new CpuBackend(threads, path);
                var y = new float[m * n];
                be.MatMul(w, x, y);
                float[] wd = w.ToFloat();   // the stored weights
                for (int i = 0; i < m; i++)
                {
                    ReadOnlySpan<float> xi = x.AsSpan(i * k, k);
                    float amax = xi.ToArray().Max(MathF.Abs);
                    float xs = amax / 127f, inv = 127f / amax;
                    for (int r = 0; r < n; r++)
                    {
                        double dot = 0, mag = 0;
                        for (int j = 0; j < k; j++)
                        {
                            int qx = (int)Math.Clamp(MathF.Round(xi[j] * inv), -127, 127);
                            dot += (double)wd[r * k + j] * qx; mag += Math.Abs((double)wd[r * k + j] * qx);
                        }
                        Assert.True(Math.Abs(dot * xs - y[i * n + r]) <= 1e-5 * Math.Max(1, mag * xs), $"{path} {n}x{k} m={m} t={threads} [{i},{r}]: {y[i * n + r]} vs {dot * xs}");
                    }
                }
            }
        }
        finally { TernaryGemm.ParallelThreshold = saved; }
    }

    [Fact]
    public void WeightsQ4CannotHoldAreRejectedWithTheRow()
    {
        var w = DenseMatrix.Create(2, 40, DenseType.Q4);
        var row = new float[40];
        row[3] = float.NaN;
        Assert.Contains("Q4 row 1", Assert.Throws<RotorException>(() => w.SetRow(1, row)).Message);
        row[3] = 1e6f;   // its block scale would be 125000, beyond a half
        Assert.Contains("row 0", Assert.Throws<RotorException>(() => w.SetRow(0, row)).Message);
    }

    [Fact]
    public void Q4ReadsAboutFourAndAHalfBitsAWeight()
    {
        var w = DenseMatrix.Create(1000, 2560, DenseType.Q4);
        Assert.Equal(1000L * 2560 * 9 / 16, w.AllocatedBytes);
    }
}

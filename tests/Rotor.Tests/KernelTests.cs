using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary>Every kernel path this machine supports against the scalar reference: random data, sizes 1, odd sizes
/// and tails, several thread counts. Integer paths must match exactly; float paths within 1e-4 relative.</summary>
/// <summary>The kernel tests change <see cref="TernaryGemm.ParallelThreshold"/>, a process-wide setting, so they run
/// alone: tests beside them that check that a warmed-up forward pass allocates nothing would otherwise see the kernels
/// switch between the calling thread and the workers, whose scratch buffers are made on first use.</summary>
[CollectionDefinition("kernels", DisableParallelization = true)]
public sealed class KernelCollection;

[Collection("kernels")]
public class KernelTests
{
    public static TheoryData<KernelPath> Paths()
    {
        var d = new TheoryData<KernelPath>();
        foreach (var p in KernelSelector.Supported) if (p != KernelPath.Reference) d.Add(p);
        return d;
    }

    private static int[] NaiveDots(sbyte[] w, int n, int k, sbyte[] x, int m)
    {
        var d = new int[m * n];
        for (int i = 0; i < m; i++)
            for (int r = 0; r < n; r++)
            {
                int s = 0;
                for (int j = 0; j < k; j++) s += w[r * k + j] * x[i * k + j];
                d[i * n + r] = s;
            }
        return d;
    }

    internal static float[] Run(KernelPath path, int threads, TernaryMatrix w, QuantizedActivations qa, float[]? bias)
    {
        using var be = new CpuBackend(threads, path);
        var y = new float[qa.Count * w.Rows];
        be.MatMul(w, qa, y, bias);
        return y;
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void GemmMatchesReferenceExactly(KernelPath path)
    {
        int[] ns = [1, 3, 5, 6, 7, 8, 17];   // GEMV quarters, the pair and the single row after them
        int[] ks = [1, 7, 255, 256, 257, 600];
        int[] ms = [1, 2, 3, 4, 5, 9];
        int seed = 0;
        foreach (int n in ns) foreach (int k in ks) foreach (int m in ms)
        {
            seed++;
            sbyte[] wt = TestData.Trits(n * k, seed);
            float[] scales = seed % 2 == 0 ? [0.7f] : TestData.Floats(n, seed).Select(v => MathF.Abs(v) + 0.1f).ToArray();
            var w = TernaryMatrix.FromTrits(wt, n, k, scales);
            sbyte[] xq = TestData.Int8(m * k, seed + 1000);
            var qa = new QuantizedActivations(m, k);
            qa.SetQuantized(xq, TestData.Floats(m, seed + 7).Select(v => MathF.Abs(v) + 0.01f).ToArray());
            float[]? bias = seed % 3 == 0 ? TestData.Floats(n, seed + 3) : null;
            float[] expected = Run(KernelPath.Reference, 1, w, qa, bias);
            float[] actual = Run(path, 1, w, qa, bias);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{path} n={n} k={k} m={m}: first diff at {FirstDiff(expected, actual)}");
            if (bias is null)
            {
                int[] dots = NaiveDots(wt, n, k, xq, m);
                for (int i = 0; i < m; i++)
                    for (int r = 0; r < n; r++)
                        Assert.Equal(dots[i * n + r] * qa.Scales[i] * w.ScaleOf(r), expected[i * n + r], 3);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void GemmHandlesExtremeValuesAcrossAccumulatorChunks(KernelPath path)
    {
        // all weights +1 and all activations 127: the largest int16 partial sums; 18 blocks cross every chunk size.
        int n = 6, k = 18 * 256 - 5, m = 9;
        var wt = Enumerable.Repeat((sbyte)1, n * k).ToArray();
        for (int j = 0; j < k; j += 2) wt[k + j] = -1; // row 1 alternates
        var w = TernaryMatrix.FromTrits(wt, n, k, [1f]);
        var xq = Enumerable.Repeat((sbyte)127, m * k).ToArray();
        for (int j = 0; j < k; j++) xq[k + j] = -127;
        var qa = new QuantizedActivations(m, k);
        qa.SetQuantized(xq, Enumerable.Repeat(1f, m).ToArray());
        float[] y = Run(path, 1, w, qa, null);
        Assert.Equal(127f * k, y[0]);
        Assert.Equal(-127f * k, y[n]);
        Assert.Equal(Run(KernelPath.Reference, 1, w, qa, null), y);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ThreadedGemmMatchesSingleThread(KernelPath path) => EveryProductSplit(() =>
    {
        foreach (var (n, k, m) in new[] { (9, 300, 1), (37, 513, 2), (64, 256, 8), (101, 777, 70) })
        {
            var w = TernaryMatrix.FromTrits(TestData.Trits(n * k, n), n, k, [1.5f]);
            var qa = new QuantizedActivations(m, k);
            qa.Quantize(TestData.Floats(m * k, k));
            float[] one = Run(KernelPath.Reference, 1, w, qa, null);
            foreach (int t in new[] { 1, 2, 3 })
                Assert.Equal(one, Run(path, t, w, qa, null));
        }
    });

    /// <summary>Runs <paramref name="body"/> with every product, however small, split over the threads.</summary>
    private static void EveryProductSplit(Action body)
    {
        long saved = TernaryGemm.ParallelThreshold;
        TernaryGemm.ParallelThreshold = 0;
        try { body(); }
        finally { TernaryGemm.ParallelThreshold = saved; }
    }

    [Fact]
    public void VnniPathIsGeneratedWhereTheCpuHasIt()
    {
        // A failure in the code generator must fail here, not quietly drop the path from the tests above.
        if (VnniCode.CpuHasVnni && OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64)
            Assert.True(KernelSelector.IsSupported(KernelPath.Avx512Vnni), KernelSelector.Avx512VnniUnavailableReason);
        else
            Assert.NotNull(KernelSelector.Avx512VnniUnavailableReason);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void LargeBatchGemmMatchesReference(KernelPath path) => EveryProductSplit(() =>
    {
        // Batches that cross the activation-row passes of the blocked paths (the VNNI path keeps about 512 KB of
        // activations a pass: 72 rows at k = 6912) and leave partial 6-row tiles, weight counts that leave partial
        // 4-row panels, extreme values, and 1 to 3 threads.
        // (450, 2560, 7): more weight rows than one pass of the AVX2 GEMM's weight block, and tails of 2 and 1 rows.
        foreach (var (n, k, m) in new[] { (13, 6912 - 3, 150), (31, 2560, 133), (7, 512, 10), (450, 2560, 7) })
        {
            sbyte[] wt = TestData.Trits(n * k, n + k);
            for (int j = 0; j < k; j++) wt[j] = 1;                      // row 0 all +1
            var w = TernaryMatrix.FromTrits(wt, n, k, TestData.Floats(n, k).Select(v => MathF.Abs(v) + 0.1f).ToArray());
            sbyte[] xq = TestData.Int8(m * k, m);
            for (int j = 0; j < k; j++) xq[j] = 127;                    // activation row 0 all 127
            for (int j = 0; j < k; j++) xq[(m - 1) * k + j] = -127;     // the last all -127
            var qa = new QuantizedActivations(m, k);
            qa.SetQuantized(xq, TestData.Floats(m, k + 1).Select(v => MathF.Abs(v) + 0.01f).ToArray());
            float[] expected = Run(KernelPath.Reference, 1, w, qa, null);
            foreach (int t in new[] { 1, 2, 3 })
            {
                float[] actual = Run(path, t, w, qa, null);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{path} n={n} k={k} m={m} threads={t}: first diff at {FirstDiff(expected, actual)}");
            }
        }
    });

    [Theory]
    [MemberData(nameof(Paths))]
    public void FloatGemmMatchesReferenceWithinTolerance(KernelPath path)
    {
        foreach (var (n, k, m) in new[] { (1, 1, 1), (3, 255, 2), (5, 257, 3), (16, 600, 4) })
        {
            var w = TernaryMatrix.FromTrits(TestData.Trits(n * k, k), n, k, [0.25f]);
            float[] x = TestData.Floats(m * k, n);
            using var re = new CpuBackend(1, KernelPath.Reference);
            using var fast = new CpuBackend(2, path);
            var y0 = new float[m * n]; var y1 = new float[m * n];
            re.MatMulFloat(w, x, y0);
            fast.MatMulFloat(w, x, y1);
            for (int i = 0; i < y0.Length; i++)
                Assert.True(MathF.Abs(y0[i] - y1[i]) <= 1e-4f * (1 + MathF.Abs(y0[i])), $"{path} n={n} k={k} m={m} [{i}]: {y0[i]} vs {y1[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void DotProductsMatchReference(KernelPath path)
    {
        foreach (int k in new[] { 1, 31, 256, 1000 })
        {
            sbyte[] wt = TestData.Trits(k, k);
            var w = TernaryMatrix.FromTrits(wt, 1, k, [1f]);
            sbyte[] x = TestData.Int8(k, k + 1);
            int expected = 0;
            for (int j = 0; j < k; j++) expected += wt[j] * x[j];
            Assert.Equal(expected, TernaryDot.Dot(w, 0, x, path));
            float[] xf = TestData.Floats(k, k + 2);
            float ef = 0;
            for (int j = 0; j < k; j++) ef += wt[j] * xf[j];
            Assert.Equal(ef, TernaryDot.Dot(w, 0, xf, path), 3);
        }
    }

    [Fact]
    public void TernaryTimesTernaryByPopcount()
    {
        foreach (int k in new[] { 1, 63, 64, 65, 384, 1001 })
        {
            sbyte[] a = TestData.Trits(k, k), b = TestData.Trits(k, k + 9);
            var pa = new BitPlaneVector(a); var pb = new BitPlaneVector(b);
            Assert.Equal(BitPlaneVector.DotReference(a, b), BitPlaneVector.Dot(pa, pb));
            Assert.Equal(a, pa.ToTrits());
        }
    }

    [Fact]
    public void ShapeMismatchesAreReported()
    {
        var w = TernaryMatrix.FromTrits(new sbyte[6], 2, 3, [1f]);
        var qa = new QuantizedActivations(1, 4);
        qa.Quantize(new float[4]);
        using var be = new CpuBackend(1);
        var e = Assert.Throws<ArgumentException>(() => be.MatMul(w, qa, new float[2]));
        Assert.Contains("2x3", e.Message);
        var qb = new QuantizedActivations(1, 3);
        qb.Quantize(new float[3]);
        Assert.Throws<ArgumentException>(() => be.MatMul(w, qb, new float[1]));
        Assert.Throws<ArgumentException>(() => be.MatMulFloat(w, new float[4], new float[2]));
    }

    private static int FirstDiff(float[] a, float[] b)
    {
        for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) return i;
        return -1;
    }
}

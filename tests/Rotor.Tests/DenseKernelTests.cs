using System.Runtime.Intrinsics.X86;
using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary>The dense (F32, F16, Int8) products and the attention kernel on every kernel path and 1-3 threads against
/// plain formulas: random data, sizes 1, odd sizes and tails. Int8 products must match exactly (integer sums), float
/// ones within a relative 1e-5 of the row's magnitude.</summary>
[Collection("kernels")]
public class DenseKernelTests
{
    public static TheoryData<KernelPath> AllPaths()
    {
        var d = new TheoryData<KernelPath>();
        foreach (var p in KernelSelector.Supported) d.Add(p);
        return d;
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void DenseMatMulMatchesFormula(KernelPath path)
    {
        long saved = TernaryGemm.ParallelThreshold;
        TernaryGemm.ParallelThreshold = 1;   // split even small products over the threads
        try
        {
            int seed = 0;
            foreach (var type in new[] { DenseType.F32, DenseType.F16, DenseType.Int8 })
            foreach (int n in new[] { 1, 7, 65, 130 })
            foreach (int k in new[] { 1, 15, 256, 300 })
            foreach (int m in new[] { 1, 2, 5 })
            foreach (int threads in new[] { 1, 3 })
            {
                seed++;
                float[] wf = TestData.Floats(n * k, seed);
                float[] x = TestData.Floats(m * k, seed + 500, 3f);
                var w = DenseMatrix.FromFloat(wf, n, k, type);
                using var be = new CpuBackend(threads, path);
                var y = new float[m * n];
                be.MatMul(w, x, y);
                float[] wd = w.ToFloat();   // the stored (rounded) weights
                for (int i = 0; i < m; i++)
                {
                    ReadOnlySpan<float> xi = x.AsSpan(i * k, k);
                    if (type == DenseType.Int8)
                    {
                        // y = xScale * wScale[r] * sum q_w q_x, with x quantized per row by absmax.
                        float amax = xi.ToArray().Max(MathF.Abs);
                        float xs = amax / 127f, inv = 127f / amax;
                        for (int r = 0; r < n; r++)
                        {
                            long dot = 0;
                            float ws = w.Scales[r];
                            for (int j = 0; j < k; j++)
                            {
                                int qw = ws == 0 ? 0 : (int)MathF.Round(wd[r * k + j] / ws);
                                int qx = (int)Math.Clamp(MathF.Round(xi[j] * inv), -127, 127);
                                dot += qw * qx;
                            }
                            Assert.Equal(dot * xs * ws, y[i * n + r], 1e-5 * Math.Max(1.0, Math.Abs(dot * xs * ws)));
                        }
                    }
                    else
                    {
                        for (int r = 0; r < n; r++)
                        {
                            double s = 0, mag = 0;
                            for (int j = 0; j < k; j++) { s += (double)wd[r * k + j] * xi[j]; mag += Math.Abs((double)wd[r * k + j] * xi[j]); }
                            Assert.True(Math.Abs(s - y[i * n + r]) <= 1e-5 * Math.Max(1, mag), $"{type} {n}x{k} m={m} t={threads} row {r}: {y[i * n + r]} vs {s}");
                        }
                    }
                }
            }
        }
        finally { TernaryGemm.ParallelThreshold = saved; }
    }

    [Fact]
    public void Int8RowsFollowTheQuantizationFormula()
    {
        // Lengths around the 32-value vector step (1, tails, exact multiples); a zero row; values that land on .5 after
        // scaling (ties round to even); the extremes +-amax map to +-127.
        foreach (int k in new[] { 1, 7, 31, 32, 33, 64, 95, 300, 1029 })
        {
            float[] wf = TestData.Floats(4 * k, k + 7, 3f);
            Array.Clear(wf, 2 * k, k);                                      // row 2: all zero
            for (int c = 0; c < k; c++) wf[3 * k + c] = (c % 5 - 2) * 0.5f * 3f / 127f;   // row 3: halves of a step
            wf[3 * k] = 3f;                                                 // row 3's amax: a step is 3 / 127
            var w = DenseMatrix.FromFloat(wf, 4, k, DenseType.Int8);
            float[] back = w.ToFloat();
            for (int r = 0; r < 4; r++)
            {
                float amax = 0;
                for (int c = 0; c < k; c++) amax = MathF.Max(amax, MathF.Abs(wf[r * k + c]));
                Assert.Equal(amax / 127f, w.Scales[r]);
                for (int c = 0; c < k; c++)
                {
                    float q = amax == 0 ? 0 : Math.Clamp(MathF.Round(wf[r * k + c] * (127f / amax)), -127f, 127f);
                    Assert.True(q * w.Scales[r] == back[r * k + c], $"k={k} [{r},{c}]: {back[r * k + c]} vs {q} * {w.Scales[r]}");
                }
            }
        }
    }

    [Fact]
    public void Int8DotKernelsAreExactOnExtremes()
    {
        var w = new sbyte[512]; var x = new sbyte[512];
        var r = new Random(3);
        for (int i = 0; i < 512; i++) { w[i] = (sbyte)(r.Next(2) == 0 ? -127 : 127); x[i] = (sbyte)(r.Next(2) == 0 ? -127 : 127); }
        unsafe
        {
            fixed (sbyte* wp = w) fixed (sbyte* xp = x)
            {
                int expected = DenseGemm.DotInt8Reference(wp, xp, 512);
                Assert.Equal(expected, DenseGemm.DotInt8Portable(wp, xp, 512));
                if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.Equal(expected, DenseGemm.DotInt8Avx2(wp, xp, 512));
            }
        }
    }

    [Fact]
    public void FourRowInt8KernelsMatchTheReference()
    {
        foreach (int n in new[] { 256, 512, 768 })
        foreach (bool extreme in new[] { false, true })
        {
            var r = new Random(n + (extreme ? 1 : 0));
            sbyte Value() => extreme ? (sbyte)(r.Next(2) == 0 ? -127 : 127) : (sbyte)r.Next(-127, 128);
            int stride = n + 64;   // rows further apart than their length
            var w = new sbyte[n]; var x = new sbyte[4 * stride];
            for (int i = 0; i < w.Length; i++) w[i] = Value();
            for (int i = 0; i < x.Length; i++) x[i] = Value();
            unsafe
            {
                fixed (sbyte* wp = w) fixed (sbyte* xp = x) fixed (int* expected = new int[4]) fixed (int* got = new int[4])
                {
                    DenseGemm.DotInt8x4Reference(wp, xp, stride, n, expected);
                    for (int i = 0; i < 4; i++) Assert.Equal(DenseGemm.DotInt8Reference(wp, xp + i * stride, n), expected[i]);
                    foreach (var path in KernelSelector.Supported)
                    {
                        for (int i = 0; i < 4; i++) got[i] = int.MinValue;
                        KernelPaths.Get(path).DotInt8x4(wp, xp, stride, n, got);
                        for (int i = 0; i < 4; i++) Assert.True(expected[i] == got[i], $"{path} n={n} extreme={extreme} row {i}: {got[i]} vs {expected[i]}");
                    }
                }
            }
        }
    }

    [Fact]
    public void FloatTileKernelsMatchTheReference()
    {
        // Every path's tile against the scalar tile: lengths around each vector width (0, tails of 4, 8 and 16, long
        // rows), 1-4 activation rows, rows further apart than their length; sums of rows not asked for stay untouched.
        int seed = 40;
        foreach (int k in new[] { 0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 100, 1029 })
        foreach (int mr in new[] { 1, 2, 3, 4 })
        {
            seed++;
            long wStride = k + 5, xStride = k + 11;
            float[] w = TestData.Floats((int)(DenseGemm.TileRows * wStride), seed, 2f), x = TestData.Floats((int)(DenseGemm.TileRows * xStride), seed + 1, 3f);
            var expected = new float[16];
            var got = new float[16];
            unsafe
            {
                fixed (float* wp = w) fixed (float* xp = x) fixed (float* ep = expected) fixed (float* gp = got)
                {
                    DenseGemm.TileF32Reference(wp, wStride, xp, xStride, k, mr, ep);
                    foreach (var path in KernelSelector.Supported)
                    {
                        Array.Fill(got, float.NaN);
                        KernelPaths.Get(path).TileF32(wp, wStride, xp, xStride, k, mr, gp);
                        for (int r = 0; r < 4; r++)
                            for (int i = 0; i < 4; i++)
                            {
                                float e = expected[r * 4 + i], g = got[r * 4 + i];
                                if (i >= mr) { Assert.True(float.IsNaN(g), $"{path} k={k} mr={mr}: sum ({r}, {i}) was written"); continue; }
                                double mag = 0;
                                for (int j = 0; j < k; j++) mag += Math.Abs((double)w[r * wStride + j] * x[i * xStride + j]);
                                Assert.True(Math.Abs(e - g) <= 1e-5 * Math.Max(1, mag), $"{path} k={k} mr={mr} ({r}, {i}): {g} vs {e}");
                            }
                    }
                }
            }
        }
    }

    [Fact]
    public void FewRowF16KernelsMatchTheReference()
    {
        // Every path's few-row F16 kernel (where it has one) against the scalar one: lengths around the 16-half step
        // and its tail, 1-4 activation rows further apart than their length; sums of rows not asked for stay untouched.
        int seed = 70;
        foreach (int k in new[] { 1, 7, 15, 16, 17, 31, 33, 100, 1029, 2560 })
        foreach (int mr in new[] { 1, 2, 3, 4 })
        {
            seed++;
            long xStride = k + 9;
            ushort[] w = TestData.Floats(k, seed, 2f).Select(v => BitConverter.HalfToUInt16Bits((Half)v)).ToArray();
            float[] x = TestData.Floats((int)(DenseGemm.F16Rows * xStride), seed + 1, 3f);
            var expected = new float[DenseGemm.F16Rows];
            var got = new float[DenseGemm.F16Rows];
            unsafe
            {
                fixed (ushort* wp = w) fixed (float* xp = x) fixed (float* ep = expected) fixed (float* gp = got)
                {
                    DenseGemm.DotF16x4Reference(wp, xp, xStride, k, mr, ep);
                    int kernels = 0;
                    foreach (var path in KernelSelector.Supported)
                    {
                        var kernel = KernelPaths.Get(path).DotF16x4;
                        if (kernel == null) continue;
                        kernels++;
                        Array.Fill(got, float.NaN);
                        kernel(wp, xp, xStride, k, mr, gp);
                        for (int i = 0; i < DenseGemm.F16Rows; i++)
                        {
                            if (i >= mr) { Assert.True(float.IsNaN(got[i]), $"{path} k={k} mr={mr}: sum {i} was written"); continue; }
                            double mag = 0;
                            for (int j = 0; j < k; j++) mag += Math.Abs((double)(float)BitConverter.UInt16BitsToHalf(w[j]) * x[i * xStride + j]);
                            Assert.True(Math.Abs(expected[i] - got[i]) <= 1e-5 * Math.Max(1, mag), $"{path} k={k} mr={mr} row {i}: {got[i]} vs {expected[i]}");
                        }
                    }
                    if (Avx2.IsSupported) Assert.True(kernels > 0, "the AVX2 path has a few-row F16 kernel");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void BatchedFloatProductsMatchFormula(KernelPath path)
    {
        // The tiled F32 and F16 products for every batch of 1-17 activation rows: weight rows not a multiple of the
        // tile (and split over 3 threads, so every task ends in a partial tile), columns with vector tails and columns
        // cut into several chunks (2100: three).
        long saved = TernaryGemm.ParallelThreshold;
        TernaryGemm.ParallelThreshold = 1;
        try
        {
            int seed = 900;
            foreach (var type in new[] { DenseType.F32, DenseType.F16 })
            foreach (var (n, k) in new[] { (5, 17), (67, 300), (13, 2100) })
            foreach (int threads in new[] { 1, 3 })
            {
                seed++;
                var w = DenseMatrix.FromFloat(TestData.Floats(n * k, seed), n, k, type);
                float[] wd = w.ToFloat();
                using var be = new CpuBackend(threads, path);
                for (int m = 1; m <= 17; m++)
                {
                    float[] x = TestData.Floats(m * k, seed * 31 + m, 3f);
                    var y = new float[m * n];
                    be.MatMul(w, x, y);
                    for (int i = 0; i < m; i++)
                        for (int r = 0; r < n; r++)
                        {
                            double s = 0, mag = 0;
                            for (int j = 0; j < k; j++) { double p = (double)wd[r * k + j] * x[i * k + j]; s += p; mag += Math.Abs(p); }
                            Assert.True(Math.Abs(s - y[i * n + r]) <= 1e-5 * Math.Max(1, mag), $"{path} {type} {n}x{k} m={m} t={threads} ({i}, {r}): {y[i * n + r]} vs {s}");
                        }
                }
            }
        }
        finally { TernaryGemm.ParallelThreshold = saved; }
    }

    [Fact]
    public void HalfDotWidensEveryFiniteHalfExactly()
    {
        // Every finite half value (subnormals, both zeros, the largest) against (float)Half, in lengths that exercise
        // the 32- and 16-wide loops and the scalar tail.
        var all = new List<ushort>();
        for (int b = 0; b < 65536; b++) if (Half.IsFinite(BitConverter.UInt16BitsToHalf((ushort)b))) all.Add((ushort)b);
        ushort[] w = [.. all];
        foreach (int n in new[] { 1, 15, 16, 31, 33, 47, w.Length })
        {
            var x = new float[n];
            unsafe
            {
                fixed (ushort* wp = w) fixed (float* xp = x)
                    for (int j = 0; j < n; j++)
                    {
                        // One-hot x reads each weight alone: the dot is exactly that weight.
                        if (j > 0) x[j - 1] = 0;
                        x[j] = 1;
                        if (j % 97 != 0 && n == w.Length) continue;   // every 97th of the full set, all of the short ones
                        Assert.Equal((float)BitConverter.UInt16BitsToHalf(w[j]), DenseGemm.DotF16(wp, xp, n));
                    }
                var widened = new float[n];
                fixed (ushort* wp = w) fixed (float* dp = widened) DenseGemm.WidenF16(wp, dp, n);
                for (int j = 0; j < n; j++) Assert.Equal((float)BitConverter.UInt16BitsToHalf(w[j]), widened[j]);
            }
        }
    }

    [Fact]
    public void TwoRowHalfDotsAreEachRowsOwnDot()
    {
        // The F16 GEMV reads two rows side by side (DotF16Rows2): each sum must be DotF16's, bit for bit, over random
        // halves of both signs, lengths with and without a scalar tail, and the head's 2560.
        var rng = new Random(17);
        foreach (int n in new[] { 1, 15, 16, 17, 31, 48, 2560, 2563 })
        {
            var w = new ushort[2 * n];
            var x = new float[n];
            for (int i = 0; i < w.Length; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 4 - 2));
            for (int j = 0; j < n; j++) x[j] = (float)(rng.NextDouble() * 2 - 1);
            unsafe
            {
                fixed (float* sums = new float[2]) fixed (ushort* wp = w) fixed (float* xp = x)
                {
                    DenseGemm.DotF16Rows2(wp, wp + n, xp, n, sums);
                    Assert.Equal(DenseGemm.DotF16(wp, xp, n), sums[0]);
                    Assert.Equal(DenseGemm.DotF16(wp + n, xp, n), sums[1]);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void AttentionMatchesFormula(KernelPath path)
    {
        int seed = 0;
        foreach (var (heads, kvHeads, hd) in new[] { (1, 1, 2), (4, 2, 8), (6, 3, 10), (8, 1, 16) })
        foreach (int m in new[] { 1, 3, 9 })
        foreach (int start in new[] { 0, 1, 40 })
        foreach (int threads in new[] { 1, 2 })
        {
            seed++;
            int kvStride = kvHeads * hd + 3;   // a stride wider than the heads
            int positions = start + m;
            // Every other case has scores in the hundreds, where exp overflows unless the maximum is subtracted first.
            float[] q = TestData.Floats(m * heads * hd, seed, seed % 2 == 0 ? 1f : 400f), k = TestData.Floats(positions * kvStride, seed + 1, 2f), v = TestData.Floats(positions * kvStride, seed + 2);
            var got = new float[m * heads * hd];
            using var be = new CpuBackend(threads, path);
            float scale = 1f / MathF.Sqrt(hd);
            be.Attention(q, m, heads, kvHeads, hd, k, v, kvStride, start, scale, got);
            for (int i = 0; i < m; i++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads), n = start + i + 1;
                    var s = new double[n];
                    for (int t = 0; t < n; t++)
                    {
                        double d = 0;
                        for (int j = 0; j < hd; j++) d += q[(i * heads + h) * hd + j] * k[t * kvStride + g * hd + j];
                        s[t] = d * scale;
                    }
                    double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
                    for (int j = 0; j < hd; j++)
                    {
                        double o = 0;
                        for (int t = 0; t < n; t++) o += Math.Exp(s[t] - max) / sum * v[t * kvStride + g * hd + j];
                        Assert.Equal(o, got[(i * heads + h) * hd + j], 1e-4);
                    }
                }
        }
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void AttentionOverHalfCachesMatchesFormula(KernelPath path)
    {
        int seed = 100;
        foreach (var (heads, kvHeads, hd) in new[] { (1, 1, 2), (4, 2, 8), (6, 3, 10), (8, 1, 16), (2, 1, 33) })
        foreach (int m in new[] { 1, 3, 9 })
        foreach (int start in new[] { 0, 1, 40 })
        foreach (int threads in new[] { 1, 2 })
        {
            seed++;
            int kvStride = kvHeads * hd + 3;
            int positions = start + m;
            float[] q = TestData.Floats(m * heads * hd, seed, seed % 2 == 0 ? 1f : 400f);
            Half[] k = TestData.Floats(positions * kvStride, seed + 1, 2f).Select(f => (Half)f).ToArray();
            Half[] v = TestData.Floats(positions * kvStride, seed + 2).Select(f => (Half)f).ToArray();
            var got = new float[m * heads * hd];
            using var be = new CpuBackend(threads, path);
            float scale = 1f / MathF.Sqrt(hd);
            be.Attention(q, m, heads, kvHeads, hd, k, v, kvStride, start, scale, got);
            for (int i = 0; i < m; i++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads), n = start + i + 1;
                    var s = new double[n];
                    for (int t = 0; t < n; t++)
                    {
                        double d = 0;
                        for (int j = 0; j < hd; j++) d += q[(i * heads + h) * hd + j] * (double)k[t * kvStride + g * hd + j];
                        s[t] = d * scale;
                    }
                    double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
                    for (int j = 0; j < hd; j++)
                    {
                        double o = 0;
                        for (int t = 0; t < n; t++) o += Math.Exp(s[t] - max) / sum * (double)v[t * kvStride + g * hd + j];
                        Assert.Equal(o, got[(i * heads + h) * hd + j], 1e-4);
                    }
                }
        }
    }

    [Theory]
    [MemberData(nameof(AllPaths))]
    public void AttentionOfManySequencesMatchesFormula(KernelPath path)
    {
        // One query row per sequence, each over its own cache at its own position (a batched decode step), float and
        // half caches, 1-17 rows, threads 1 and 2 (the widest shape has work enough to be split), against the formula
        // row by row.
        int seed = 300;
        foreach (var (heads, kvHeads, hd) in new[] { (1, 1, 2), (4, 2, 8), (6, 3, 10), (2, 1, 33), (8, 2, 64) })
        foreach (int m in new[] { 1, 2, 5, 17 })
        foreach (bool half in new[] { false, true })
        foreach (int threads in new[] { 1, 2 })
        {
            seed++;
            var rng = new Random(seed);
            int kvStride = kvHeads * hd + 3, w = heads * hd;
            int[] pos = [.. Enumerable.Range(0, m).Select(_ => rng.Next(0, 60))];
            float[][] k = [.. pos.Select((p, b) => TestData.Floats((p + 1 + b % 3) * kvStride, seed * 100 + 2 * b, 2f))];
            float[][] v = [.. pos.Select((p, b) => TestData.Floats((p + 1 + b % 3) * kvStride, seed * 100 + 2 * b + 1))];
            if (half) { k = [.. k.Select(a => a.Select(f => (float)(Half)f).ToArray())]; v = [.. v.Select(a => a.Select(f => (float)(Half)f).ToArray())]; }
            float[] q = TestData.Floats(m * w, seed, seed % 2 == 0 ? 1f : 300f);
            var got = new float[m * w];
            using var be = new CpuBackend(threads, path);
            IAttentionBackend backend = be;
            float scale = 1f / MathF.Sqrt(hd);
            if (half)
                backend.AttentionRows(q, heads, kvHeads, hd, [.. k.Select(a => a.Select(f => (Half)f).ToArray())], [.. v.Select(a => a.Select(f => (Half)f).ToArray())], pos, kvStride, scale, got);
            else
                backend.AttentionRows(q, heads, kvHeads, hd, k, v, pos, kvStride, scale, got);
            for (int b = 0; b < m; b++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads), n = pos[b] + 1;
                    var s = new double[n];
                    for (int t = 0; t < n; t++)
                    {
                        double d = 0;
                        for (int j = 0; j < hd; j++) d += q[b * w + h * hd + j] * k[b][t * kvStride + g * hd + j];
                        s[t] = d * scale;
                    }
                    double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
                    for (int j = 0; j < hd; j++)
                    {
                        double o = 0;
                        for (int t = 0; t < n; t++) o += Math.Exp(s[t] - max) / sum * v[b][t * kvStride + g * hd + j];
                        Assert.True(Math.Abs(o - got[b * w + h * hd + j]) <= 1e-4, $"{path} half={half} m={m} t={threads} row {b} head {h} [{j}]: {got[b * w + h * hd + j]} vs {o}");
                    }
                }
        }
    }

    [Fact]
    public void AttentionOfManySequencesRejectsShortCaches()
    {
        using var be = new CpuBackend(1);
        IAttentionBackend backend = be;
        // Row 1 is at position 2 but its cache holds two positions.
        var e = Assert.Throws<ArgumentException>(() => backend.AttentionRows(new float[16], 1, 1, 8, [new float[8], new float[16]], [new float[8], new float[24]], [0, 2], 8, 1f, new float[16]));
        Assert.Contains("k", e.Message);
        Assert.Throws<ArgumentException>(() => backend.AttentionRows(new float[16], 1, 1, 8, [new float[8]], [new float[8]], [0, 0], 8, 1f, new float[16]));
    }

    [Fact]
    public void AttentionRejectsShortCaches()
    {
        using var be = new CpuBackend(1);
        var e = Assert.Throws<ArgumentException>(() => be.Attention(new float[8], 1, 1, 1, 8, new float[8], new float[16], 8, 1, 1f, new float[8]));
        Assert.Contains("k", e.Message);
    }
}

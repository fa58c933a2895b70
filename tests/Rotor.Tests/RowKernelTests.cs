using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary>The row-wise steps of <see cref="IRowBackend"/> (RMSNorm, the gated activation, the int8 quantization) on
/// 1-3 threads against plain scalar formulas, and bit for bit against one thread: random data, one row, odd widths and
/// tails.</summary>
[Collection("kernels")]
public class RowKernelTests
{
    private static float[] Rand(Random r, int n, float scale = 2f)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = ((float)r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    [Fact]
    public void RmsNormMatchesFormulaOnEveryThreadCount()
    {
        int saved = CpuBackend.RowParallelThreshold;
        CpuBackend.RowParallelThreshold = 1;   // split even small batches over the threads
        try
        {
            var rng = new Random(3);
            foreach (int n in new[] { 1, 2, 7, 33 })
            foreach (int width in new[] { 1, 5, 64, 257 })
            {
                float[] x = Rand(rng, n * width), w = Rand(rng, width);
                float[]? one = null;
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    using var cpu = new CpuBackend(threads);
                    var y = new float[n * width];
                    cpu.RmsNorm(x, w, y, n, width, 1e-5f);
                    for (int i = 0; i < n; i++)
                    {
                        double ss = 0;
                        for (int j = 0; j < width; j++) ss += (double)x[i * width + j] * x[i * width + j];
                        double inv = 1 / Math.Sqrt(ss / width + 1e-5);
                        for (int j = 0; j < width; j++)
                            Assert.True(Math.Abs(y[i * width + j] - x[i * width + j] * inv * w[j]) <= 1e-5 * (1 + Math.Abs(x[i * width + j] * inv * w[j])), $"n={n} width={width} threads={threads} row {i} col {j}");
                    }
                    if (one is null) one = y;
                    else Assert.Equal(one, y);
                    // In place (y = x), as the decoder's sub-norms run.
                    var inPlace = (float[])x.Clone();
                    cpu.RmsNorm(inPlace, w, inPlace, n, width, 1e-5f);
                    Assert.Equal(one, inPlace);
                }
            }
        }
        finally { CpuBackend.RowParallelThreshold = saved; }
    }

    [Fact]
    public void QuantizeMatchesFormulaOnEveryThreadCount()
    {
        int saved = CpuBackend.RowParallelThreshold;
        CpuBackend.RowParallelThreshold = 1;
        try
        {
            var rng = new Random(5);
            foreach (int n in new[] { 1, 2, 7, 33 })
            foreach (int width in new[] { 1, 5, 256, 300 })
            {
                float[] x = Rand(rng, n * width, 3f);
                if (n > 2) Array.Clear(x, width, width);   // an all-zero row: scale 0
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    using var cpu = new CpuBackend(threads);
                    var q = new QuantizedActivations(n + 1, width);
                    cpu.Quantize(x, q);
                    Assert.Equal(n, q.Count);
                    int padded = q.PaddedCols;
                    for (int i = 0; i < n; i++)
                    {
                        // Scalar formula: scale = absmax / 127, q = round(x * 127 / absmax) clamped to +-127, padding 0.
                        float amax = 0;
                        for (int j = 0; j < width; j++) amax = MathF.Max(amax, MathF.Abs(x[i * width + j]));
                        Assert.Equal(amax / 127f, q.Scales[i]);
                        int sum = 0;
                        for (int j = 0; j < padded; j++)
                        {
                            int want = j >= width || amax == 0 ? 0 : (int)Math.Clamp(MathF.Round(x[i * width + j] * (127f / amax)), -127f, 127f);
                            Assert.True(want == q.Data[i * padded + j], $"n={n} width={width} threads={threads} row {i} col {j}: {q.Data[i * padded + j]} against {want}");
                            sum += want;
                        }
                        Assert.Equal(sum, q.Sums[i]);
                    }
                }
                // A NaN in any row: one clear error naming its index, on every thread count.
                var bad = (float[])x.Clone();
                bad[^1] = float.NaN;
                foreach (int threads in new[] { 1, 2 })
                {
                    using var cpu = new CpuBackend(threads);
                    var e = Assert.Throws<RotorException>(() => cpu.Quantize(bad, new QuantizedActivations(n, width)));
                    Assert.Contains($"[{bad.Length - 1}]", e.Message);
                }
            }
        }
        finally { CpuBackend.RowParallelThreshold = saved; }
    }

    [Theory]
    [InlineData(GateActivation.Relu2)]
    [InlineData(GateActivation.Silu)]
    public void GatedActivationMatchesFormulaOnEveryThreadCount(GateActivation act)
    {
        int saved = CpuBackend.RowParallelThreshold;
        CpuBackend.RowParallelThreshold = 1;
        try
        {
            var rng = new Random(4);
            // Past one task's 16384 values and with a tail; 1 and a short odd count stay on one task.
            foreach (int count in new[] { 1, 37, 16384, 40001 })
            {
                float[] g0 = Rand(rng, count + 3), up = Rand(rng, count + 3);
                float[]? one = null;
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    using var cpu = new CpuBackend(threads);
                    var g = (float[])g0.Clone();
                    cpu.GatedActivation(g, up, count, act);
                    for (int j = 0; j < count; j++)
                    {
                        double a = g0[j];
                        double want = (act == GateActivation.Relu2 ? Math.Max(a, 0) * Math.Max(a, 0) : a / (1 + Math.Exp(-a))) * up[j];
                        Assert.True(Math.Abs(g[j] - want) <= 1e-5 * (1 + Math.Abs(want)), $"count={count} threads={threads} value {j}: {g[j]} against {want}");
                    }
                    for (int j = count; j < g.Length; j++) Assert.Equal(g0[j], g[j]);   // past count: untouched
                    if (one is null) one = g;
                    else Assert.Equal(one, g);
                }
            }
        }
        finally { CpuBackend.RowParallelThreshold = saved; }
    }
}

using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Tests;

public class NnTests
{
    private static float[] Dense(float[] w, int n, int k, float[] x, int m, float[]? bias)
    {
        var y = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int r = 0; r < n; r++)
            {
                double s = bias?[r] ?? 0;
                for (int j = 0; j < k; j++) s += w[r * k + j] * x[i * k + j];
                y[i * n + r] = (float)s;
            }
        return y;
    }

    [Fact]
    public void TernaryLinearFloatModeEqualsDequantizedProduct()
    {
        int n = 13, k = 300, m = 3;
        float[] wf = TestData.Floats(n * k, 1);
        float[] b = TestData.Floats(n, 2);
        var layer = TernaryLinear.FromFloat(wf, n, k, b, mode: ActivationMode.Float);
        float[] x = TestData.Floats(m * k, 3);
        var y = new float[m * n];
        layer.Forward(x, y, m);
        float[] expected = Dense(layer.Weights.ToFloat(), n, k, x, m, b);
        for (int i = 0; i < y.Length; i++) Assert.Equal(expected[i], y[i], 3);
    }

    [Fact]
    public void TernaryLinearInt8ModeIsCloseToFloat()
    {
        int n = 64, k = 512, m = 4;
        var layer = TernaryLinear.Random(n, k, 5);
        float[] x = TestData.Floats(m * k, 6);
        var y = new float[m * n];
        layer.Forward(x, y, m);
        float[] expected = Dense(layer.Weights.ToFloat(), n, k, x, m, null);
        double err = 0, norm = 0;
        for (int i = 0; i < y.Length; i++) { err += Math.Pow(y[i] - expected[i], 2); norm += expected[i] * expected[i]; }
        Assert.True(Math.Sqrt(err / norm) < 0.02, $"int8 activations: relative error {Math.Sqrt(err / norm):P2}");
    }

    [Fact]
    public void ActivationsAndSoftmax()
    {
        float[] x = [-2f, 0f, 3f, -0.5f];
        var y = new float[4];
        new ReLU(2).Forward(x, y, 2);
        Assert.Equal(new[] { 0f, 0f, 3f, 0f }, y);
        new Sign(4).Forward(x, y, 1);
        Assert.Equal(new[] { -1f, 0f, 1f, -1f }, y);
        new Softmax(2).Forward(x, y, 2);
        Assert.Equal(1f, y[0] + y[1], 5);
        Assert.Equal(1f, y[2] + y[3], 5);
        Assert.True(y[1] > y[0]);
    }

    [Fact]
    public void SequentialChecksShapesAndAllocatesNothingPerForward()
    {
        Assert.Throws<ArgumentException>(() => new Sequential(new ReLU(3), new ReLU(4)));
        var net = new SimpleRotorNet(20, 32, 5, hiddenLayers: 2, seed: 3);
        float[] x = TestData.Floats(8 * 20, 4);
        var classes = new int[8];
        net.Predict(x, 8, classes);
        net.Predict(x, 8, classes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) net.Predict(x, 8, classes);
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
        Assert.All(classes, c => Assert.InRange(c, 0, 4));
        var e = Assert.Throws<ArgumentException>(() => net.Forward(new float[19], 1));
        Assert.Contains("20", e.Message);
    }

    [Fact]
    public void SimpleRotorNetIsDeterministicAndReportsStatistics()
    {
        var a = new SimpleRotorNet(30, 16, 4, seed: 9);
        var b = new SimpleRotorNet(30, 16, 4, seed: 9);
        float[] x = TestData.Floats(5 * 30, 1);
        Assert.Equal(a.Forward(x, 5).ToArray(), b.Forward(x, 5).ToArray());
        var stats = a.Stats();
        Assert.Equal(2, stats.Count);
        Assert.Equal(30 * 16, stats[0].Weights);
        Assert.Equal(stats[0].Weights, stats[0].Plus + stats[0].Minus + (long)Math.Round(stats[0].ZeroShare * stats[0].Weights));
        var (tern, f32, _) = a.Memory();
        Assert.True(f32 > tern);
    }

    [Fact]
    public void WorkerPoolRunsEveryTaskOnceAndPropagatesErrors()
    {
        using var pool = new Rotor.Threading.WorkerPool(3);
        for (int round = 0; round < 200; round++)
        {
            var work = new CountingWork(37);
            pool.Run(work, 37);
            Assert.All(work.Hits, h => Assert.Equal(1, h));
        }
        Assert.Throws<AggregateException>(() => pool.Run(new FailingWork(), 5));
        var again = new CountingWork(4);
        pool.Run(again, 4);
        Assert.All(again.Hits, h => Assert.Equal(1, h));
    }

    private sealed class CountingWork(int n) : Rotor.Threading.IParallelWork
    {
        public readonly int[] Hits = new int[n];
        public void Execute(int task) => Interlocked.Increment(ref Hits[task]);
    }

    private sealed class FailingWork : Rotor.Threading.IParallelWork
    {
        public void Execute(int task) { if (task == 3) throw new InvalidOperationException("task 3"); }
    }
}

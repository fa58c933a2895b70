using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

/// <summary>Every layer's backward pass against central finite differences of <c>L = sum(y * r)</c> (so dL/dy = r),
/// on a few sampled inputs and parameters; and the straight-through gradients of the quantized layers against their
/// formulas.</summary>
public class LayerGradientTests
{
    private static readonly TrainContext s_ctx = new(2);

    private static double Loss(TrainLayer l, float[] x, float[] r, int batch, ulong seed)
    {
        var y = new float[batch * l.OutputSize];
        l.StepSeed = seed;
        l.Forward(x, y, batch, training: true);
        double s = 0;
        for (int i = 0; i < y.Length; i++) s += (double)y[i] * r[i];
        return s;
    }

    /// <summary>Checks dx and every parameter's gradient at <paramref name="samples"/> random indices.</summary>
    private static void CheckGradients(TrainLayer l, int batch, int seed, float eps = 1e-2f, double tol = 2e-2, bool checkX = true, int samples = 24)
    {
        l.Bind(s_ctx, batch);
        float[] x = TestData.Floats(batch * l.InputSize, seed), r = TestData.Floats(batch * l.OutputSize, seed + 1);
        var y = new float[r.Length];
        var dx = new float[x.Length];
        l.StepSeed = 99;
        l.Forward(x, y, batch, training: true);
        l.Backward(x, y, r, dx, batch);
        var rng = new Random(seed);
        double worst = 0;
        string where = "";
        void Probe(float[] v, float[] grad, string name)
        {
            for (int s = 0; s < samples; s++)
            {
                int i = rng.Next(v.Length);
                float keep = v[i];
                v[i] = keep + eps; double up = Loss(l, x, r, batch, 99);
                v[i] = keep - eps; double down = Loss(l, x, r, batch, 99);
                v[i] = keep;
                double fd = (up - down) / (2 * eps);
                double err = Math.Abs(fd - grad[i]) / Math.Max(1.0, Math.Abs(fd));
                if (err > worst) { worst = err; where = $"{name}[{i}]: backward {grad[i]:G6}, finite difference {fd:G6}"; }
            }
        }
        var grads = l.Parameters.Select(p => (float[])p.Grad.Clone()).ToArray();
        if (checkX) Probe(x, dx, "x");
        for (int p = 0; p < l.Parameters.Count; p++) Probe(l.Parameters[p].Value, grads[p], l.Parameters[p].Name);
        Assert.True(worst < tol, $"{l.Name}: max relative error {worst:G3} at {where}");
    }

    [Fact]
    public void FloatLinear() { var l = new TernaryLinearLayer(37, 11, bias: true, ternary: false, actBits: 0); l.Initialize(new Random(1)); CheckGradients(l, 5, 10); }

    /// <summary>dx against central finite differences of the loss, every <paramref name="step"/>-th input.</summary>
    private static void AssertInputGradient(TrainLayer l, float[] x, float[] r, float[] dx, int batch, int step)
    {
        for (int i = 0; i < x.Length; i += step)
        {
            float keep = x[i];
            x[i] = keep + 1e-2f; double up = Loss(l, x, r, batch, 0);
            x[i] = keep - 1e-2f; double down = Loss(l, x, r, batch, 0);
            x[i] = keep;
            Assert.Equal((up - down) / 2e-2, dx[i], 2);
        }
    }

    [Fact]
    public void TernaryLinearInputGradientIsExactForFixedTrits()
    {
        // With float activations the layer is linear in x for fixed quantized weights: dx must match finite differences.
        var l = new TernaryLinearLayer(40, 9, bias: true, ternary: true, actBits: 0);
        l.Initialize(new Random(2));
        l.Bind(s_ctx, 4);
        float[] x = TestData.Floats(4 * 40, 3), r = TestData.Floats(4 * 9, 4);
        var y = new float[36]; var dx = new float[x.Length];
        l.Forward(x, y, 4, true); l.Backward(x, y, r, dx, 4);
        AssertInputGradient(l, x, r, dx, 4, step: 7);
    }

    [Fact]
    public void TernaryLinearStraightThroughGradients()
    {
        // STE: dW = dy^T q(x), dx = dy q(W), with q the absmean / absmax quantizers of the forward pass.
        int inF = 50, outF = 7, batch = 3;
        var l = new TernaryLinearLayer(inF, outF, bias: true, ternary: true, actBits: 8);
        l.Initialize(new Random(5));
        l.Bind(s_ctx, batch);
        float[] x = TestData.Floats(batch * inF, 6), dy = TestData.Floats(batch * outF, 7);
        var y = new float[batch * outF]; var dx = new float[x.Length];
        l.Forward(x, y, batch, true);
        l.Backward(x, y, dy, dx, batch);
        var wq = new float[inF * outF]; FakeQuant.TernaryAbsMean(l.Weight.Value, wq);
        var xq = new float[x.Length]; FakeQuant.ActivationsAbsMax(x, xq, inF, 8);
        var trits = new sbyte[wq.Length];
        float s = TernaryQuantizer.AbsMean(l.Weight.Value, trits);
        for (int i = 0; i < wq.Length; i++) Assert.Equal(trits[i] * s, wq[i]);   // same trits as Rotor's quantizer
        for (int o = 0; o < outF; o++)
            for (int i = 0; i < inF; i++)
            {
                double g = 0;
                for (int b = 0; b < batch; b++) g += dy[b * outF + o] * xq[b * inF + i];
                Assert.Equal(g, l.Weight.Grad[o * inF + i], 4);
            }
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < inF; i++)
            {
                double g = 0;
                for (int o = 0; o < outF; o++) g += dy[b * outF + o] * wq[o * inF + i];
                Assert.Equal(g, dx[b * inF + i], 4);
            }
        for (int o = 0; o < outF; o++) Assert.Equal(dy[o] + dy[outF + o] + dy[2 * outF + o], l.Bias.Grad[o], 4);
    }

    [Fact]
    public void Relu() => CheckGradients(new ReluLayer(30), 4, 20, eps: 1e-3f);

    [Fact]
    public void RmsNorm()
    {
        var l = new RmsNormLayer(24);
        for (int i = 0; i < 24; i++) l.Gain.Value[i] = 0.5f + i / 24f;
        CheckGradients(l, 3, 30, eps: 1e-3f);
    }

    [Fact]
    public void Dropout() => CheckGradients(new DropoutLayer(40, 0.3f), 3, 40);

    [Fact]
    public void DropoutDropsAboutPAndScalesTheRest()
    {
        var l = new DropoutLayer(1000, 0.25f);
        l.Bind(s_ctx, 10);
        var x = Enumerable.Repeat(1f, 10000).ToArray(); var y = new float[10000];
        l.StepSeed = 5;
        l.Forward(x, y, 10, training: true);
        double dropped = y.Count(v => v == 0) / 10000.0;
        Assert.InRange(dropped, 0.23, 0.27);
        Assert.All(y.Where(v => v != 0), v => Assert.Equal(1f / 0.75f, v, 5));
        l.Forward(x, y, 10, training: false);
        Assert.All(y, v => Assert.Equal(1f, v));
    }

    [Fact]
    public void FloatConv2d()
    {
        var l = new TernaryConv2dLayer(2, 6, 5, 3, 3, 1, ternary: false, actBits: 0);
        l.Initialize(new Random(3));
        CheckGradients(l, 2, 50);
    }

    [Fact]
    public void FloatConv2dWithoutPaddingAndWideChannels()
    {
        var l = new TernaryConv2dLayer(16, 5, 5, 16, 3, 0, ternary: false, actBits: 0);
        l.Initialize(new Random(4));
        CheckGradients(l, 2, 60);
    }

    [Fact]
    public void TernaryConv2dInputGradientIsExactForFixedTrits()
    {
        var l = new TernaryConv2dLayer(3, 5, 5, 4, 5, 2, ternary: true, actBits: 0);
        l.Initialize(new Random(6));
        l.Bind(s_ctx, 2);
        float[] x = TestData.Floats(2 * l.InputSize, 7), r = TestData.Floats(2 * l.OutputSize, 8);
        var y = new float[r.Length]; var dx = new float[x.Length];
        l.Forward(x, y, 2, true); l.Backward(x, y, r, dx, 2);
        AssertInputGradient(l, x, r, dx, 2, step: 5);
    }

    [Fact]
    public void MaxPool() => CheckGradients(new MaxPool2dLayer(10, 4, 6, 2), 2, 70, eps: 1e-3f);

    [Fact]
    public void MaxPoolScalarChannels() => CheckGradients(new MaxPool2dLayer(3, 4, 4, 2), 2, 71, eps: 1e-3f);

    /// <summary>Every parameter's gradient (kept by the last backward pass) against central finite differences of
    /// <paramref name="loss"/> at six random entries a parameter.</summary>
    private static void CheckNetworkGradients(TrainNetwork net, Func<double> loss, Random rng)
    {
        foreach (Parameter p in net.Parameters)
        {
            var g = (float[])p.Grad.Clone();
            for (int s = 0; s < 6; s++)
            {
                int i = rng.Next(p.Value.Length);
                float keep = p.Value[i];
                p.Value[i] = keep + 1e-2f; double up = loss();
                p.Value[i] = keep - 1e-2f; double down = loss();
                p.Value[i] = keep;
                double fd = (up - down) / 2e-2;
                Assert.True(Math.Abs(fd - g[i]) < 2e-3 + 2e-2 * Math.Abs(fd), $"{p.Name}[{i}]: backward {g[i]}, finite difference {fd}");
            }
        }
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.1f)]
    public void WholeNetworkWithSoftmaxCrossEntropy(float smoothing)
    {
        // Loss() computes mean cross-entropy and its gradient; check every parameter through the whole network.
        var rng = new Random(8);
        var d1 = new TernaryLinearLayer(12, 16, true, false, 0); d1.Initialize(rng);
        var d2 = new TernaryLinearLayer(16, 5, true, false, 0); d2.Initialize(rng);
        using var net = new TrainNetwork([d1, new ReluLayer(16), new RmsNormLayer(16), d2], 6, new TrainContext(1));
        float[] x = TestData.Floats(6 * 12, 9);
        byte[] labels = [0, 1, 2, 3, 4, 1];
        double L()
        {
            net.Forward(x, 6, training: false);
            return net.Loss(labels, 6, smoothing).Loss;
        }
        L(); net.Backward(6);
        CheckNetworkGradients(net, L, rng);
    }

    [Theory]
    [InlineData(0.5f, 2f, 0f)]
    [InlineData(1f, 4f, 0.1f)]
    [InlineData(0.3f, 1f, 0f)]
    [InlineData(0f, 1f, 0f)]
    public void DistillationLossGradientMatchesFiniteDifferences(float alpha, float temperature, float smoothing)
    {
        var rng = new Random(11);
        var d1 = new TernaryLinearLayer(10, 12, true, false, 0); d1.Initialize(rng);
        var d2 = new TernaryLinearLayer(12, 7, true, false, 0); d2.Initialize(rng);
        // RMSNorm rather than ReLU between the layers: smooth, so finite differences never straddle a kink.
        using var net = new TrainNetwork([d1, new RmsNormLayer(12), d2], 5, new TrainContext(1));
        float[] x = TestData.Floats(5 * 10, 3);
        float[] teacher = TestData.Floats(5 * 7, 4);
        for (int i = 0; i < teacher.Length; i++) teacher[i] *= 3;
        byte[] labels = [6, 0, 3, 2, 5];
        double L()
        {
            net.Forward(x, 5, training: false);
            return net.Loss(labels, 5, smoothing, teacher, alpha, temperature).Loss;
        }
        L(); net.Backward(5);
        CheckNetworkGradients(net, L, rng);
    }

    [Fact]
    public void DistillationFromTheStudentItselfAddsNothing()
    {
        // KL(p || p) = 0 with a zero gradient: the loss and gradient equal (1 - a) times the plain cross-entropy's.
        var rng = new Random(12);
        var d = new TernaryLinearLayer(9, 6, true, false, 0); d.Initialize(rng);
        using var net = new TrainNetwork([d], 4, new TrainContext(1));
        float[] x = TestData.Floats(4 * 9, 5);
        byte[] labels = [1, 5, 0, 2];
        float[] logits = net.Forward(x, 4, training: false).ToArray();
        var (plain, _) = net.Loss(labels, 4);
        net.Backward(4);
        float[] g = (float[])d.Weight.Grad.Clone();
        net.Forward(x, 4, training: false);
        var (kd, _) = net.Loss(labels, 4, 0f, logits, 0.25f, 3f);
        net.Backward(4);
        Assert.Equal(0.75 * plain, kd, 6);
        for (int i = 0; i < g.Length; i++) Assert.Equal(0.75f * g[i], d.Weight.Grad[i], 5);
    }
}

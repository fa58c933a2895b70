using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void AdamWFirstTwoStepsMatchHandComputation()
    {
        // One weight with decay, one bias without; lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.5.
        var w = new Parameter("w", [1], decay: true);
        var b = new Parameter("b", [1], decay: false);
        w.Value[0] = 2f; b.Value[0] = -1f;
        var opt = new AdamW([w, b], 0.9f, 0.999f, 1e-8f, 0.5f);
        w.Grad[0] = 0.4f; b.Grad[0] = -3f;
        opt.Update(0.1f);
        // Step 1: m = 0.1 g, v = 0.001 g^2, m^ = g, v^ = g^2, update = lr * g / (|g| + eps) = ±0.1.
        // w: decayed 2 * (1 - 0.1 * 0.5) = 1.9, then - 0.1 = 1.8. b: no decay, -1 + 0.1 = -0.9.
        Assert.Equal(1.8f, w.Value[0], 5);
        Assert.Equal(-0.9f, b.Value[0], 5);
        Assert.Equal(0.04f, opt.M[0][0], 6);
        Assert.Equal(0.00016f, opt.V[0][0], 8);
        w.Grad[0] = -0.2f;
        opt.Update(0.05f);
        // Step 2: m = 0.9 * 0.04 + 0.1 * (-0.2) = 0.016; v = 0.999 * 0.00016 + 0.001 * 0.04 = 0.00019984
        // m^ = 0.016 / 0.19 = 0.0842105; v^ = 0.00019984 / 0.001999 = 0.0999700; sqrt = 0.3161804
        // w = 1.8 * (1 - 0.05 * 0.5) - 0.05 * 0.0842105 / 0.3161804 = 1.755 - 0.0133172 = 1.7416828
        Assert.Equal(1.7416828f, w.Value[0], 5);
        Assert.Equal(2, opt.Step);
    }

    [Fact]
    public void VectorAndScalarPathsAgree()
    {
        // 19 values: two vectors of 8 and a scalar tail of 3, against a double-precision formula.
        var p = new Parameter("p", [19], decay: true);
        float[] init = TestData.Floats(19, 1), g = TestData.Floats(19, 2);
        init.CopyTo(p.Value, 0); g.CopyTo(p.Grad, 0);
        var opt = new AdamW([p], 0.8f, 0.99f, 1e-6f, 0.1f);
        opt.Update(0.01f);
        for (int i = 0; i < 19; i++)
        {
            double m = 0.2 * g[i], v = 0.01 * g[i] * g[i];
            double expected = init[i] * (1 - 0.01 * 0.1) - 0.01 * (m / 0.2) / (Math.Sqrt(v / 0.01) + 1e-6);
            Assert.Equal(expected, p.Value[i], 5);
        }
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysByCosine()
    {
        var s = new LrSchedule(1e-3f, 10, 110, 0.1f);
        Assert.Equal(1e-4f, s.At(0), 7);
        Assert.Equal(1e-3f, s.At(9), 7);
        Assert.Equal(1e-3f, s.At(10), 7);
        Assert.Equal(1e-4f + 0.9e-3f * 0.5f, s.At(60), 6);   // half way: cos = 0
        Assert.Equal(1e-4f, s.At(110), 7);
        for (long t = 11; t < 110; t++) Assert.True(s.At(t) <= s.At(t - 1));
    }
}

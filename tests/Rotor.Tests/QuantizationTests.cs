namespace Rotor.Tests;

public class QuantizationTests
{
    [Fact]
    public void AbsMeanFollowsBitNet()
    {
        float[] w = [0.9f, -0.05f, -1.2f, 0.3f];
        var q = new sbyte[4];
        float s = TernaryQuantizer.AbsMean(w, q);
        Assert.Equal((0.9f + 0.05f + 1.2f + 0.3f) / 4, s, 6);
        // w / s = 1.469, -0.08, -1.959, 0.49 -> 1, 0, -1, 0
        Assert.Equal(new sbyte[] { 1, 0, -1, 0 }, q);
    }

    [Fact]
    public void ThresholdFollowsTwn()
    {
        float[] w = [1f, -0.1f, -0.6f, 0.2f];   // mean|w| = 0.475, delta = 0.3325
        var q = new sbyte[4];
        float s = TernaryQuantizer.Threshold(w, q);
        Assert.Equal(new sbyte[] { 1, 0, -1, 0 }, q);
        Assert.Equal(0.8f, s, 6);
    }

    [Fact]
    public void ReportMeasuresError()
    {
        float[] w = TestData.Floats(4096, 1);
        var q = new sbyte[w.Length];
        float s = TernaryQuantizer.AbsMean(w, q);
        var r = TernaryQuantizer.Report(w, q, s);
        Assert.InRange(r.RelativeError, 0.2, 0.8);
        Assert.InRange(r.ZeroShare, 0.1, 0.6);
        var exact = TernaryQuantizer.Report([1f, -1f, 0f], [1, -1, 0], 1f);
        Assert.Equal(0, exact.Mse);
    }

    [Fact]
    public void NonFiniteWeightsAreRejectedNamingTheIndex()
    {
        float[] w = [1f, 2f, float.PositiveInfinity, 3f];
        var e = Assert.Throws<RotorException>(() => TernaryQuantizer.AbsMean(w, new sbyte[4]));
        Assert.Contains("[2]", e.Message);
        w[2] = float.NaN;
        Assert.Throws<RotorException>(() => TernaryQuantizer.Threshold(w, new sbyte[4]));
        Assert.Throws<ArgumentException>(() => TernaryQuantizer.AbsMean([], []));
    }

    [Theory]
    [InlineData(1)] [InlineData(15)] [InlineData(16)] [InlineData(33)] [InlineData(300)]
    public void ActivationQuantizationMatchesScalarFormula(int k)
    {
        float[] x = TestData.Floats(k * 3, k, 5f);
        var qa = new QuantizedActivations(4, k);
        qa.Quantize(x);
        Assert.Equal(3, qa.Count);
        for (int i = 0; i < 3; i++)
        {
            float amax = 0;
            for (int j = 0; j < k; j++) amax = MathF.Max(amax, MathF.Abs(x[i * k + j]));
            Assert.Equal(amax / 127f, qa.Scales[i]);
            int sum = 0;
            for (int j = 0; j < qa.PaddedCols; j++)
            {
                int expected = j < k ? (int)Math.Clamp(MathF.Round(x[i * k + j] * (127f / amax)), -127, 127) : 0;
                Assert.Equal(expected, qa.Data[i * qa.PaddedCols + j]);
                sum += expected;
            }
            Assert.Equal(sum, qa.Sums[i]);
        }
    }

    [Fact]
    public void ActivationQuantizationRejectsBadShapes()
    {
        var qa = new QuantizedActivations(2, 10);
        Assert.Throws<ArgumentException>(() => qa.Quantize(new float[15]));
        Assert.Throws<ArgumentException>(() => qa.Quantize(new float[30]));
        Assert.Throws<RotorException>(() => qa.Quantize(Enumerable.Repeat(float.NaN, 10).ToArray()));
        qa.Quantize(new float[10]);
        Assert.Equal(0f, qa.Scales[0]);
    }
}

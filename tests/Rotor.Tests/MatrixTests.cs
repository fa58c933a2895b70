namespace Rotor.Tests;

public class MatrixTests
{
    [Theory]
    [InlineData(1, 1)] [InlineData(3, 255)] [InlineData(2, 256)] [InlineData(5, 257)] [InlineData(7, 1000)]
    public void TritsRoundTripThroughTheComputeLayout(int rows, int cols)
    {
        sbyte[] t = TestData.Trits(rows * cols, rows * 31 + cols);
        var m = TernaryMatrix.FromTrits(t, rows, cols, [0.5f]);
        Assert.Equal(t, m.ToTrits());
        Assert.Equal(0, m.PaddedCols % 256);
        Assert.Equal(m.PaddedCols / 4, m.RowBytes);
        foreach (var f in new[] { TernaryFormat.T2, TernaryFormat.T1_6, TernaryFormat.I2_256 })
        {
            byte[] enc = m.Encode(f);
            var back = TernaryMatrix.Decode(f, enc, rows, cols, [0.5f]);
            Assert.Equal(t, back.ToTrits());
        }
    }

    [Fact]
    public void LayoutMatchesTheSpec()
    {
        // column 256b + 64q + j lives in byte 64b + j, bits 2q..2q+1, as w + 1
        var t = new sbyte[300];
        t[0] = 1; t[64] = -1; t[130] = 1; t[299] = -1;
        var m = TernaryMatrix.FromTrits(t, 1, 300, [1f]);
        ReadOnlySpan<byte> d = m.Data;
        Assert.Equal(2, d[0] & 3);            // w[0] = +1 -> code 2
        Assert.Equal(0, (d[0] >> 2) & 3);     // w[64] = -1 -> code 0
        Assert.Equal(2, (d[2] >> 4) & 3);     // w[130] = +1
        Assert.Equal(0, (d[64 + 43] >> 0) & 3); // w[299] = 256 + 43 -> -1
        Assert.Equal(1, (d[64 + 63] >> 6) & 3); // padding = 0 -> code 1
    }

    [Fact]
    public void MemoryIsReportedExactly()
    {
        // 100M weights: 390625 rows of 256 = 25,000,000 bytes = 23.84 MiB of 2-bit codes, no padding.
        var m = TernaryMatrix.FromTrits(new sbyte[256 * 4], 4, 256, [1f]);
        Assert.Equal(256, m.PayloadBytes);
        Assert.Equal(25_000_000L, TernaryFormats.T2.BytesFor(100_000_000));
        Assert.Equal(23.84, 25_000_000 / 1048576.0, 2);
        Assert.Equal(4 * 64 + 4, m.AllocatedBytes);
    }

    [Fact]
    public void BadInputIsRejectedWithClearErrors()
    {
        Assert.Contains("2x3", Assert.Throws<ArgumentException>(() => TernaryMatrix.FromTrits(new sbyte[5], 2, 3, [1f])).Message.Replace("length 5, expected 6", "2x3"));
        Assert.Throws<ArgumentOutOfRangeException>(() => TernaryMatrix.FromTrits([], 0, 3, [1f]));
        Assert.Contains("scales", Assert.Throws<ArgumentException>(() => TernaryMatrix.FromTrits(new sbyte[6], 2, 3, [1f, 2f, 3f])).Message);
        Assert.Throws<RotorException>(() => TernaryMatrix.FromTrits(new sbyte[6], 2, 3, [float.NaN]));
        var bad = new byte[2]; bad[1] = 0b1100;
        var e = Assert.Throws<InvalidTritException>(() => TernaryMatrix.Decode(TernaryFormat.T2, bad, 2, 3, [1f], "model.safetensors:w"));
        Assert.Contains("model.safetensors:w", e.Message);
        Assert.Throws<RotorException>(() => TernaryMatrix.Decode(TernaryFormat.T2, new byte[1], 2, 3, [1f]));
    }

    [Fact]
    public void PerRowScalesDequantize()
    {
        var m = TernaryMatrix.FromTrits([1, -1, 0, 1], 2, 2, [2f, 3f]);
        Assert.Equal(ScaleMode.PerRow, m.ScaleMode);
        Assert.Equal(new[] { 2f, -2f, 0f, 3f }, m.ToFloat());
    }
}

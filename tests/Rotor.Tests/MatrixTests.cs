using Rotor.Kernels;

namespace Rotor.Tests;

public class MatrixTests
{
    public static TheoryData<TernaryFormat> MatrixFormats()
    {
        var d = new TheoryData<TernaryFormat>();
        foreach (var f in TernaryFormats.All) if (f.StoresMatrices) d.Add(f.Format);
        return d;
    }

    [Theory]
    [InlineData(1, 1)] [InlineData(3, 255)] [InlineData(2, 256)] [InlineData(5, 257)] [InlineData(7, 1000)]
    public void TritsRoundTripThroughTheComputeLayout(int rows, int cols)
    {
        sbyte[] t = TestData.Trits(rows * cols, rows * 31 + cols);
        var m = TernaryMatrix.FromTrits(t, rows, cols, [0.5f]);
        Assert.Equal(t, m.ToTrits());
        Assert.Equal(0, m.PaddedCols % 256);
        Assert.Equal(m.PaddedCols / 4, m.RowBytes);
        foreach (var f in TernaryFormats.All.Where(f => f.StoresMatrices))
        {
            byte[] enc = m.Encode(f.Format);
            Assert.Equal(f.MatrixBytes(rows, cols), enc.Length);
            var back = TernaryMatrix.Decode(f.Format, enc, rows, cols, [0.5f]);
            Assert.Equal(t, back.ToTrits());
        }
    }

    [Fact]
    public void ComputeLayoutEncodingIsTheMatrixBuffer()
    {
        var m = TernaryMatrix.FromTrits(TestData.Trits(3 * 300, 5), 3, 300, [1f]);
        Assert.Equal(m.Data.ToArray(), m.Encode(TernaryFormat.I2_256));
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
    public void UninitializedMatricesAreWhollyWrittenByTheirFactories()
    {
        // Matrices start in unzeroed memory: fill the arena with garbage first by making and dropping dirty ones.
        for (int k = 0; k < 4; k++)
        {
            var dirty = TernaryMatrix.FromPackedRows(300, 1024, [1f], (r, dst) => dst.Fill(0xAA));
            GC.KeepAlive(dirty);
        }
        GC.Collect(); GC.WaitForPendingFinalizers();
        // A filler that writes nothing leaves zero weights (the factory sets code 1 first), padding included.
        var m = TernaryMatrix.FromPackedRows(300, 1000, [1f], (r, dst) => { });
        Assert.All(m.ToTrits(), t => Assert.Equal(0, t));
        Assert.All(m.Data.ToArray(), b => Assert.Equal(0x55, b));
        // SetRow of F16 and F32 rows clears the stride's padding.
        foreach (var type in new[] { DenseType.F16, DenseType.F32 })
        {
            var d = DenseMatrix.CreateUninitialized(3, 33, type);
            for (int r = 0; r < 3; r++) d.SetRow(r, Enumerable.Repeat(1.5f, 33).ToArray());
            Assert.All(d.ToFloat(), v => Assert.Equal(1.5f, v));
        }
    }

    [Fact]
    public void MemoryIsReportedExactly()
    {
        // 3 x 300: 900 weights at 2 bits = 225 bytes of payload; rows padded to 512 columns = 128 bytes, 3 scales.
        var m = TernaryMatrix.FromTrits(TestData.Trits(900, 1), 3, 300, [1f, 2f, 3f]);
        Assert.Equal(225, m.PayloadBytes);
        Assert.Equal(3 * 128 + 3 * 4, m.AllocatedBytes);
        Assert.Equal(225, m.Encode(TernaryFormat.T2).Length);
        Assert.Equal(180, m.Encode(TernaryFormat.T1_6).Length);   // 900 / 5
        Assert.Equal(3 * 128, m.Encode(TernaryFormat.I2_256).Length);
    }

    [Fact]
    public void BadInputIsRejectedWithClearErrors()
    {
        Assert.Contains("length 5, expected 6", Assert.Throws<ArgumentException>(() => TernaryMatrix.FromTrits(new sbyte[5], 2, 3, [1f])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => TernaryMatrix.FromTrits([], 0, 3, [1f]));
        Assert.Contains("scales", Assert.Throws<ArgumentException>(() => TernaryMatrix.FromTrits(new sbyte[6], 2, 3, [1f, 2f, 3f])).Message);
        Assert.Throws<RotorException>(() => TernaryMatrix.FromTrits(new sbyte[6], 2, 3, [float.NaN]));
        Assert.Contains("row 1", Assert.Throws<ArgumentException>(() => TernaryMatrix.FromTrits([0, 0, 0, 0, 2, 0], 2, 3, [1f])).Message);
        var bad = new byte[2]; bad[1] = 0b1100;
        var e = Assert.Throws<InvalidTritException>(() => TernaryMatrix.Decode(TernaryFormat.T2, bad, 2, 3, [1f], "model.safetensors:w"));
        Assert.Contains("model.safetensors:w", e.Message);
        Assert.Equal(5, e.Position);
        Assert.Contains("expected 2", Assert.Throws<RotorException>(() => TernaryMatrix.Decode(TernaryFormat.T2, new byte[1], 2, 3, [1f])).Message);
        Assert.Contains("not a storage form of a matrix", Assert.Throws<ArgumentException>(() => TernaryMatrix.Decode(TernaryFormat.BitPlanes, new byte[16], 1, 3, [1f])).Message);
    }

    [Fact]
    public void InvalidCodesAreRejectedInEveryMatrixFormat()
    {
        var m = TernaryMatrix.FromTrits(TestData.Trits(2 * 260, 9), 2, 260, [1f]);
        byte[] t2 = m.Encode(TernaryFormat.T2);
        t2[7] |= 0b11;
        Assert.Contains("w.bin", Assert.Throws<InvalidTritException>(() => TernaryMatrix.Decode(TernaryFormat.T2, t2, 2, 260, [1f], "w.bin")).Message);
        byte[] t16 = m.Encode(TernaryFormat.T1_6);
        t16[^1] = 243;
        Assert.Contains("w.bin", Assert.Throws<RotorException>(() => TernaryMatrix.Decode(TernaryFormat.T1_6, t16, 2, 260, [1f], "w.bin")).Message);
        // code 3 in the padding of the first row (columns 260..511) is still an invalid file
        byte[] i2 = m.Encode(TernaryFormat.I2_256);
        i2[64 + 10] |= 0b11 << 6;
        Assert.Contains("byte 74", Assert.Throws<RotorException>(() => TernaryMatrix.Decode(TernaryFormat.I2_256, i2, 2, 260, [1f], "w.bin")).Message);
    }

    [Fact]
    public void NonFiniteValuesAreNamedByIndex()
    {
        RotorException.ThrowIfNotFinite([1f, 2f, -3f], "x");
        float[] v = TestData.Floats(100, 2);
        v[57] = float.PositiveInfinity;
        Assert.Contains("x[57]", Assert.Throws<RotorException>(() => RotorException.ThrowIfNotFinite(v, "x")).Message);
        v[3] = float.NaN;
        Assert.Contains("x[3]", Assert.Throws<RotorException>(() => RotorException.ThrowIfNotFinite(v, "x")).Message);
    }

    [Fact]
    public void PerRowScalesDequantize()
    {
        var m = TernaryMatrix.FromTrits([1, -1, 0, 1], 2, 2, [2f, 3f]);
        Assert.Equal(ScaleMode.PerRow, m.ScaleMode);
        Assert.Equal(new[] { 2f, -2f, 0f, 3f }, m.ToFloat());
    }

    [Fact]
    public void FormatTableIsConsistent()
    {
        foreach (var f in TernaryFormats.All)
        {
            Assert.Same(f, TernaryFormats.Get(f.Format));
            Assert.Same(f, TernaryFormats.Get(f.Name));
            Assert.Equal(f.Encode is null, f.Decode is null);
            Assert.False(f.ForFiles && (!f.StoresMatrices || f.RowAligned), $"{f.Name}: a file format stores matrices densely");
        }
        Assert.Equal("t2 or t1.6", TernaryFormats.Names(f => f.ForFiles));
        Assert.Contains("unknown ternary format 'q4'", Assert.Throws<RotorException>(() => TernaryFormats.Get("q4")).Message);
    }

    [Fact]
    public void KernelPathTableIsConsistent()
    {
        foreach (KernelPath p in Enum.GetValues<KernelPath>())
        {
            KernelPathInfo info = KernelPaths.Get(p);
            Assert.Equal(p, info.Path);
            Assert.Same(info, KernelPaths.Find(info.Name.ToUpperInvariant()));
            Assert.Equal(info.IsSupported, KernelSelector.IsSupported(p));
            Assert.Equal(info.IsSupported, info.UnavailableReason is null);
        }
        Assert.Equal(KernelPath.Reference, KernelSelector.Supported[0]);
        KernelPathInfo best = KernelPaths.Get(KernelSelector.Best);
        Assert.True(best.IsSupported);
        Assert.All(KernelPaths.All.Where(r => r.IsSupported), r => Assert.True(r.Priority <= best.Priority, $"{r.Name} outranks the best path {best.Name}"));
        Assert.Null(KernelPaths.Find("avx1024"));
    }
}

namespace Rotor.Tests;

public class TritTests
{
    [Theory]
    [InlineData(1)] [InlineData(3)] [InlineData(4)] [InlineData(15)] [InlineData(16)] [InlineData(17)] [InlineData(1000)] [InlineData(4099)]
    public void PackUnpackRoundTrips(int n)
    {
        sbyte[] t = TestData.Trits(n, n);
        var packed = new byte[Trits.PackedBytes(n)];
        Trits.Pack(t, packed);
        var back = new sbyte[n];
        Trits.Unpack(packed, back);
        Assert.Equal(t, back);
    }

    [Fact]
    public void PackMatchesTheSpecBitForBit()
    {
        // value = bit0 - bit1, trit i in bits 2*(i%4) of byte i/4
        sbyte[] t = [1, -1, 0, 1, -1];
        var p = new byte[2];
        Trits.Pack(t, p);
        Assert.Equal(0b01_00_10_01, p[0]);
        Assert.Equal(0b10, p[1]);
        Assert.Equal(1, Trits.Decode(0b01));
        Assert.Equal(-1, Trits.Decode(0b10));
        Assert.Equal(0, Trits.Decode(0b00));
        Assert.Throws<InvalidTritException>(() => Trits.Decode(0b11));
    }

    [Theory]
    [InlineData(0)] [InlineData(5)] [InlineData(63)] [InlineData(64)] [InlineData(1001)]
    public void FindInvalidReportsTheFirstBadPosition(int pos)
    {
        int n = 1100;
        var p = new byte[Trits.PackedBytes(n)];
        Trits.Pack(TestData.Trits(n, 3), p);
        Assert.Equal(-1, Trits.FindInvalid(p, n));
        p[pos / 4] |= (byte)(3 << (2 * (pos % 4)));
        p[(pos + 40) / 4] |= (byte)(3 << (2 * ((pos + 40) % 4)));
        Assert.Equal(pos, Trits.FindInvalid(p, n));
        var e = Assert.Throws<InvalidTritException>(() => Trits.Validate(p, n, "test.bin"));
        Assert.Equal(pos, e.Position);
        Assert.Contains("test.bin", e.Message);
        Assert.Throws<InvalidTritException>(() => Trits.Unpack(p, new sbyte[n]));
    }

    [Fact]
    public void InvalidCodeInPaddingBeyondCountIsIgnored()
    {
        var p = new byte[] { 0b11_00_00_00 };
        Assert.Equal(-1, Trits.FindInvalid(p, 3));
        Assert.Equal(3, Trits.FindInvalid(p, 4));
    }

    [Fact]
    public void PackRejectsNonTritsNamingTheIndex()
    {
        var t = new sbyte[40];
        t[37] = 2;
        var e = Assert.Throws<ArgumentException>(() => Trits.Pack(t, new byte[10]));
        Assert.Contains("values[37] = 2", e.Message);
        Assert.Throws<ArgumentException>(() => Trits.Pack(new sbyte[40], new byte[9]));
    }

    [Fact]
    public void FloatPackUnpack()
    {
        float[] f = [1f, 0f, -1f, -1f, 1f];
        var p = new byte[2];
        Trits.Pack(f, p);
        var back = new float[5];
        Trits.Unpack(p, back);
        Assert.Equal(f, back);
        Assert.Throws<ArgumentException>(() => Trits.Pack(new[] { 0.5f }, p));
    }

    [Theory]
    [InlineData(1)] [InlineData(5)] [InlineData(6)] [InlineData(999)]
    public void Base3RoundTripsAndRejectsBadBytes(int n)
    {
        sbyte[] t = TestData.Trits(n, 7);
        var p = new byte[Base3.PackedBytes(n)];
        Base3.Pack(t, p);
        var back = new sbyte[n];
        Base3.Unpack(p, back);
        Assert.Equal(t, back);
        p[0] = 243;
        Assert.Throws<RotorException>(() => Base3.Unpack(p, back));
    }

    [Fact]
    public void FormatTableSizesAgree()
    {
        foreach (var f in TernaryFormats.All)
            Assert.Equal(f.BitsPerWeight, f.BlockBytes * 8.0 / f.BlockWeights, 12);
        Assert.Equal(1.6, TernaryFormats.T1_6.BitsPerWeight);
        Assert.Equal(25_000_000, TernaryFormats.T2.BytesFor(100_000_000));
        Assert.Equal(20_000_000, TernaryFormats.T1_6.BytesFor(100_000_000));
    }
}

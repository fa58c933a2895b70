using System.Runtime.InteropServices;
using Xunit;

namespace Rotor.Index.Tests;

/// <summary>Every scan kernel against <see cref="CodeLayout.RawReference"/> on random vectors, odd sizes and tails.</summary>
public unsafe class KernelTests
{
    public static TheoryData<CodeKind, int> Cases()
    {
        var t = new TheoryData<CodeKind, int>();
        foreach (var k in Enum.GetValues<CodeKind>())
            foreach (int d in new[] { 1, 7, 63, 64, 65, 100, 384, 1000 }) t.Add(k, d);
        return t;
    }

    [Theory, MemberData(nameof(Cases))]
    public void RawMatchesReference(CodeKind kind, int dims)
    {
        var layout = new CodeLayout(kind, dims);
        var rng = new Random(dims * 31 + (int)kind);
        foreach (int count in new[] { 1, 3, 4, 5, 9, 17 })
        {
            var codes = new byte[count * layout.Bytes];
            var v = new float[dims];
            for (int i = 0; i < count; i++)
            {
                for (int j = 0; j < dims; j++) v[j] = SyntheticVectors.Gaussian(rng);
                layout.Encode(v, codes.AsSpan(i * layout.Bytes, layout.Bytes));
            }
            var q = new byte[layout.Bytes];
            for (int j = 0; j < dims; j++) v[j] = SyntheticVectors.Gaussian(rng);
            layout.Encode(v, q);
            var dest = new float[count];
            fixed (byte* qp = q, cp = codes) fixed (float* dp = dest)
            {
                ScanKernels.Raw(layout, qp, cp, count, dp);
                for (int i = 0; i < count; i++)
                {
                    float expect = layout.RawReference(q, codes.AsSpan(i * layout.Bytes, layout.Bytes));
                    if (kind == CodeKind.Float32) Assert.Equal(expect, dest[i], 1e-3f * dims);
                    else Assert.Equal(expect, dest[i]);
                    Assert.Equal(dest[i], ScanKernels.RawOne(layout, qp, cp + i * layout.Bytes), kind == CodeKind.Float32 ? 1e-3f * dims : 0f);
                }
            }
        }
    }

    [Theory]
    [InlineData(1)] [InlineData(31)] [InlineData(32)] [InlineData(33)] [InlineData(384)] [InlineData(999)]
    public void Int8ScalarAndAvx2Agree(int dims)
    {
        var rng = new Random(dims);
        int count = 7;
        var q = new sbyte[dims]; var codes = new sbyte[dims * count];
        for (int j = 0; j < dims; j++) q[j] = (sbyte)rng.Next(-127, 128);
        for (int j = 0; j < codes.Length; j++) codes[j] = (sbyte)rng.Next(-127, 128);
        q[0] = 127; codes[0] = -127; // extremes
        var a = new float[count]; var b = new float[count];
        fixed (sbyte* qp = q, cp = codes) fixed (float* ap = a, bp = b)
        {
            ScanKernels.Int8Scalar(qp, cp, dims, count, ap);
            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) ScanKernels.Int8Avx2(qp, cp, dims, count, bp);
            else ScanKernels.Int8Scalar(qp, cp, dims, count, bp);
        }
        for (int i = 0; i < count; i++)
        {
            long s = 0;
            for (int j = 0; j < dims; j++) s += q[j] * codes[i * dims + j];
            Assert.Equal(s, (long)a[i]);
            Assert.Equal(s, (long)b[i]);
        }
    }

    [Fact]
    public void TernaryEncodingUsesThresholdQuantizer()
    {
        var rng = new Random(5);
        var v = new float[130];
        for (int j = 0; j < v.Length; j++) v[j] = SyntheticVectors.Gaussian(rng);
        var layout = new CodeLayout(CodeKind.Ternary, v.Length);
        var code = new byte[layout.Bytes];
        float scale = layout.Encode(v, code);
        var trits = new sbyte[v.Length];
        float expectScale = TernaryQuantizer.Threshold(v, trits);
        Assert.Equal(expectScale, scale);
        var decoded = new float[v.Length];
        layout.Decode(code, 1f, decoded);
        for (int j = 0; j < v.Length; j++) Assert.Equal(trits[j], (sbyte)decoded[j]);
        // Planes are disjoint and bits past D are zero.
        var w = MemoryMarshal.Cast<byte, ulong>(code);
        for (int i = 0; i < layout.Words; i++) Assert.Equal(0UL, w[i] & w[layout.Words + i]);
        Assert.Equal(0UL, w[layout.Words - 1] >> (v.Length & 63));
    }

    [Fact]
    public void TopKKeepsTheBestInOrder()
    {
        var rng = new Random(3);
        foreach (int k in new[] { 1, 2, 10, 100 })
        {
            var top = new TopK(k);
            var all = new List<(float, int)>();
            for (int i = 0; i < 1000; i++)
            {
                float s = rng.Next(50); // many ties: order by slot decides
                top.Push(s, i); all.Add((s, i));
            }
            var expect = all.OrderByDescending(x => x.Item1).ThenBy(x => x.Item2).Take(k).ToArray();
            Assert.Equal(expect, top.ToSortedArray().Select(x => (x.Score, x.Slot)).ToArray());
        }
    }
}

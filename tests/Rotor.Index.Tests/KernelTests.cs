using System.Runtime.InteropServices;
using Rotor.Index.Benchmarking;
using Xunit;

namespace Rotor.Index.Tests;

/// <summary>Every scan kernel against <see cref="CodeLayout.RawReference"/> on random vectors, odd sizes and tails.</summary>
public unsafe class KernelTests
{
    // Plane widths W = 1, 1, 1, 1, 2, 2, 4, 4, 5, 6, 6, 8, 10, 12, 16: every unrolled ternary kernel, the generic one and tails.
    private static readonly int[] Dims = [1, 7, 63, 64, 65, 100, 200, 256, 320, 330, 384, 512, 640, 768, 1000];

    public static TheoryData<CodeKind, int> Cases()
    {
        var t = new TheoryData<CodeKind, int>();
        foreach (var k in Enum.GetValues<CodeKind>())
            foreach (int d in Dims) t.Add(k, d);
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

    public static TheoryData<int> TernaryDims()
    {
        var t = new TheoryData<int>();
        foreach (int d in Dims) t.Add(d);
        return t;
    }

    /// <summary><paramref name="count"/> encoded Gaussian vectors of three spreads (so the popcounts vary widely); every
    /// fourth carries stray sign bits outside its mask, which every kernel must ignore as the decoder does.</summary>
    private static byte[] RandomTernaryCodes(CodeLayout layout, int count, Random rng)
    {
        int dims = layout.Dimensions;
        var codes = new byte[count * layout.Bytes];
        var v = new float[dims];
        for (int i = 0; i < count; i++)
        {
            for (int j = 0; j < dims; j++) v[j] = SyntheticVectors.Gaussian(rng) * (1 + (i % 3));
            var code = codes.AsSpan(i * layout.Bytes, layout.Bytes);
            layout.Encode(v, code);
            if (i % 4 == 3)
            {
                var w = MemoryMarshal.Cast<byte, ulong>(code);
                for (int x = 0; x < layout.Words; x++) w[layout.Words + x] |= (ulong)rng.NextInt64() & ~w[x] & ValidBits(dims, x);
            }
        }
        return codes;
    }

    [Theory, MemberData(nameof(TernaryDims))]
    public void TernaryUnrolledAndGenericKernelsAgree(int dims)
    {
        // Sparse and dense codes (thresholds of 0.1 to 2 sigma) so that both popcounts vary widely.
        var layout = new CodeLayout(CodeKind.Ternary, dims);
        var rng = new Random(1000 + dims);
        const int count = 13; // odd: the hybrid W = 6 kernel ends on a scalar code
        byte[] codes = RandomTernaryCodes(layout, count, rng);
        var v = new float[dims];
        var q = new byte[layout.Bytes];
        for (int j = 0; j < dims; j++) v[j] = SyntheticVectors.Gaussian(rng);
        layout.Encode(v, q);
        var fast = new float[count];
        var generic = new float[count];
        fixed (byte* qp = q, cp = codes) fixed (float* fp = fast, gp = generic)
        {
            ScanKernels.Ternary((ulong*)qp, (ulong*)cp, layout.Words, count, fp);
            ScanKernels.TernaryGeneric((ulong*)qp, (ulong*)cp, layout.Words, count, gp);
            var scalar6 = new float[count];
            var hybrid6 = new float[count];
            if (layout.Words == 6)
                fixed (float* sp = scalar6, hp = hybrid6)
                {
                    ScanKernels.Ternary6((ulong*)qp, (ulong*)cp, count, sp);
                    if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) ScanKernels.Ternary6Hybrid((ulong*)qp, (ulong*)cp, count, hp);
                    else ScanKernels.Ternary6((ulong*)qp, (ulong*)cp, count, hp);
                    // Every count 1..count through the hybrid: odd counts end on a scalar code.
                    for (int c = 1; c <= count; c++)
                    {
                        var part = new float[c];
                        fixed (float* pp = part)
                            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) ScanKernels.Ternary6Hybrid((ulong*)qp, (ulong*)cp, c, pp);
                        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.Equal(hybrid6.AsSpan(0, c).ToArray(), part);
                    }
                }
            for (int i = 0; i < count; i++)
            {
                float expect = layout.RawReference(q, codes.AsSpan(i * layout.Bytes, layout.Bytes));
                Assert.Equal(expect, fast[i]);
                Assert.Equal(expect, generic[i]);
                if (layout.Words == 6) { Assert.Equal(expect, scalar6[i]); Assert.Equal(expect, hybrid6[i]); }
                Assert.Equal(expect, ScanKernels.TernaryOne((ulong*)qp, (ulong*)(cp + i * layout.Bytes), layout.Words));
            }
        }
        // The code against itself: the number of non-zero trits.
        fixed (byte* qp = q) Assert.Equal(layout.RawReference(q, q), ScanKernels.TernaryOne((ulong*)qp, (ulong*)qp, layout.Words));
    }

    [Theory, MemberData(nameof(TernaryDims))]
    public void AsymmetricKernelsMatchReference(int dims)
    {
        // The int8 query against ternary codes: AVX2 (32- and 16-byte steps, scalar tail) and scalar kernels against
        // sum_j q8_j t_j on decoded trits. Query values include the extremes; some codes carry stray sign bits outside
        // their mask (as a damaged or foreign file might), which every kernel must ignore as the decoder does.
        var layout = new CodeLayout(CodeKind.Ternary, dims);
        var rng = new Random(2000 + dims);
        foreach (int count in new[] { 1, 3, 5, 17 })
        {
            byte[] codes = RandomTernaryCodes(layout, count, rng);
            var q8 = new sbyte[dims];
            for (int j = 0; j < dims; j++) q8[j] = (sbyte)rng.Next(-127, 128);
            q8[0] = 127; q8[dims - 1] = -127;
            var planes = new sbyte[64 * layout.Words];
            ScanKernels.TransposeQuery(q8, layout.Words, planes);
            var scalar = new float[count];
            var avx2 = new float[count];
            var trits = new float[dims];
            fixed (sbyte* pp = planes) fixed (byte* cp = codes) fixed (float* sp = scalar, ap = avx2)
            {
                ScanKernels.TernaryAsymScalar(pp, (ulong*)cp, layout.Words, count, sp);
                if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) ScanKernels.TernaryAsymAvx2(pp, (ulong*)cp, layout.Words, count, ap);
                else ScanKernels.TernaryAsymScalar(pp, (ulong*)cp, layout.Words, count, ap);
                for (int i = 0; i < count; i++)
                {
                    layout.Decode(codes.AsSpan(i * layout.Bytes, layout.Bytes), 1f, trits);
                    long expect = 0;
                    for (int j = 0; j < dims; j++) expect += q8[j] * (long)trits[j];
                    Assert.Equal(expect, (long)scalar[i]);
                    Assert.Equal(expect, (long)avx2[i]);
                    Assert.Equal(expect, (long)ScanKernels.TernaryAsymOne(pp, (ulong*)(cp + i * layout.Bytes), layout.Words));
                }
            }
        }
    }

    private static ulong ValidBits(int dims, int word) => word < dims / 64 ? ulong.MaxValue : dims % 64 == 0 ? ulong.MaxValue : (1UL << (dims % 64)) - 1;

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
        // Sign bits lie under the mask, and bits past D are zero in both planes.
        var w = MemoryMarshal.Cast<byte, ulong>(code);
        for (int i = 0; i < layout.Words; i++) Assert.Equal(0UL, w[layout.Words + i] & ~w[i]);
        Assert.Equal(0UL, w[layout.Words - 1] >> (v.Length & 63));
        Assert.Equal(0UL, w[2 * layout.Words - 1] >> (v.Length & 63));
        for (int j = 0; j < v.Length; j++)
        {
            bool nonZero = (w[j >> 6] >> (j & 63) & 1) != 0, negative = (w[layout.Words + (j >> 6)] >> (j & 63) & 1) != 0;
            Assert.Equal(trits[j] != 0, nonZero);
            Assert.Equal(trits[j] < 0, negative);
        }
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

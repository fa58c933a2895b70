using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Rotor.Tests;

/// <summary>The row conversions of <see cref="DenseQuantizer"/> against their scalar references, on both vector widths:
/// random floats, every kind of half, signed zeros, rounding ties, blocks with zero and subnormal scales, lengths around
/// the vector steps and the superblock; rows written from floats, from halves and by <see cref="DenseMatrix.ConvertTo"/>
/// give the same bits; NaN and infinities are refused with the row and column named; the half conversions match
/// <c>(Half)</c> and <c>(float)</c>.</summary>
public sealed unsafe class DenseConversionTests
{
    private static readonly int[] Sizes = [1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 511, 512, 513, 1000, 2560 + 7];
    private const int Kinds = 6;

    /// <summary>The vector widths to test: wide (Vector256) where it is accelerated, and the Vector128 path.</summary>
    private static bool[] Widths => Vector256.IsHardwareAccelerated ? [true, false] : [false];

    /// <summary>n values of one kind: 0 random floats, 1 any finite half, 2 special halves (signed zeros, ties, the
    /// largest and a subnormal half), 3 zeros of both signs among tiny values (blocks whose scale is zero or subnormal),
    /// 4 multiples of 0.5 (ties after scaling), 5 floats of every magnitude from 1e-30 to 1e4.</summary>
    private static float[] Values(int n, int kind, int seed)
    {
        float[] special = [0f, -0f, 1f, -1f, 0.5f, -0.5f, 2.5f, -2.5f, 3f, -3f, 65504f, -65504f, (float)Half.Epsilon, -(float)Half.Epsilon];
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = kind switch
            {
                0 => (float)(r.NextDouble() * 2 - 1) * 3f,
                1 => AnyFiniteHalf(r),
                2 => special[r.Next(special.Length)],
                3 => r.Next(3) == 0 ? (r.Next(2) == 0 ? 0f : -0f) : (float)(Half)((r.NextSingle() - 0.5f) * 1e-5f),
                4 => r.Next(-16, 17) * 0.5f,
                _ => (float)((r.NextDouble() - 0.5) * Math.Pow(10, r.Next(-30, 5))),
            };
        return v;

        static float AnyFiniteHalf(Random r)
        {
            while (true)
            {
                var h = BitConverter.UInt16BitsToHalf((ushort)r.Next(65536));
                if (Half.IsFinite(h)) return (float)h;
            }
        }
    }

    private static Half[] Halves(float[] v) => v.Select(x => (Half)x).ToArray();
    private static float[] Widened(Half[] h) => h.Select(x => (float)x).ToArray();

    [Fact]
    public void Q4SuperblocksMatchTheReferenceOnBothWidths()
    {
        var nib = new byte[256]; var d = new ushort[16];
        var wantNib = new byte[256]; var wantD = new ushort[16];
        var cases = new List<float[]>
        {
            new float[512],                                   // +0 everywhere
            Enumerable.Repeat(-0f, 512).ToArray(),            // -0 everywhere: the blocks' m is -0, d is +0
            Enumerable.Range(0, 512).Select(i => i % 3 == 0 ? 0f : -0f).ToArray(),
        };
        for (int kind = 0; kind < Kinds; kind++)
            for (int seed = 0; seed < 40; seed++) cases.Add(Values(512, kind, 100 * kind + seed));
        foreach (bool wide in Widths)
            foreach (var v in cases)
            {
                DenseQuantizer.Q4RowReference(v, wantNib, wantD);
                fixed (float* pv = v) fixed (byte* pn = nib) fixed (ushort* pd = d)
                    Assert.Equal(DenseQuantizer.Q4Status.Ok, DenseQuantizer.Q4Superblock(pv, pn, pd, wide));
                Assert.Equal(wantD, d);
                Assert.Equal(wantNib, nib);
            }
    }

    [Fact]
    public void Q4SuperblocksReportNonFiniteValuesAndScaleOverflow()
    {
        var nib = new byte[256]; var d = new ushort[16];
        foreach (bool wide in Widths)
            foreach (int at in new[] { 0, 3, 200, 511 })
            {
                foreach (float bad in new[] { float.NaN, -float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    float[] v = Values(512, 0, at);
                    v[at] = bad;
                    fixed (float* pv = v) fixed (byte* pn = nib) fixed (ushort* pd = d)
                        Assert.Equal(DenseQuantizer.Q4Status.NonFinite, DenseQuantizer.Q4Superblock(pv, pn, pd, wide));
                }
                // (Half)(m / -8) overflows from |m| = 65520 * 8 (ties to even go up to infinity); just below is the largest half.
                foreach (var (m, status) in new[] { (524160f, DenseQuantizer.Q4Status.ScaleOverflow), (-524160f, DenseQuantizer.Q4Status.ScaleOverflow), (524159.97f, DenseQuantizer.Q4Status.Ok), (1e30f, DenseQuantizer.Q4Status.ScaleOverflow) })
                {
                    float[] v = Values(512, 0, at);
                    v[at] = m;
                    fixed (float* pv = v) fixed (byte* pn = nib) fixed (ushort* pd = d)
                    {
                        Assert.Equal(status, DenseQuantizer.Q4Superblock(pv, pn, pd, wide));
                        var (block, found) = DenseQuantizer.Q4ScaleOverflow(pv);
                        Assert.Equal(status == DenseQuantizer.Q4Status.Ok ? -1 : at % 64 / 4, block);
                        if (block >= 0) Assert.Equal(m, found);
                    }
                }
            }
    }

    /// <summary>Rows of <paramref name="type"/> written from <paramref name="v"/> (rows x cols) by every route: from
    /// floats, from halves (when the values are halves) and by <see cref="DenseMatrix.ConvertTo"/> from F32 and F16.</summary>
    private static List<(string Route, DenseMatrix M)> Routes(float[] v, int rows, int cols, DenseType type)
    {
        var list = new List<(string, DenseMatrix)> { ("floats", DenseMatrix.FromFloat(v, rows, cols, type)) };
        list.Add(("ConvertTo from F32", DenseMatrix.FromFloat(v, rows, cols, DenseType.F32).ConvertTo(type)));
        var h = Halves(v);
        if (!Widened(h).SequenceEqual(v)) return list;
        var m = DenseMatrix.CreateUninitialized(rows, cols, type);
        for (int r = 0; r < rows; r++) m.SetRow(r, h.AsSpan(r * cols, cols));
        list.Add(("halves", m));
        var f16 = DenseMatrix.CreateUninitialized(rows, cols, DenseType.F16);
        for (int r = 0; r < rows; r++) f16.SetRow(r, h.AsSpan(r * cols, cols));
        list.Add(("ConvertTo from F16", f16.ConvertTo(type)));
        return list;
    }

    [Fact]
    public void Q4RowsMatchTheReferenceByEveryRoute()
    {
        const int rows = 3;
        foreach (int cols in Sizes)
            for (int kind = 0; kind < Kinds; kind++)
            {
                float[] v = Values(rows * cols, kind, cols * 10 + kind);
                // Kinds 0 and 5 once as floats that are not halves, once rounded to halves.
                foreach (var values in kind is 0 or 5 ? [v, Widened(Halves(v))] : new[] { v })
                    foreach (var (route, m) in Routes(values, rows, cols, DenseType.Q4))
                    {
                        int padded = m.PaddedCols;
                        var nib = new byte[padded / 2]; var d = new ushort[padded / 32];
                        for (int r = 0; r < rows; r++)
                        {
                            DenseQuantizer.Q4RowReference(values.AsSpan(r * cols, cols), nib, d);
                            Assert.True(d.AsSpan().SequenceEqual(m.BlockScales.Slice(r * d.Length, d.Length)), $"{route} cols {cols} kind {kind} row {r}: block scales");
                            Assert.True(nib.AsSpan().SequenceEqual(new ReadOnlySpan<byte>(m.DataPointer + (long)r * m.RowStride, nib.Length)), $"{route} cols {cols} kind {kind} row {r}: nibbles");
                        }
                        GC.KeepAlive(m);
                    }
            }
    }

    [Fact]
    public void Int8RowsMatchTheReferenceByEveryRoute()
    {
        const int rows = 3;
        foreach (int cols in Sizes)
            for (int kind = 0; kind < Kinds; kind++)
            {
                float[] v = Values(rows * cols, kind, cols * 10 + kind);
                if (kind == 3) Array.Clear(v, 0, cols);   // a zero row
                foreach (var values in kind is 0 or 5 ? [v, Widened(Halves(v))] : new[] { v })
                    foreach (var (route, m) in Routes(values, rows, cols, DenseType.Int8))
                    {
                        var q = new sbyte[m.PaddedCols];
                        for (int r = 0; r < rows; r++)
                        {
                            float scale = DenseQuantizer.Int8RowReference(values.AsSpan(r * cols, cols), q);
                            Assert.True(scale == m.Scales[r], $"{route} cols {cols} kind {kind} row {r}: scale {m.Scales[r]}, expected {scale}");
                            Assert.True(q.AsSpan().SequenceEqual(new ReadOnlySpan<sbyte>(m.DataPointer + (long)r * m.RowStride, q.Length)), $"{route} cols {cols} kind {kind} row {r}: values");
                        }
                        GC.KeepAlive(m);
                    }
            }
    }

    [Fact]
    public void HalfAndInt8KernelsMatchTheirFormulasOnBothWidths()
    {
        foreach (bool wide in Widths)
            foreach (int n in Sizes)
            {
                Half[] h = Halves(Values(n, 1, n));
                float[] f = new float[n];
                sbyte[] q = new sbyte[n];
                fixed (Half* ph = h) fixed (float* pf = f) fixed (sbyte* pq = q)
                {
                    int want = h.Max(x => BitConverter.HalfToUInt16Bits(x) & 0x7FFF);
                    Assert.Equal(want, DenseQuantizer.MaxMagnitudeBits((ushort*)ph, n, wide));
                    h[n / 2] = n % 2 == 0 ? Half.NaN : Half.NegativeInfinity;
                    Assert.True(DenseQuantizer.MaxMagnitudeBits((ushort*)ph, n, wide) >= DenseQuantizer.HalfNonFinite);
                    h[n / 2] = (Half)0.25f;
                    DenseQuantizer.WidenHalves((ushort*)ph, pf, n, wide);
                    for (int i = 0; i < n; i++) Assert.Equal(BitConverter.SingleToInt32Bits((float)h[i]), BitConverter.SingleToInt32Bits(f[i]));
                    float[] v = Values(n, 0, n + 1);
                    v[0] = 1.5f / 64f;   // a tie after scaling: 1.5 rounds to 2; values past 127 / 64 clamp
                    fixed (float* pv = v)
                    {
                        DenseQuantizer.QuantizeInt8(pv, n, 64f, pq, wide);
                        for (int i = 0; i < n; i++) Assert.Equal((sbyte)Math.Clamp(MathF.Round(v[i] * 64f), -127f, 127f), q[i]);
                    }
                }
            }
    }

    [Fact]
    public void HalfConversionsAreExact()
    {
        // Every finite half widens to its float, on both widths.
        var all = new ushort[0x7C00];
        var f = new float[all.Length];
        foreach (bool wide in Widths)
            foreach (ushort sign in new ushort[] { 0, 0x8000 })
            {
                for (int i = 0; i < all.Length; i++) all[i] = (ushort)(i | sign);
                fixed (ushort* ph = all) fixed (float* pf = f) DenseQuantizer.WidenHalves(ph, pf, all.Length, wide);
                for (int i = 0; i < all.Length; i++) Assert.Equal(BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf(all[i])), BitConverter.SingleToUInt32Bits(f[i]));
            }
        // Floats round to half as (Half) rounds them: a stride through every finite bit pattern, and the edges (the
        // subnormal and overflow ranges, ties).
        var xs = new List<float>();
        for (long b = 0; b < 1L << 32; b += 65521) xs.Add(BitConverter.UInt32BitsToSingle((uint)b));
        foreach (float e in new[] { 0f, 65504f, 65519.99f, 65520f, 65536f, 6.1035156e-05f, 6.1035152e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 8.940697e-08f, 1e-30f, float.MaxValue, float.Epsilon })
        {
            xs.Add(e); xs.Add(-e);
            xs.Add(BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(e) + 1)); xs.Add(BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(e) - 1));
        }
        for (int t = 0; t < 1 << 10; t++)
        {
            // Ties between neighbouring halves: halfway between each pair, normal and subnormal.
            xs.Add(((float)BitConverter.UInt16BitsToHalf((ushort)t) + (float)BitConverter.UInt16BitsToHalf((ushort)(t + 1))) / 2);
            xs.Add(((float)BitConverter.UInt16BitsToHalf((ushort)(0x3C00 + t)) + (float)BitConverter.UInt16BitsToHalf((ushort)(0x3C01 + t))) / 2);
        }
        foreach (float x in xs.Where(float.IsFinite))
        {
            uint want = BitConverter.HalfToUInt16Bits((Half)x);
            Assert.Equal(want, DenseQuantizer.SingleToHalfBits(Vector128.Create(x)).ToScalar());
            Assert.Equal(want, DenseQuantizer.SingleToHalfBits(Vector256.Create(x)).ToScalar());
        }
    }

    [Fact]
    public void NonFiniteWeightsAreRefusedWithTheRowByEveryRoute()
    {
        const int rows = 4, cols = 1000;
        foreach (var type in new[] { DenseType.Int8, DenseType.Q4 })
            foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
            {
                float[] v = Widened(Halves(Values(rows * cols, 0, 7)));
                v[2 * cols + 700] = bad;
                string expected = $"{type} row 2[700] is {bad}: NaN and infinite values are not accepted";
                var m = DenseMatrix.Create(rows, cols, type);
                Assert.Equal(expected, Assert.Throws<RotorException>(() => m.SetRow(2, v.AsSpan(2 * cols, cols))).Message);
                // From halves the row is checked before any of it is written.
                m.SetRow(2, Halves(v.AsSpan(0, cols).ToArray()));
                var before = new float[cols]; m.GetRow(2, before);
                Assert.Equal(expected, Assert.Throws<RotorException>(() => m.SetRow(2, Halves(v.AsSpan(2 * cols, cols).ToArray()))).Message);
                var after = new float[cols]; m.GetRow(2, after);
                Assert.Equal(before, after);
                // ConvertTo reports the row's own error, not a parallel loop's AggregateException.
                var f16 = DenseMatrix.Create(rows, cols, DenseType.F16);
                for (int r = 0; r < rows; r++) f16.SetRow(r, Halves(v.AsSpan(r * cols, cols).ToArray()));
                Assert.Equal(expected, Assert.Throws<RotorException>(() => f16.ConvertTo(type)).Message);
                var f32 = DenseMatrix.Create(rows, cols, DenseType.F32);
                for (int r = 0; r < rows; r++) f32.SetRow(r, v.AsSpan(r * cols, cols));
                Assert.Equal(expected, Assert.Throws<RotorException>(() => f32.ConvertTo(type)).Message);
            }
    }

    [Fact]
    public void Q4NamesANonFiniteWeightBeforeAnOverflowingScale()
    {
        var w = DenseMatrix.Create(1, 1000, DenseType.Q4);
        var row = new float[1000];
        row[3] = 1e6f;
        Assert.Equal($"row 0: the weight 1000000 is too large for Q4's half-precision block scales (at most {(float)Half.MaxValue * 8})",
            Assert.Throws<RotorException>(() => w.SetRow(0, row)).Message);
        row[600] = float.NaN;   // a later superblock than the overflow
        Assert.StartsWith("Q4 row 0[600] is NaN", Assert.Throws<RotorException>(() => w.SetRow(0, row)).Message);
    }

    /// <summary>Native memory that a view reads, freed when the handle is released.</summary>
    private sealed class NativeOwner : SafeHandle
    {
        public NativeOwner(long bytes) : base(0, true) => SetHandle((nint)NativeMemory.AlignedAlloc((nuint)bytes, 64));
        public override bool IsInvalid => handle == 0;
        protected override bool ReleaseHandle() { NativeMemory.AlignedFree((void*)handle); return true; }
    }

    [Fact]
    public void ConvertToReadsViewsAndEveryTypeAndRefusesAClosedView()
    {
        const int rows = 300, cols = 2560;
        Half[] h = Halves(Values(rows * cols, 0, 3));
        var owner = new NativeOwner((long)rows * cols * 2);
        h.AsSpan().CopyTo(new Span<Half>((void*)owner.DangerousGetHandle(), h.Length));
        var view = DenseMatrix.FromMemory(owner, owner.DangerousGetHandle(), rows, cols, DenseType.F16);
        var copy = DenseMatrix.CreateUninitialized(rows, cols, DenseType.F16);
        for (int r = 0; r < rows; r++) copy.SetRow(r, h.AsSpan(r * cols, cols));
        foreach (var type in new[] { DenseType.F32, DenseType.F16, DenseType.Int8, DenseType.Q4 })
        {
            var a = view.ConvertTo(type);
            Assert.Equal(type, a.Type);
            Assert.Equal(DenseMatrix.FromFloat(copy.ToFloat(), rows, cols, type).ToFloat(), a.ToFloat());
            // From a quantized matrix: its weights as GetRow reads them.
            Assert.Equal(DenseMatrix.FromFloat(a.ToFloat(), rows, cols, DenseType.Q4).ToFloat(), a.ConvertTo(DenseType.Q4).ToFloat());
        }
        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => view.ConvertTo(DenseType.Q4));
    }
}

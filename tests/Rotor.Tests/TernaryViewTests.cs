using System.Runtime.InteropServices;
using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary><see cref="TernaryMatrix.FromMemory"/> in bitnet.cpp's I2_S order (<see cref="TernaryLayout.I2S"/>): every
/// kernel path, thread count and product multiplies it to exactly what the reference path gives for the same trits
/// held in Rotor's layout; its rows read back as those trits; it converts to the compute layout byte for byte; bad codes
/// are refused on load; it is read-only and refuses use once its owner is closed.</summary>
[Collection("kernels")]
public sealed unsafe class TernaryViewTests
{
    /// <summary>Native memory that a view reads, freed when the handle is released.</summary>
    private sealed class NativeOwner : SafeHandle
    {
        public NativeOwner(long bytes) : base(0, true) => SetHandle((nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64));
        public override bool IsInvalid => handle == 0;
        protected override bool ReleaseHandle() { NativeMemory.AlignedFree((void*)handle); return true; }
    }

    /// <summary>bitnet.cpp's x86 I2_S bytes of <paramref name="trits"/> (a multiple of 128), written from its definition
    /// alone: byte j of 128-weight block k holds weight 128k + 32g + j at bits 6 - 2g as w + 1.</summary>
    private static void PackI2S(ReadOnlySpan<sbyte> trits, Span<byte> dst)
    {
        for (int k = 0; k < trits.Length / 128; k++)
            for (int j = 0; j < 32; j++)
            {
                int q = 0;
                for (int g = 0; g < 4; g++) q |= (trits[128 * k + 32 * g + j] + 1) << (6 - 2 * g);
                dst[32 * k + j] = (byte)q;
            }
    }

    public static TheoryData<KernelPath> Paths() => KernelTests.Paths();

    private static (NativeOwner Owner, TernaryMatrix View, TernaryMatrix Copy, sbyte[] Trits) Make(int rows, int cols, float[] scales, int seed, int offset = 32)
    {
        sbyte[] t = TestData.Trits(rows * cols, seed);
        var owner = new NativeOwner((long)rows * cols / 4 + offset);
        byte* at = (byte*)owner.DangerousGetHandle() + offset;
        PackI2S(t, new Span<byte>(at, rows * cols / 4));
        var view = TernaryMatrix.FromMemory(owner, (nint)at, rows, cols, TernaryLayout.I2S, scales, "test");
        return (owner, view, TernaryMatrix.FromTrits(t, rows, cols, scales), t);
    }

    private static float[] Run(KernelPath path, int threads, TernaryMatrix w, QuantizedActivations qa, float[]? bias) =>
        KernelTests.Run(path, threads, w, qa, bias);

    [Theory]
    [MemberData(nameof(Paths))]
    public void EveryPathMultipliesAViewAsTheReferenceMultipliesTheCopy(KernelPath path)
    {
        int seed = 0;
        foreach (int n in new[] { 1, 3, 8, 17 })
            foreach (int k in new[] { 256, 512, 768 })
                foreach (int m in new[] { 1, 2, 3, 5, 9 })
                {
                    seed++;
                    float[] scales = seed % 2 == 0 ? [0.7f] : TestData.Floats(n, seed).Select(v => MathF.Abs(v) + 0.1f).ToArray();
                    var (owner, view, copy, _) = Make(n, k, scales, seed, offset: seed % 2 == 0 ? 32 : 64);
                    using (owner)
                    {
                        var qa = new QuantizedActivations(m, k);
                        qa.SetQuantized(TestData.Int8(m * k, seed + 1000), TestData.Floats(m, seed + 7).Select(v => MathF.Abs(v) + 0.01f).ToArray());
                        float[]? bias = seed % 3 == 0 ? TestData.Floats(n, seed + 3) : null;
                        float[] expected = Run(KernelPath.Reference, 1, copy, qa, bias);
                        Assert.Equal(expected, Run(path, 1, view, qa, bias));
                        Assert.Equal(expected, Run(path, 2, view, qa, bias));
                        // The activations are the caller's: a product with the view leaves them as they were.
                        Assert.Equal(expected, Run(path, 1, copy, qa, bias));
                    }
                }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ThreadedAndBatchedProductsOfAViewMatchTheReference(KernelPath path)
    {
        long saved = TernaryGemm.ParallelThreshold;
        TernaryGemm.ParallelThreshold = 0;
        try
        {
            foreach (var (n, k, m) in new[] { (9, 256, 1), (37, 512, 2), (64, 1024, 8), (101, 768, 70) })
            {
                var (owner, view, copy, _) = Make(n, k, [1.5f], n + k);
                using (owner)
                {
                    var qa = new QuantizedActivations(m, k);
                    qa.Quantize(TestData.Floats(m * k, k));
                    float[] expected = Run(KernelPath.Reference, 1, copy, qa, null);
                    foreach (int t in new[] { 1, 2, 3 }) Assert.Equal(expected, Run(path, t, view, qa, null));
                }
            }
        }
        finally { TernaryGemm.ParallelThreshold = saved; }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void FloatProductsAndDotsOfAViewMatchTheCopy(KernelPath path)
    {
        var (owner, view, copy, t) = Make(13, 512, [0.25f], 5);
        using (owner)
        {
            float[] x = TestData.Floats(3 * 512, 9);
            using var be = new CpuBackend(1, path);
            var yv = new float[3 * 13]; var yc = new float[3 * 13];
            be.MatMulFloat(view, x, yv);
            be.MatMulFloat(copy, x, yc);
            for (int i = 0; i < yc.Length; i++) Assert.Equal(yc[i], yv[i], 1e-4f * (1 + MathF.Abs(yc[i])));
            sbyte[] xi = TestData.Int8(512, 3);
            for (int r = 0; r < 13; r++)
            {
                int want = 0;
                for (int j = 0; j < 512; j++) want += t[r * 512 + j] * xi[j];
                Assert.Equal(want, TernaryDot.Dot(view, r, xi, path));
                Assert.Equal(TernaryDot.Dot(copy, r, x.AsSpan(0, 512), path), TernaryDot.Dot(view, r, x.AsSpan(0, 512), path), 1e-3f);
            }
        }
    }

    [Fact]
    public void AViewReadsBackItsTritsAndConvertsToTheComputeLayout()
    {
        var (owner, view, copy, t) = Make(7, 768, [2f], 11);
        using (owner)
        {
            Assert.True(view.IsView);
            Assert.Equal(TernaryLayout.I2S, view.Layout);
            Assert.Equal(t, view.ToTrits());
            Assert.Equal(copy.ToFloat(), view.ToFloat());
            var converted = new byte[7 * view.RowBytes];
            view.CopyRowsI2_256(0, 7, converted);
            Assert.Equal(copy.Data.ToArray(), converted);
            var two = new byte[2 * view.RowBytes];
            view.CopyRowsI2_256(3, 2, two);
            Assert.Equal(copy.Data.Slice(3 * copy.RowBytes, 2 * copy.RowBytes).ToArray(), two);
            Assert.Equal(copy.Data.ToArray(), TernaryMatrix.FromTrits(view.ToTrits(), 7, 768, [2f]).Data.ToArray());
            Assert.Equal(4L, view.AllocatedBytes);            // only its scale: the rows are the owner's
            Assert.Equal(copy.DataBytes, view.DataBytes);
            Assert.Throws<InvalidOperationException>(() => view.SetRow(0, new sbyte[768]));
        }
    }

    [Fact]
    public void ReorderingActivationsFollowsTheChunkTable()
    {
        // The chunk table against the layouts' own definitions: I2_256 byte b, pair g is weight 64g + b; I2_S byte b,
        // pair g is weight 32(3 - g) + b of the first 128 (b < 32) or 128 + 32(3 - g) + b - 32 (b >= 32).
        ReadOnlySpan<byte> order = TernaryLayouts.ChunkOrder(TernaryLayout.I2S);
        for (int b = 0; b < 64; b++)
            for (int g = 0; g < 4; g++)
            {
                int slot = 64 * g + b, weight = b < 32 ? 32 * (3 - g) + b : 128 + 32 * (3 - g) + b - 32;
                Assert.Equal(weight, order[slot / 32] * 32 + slot % 32);
            }
        var x = Enumerable.Range(0, 512).Select(i => (float)i).ToArray();
        var y = new float[512];
        TernaryLayouts.ReorderActivations<float>(TernaryLayout.I2S, x, y);
        for (int s = 0; s < 512; s++) Assert.Equal(256 * (s / 256) + order[s % 256 / 32] * 32 + s % 32, y[s]);
        Assert.Throws<ArgumentException>(() => TernaryLayouts.ReorderActivations<float>(TernaryLayout.I2S, new float[300], new float[300]));
    }

    [Theory]
    [InlineData(256, 17, 0xC0)]    // a row shorter than the wide loop
    [InlineData(768, 5, 0x0C)]     // in the four-vector loop
    [InlineData(768, 150, 0x03)]   // in the one-vector tail
    [InlineData(768, 191, 0x30)]   // the row's last byte
    public void ACode3IsRefusedNamingTheRow(int cols, int at3, byte code)
    {
        var (owner, _, _, _) = Make(5, cols, [1f], 2);
        using (owner)
        {
            byte* at = (byte*)owner.DangerousGetHandle() + 32;
            int rowBytes = cols / 4;
            at[3 * rowBytes + at3] |= code;   // row 3: a pair of 3
            var e = Assert.Throws<RotorException>(() => TernaryMatrix.FromMemory(owner, (nint)at, 5, cols, TernaryLayout.I2S, [1f], "model.gguf: tensor blk.0.attn_q.weight"));
            Assert.Contains("model.gguf: tensor blk.0.attn_q.weight: row 3", e.Message);
            at[3 * rowBytes + at3] &= (byte)~(code & (code >> 1));   // one bit of the pair cleared: valid again
            Assert.Equal(cols, TernaryMatrix.FromMemory(owner, (nint)at, 5, cols, TernaryLayout.I2S, [1f]).Cols);
            Assert.Throws<ArgumentException>(() => TernaryMatrix.FromMemory(owner, (nint)at, 2, 320, TernaryLayout.I2S, [1f]));
            Assert.Throws<ArgumentException>(() => TernaryMatrix.FromMemory(owner, (nint)at, 5, 256, TernaryLayout.I2S, [1f, 2f]));
        }
    }

    [Fact]
    public void AViewOfAClosedOwnerThrows()
    {
        var (owner, view, _, _) = Make(4, 256, [1f], 3);
        owner.Dispose();
        var qa = new QuantizedActivations(1, 256);
        qa.Quantize(TestData.Floats(256, 1));
        using var be = new CpuBackend(1);
        Assert.Throws<ObjectDisposedException>(() => be.MatMul(view, qa, new float[4]));
        Assert.Throws<ObjectDisposedException>(() => view.ToTrits());
    }
}

using Rotor.Kernels;
using Rotor.Threading;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

public unsafe class GemmTests
{
    // C = op(A) op(B)^T with A (m, k) and B (n, k) held plain or transposed in memory.
    [Theory]
    [InlineData(1, 1, 1, false, false, false, 1)]
    [InlineData(7, 17, 5, false, false, false, 2)]
    [InlineData(128, 512, 784, false, false, false, 2)]
    [InlineData(64, 40, 300, true, true, true, 2)]
    [InlineData(13, 33, 700, false, true, true, 2)]
    [InlineData(12, 50, 5000, true, true, false, 2)]    // small output, long K: the K-split path
    [InlineData(31, 29, 3000, true, false, true, 3)]
    public void MatchesTheReference(int m, int n, int k, bool transA, bool transB, bool accumulate, int threads)
    {
        float[] a = TestData.Floats(m * k, 1), b = TestData.Floats(n * k, 2), c0 = TestData.Floats(m * n, 3);
        // Memory layouts: plain A is (m, k); transposed A is stored as (k, m).
        float[] aMem = transA ? Transpose(a, m, k) : a, bMem = transB ? Transpose(b, n, k) : b;
        var expected = (float[])c0.Clone();
        Sgemm.Reference(a, b, expected, m, n, k, accumulate);
        var actual = (float[])c0.Clone();
        using var pool = new WorkerPool(threads);
        var g = new Sgemm(pool);
        fixed (float* pa = aMem, pb = bMem, pc = actual)
            g.Multiply(new DenseSource().Set(pa, m, k, transA ? m : k, transA), new DenseSource().Set(pb, n, k, transB ? n : k, transB), pc, n, accumulate);
        double err = Finite.MaxRelError(actual, expected);
        Assert.True(err < 1e-4, $"max relative error {err:G3}");
    }

    private static float[] Transpose(float[] x, int rows, int cols)
    {
        var t = new float[x.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
        return t;
    }

    [Fact]
    public void ImplicitPatchesEqualExplicitIm2Col()
    {
        int batch = 2, hp = 9, wp = 8, c = 3, k = 3;
        int oh = hp - k + 1, ow = wp - k + 1, rows = batch * oh * ow, kk = k * k * c, o = 5;
        float[] x = TestData.Floats(batch * hp * wp * c, 4), w = TestData.Floats(o * kk, 5);
        var patches = new float[rows * kk];
        for (int b = 0, r = 0; b < batch; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, r++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++)
                            for (int ch = 0; ch < c; ch++)
                                patches[r * kk + (ky * k + kx) * c + ch] = x[((b * hp + oy + ky) * wp + ox + kx) * c + ch];
        var expected = new float[rows * o];
        Sgemm.Reference(patches, w, expected, rows, o, kk, false);
        var actual = new float[rows * o];
        using var pool = new WorkerPool(2);
        var g = new Sgemm(pool);
        fixed (float* px = x, pw = w, pc = actual)
            g.Multiply(new Im2ColSource().Set(px, batch, hp, wp, c, k, false), new DenseSource().Set(pw, o, kk, kk, false), pc, o, false);
        Assert.True(Finite.MaxRelError(actual, expected) < 1e-5);

        // Transposed: dW-style product w (o, kk) = g^T (o, rows) · patches (rows, kk)
        float[] gy = TestData.Floats(rows * o, 6);
        var gT = new float[o * rows];
        for (int r = 0; r < rows; r++) for (int j = 0; j < o; j++) gT[j * rows + r] = gy[r * o + j];
        var pT = new float[kk * rows];
        for (int r = 0; r < rows; r++) for (int q = 0; q < kk; q++) pT[q * rows + r] = patches[r * kk + q];
        var exp2 = new float[o * kk];
        Sgemm.Reference(gT, pT, exp2, o, kk, rows, false);
        var act2 = new float[o * kk];
        fixed (float* px = x, pg = gy, pc = act2)
            g.Multiply(new DenseSource().Set(pg, o, rows, o, true), new Im2ColSource().Set(px, batch, hp, wp, c, k, true), pc, kk, false);
        Assert.True(Finite.MaxRelError(act2, exp2) < 1e-4);
    }
}

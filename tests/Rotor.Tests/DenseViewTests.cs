using System.Runtime.InteropServices;
using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary><see cref="DenseMatrix.FromMemory"/>: a view reads what a copy of the same values reads, through the same
/// kernels, wherever its rows start; it is read-only and refuses reads once its owner is closed.</summary>
public sealed unsafe class DenseViewTests
{
    /// <summary>Native memory that a view reads, freed when the handle is released.</summary>
    private sealed class NativeOwner : SafeHandle
    {
        public NativeOwner(long bytes) : base(0, true) => SetHandle((nint)NativeMemory.AlignedAlloc((nuint)bytes, 64));
        public override bool IsInvalid => handle == 0;
        protected override bool ReleaseHandle() { NativeMemory.AlignedFree((void*)handle); return true; }
    }

    private static (NativeOwner Owner, DenseMatrix View, DenseMatrix Copy) Make(int rows, int cols, DenseType type, int offset, int seed)
    {
        var rng = new Random(seed);
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        var copy = DenseMatrix.FromFloat(values, rows, cols, type);
        var owner = new NativeOwner((long)rows * copy.RowStride + offset);
        byte* at = (byte*)owner.DangerousGetHandle() + offset;
        for (int r = 0; r < rows; r++)
        {
            // The copy's rows hold the values as stored (F16 rounded once): the view is given the same bytes.
            var row = new float[cols];
            copy.GetRow(r, row);
            if (type == DenseType.F32) row.CopyTo(new Span<float>(at + (long)r * cols * 4, cols));
            else System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(row, new Span<Half>(at + (long)r * cols * 2, cols));
        }
        return (owner, DenseMatrix.FromMemory(owner, (nint)at, rows, cols, type), copy);
    }

    [Theory]
    [InlineData(DenseType.F32, 16, 0)] [InlineData(DenseType.F32, 48, 4)] [InlineData(DenseType.F32, 272, 32)]
    [InlineData(DenseType.F16, 32, 0)] [InlineData(DenseType.F16, 96, 2)] [InlineData(DenseType.F16, 2560, 32)]
    public void AViewReadsWhatACopyReads(DenseType type, int cols, int offset)
    {
        foreach (int rows in new[] { 1, 37, 300 })
        {
            var (owner, view, copy) = Make(rows, cols, type, offset, rows * 7 + cols);
            using (owner)
            {
                Assert.True(view.IsView);
                Assert.Equal(0, view.AllocatedBytes);
                Assert.Equal(copy.DataBytes, view.DataBytes);
                Assert.Equal(copy.RowStride, view.RowStride);
                Assert.Equal(copy.ToFloat(), view.ToFloat());
                using var backend = new CpuBackend(2);
                foreach (int m in new[] { 1, 3, 5 })
                {
                    var x = new float[m * cols];
                    var rng = new Random(m);
                    for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                    float[] yCopy = new float[m * rows], yView = new float[m * rows];
                    backend.MatMul(copy, x, yCopy);
                    backend.MatMul(view, x, yView);
                    Assert.Equal(yCopy, yView);
                }
            }
        }
    }

    [Fact]
    public void AViewIsReadOnlyAndRefusesReadsAfterItsOwnerCloses()
    {
        var (owner, view, _) = Make(4, 32, DenseType.F16, 0, 1);
        Assert.Throws<InvalidOperationException>(() => view.SetRow(0, new float[32]));
        Assert.Throws<InvalidOperationException>(() => view.SetRow(0, new Half[32]));
        var row = new float[32];
        view.GetRow(3, row);
        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => view.GetRow(3, row));
        using var backend = new CpuBackend(1);
        Assert.Throws<ObjectDisposedException>(() => backend.MatMul(view, new float[32], new float[4]));
    }

    [Fact]
    public void OnlyPackedF32AndF16RowsOfWholeCacheLinesCanBeViews()
    {
        Assert.True(DenseMatrix.CanView(16, DenseType.F32));
        Assert.True(DenseMatrix.CanView(32, DenseType.F16));
        Assert.False(DenseMatrix.CanView(8, DenseType.F32));      // 32-byte rows would need padding
        Assert.False(DenseMatrix.CanView(100, DenseType.F16));
        Assert.False(DenseMatrix.CanView(256, DenseType.Int8));   // scales live beside the rows
        Assert.False(DenseMatrix.CanView(512, DenseType.Q4));
        using var owner = new NativeOwner(4096);
        nint p = owner.DangerousGetHandle();
        Assert.Throws<ArgumentException>(() => DenseMatrix.FromMemory(owner, p, 4, 100, DenseType.F16));
        Assert.Throws<ArgumentException>(() => DenseMatrix.FromMemory(owner, p + 1, 4, 32, DenseType.F16));
        Assert.Throws<ArgumentException>(() => DenseMatrix.FromMemory(owner, p + 2, 4, 16, DenseType.F32));
        Assert.Throws<ArgumentException>(() => DenseMatrix.FromMemory(owner, 0, 4, 16, DenseType.F32));
    }
}

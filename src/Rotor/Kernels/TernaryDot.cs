namespace Rotor.Kernels;

/// <summary>Dot products of single ternary vectors.</summary>
public static unsafe class TernaryDot
{
    /// <summary><c>sum_j W[row, j] * x[j]</c> for int8 <paramref name="x"/> of length w.Cols (no scales applied).</summary>
    public static int Dot(TernaryMatrix w, int row, ReadOnlySpan<sbyte> x, KernelPath? path = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        if ((uint)row >= (uint)w.Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {w.Rows})");
        Check.Length(x.Length, w.Cols, nameof(x));
        sbyte[] buf = new sbyte[w.PaddedCols];
        int sum = 0;
        for (int j = 0; j < x.Length; j++) { buf[j] = x[j]; sum += x[j]; }
        if (w.Layout != TernaryLayout.I2_256) TernaryLayouts.ReorderActivations<sbyte>(w.Layout, buf.ToArray(), buf);
        int dot;
        fixed (sbyte* xp = buf)
            dot = KernelPaths.Get(path ?? KernelSelector.Current).DotCodes(w.DataPointer + (long)row * w.RowBytes, xp, w.Blocks) - sum;
        GC.KeepAlive(w);
        return dot;
    }

    /// <summary><c>sum_j W[row, j] * x[j]</c> for float <paramref name="x"/> of length w.Cols (no scales applied).</summary>
    public static float Dot(TernaryMatrix w, int row, ReadOnlySpan<float> x, KernelPath? path = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        if ((uint)row >= (uint)w.Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {w.Rows})");
        Check.Length(x.Length, w.Cols, nameof(x));
        float[] buf = new float[w.PaddedCols];
        x.CopyTo(buf);
        if (w.Layout != TernaryLayout.I2_256) TernaryLayouts.ReorderActivations<float>(w.Layout, buf.ToArray(), buf);
        float dot;
        fixed (float* xp = buf)
            dot = KernelPaths.Get(path ?? KernelSelector.Current).DotF32(w.DataPointer + (long)row * w.RowBytes, xp, w.Blocks);
        GC.KeepAlive(w);
        return dot;
    }
}

namespace Rotor.Kernels;

/// <summary>The contract every CPU kernel path implements (one struct a path, no virtual calls: the driver takes
/// function pointers to these statics). W rows are in the <see cref="TernaryFormat.I2_256"/> layout.</summary>
internal unsafe interface ITernaryKernels
{
    /// <summary><c>sum_j code[j] * x[j]</c> over kBlocks * 256 values, code = w + 1 in {0, 1, 2}.</summary>
    static abstract int DotCodes(byte* w, sbyte* x, int kBlocks);

    /// <summary>Computes y for weight rows [r0, r1) and every activation row of <paramref name="a"/>.</summary>
    static abstract void Gemm(in GemmArgs a, int r0, int r1);

    /// <summary><c>sum_j w[j] * x[j]</c> over kBlocks * 256 floats, w = code - 1.</summary>
    static abstract float DotF32(byte* w, float* x, int kBlocks);
}

/// <summary>Loops shared by the paths that have no multi-row kernel of their own.</summary>
internal static unsafe class KernelLoops
{
    public static void GemmByDots(in GemmArgs a, int r0, int r1, delegate*<byte*, sbyte*, int, int> dot)
    {
        for (int r = r0; r < r1; r++)
        {
            byte* w = a.W + (long)r * a.RowBytes;
            for (int i = 0; i < a.M; i++)
                a.Store(i, r, dot(w, a.X + (long)i * a.XStride, a.KBlocks));
        }
    }
}

namespace Rotor.Kernels;

/// <summary>The scalar reference: decodes every code from the layout's definition and multiplies in plain integers.
/// It is the oracle that every other path is tested against, so it is written for obviousness, not speed.</summary>
internal unsafe struct ReferenceKernels : ITernaryKernels
{
    /// <summary>Trit value of column <paramref name="c"/> of an I2_256 row.</summary>
    public static int Weight(byte* row, int c)
    {
        int block = c / 256, within = c % 256, slice = within / 64, j = within % 64;
        int code = (row[block * 64 + j] >> (2 * slice)) & 3;
        return code - 1;
    }

    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        int sum = 0;
        for (int c = 0; c < kBlocks * 256; c++) sum += (Weight(w, c) + 1) * x[c];
        return sum;
    }

    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        for (int r = r0; r < r1; r++)
        {
            byte* w = a.W + (long)r * a.RowBytes;
            for (int i = 0; i < a.M; i++)
            {
                sbyte* x = a.X + (long)i * a.XStride;
                int dot = 0;
                for (int c = 0; c < a.KBlocks * 256; c++) dot += Weight(w, c) * x[c];
                // Store subtracts xSum; add it back so that the reference is the plain sum of w * x.
                a.Store(i, r, dot + a.XSum[i]);
            }
        }
    }

    public static float DotF32(byte* w, float* x, int kBlocks)
    {
        float sum = 0;
        for (int c = 0; c < kBlocks * 256; c++) sum += Weight(w, c) * x[c];
        return sum;
    }
}

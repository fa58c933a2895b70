using System.Runtime.Intrinsics;

namespace Rotor.Kernels;

/// <summary>
/// One ternary x int8 product, <c>y[i, r] = (sum_j code[r, j] * x[i, j] - xSum[i]) * xScale[i] * wScale[r] + bias[r]</c>
/// where code = w + 1 (layout <see cref="TernaryFormat.I2_256"/>), so that the sum is <c>sum_j w[r, j] * x[i, j]</c>.
/// Shapes: W (n, kBlocks * 256) as rowBytes-byte rows; x (m, kBlocks * 256) int8, row stride xStride;
/// y (m, n) float, row stride yStride. wScale has n entries, or 1 when wScaleStride is 0. bias is null or n entries.
/// </summary>
internal unsafe struct GemmArgs
{
    public byte* W;
    public int RowBytes;
    public int KBlocks;
    public int N;
    public sbyte* X;
    public int XStride;
    public int M;
    public float* XScale;
    public int* XSum;
    public float* WScale;
    public int WScaleStride;
    public float* Bias;
    public float* Y;
    public int YStride;
    /// <summary>x in the blocked layout of <see cref="Avx512VnniKernels.PackActivations"/>, or null.</summary>
    public sbyte* XPacked;

    public readonly void Store(int i, int r, int dot)
    {
        float v = (dot - XSum[i]) * XScale[i] * WScale[r * WScaleStride];
        if (Bias != null) v += Bias[r];
        Y[(long)i * YStride + r] = v;
    }

    /// <summary><see cref="Store"/> for weight rows r .. r + 3 of activation row i, in one vector: the same float
    /// operations in the same order, so the results are identical.</summary>
    public readonly void Store4(int i, int r, Vector128<int> dots)
    {
        var v = Vector128.ConvertToSingle(dots - Vector128.Create(XSum[i]))
            * XScale[i];
        v *= WScaleStride == 0 ? Vector128.Create(WScale[0]) : Vector128.Load(WScale + r);
        if (Bias != null) v += Vector128.Load(Bias + r);
        v.Store(Y + (long)i * YStride + r);
    }
}

/// <summary>A ternary x float product, <c>y[i, r] = wScale[r] * sum_j w[r, j] * x[i, j] + bias[r]</c>; x rows padded
/// with zeros to kBlocks * 256 floats.</summary>
internal unsafe struct GemmF32Args
{
    public byte* W;
    public int RowBytes;
    public int KBlocks;
    public int N;
    public float* X;
    public int XStride;
    public int M;
    public float* WScale;
    public int WScaleStride;
    public float* Bias;
    public float* Y;
    public int YStride;

    public readonly void Store(int i, int r, float dot)
    {
        float v = dot * WScale[r * WScaleStride];
        if (Bias != null) v += Bias[r];
        Y[(long)i * YStride + r] = v;
    }
}

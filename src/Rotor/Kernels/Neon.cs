using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Rotor.Kernels;

/// <summary>Arm AdvSimd (NEON) kernels for every Arm64 processor: the codes (0..2, as signed bytes) times the
/// activations by smull/smull2 into int16 (|2 * -128| fits), pairs widened into int32 lanes by sadalp.</summary>
internal unsafe struct NeonKernels : ITernaryKernels
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        Vector128<byte> m = Vector128.Create((byte)3);
        for (int kb = 0; kb < kBlocks; kb++)
        {
            for (int p = 0; p < 64; p += 16)
            {
                Vector128<byte> v = AdvSimd.LoadVector128(w + kb * 64 + p);
                sbyte* xp = x + kb * 256 + p;
                Step(AdvSimd.And(v, m), xp, ref acc0, ref acc1);
                Step(AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), m), xp + 64, ref acc0, ref acc1);
                Step(AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), m), xp + 128, ref acc0, ref acc1);
                Step(AdvSimd.ShiftRightLogical(v, 6), xp + 192, ref acc0, ref acc1);
            }
        }
        return AdvSimd.Arm64.AddAcross(AdvSimd.Add(acc0, acc1)).ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(Vector128<byte> codes, sbyte* x, ref Vector128<int> acc0, ref Vector128<int> acc1)
    {
        Vector128<sbyte> s = codes.AsSByte();
        Vector128<sbyte> xv = AdvSimd.LoadVector128(x);
        acc0 = AdvSimd.AddPairwiseWideningAndAdd(acc0, AdvSimd.MultiplyWideningLower(s.GetLower(), xv.GetLower()));
        acc1 = AdvSimd.AddPairwiseWideningAndAdd(acc1, AdvSimd.MultiplyWideningUpper(s, xv));
    }

    public static void Gemm(in GemmArgs a, int r0, int r1) => KernelLoops.GemmByDots(a, r0, r1, &DotCodes);

    public static float DotF32(byte* w, float* x, int kBlocks) => PortableKernels.DotF32(w, x, kBlocks);

    /// <summary><c>sum_j w[j] * x[j]</c> of two int8 rows over <paramref name="n"/> values (a multiple of 16):
    /// smull into int16 (|-128 * -128| = 2^14 fits), sadalp into int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotInt8(sbyte* w, sbyte* x, int n)
    {
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        for (int j = 0; j < n; j += 16)
        {
            Vector128<sbyte> wv = AdvSimd.LoadVector128(w + j), xv = AdvSimd.LoadVector128(x + j);
            acc0 = AdvSimd.AddPairwiseWideningAndAdd(acc0, AdvSimd.MultiplyWideningLower(wv.GetLower(), xv.GetLower()));
            acc1 = AdvSimd.AddPairwiseWideningAndAdd(acc1, AdvSimd.MultiplyWideningUpper(wv, xv));
        }
        return AdvSimd.Arm64.AddAcross(AdvSimd.Add(acc0, acc1)).ToScalar();
    }
}

/// <summary>Arm AdvSimd kernels with the dot-product extension (Armv8.2 DotProd, <see cref="Dp"/>): sdot multiplies
/// 16 codes (0..2, as signed bytes) by 16 activations and adds each group of four products into one int32 lane, one
/// instruction where <see cref="NeonKernels"/> needs two multiplies and two pairwise adds. A lane gains at most
/// 4 * 2 * 128 every 16 columns, so int32 is exact for rows below 2^25 columns (the reference's own int bound).</summary>
internal unsafe struct NeonDotKernels : ITernaryKernels
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        // Two accumulators: slices 0 and 2 into one, 1 and 3 into the other, so that consecutive sdots are independent.
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        Vector128<byte> m = Vector128.Create((byte)3);
        for (int kb = 0; kb < kBlocks; kb++)
        {
            for (int p = 0; p < 64; p += 16)
            {
                Vector128<byte> v = AdvSimd.LoadVector128(w + kb * 64 + p);
                sbyte* xp = x + kb * 256 + p;
                acc0 = Dp.DotProduct(acc0, AdvSimd.And(v, m).AsSByte(), AdvSimd.LoadVector128(xp));
                acc1 = Dp.DotProduct(acc1, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 2), m).AsSByte(), AdvSimd.LoadVector128(xp + 64));
                acc0 = Dp.DotProduct(acc0, AdvSimd.And(AdvSimd.ShiftRightLogical(v, 4), m).AsSByte(), AdvSimd.LoadVector128(xp + 128));
                acc1 = Dp.DotProduct(acc1, AdvSimd.ShiftRightLogical(v, 6).AsSByte(), AdvSimd.LoadVector128(xp + 192));
            }
        }
        return AdvSimd.Arm64.AddAcross(AdvSimd.Add(acc0, acc1)).ToScalar();
    }

    public static void Gemm(in GemmArgs a, int r0, int r1) => KernelLoops.GemmByDots(a, r0, r1, &DotCodes);

    public static float DotF32(byte* w, float* x, int kBlocks) => PortableKernels.DotF32(w, x, kBlocks);

    /// <summary><c>sum_j w[j] * x[j]</c> of two int8 rows over <paramref name="n"/> values (a multiple of 32) by sdot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotInt8(sbyte* w, sbyte* x, int n)
    {
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        for (int j = 0; j < n; j += 32)
        {
            acc0 = Dp.DotProduct(acc0, AdvSimd.LoadVector128(w + j), AdvSimd.LoadVector128(x + j));
            acc1 = Dp.DotProduct(acc1, AdvSimd.LoadVector128(w + j + 16), AdvSimd.LoadVector128(x + j + 16));
        }
        return AdvSimd.Arm64.AddAcross(AdvSimd.Add(acc0, acc1)).ToScalar();
    }
}

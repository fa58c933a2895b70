using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Rotor.Kernels;

/// <summary>Arm AdvSimd kernels. With the dot-product extension (sdot) the codes (0..2, as signed bytes) and the
/// activations go straight into int32 lanes, four products a lane; without it, smull + sadalp widen the products.</summary>
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

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Step(Vector128<byte> codes, sbyte* x, ref Vector128<int> acc0, ref Vector128<int> acc1)
    {
        Vector128<sbyte> s = codes.AsSByte();
        Vector128<sbyte> xv = AdvSimd.LoadVector128(x);
        if (Dp.IsSupported)
        {
            acc0 = Dp.DotProduct(acc0, s, xv);
        }
        else
        {
            acc0 = AdvSimd.AddPairwiseWideningAndAdd(acc0, AdvSimd.MultiplyWideningLower(s.GetLower(), xv.GetLower()));
            acc1 = AdvSimd.AddPairwiseWideningAndAdd(acc1, AdvSimd.MultiplyWideningUpper(s, xv));
        }
    }

    public static void Gemm(in GemmArgs a, int r0, int r1) => KernelLoops.GemmByDots(a, r0, r1, &DotCodes);

    public static float DotF32(byte* w, float* x, int kBlocks) => PortableKernels.DotF32(w, x, kBlocks);
}

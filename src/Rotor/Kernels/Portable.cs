using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Rotor.Kernels;

/// <summary>Vector128 kernels written with the cross-platform API only, so they run wherever .NET does. Codes and
/// activations are widened to int16 and multiplied; int16 sums are widened to int32 every <see cref="Chunk"/> blocks.</summary>
internal unsafe struct PortableKernels : ITernaryKernels
{
    // per block each int16 lane gets 4 slices * 4 parts * 2 halves = 32 products of at most 2 * 127: 4 * 32 * 254 = 32512.
    private const int Chunk = 4;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        Vector128<int> acc = Vector128<int>.Zero;
        Vector128<byte> m = Vector128.Create((byte)3);
        for (int kb0 = 0; kb0 < kBlocks; kb0 += Chunk)
        {
            int end = Math.Min(kb0 + Chunk, kBlocks);
            Vector128<short> a = Vector128<short>.Zero;
            for (int kb = kb0; kb < end; kb++)
            {
                for (int p = 0; p < 64; p += 16)
                {
                    Vector128<byte> v = Vector128.Load(w + kb * 64 + p);
                    for (int q = 0; q < 4; q++)
                    {
                        Vector128<byte> s = Vector128.ShiftRightLogical(v, 2 * q) & m;
                        Vector128<sbyte> xv = Vector128.Load(x + kb * 256 + q * 64 + p);
                        (Vector128<ushort> sl, Vector128<ushort> sh) = Vector128.Widen(s);
                        (Vector128<short> xl, Vector128<short> xh) = Vector128.Widen(xv);
                        a += sl.AsInt16() * xl + sh.AsInt16() * xh;
                    }
                }
            }
            (Vector128<int> lo, Vector128<int> hi) = Vector128.Widen(a);
            acc += lo + hi;
        }
        return Vector128.Sum(acc);
    }

    public static void Gemm(in GemmArgs a, int r0, int r1) => KernelLoops.GemmByDots(a, r0, r1, &DotCodes);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(byte* w, float* x, int kBlocks)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m = Vector128.Create((byte)3);
        for (int kb = 0; kb < kBlocks; kb++)
        {
            for (int p = 0; p < 64; p += 16)
            {
                Vector128<byte> v = Vector128.Load(w + kb * 64 + p);
                for (int q = 0; q < 4; q++)
                {
                    Vector128<byte> s = Vector128.ShiftRightLogical(v, 2 * q) & m;
                    float* xp = x + kb * 256 + q * 64 + p;
                    (Vector128<ushort> l, Vector128<ushort> h) = Vector128.Widen(s);
                    (Vector128<uint> l0, Vector128<uint> l1) = Vector128.Widen(l);
                    (Vector128<uint> h0, Vector128<uint> h1) = Vector128.Widen(h);
                    acc += (Vector128.ConvertToSingle(l0.AsInt32()) - Vector128<float>.One) * Vector128.Load(xp);
                    acc += (Vector128.ConvertToSingle(l1.AsInt32()) - Vector128<float>.One) * Vector128.Load(xp + 4);
                    acc += (Vector128.ConvertToSingle(h0.AsInt32()) - Vector128<float>.One) * Vector128.Load(xp + 8);
                    acc += (Vector128.ConvertToSingle(h1.AsInt32()) - Vector128<float>.One) * Vector128.Load(xp + 12);
                }
            }
        }
        return Vector128.Sum(acc);
    }
}

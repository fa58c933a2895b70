using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Index;

/// <summary>
/// Raw scores of a query code against <c>count</c> consecutive codes (row-major, one code after another):
/// <c>dest[i] = raw(q, code_i)</c>, where raw is
/// <code>
/// Float32  sum_j q[j] v[j]
/// Int8     sum_j q[j] v[j]                          (exact, int32)
/// Ternary  popcnt(q+ &amp; v+ | q- &amp; v-) - popcnt(q+ &amp; v- | q- &amp; v+)   summed over words (exact)
/// Binary   D - 2 popcnt(q ^ v)                       (exact)
/// </code>
/// The oracle is <see cref="CodeLayout.RawReference"/>. The popcount kernels use the scalar POPCNT instruction on four
/// codes a loop (the query words are loaded once for four codes); on x86-64 cores with 3-4 integer ports this keeps up
/// with the memory stream of a 96-byte code, and it needs no data transposition, so HNSW reads one code from 2 cache
/// lines. Int8 uses AVX2 (vpsignb + vpmaddubsw) with a scalar fallback.
/// </summary>
internal static unsafe class ScanKernels
{
    /// <summary>Scores <paramref name="count"/> codes starting at <paramref name="codes"/>.</summary>
    public static void Raw(CodeLayout layout, byte* q, byte* codes, int count, float* dest)
    {
        switch (layout.Kind)
        {
            case CodeKind.Ternary: Ternary((ulong*)q, (ulong*)codes, layout.Words, count, dest); break;
            case CodeKind.Binary: Binary((ulong*)q, (ulong*)codes, layout.Words, layout.Dimensions, count, dest); break;
            case CodeKind.Int8:
                if (Avx2.IsSupported) Int8Avx2((sbyte*)q, (sbyte*)codes, layout.Dimensions, count, dest);
                else Int8Scalar((sbyte*)q, (sbyte*)codes, layout.Dimensions, count, dest);
                break;
            case CodeKind.Float32: Float32((float*)q, (float*)codes, layout.Dimensions, count, dest); break;
        }
    }

    /// <summary>Raw score of one pair of codes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RawOne(CodeLayout layout, byte* q, byte* code)
    {
        switch (layout.Kind)
        {
            case CodeKind.Ternary: return TernaryOne((ulong*)q, (ulong*)code, layout.Words);
            case CodeKind.Binary:
            {
                ulong* a = (ulong*)q, b = (ulong*)code; int h = 0;
                for (int w = 0; w < layout.Words; w++) h += BitOperations.PopCount(a[w] ^ b[w]);
                return layout.Dimensions - 2 * h;
            }
            default:
            {
                float r;
                Raw(layout, q, code, 1, &r);
                return r;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TernaryOne(ulong* q, ulong* a, int words)
    {
        int s = 0;
        for (int w = 0; w < words; w++)
        {
            ulong p = q[w], m = q[words + w], ap = a[w], am = a[words + w];
            s += BitOperations.PopCount((ap & p) | (am & m)) - BitOperations.PopCount((ap & m) | (am & p));
        }
        return s;
    }

    /// <summary>Ternary popcount dot, four codes a loop. A code is [W words of +1 plane][W words of -1 plane].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary(ulong* q, ulong* codes, int words, int count, float* dest)
    {
        int stride = 2 * words, i = 0;
        ulong* qm = q + words;
        for (; i + 4 <= count; i += 4)
        {
            ulong* a = codes + (long)i * stride, b = a + stride, c = b + stride, d = c + stride;
            int sa = 0, sb = 0, sc = 0, sd = 0;
            for (int w = 0; w < words; w++)
            {
                ulong p = q[w], m = qm[w];
                ulong ap = a[w], am = a[words + w], bp = b[w], bm = b[words + w];
                ulong cp = c[w], cm = c[words + w], dp = d[w], dm = d[words + w];
                sa += BitOperations.PopCount((ap & p) | (am & m)) - BitOperations.PopCount((ap & m) | (am & p));
                sb += BitOperations.PopCount((bp & p) | (bm & m)) - BitOperations.PopCount((bp & m) | (bm & p));
                sc += BitOperations.PopCount((cp & p) | (cm & m)) - BitOperations.PopCount((cp & m) | (cm & p));
                sd += BitOperations.PopCount((dp & p) | (dm & m)) - BitOperations.PopCount((dp & m) | (dm & p));
            }
            dest[i] = sa; dest[i + 1] = sb; dest[i + 2] = sc; dest[i + 3] = sd;
        }
        for (; i < count; i++) dest[i] = TernaryOne(q, codes + (long)i * stride, words);
    }

    /// <summary>Binary: D - 2 * Hamming distance, four codes a loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Binary(ulong* q, ulong* codes, int words, int dims, int count, float* dest)
    {
        int i = 0;
        for (; i + 4 <= count; i += 4)
        {
            ulong* a = codes + (long)i * words, b = a + words, c = b + words, d = c + words;
            int ha = 0, hb = 0, hc = 0, hd = 0;
            for (int w = 0; w < words; w++)
            {
                ulong x = q[w];
                ha += BitOperations.PopCount(a[w] ^ x); hb += BitOperations.PopCount(b[w] ^ x);
                hc += BitOperations.PopCount(c[w] ^ x); hd += BitOperations.PopCount(d[w] ^ x);
            }
            dest[i] = dims - 2 * ha; dest[i + 1] = dims - 2 * hb; dest[i + 2] = dims - 2 * hc; dest[i + 3] = dims - 2 * hd;
        }
        for (; i < count; i++)
        {
            ulong* a = codes + (long)i * words; int h = 0;
            for (int w = 0; w < words; w++) h += BitOperations.PopCount(a[w] ^ q[w]);
            dest[i] = dims - 2 * h;
        }
    }

    /// <summary>Int8 dot, scalar.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Int8Scalar(sbyte* q, sbyte* codes, int dims, int count, float* dest)
    {
        for (int i = 0; i < count; i++)
        {
            sbyte* a = codes + (long)i * dims; int s = 0;
            for (int j = 0; j < dims; j++) s += q[j] * a[j];
            dest[i] = s;
        }
    }

    /// <summary>Int8 dot with AVX2: <c>vpmaddubsw(|q|, sign(v, q))</c> gives 16-bit pair sums (at most
    /// 2 * 127 * 127 = 32258, no saturation since codes are in [-127, 127]), <c>vpmaddwd</c> by ones widens to int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Int8Avx2(sbyte* q, sbyte* codes, int dims, int count, float* dest)
    {
        int body = dims & ~31;
        var ones = Vector256.Create((short)1);
        for (int i = 0; i < count; i++)
        {
            sbyte* a = codes + (long)i * dims;
            var acc = Vector256<int>.Zero;
            for (int j = 0; j < body; j += 32)
            {
                var qv = Avx.LoadVector256(q + j);
                var av = Avx.LoadVector256(a + j);
                var prod = Avx2.MultiplyAddAdjacent(Avx2.Abs(qv), Avx2.Sign(av, qv));
                acc = Avx2.Add(acc, Avx2.MultiplyAddAdjacent(prod, ones));
            }
            int s = Vector256.Sum(acc);
            for (int j = body; j < dims; j++) s += q[j] * a[j];
            dest[i] = s;
        }
    }

    /// <summary>Float dot, one row at a time by TensorPrimitives (AVX-512/AVX2 inside).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Float32(float* q, float* codes, int dims, int count, float* dest)
    {
        var qs = new ReadOnlySpan<float>(q, dims);
        for (int i = 0; i < count; i++)
            dest[i] = TensorPrimitives.Dot(qs, new ReadOnlySpan<float>(codes + (long)i * dims, dims));
    }
}

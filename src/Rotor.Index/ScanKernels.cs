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
/// Ternary  popcnt(nq &amp; nv) - 2 popcnt((sq ^ sv) &amp; nq &amp; nv)  summed over words (exact; n mask, s sign)
/// Binary   D - 2 popcnt(q ^ v)                       (exact)
/// </code>
/// The oracle is <see cref="CodeLayout.RawReference"/>. The popcount kernels use the scalar POPCNT instruction (.NET 10
/// has no VPOPCNTQ intrinsic; a vpshufb nibble-table count needs 6 vector operations for 4 words where POPCNT needs 4),
/// fully unrolled over the words of a code; for W = 6 with AVX2 every second code is scored by a vpshufb kernel so
/// that the vector units work beside the integer ones (<see cref="Ternary6Hybrid"/>). No data transposition: HNSW
/// reads one code from 2 cache lines. The asymmetric ternary kernel (int8 query) and Int8 use AVX2 vpmaddubsw with
/// scalar fallbacks.
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

    // Ternary codes (format 2): [W words: non-zero mask][W words: sign, 1 = -1, set only under the mask].
    // Per word, the product of two trits is non-zero where both masks are set (x = na & nb) and -1 where the signs
    // also differ (y = (sa ^ sb) & x), so raw = sum popcnt(x) - 2 sum popcnt(y): AND, XOR, AND and two POPCNT a word.
    // The scan kernels are fully unrolled for the common plane widths (W = 2, 4, 6, 8, 12, 16: D = 128 .. 1024), one
    // code at a time with the query words read from L1: a loop over words costs more than the popcounts at W = 6
    // (measured: 6.4 ms against 4.7 ms for 1M codes of 384 dims), and four codes a loop gained nothing once unrolled.

    /// <summary>Raw ternary score of one code against the query, any W (the generic kernel and tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TernaryOne(ulong* q, ulong* a, int words)
    {
        switch (words)
        {
            case 6: return Dot6(a, q, a + 6, q + 6);
            case 4: return Dot4(a, q, a + 4, q + 4);
            case 2: return Dot2(a, q, a + 2, q + 2);
        }
        ulong* qs = q + words, s = a + words;
        int p = 0, m = 0;
        for (int w = 0; w < words; w++)
        {
            ulong x = a[w] & q[w];
            p += BitOperations.PopCount(x);
            m += BitOperations.PopCount((s[w] ^ qs[w]) & x);
        }
        return p - 2 * m;
    }

    /// <summary>Two words of mask <paramref name="a"/>/<paramref name="b"/> and sign <paramref name="sa"/>/<paramref name="sb"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Dot2(ulong* a, ulong* b, ulong* sa, ulong* sb)
    {
        ulong x0 = a[0] & b[0], x1 = a[1] & b[1];
        return BitOperations.PopCount(x0) + BitOperations.PopCount(x1)
             - 2 * (BitOperations.PopCount((sa[0] ^ sb[0]) & x0) + BitOperations.PopCount((sa[1] ^ sb[1]) & x1));
    }

    /// <summary>Four words (see <see cref="Dot2"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Dot4(ulong* a, ulong* b, ulong* sa, ulong* sb)
    {
        ulong x0 = a[0] & b[0], x1 = a[1] & b[1], x2 = a[2] & b[2], x3 = a[3] & b[3];
        int p = BitOperations.PopCount(x0) + BitOperations.PopCount(x1) + BitOperations.PopCount(x2) + BitOperations.PopCount(x3);
        int m = BitOperations.PopCount((sa[0] ^ sb[0]) & x0) + BitOperations.PopCount((sa[1] ^ sb[1]) & x1)
              + BitOperations.PopCount((sa[2] ^ sb[2]) & x2) + BitOperations.PopCount((sa[3] ^ sb[3]) & x3);
        return p - 2 * m;
    }

    /// <summary>Six words (see <see cref="Dot2"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Dot6(ulong* a, ulong* b, ulong* sa, ulong* sb)
    {
        ulong x0 = a[0] & b[0], x1 = a[1] & b[1], x2 = a[2] & b[2], x3 = a[3] & b[3], x4 = a[4] & b[4], x5 = a[5] & b[5];
        int p = BitOperations.PopCount(x0) + BitOperations.PopCount(x1) + BitOperations.PopCount(x2)
              + BitOperations.PopCount(x3) + BitOperations.PopCount(x4) + BitOperations.PopCount(x5);
        int m = BitOperations.PopCount((sa[0] ^ sb[0]) & x0) + BitOperations.PopCount((sa[1] ^ sb[1]) & x1)
              + BitOperations.PopCount((sa[2] ^ sb[2]) & x2) + BitOperations.PopCount((sa[3] ^ sb[3]) & x3)
              + BitOperations.PopCount((sa[4] ^ sb[4]) & x4) + BitOperations.PopCount((sa[5] ^ sb[5]) & x5);
        return p - 2 * m;
    }

    /// <summary>Ternary popcount dot of <paramref name="count"/> codes: picks the unrolled kernel of W, else the generic one.</summary>
    public static void Ternary(ulong* q, ulong* codes, int words, int count, float* dest)
    {
        switch (words)
        {
            case 2: Ternary2(q, codes, count, dest); break;
            case 4: Ternary4(q, codes, count, dest); break;
            case 6:
                if (Avx2.IsSupported) Ternary6Hybrid(q, codes, count, dest);
                else Ternary6(q, codes, count, dest);
                break;
            case 8: Ternary8(q, codes, count, dest); break;
            case 12: Ternary12(q, codes, count, dest); break;
            case 16: Ternary16(q, codes, count, dest); break;
            default: TernaryGeneric(q, codes, words, count, dest); break;
        }
    }

    /// <summary>Any W: a loop over words, one code at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TernaryGeneric(ulong* q, ulong* codes, int words, int count, float* dest)
    {
        int stride = 2 * words;
        ulong* qs = q + words;
        for (int i = 0; i < count; i++)
        {
            ulong* a = codes + (long)i * stride, s = a + words;
            int p = 0, m = 0;
            for (int w = 0; w < words; w++)
            {
                ulong x = a[w] & q[w];
                p += BitOperations.PopCount(x);
                m += BitOperations.PopCount((s[w] ^ qs[w]) & x);
            }
            dest[i] = p - 2 * m;
        }
    }

    /// <summary>W = 2 (D 65..128).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary2(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 4) dest[i] = Dot2(c, q, c + 2, q + 2);
    }

    /// <summary>W = 4 (D 193..256).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary4(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 8) dest[i] = Dot4(c, q, c + 4, q + 4);
    }

    /// <summary>W = 6 (D 321..384).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary6(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 12) dest[i] = Dot6(c, q, c + 6, q + 6);
    }

    // W = 6 with AVX2, two codes a step: the first by the scalar Dot6 (integer ALUs), the second by SIMD (vector
    // ALUs), so that both kinds of execution units work at once. Scalar alone: 3.85 ms for 1M codes in cache, SIMD
    // alone 4.54 ms, both interleaved 3.42 ms (4.5 against 4.9 ms streaming from memory; scratch program, same run).
    // The SIMD code: A = [n0 n1 n2 n3], B = [n4 n5 s0 s1], C = [s2 s3 s4 s5] (3 loads of 32 bytes), x = n & qn,
    // t = s ^ qs, y = t & x rearranged by lane permutes into xA = x0..x3, yA = y0..y3, Z = [x4 x5 y4 y5]; bytes are
    // counted by the nibble table (vpshufb) and summed with weights +1 (x) and -2 (y) by vpmaddubsw: per int16 lane at
    // most 3 * 2 * 8 * 2 = 96, no overflow.

    private static ReadOnlySpan<byte> NibbleCounts => [0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ByteCounts(Vector256<byte> v, Vector256<byte> table, Vector256<byte> low)
        => Avx2.Shuffle(table, v & low) + Avx2.Shuffle(table, Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & low);

    /// <summary>W = 6 with AVX2: scalar and SIMD codes interleaved (see above).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary6Hybrid(ulong* q, ulong* c, int count, float* dest)
    {
        var qa = Vector256.Load(q);                          // qn0..qn3
        var qbn = Vector256.Create(q[4], q[5], 0, 0);        // qn4 qn5, zero where B holds signs
        var qbs = Vector256.Create(0, 0, q[6], q[7]);        // qs0 qs1 under B's sign lanes
        var qc = Vector256.Load(q + 8);                      // qs2..qs5
        var table = Vector256.Create(Vector128.Create(NibbleCounts));
        var low = Vector256.Create((byte)15);
        var plus = Vector256.Create((sbyte)1);
        var minus2 = Vector256.Create((sbyte)-2);
        var mixed = Vector256.Create(Vector128.Create((sbyte)1), Vector128.Create((sbyte)-2));
        int i = 0;
        for (; i + 2 <= count; i += 2, c += 24)
        {
            dest[i] = Dot6(c, q, c + 6, q + 6);
            byte* b = (byte*)(c + 12);
            var A = Vector256.Load((ulong*)b);
            var B = Vector256.Load((ulong*)(b + 32));
            var C = Vector256.Load((ulong*)(b + 64));
            var xA = A & qa;
            var xB = B & qbn;                                            // x4 x5 0 0
            var tC = C ^ qc;                                             // t2 t3 t4 t5
            var yA = Avx2.Permute2x128(B ^ qbs, tC, 0x21) & xA;          // [t0 t1 t2 t3] & x0..x3
            var yB = Avx2.Permute4x64(tC, 0b11_10_11_10) & xB;           // t4 t5 & x4 x5, then 0 0
            var z = Avx2.Blend(xB.AsUInt32(), Avx2.Permute4x64(yB, 0b01_00_01_00).AsUInt32(), 0b1111_0000).AsByte();
            var s = Avx2.MultiplyAddAdjacent(ByteCounts(xA.AsByte(), table, low), plus)
                  + Avx2.MultiplyAddAdjacent(ByteCounts(yA.AsByte(), table, low), minus2)
                  + Avx2.MultiplyAddAdjacent(ByteCounts(z, table, low), mixed);
            var w = Avx2.MultiplyAddAdjacent(s, Vector256<short>.One);
            var h = w.GetLower() + w.GetUpper();
            h += Sse2.Shuffle(h, 0b01_00_11_10);
            h += Sse2.Shuffle(h, 0b10_11_00_01);
            dest[i + 1] = h.ToScalar();
        }
        for (; i < count; i++, c += 12) dest[i] = Dot6(c, q, c + 6, q + 6);
    }

    /// <summary>W = 8 (D 449..512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary8(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 16) dest[i] = Dot4(c, q, c + 8, q + 8) + Dot4(c + 4, q + 4, c + 12, q + 12);
    }

    /// <summary>W = 12 (D 705..768).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary12(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 24) dest[i] = Dot6(c, q, c + 12, q + 12) + Dot6(c + 6, q + 6, c + 18, q + 18);
    }

    /// <summary>W = 16 (D 961..1024).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Ternary16(ulong* q, ulong* c, int count, float* dest)
    {
        for (int i = 0; i < count; i++, c += 32)
            dest[i] = Dot4(c, q, c + 16, q + 16) + Dot4(c + 4, q + 4, c + 20, q + 20)
                    + Dot4(c + 8, q + 8, c + 24, q + 24) + Dot4(c + 12, q + 12, c + 28, q + 28);
    }

    // Asymmetric ternary (an option of the search, not of the file): the query is kept as int8, q8 in [-127, 127],
    // and raw = sum_j q8_j t_j with t_j = m_j (1 - 2 s_j) from the code's mask and sign planes. Nothing is unpacked:
    // the query is stored bit-transposed, planes[k * B + b] = q8[8 b + k] (B = 8 W bytes a plane), so that bit k of
    // byte b of a code plane meets its query value in lane b of plane k:
    //   raw = sum_k sum_b ((m_b >> k) & 1) * planes[k][b]  -  2 sum_k sum_b ((s_b >> k) & 1) * planes[k][b]
    // with vpmaddubsw (unsigned 0/1 times signed int8, pairs summed to int16). Per lane and chunk the int16 sums stay
    // within 8 * 254 for each term and 3 * 8 * 254 = 6096 combined, then widen to int32 (vpmaddwd by ones).

    /// <summary>The bit-transposed int8 query of the asymmetric kernels: <c>planes[k * 8W + b] = q8[8 b + k]</c>
    /// (zero past D). <paramref name="planes"/> holds 64 W bytes.</summary>
    public static void TransposeQuery(ReadOnlySpan<sbyte> q8, int words, Span<sbyte> planes)
    {
        int bytes = 8 * words;
        planes[..(8 * bytes)].Clear();
        for (int j = 0; j < q8.Length; j++) planes[(j & 7) * bytes + (j >> 3)] = q8[j];
    }

    /// <summary>Asymmetric raw scores of <paramref name="count"/> ternary codes: AVX2 when supported, else scalar.</summary>
    public static void TernaryAsym(sbyte* planes, ulong* codes, int words, int count, float* dest)
    {
        if (Avx2.IsSupported) TernaryAsymAvx2(planes, codes, words, count, dest);
        else TernaryAsymScalar(planes, codes, words, count, dest);
    }

    /// <summary>Asymmetric raw score of one code.</summary>
    public static float TernaryAsymOne(sbyte* planes, ulong* code, int words)
    {
        float r;
        TernaryAsym(planes, code, words, 1, &r);
        return r;
    }

    /// <summary>Asymmetric, scalar: bit by bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TernaryAsymScalar(sbyte* planes, ulong* codes, int words, int count, float* dest)
    {
        int bytes = 8 * words;
        for (int i = 0; i < count; i++)
        {
            byte* m = (byte*)(codes + (long)i * 2 * words), s = m + bytes;
            dest[i] = AsymBytes(planes, bytes, m, s, 0, bytes);
        }
    }

    /// <summary>Bytes [b0, b1) of a code's planes against the transposed query, scalar.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int AsymBytes(sbyte* planes, int bytes, byte* m, byte* s, int b0, int b1)
    {
        int sum = 0;
        for (int b = b0; b < b1; b++)
        {
            int mb = m[b], sb = s[b];
            for (int k = 0; k < 8; k++)
                sum += ((mb >> k) & 1) * (1 - 2 * ((sb >> k) & 1)) * planes[k * bytes + b];
        }
        return sum;
    }

    /// <summary>Asymmetric with AVX2: 32 plane bytes (256 dimensions) a step, then 16 (SSSE3), then scalar bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TernaryAsymAvx2(sbyte* planes, ulong* codes, int words, int count, float* dest)
    {
        int bytes = 8 * words;
        var one = Vector256.Create((byte)1);
        var one16 = Vector256.Create((short)1);
        var oneX = Vector128.Create((byte)1);
        var one16X = Vector128.Create((short)1);
        for (int i = 0; i < count; i++)
        {
            byte* m = (byte*)(codes + (long)i * 2 * words), s = m + bytes;
            var acc = Vector256<int>.Zero;
            int b = 0;
            for (; b + 32 <= bytes; b += 32)
            {
                var vm = Vector256.Load(m + b).AsUInt16();
                var vs = Vector256.Load(s + b).AsUInt16() & vm; // sign bits count only under the mask
                Vector256<short> a = Vector256<short>.Zero, n = Vector256<short>.Zero;
                sbyte* pk = planes + b;
                for (int k = 0; k < 8; k++, pk += bytes)
                {
                    var x = Vector256.Load(pk);
                    a += Avx2.MultiplyAddAdjacent(vm.AsByte() & one, x);
                    n += Avx2.MultiplyAddAdjacent(vs.AsByte() & one, x);
                    vm = Avx2.ShiftRightLogical(vm, 1);
                    vs = Avx2.ShiftRightLogical(vs, 1);
                }
                acc += Avx2.MultiplyAddAdjacent(a - n - n, one16);
            }
            int sum = Vector256.Sum(acc);
            for (; b + 16 <= bytes; b += 16)
            {
                var vm = Vector128.Load(m + b).AsUInt16();
                var vs = Vector128.Load(s + b).AsUInt16() & vm;
                Vector128<short> a = Vector128<short>.Zero, n = Vector128<short>.Zero;
                sbyte* pk = planes + b;
                for (int k = 0; k < 8; k++, pk += bytes)
                {
                    var x = Vector128.Load(pk);
                    a += Ssse3.MultiplyAddAdjacent(vm.AsByte() & oneX, x);
                    n += Ssse3.MultiplyAddAdjacent(vs.AsByte() & oneX, x);
                    vm = Sse2.ShiftRightLogical(vm, 1);
                    vs = Sse2.ShiftRightLogical(vs, 1);
                }
                sum += Vector128.Sum(Sse2.MultiplyAddAdjacent(a - n - n, one16X));
            }
            dest[i] = sum + AsymBytes(planes, bytes, m, s, b, bytes);
        }
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

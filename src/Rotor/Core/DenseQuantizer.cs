using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>
/// The row conversions behind <see cref="DenseMatrix.SetRow(int, ReadOnlySpan{float})"/> and
/// <see cref="DenseMatrix.SetRow(int, ReadOnlySpan{Half})"/>: half widening, <see cref="DenseType.Int8"/> and
/// <see cref="DenseType.Q4"/> quantization. Each vector kernel has a plain scalar reference here (<c>…Reference</c>),
/// the test oracle: the kernels give the same bits. A kernel takes its Vector256 path when asked to (<c>wide</c>:
/// <see cref="Wide"/>, where Vector256 is accelerated; tests run both), else its Vector128 path (Vector128 is
/// accelerated on every processor Rotor runs on, x64 and Arm64 alike). The kernels are jitted fully optimized on their
/// first call (<see cref="MethodImplOptions.AggressiveOptimization"/>) and their helpers inlined: a model load runs
/// them once a row, hundreds of thousands of times within a fraction of a second, mostly before tiered compilation
/// would replace their unoptimized first code, in which every vector operation is a call.
/// <para>Legend: a <see cref="DenseType.Q4"/> superblock is 512 floats <c>v[64 t + 4 l + e]</c> (step t &lt; 8, block
/// l &lt; 16, e &lt; 4); block l holds the 32 values with that l (layout in <see cref="DenseMatrix"/>).</para>
/// </summary>
internal static unsafe class DenseQuantizer
{
    private const int SuperCols = DenseMatrix.Q4SuperCols;
    /// <summary>Half bits from this magnitude up (<c>h &amp; 0x7FFF</c>) are infinite or NaN.</summary>
    public const int HalfNonFinite = 0x7C00;

    /// <summary>Whether the kernels' Vector256 paths are the fast ones here (<c>wide</c> for the callers).</summary>
    public static bool Wide => Vector256.IsHardwareAccelerated;

    /// <summary>What <see cref="Q4Superblock"/> found wrong, if anything.</summary>
    public enum Q4Status
    {
        /// <summary>The superblock was written.</summary>
        Ok,
        /// <summary>A value is NaN or infinite (nothing was written).</summary>
        NonFinite,
        /// <summary>A block's scale <c>m / -8</c> is not a finite half (nothing was written).</summary>
        ScaleOverflow,
    }

    // ---- halves

    /// <summary><c>max_i (h[i] &amp; 0x7FFF)</c> over n half bit patterns (0 when n is 0): the bits of the largest
    /// magnitude, or at least <see cref="HalfNonFinite"/> when a value is infinite or NaN (finite halves order by
    /// magnitude as these integers do).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int MaxMagnitudeBits(ushort* h, int n, bool wide)
    {
        int i = 0, best = 0;
        if (wide && n >= 16)
        {
            var mask = Vector256.Create((ushort)0x7FFF);
            var acc = Vector256<ushort>.Zero;
            for (; i + 16 <= n; i += 16) acc = Vector256.Max(acc, Vector256.Load(h + i) & mask);
            best = Reduce(Vector128.Max(acc.GetLower(), acc.GetUpper()));
        }
        else if (n >= 8)
        {
            var mask = Vector128.Create((ushort)0x7FFF);
            var acc = Vector128<ushort>.Zero;
            for (; i + 8 <= n; i += 8) acc = Vector128.Max(acc, Vector128.Load(h + i) & mask);
            best = Reduce(acc);
        }
        for (; i < n; i++) best = Math.Max(best, h[i] & 0x7FFF);
        return best;

        static int Reduce(Vector128<ushort> v)
        {
            int m = 0;
            for (int j = 0; j < Vector128<ushort>.Count; j++) m = Math.Max(m, v.GetElement(j));
            return m;
        }
    }

    /// <summary><c>f[i] = (float)h[i]</c> for n finite half bit patterns (exact: every half is a float). Infinite and NaN
    /// halves are not widened correctly: callers refuse them first (<see cref="MaxMagnitudeBits"/>). In place of
    /// <c>TensorPrimitives.ConvertToSingle</c>, which handles every half and took several times as long on the head
    /// conversion (A/B of the load, the two calls swapped).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WidenHalves(ushort* h, float* f, int n, bool wide)
    {
        int i = 0;
        if (wide)
        {
            for (; i + 16 <= n; i += 16)
            {
                var x = Vector256.Load(h + i);
                HalfBitsToSingle(Vector256.WidenLower(x)).Store(f + i);
                HalfBitsToSingle(Vector256.WidenUpper(x)).Store(f + i + 8);
            }
        }
        for (; i + 8 <= n; i += 8)
        {
            var x = Vector128.Load(h + i);
            HalfBitsToSingle(Vector128.WidenLower(x)).Store(f + i);
            HalfBitsToSingle(Vector128.WidenUpper(x)).Store(f + i + 4);
        }
        for (; i < n; i++) f[i] = (float)BitConverter.UInt16BitsToHalf(h[i]);
    }

    // A finite half's magnitude bits shifted into a float's place read as a float 2^-112 times the half (subnormal halves
    // become subnormal floats); the multiply by 2^112 is exact, the sign is put back as it was.
    private const uint TwoTo112 = (127 + 112) << 23;   // float bits

    /// <summary>The float of each lane's finite half bits (the low 16 bits of the lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfBitsToSingle(Vector256<uint> h)
        => ((((h & Vector256.Create(0x7FFFu)) << 13).AsSingle() * Vector256.Create(TwoTo112).AsSingle()).AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();

    /// <summary>The float of each lane's finite half bits (the low 16 bits of the lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfBitsToSingle(Vector128<uint> h)
        => ((((h & Vector128.Create(0x7FFFu)) << 13).AsSingle() * Vector128.Create(TwoTo112).AsSingle()).AsUInt32() | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();

    /// <summary>The half bits of each finite lane rounded to half precision as <c>(Half)x</c> rounds (to nearest, ties
    /// to even; 0x7C00 or 0xFC00, infinity, past the largest half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<uint> SingleToHalfBits(Vector128<float> x)
    {
        var bits = x.AsUInt32();
        var sign = bits & Vector128.Create(0x80000000u);
        var a = bits ^ sign;
        // Normal halves: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even: adding 0xFFF plus
        // the lowest kept bit carries into the kept bits exactly when rounding goes up (into the exponent too).
        var normal = Vector128.Min((a + Vector128.Create(0xC8000FFFu) + ((a >> 13) & Vector128<uint>.One)) >> 13, Vector128.Create(0x7C00u));
        // Below 2^-14 (subnormal halves and zero): adding 0.5 rounds to a multiple of 2^-24, half's smallest step, to
        // nearest even; the steps are then the low bits.
        var small = (a.AsSingle() + Vector128.Create(0.5f)).AsUInt32() - Vector128.Create(0x3F000000u);
        var h = Vector128.ConditionalSelect(Vector128.LessThan(a.AsInt32(), Vector128.Create(0x38800000)).AsUInt32(), small, normal);
        return h | (sign >> 16);
    }

    /// <summary>The half bits of each finite lane rounded to half precision as <c>(Half)x</c> rounds (to nearest, ties
    /// to even; 0x7C00 or 0xFC00, infinity, past the largest half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<uint> SingleToHalfBits(Vector256<float> x)
    {
        var bits = x.AsUInt32();
        var sign = bits & Vector256.Create(0x80000000u);
        var a = bits ^ sign;
        // Normal halves: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even: adding 0xFFF plus
        // the lowest kept bit carries into the kept bits exactly when rounding goes up (into the exponent too).
        var normal = Vector256.Min((a + Vector256.Create(0xC8000FFFu) + ((a >> 13) & Vector256<uint>.One)) >> 13, Vector256.Create(0x7C00u));
        // Below 2^-14 (subnormal halves and zero): adding 0.5 rounds to a multiple of 2^-24, half's smallest step, to
        // nearest even; the steps are then the low bits.
        var small = (a.AsSingle() + Vector256.Create(0.5f)).AsUInt32() - Vector256.Create(0x3F000000u);
        var h = Vector256.ConditionalSelect(Vector256.LessThan(a.AsInt32(), Vector256.Create(0x38800000)).AsUInt32(), small, normal);
        return h | (sign >> 16);
    }

    // ---- Int8

    /// <summary>Quantizes one <see cref="DenseType.Int8"/> row: <c>scale = amax / 127</c> with <c>amax = max |v[i]|</c>,
    /// <c>q[i] = clamp(round_half_even(v[i] * (127 / amax)), -127, 127)</c> for i &lt; v.Length, 0 up to
    /// q.Length (all 0 when amax is 0). The scalar definition of <see cref="QuantizeInt8"/>.</summary>
    public static float Int8RowReference(ReadOnlySpan<float> v, Span<sbyte> q)
    {
        float amax = 0;
        foreach (float x in v) amax = MathF.Max(amax, MathF.Abs(x));
        q.Clear();
        if (amax == 0) return 0;
        float inv = 127f / amax;
        for (int i = 0; i < v.Length; i++) q[i] = (sbyte)Math.Clamp(MathF.Round(v[i] * inv), -127f, 127f);
        return amax / 127f;
    }

    /// <summary><c>q[i] = clamp(round_half_even(v[i] * inv), -127, 127)</c> for i &lt; n; 32 values a step in vectors
    /// (the same rounding as <see cref="MathF.Round(float)"/>), the tail one at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeInt8(float* v, int n, float inv, sbyte* q, bool wide)
    {
        int i = 0;
        if (wide)
        {
            var scale = Vector256.Create(inv);
            var lowest = Vector256.Create(-127f);
            var highest = Vector256.Create(127f);
            for (; i + 32 <= n; i += 32)
            {
                // Clamped to +-127, so the native conversion is exact.
                var a = Vector256.ConvertToInt32Native(Vector256.ClampNative(Vector256.Round(Vector256.Load(v + i) * scale), lowest, highest));
                var b = Vector256.ConvertToInt32Native(Vector256.ClampNative(Vector256.Round(Vector256.Load(v + i + 8) * scale), lowest, highest));
                var c = Vector256.ConvertToInt32Native(Vector256.ClampNative(Vector256.Round(Vector256.Load(v + i + 16) * scale), lowest, highest));
                var d = Vector256.ConvertToInt32Native(Vector256.ClampNative(Vector256.Round(Vector256.Load(v + i + 24) * scale), lowest, highest));
                Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)).Store(q + i);
            }
        }
        else
        {
            var scale = Vector128.Create(inv);
            var lowest = Vector128.Create(-127f);
            var highest = Vector128.Create(127f);
            for (; i + 16 <= n; i += 16)
            {
                var a = Vector128.ConvertToInt32Native(Vector128.ClampNative(Vector128.Round(Vector128.Load(v + i) * scale), lowest, highest));
                var b = Vector128.ConvertToInt32Native(Vector128.ClampNative(Vector128.Round(Vector128.Load(v + i + 4) * scale), lowest, highest));
                var c = Vector128.ConvertToInt32Native(Vector128.ClampNative(Vector128.Round(Vector128.Load(v + i + 8) * scale), lowest, highest));
                var d = Vector128.ConvertToInt32Native(Vector128.ClampNative(Vector128.Round(Vector128.Load(v + i + 12) * scale), lowest, highest));
                Vector128.Narrow(Vector128.Narrow(a, b), Vector128.Narrow(c, d)).Store(q + i);
            }
        }
        for (; i < n; i++) q[i] = (sbyte)Math.Clamp(MathF.Round(v[i] * inv), -127f, 127f);
    }

    // ---- Q4

    /// <summary>Quantizes one <see cref="DenseType.Q4"/> row of v.Length finite values, padded with zeros to
    /// 512 * d.Length / 16 columns, into nibbles (PaddedCols / 2 bytes) and block scales (PaddedCols / 32 halves):
    /// the scalar definition of <see cref="Q4Superblock"/>. For block l of superblock s, with max and min its largest and
    /// smallest value (IEEE maximum and minimum: -0 &lt; +0), <c>m = max &gt;= -min ? max : min</c>,
    /// <c>d = (Half)(m / -8)</c>, and each value w of the block is
    /// <c>u = clamp(round_half_even(w * (d == 0 ? 0 : 1 / d)), -8, 7) + 8</c>, the nibble of column
    /// <c>c = 512 s + 64 t + 4 l + e</c> in byte <c>256 s + 64 (t / 2) + 4 l + e</c>, low for even t.</summary>
    /// <exception cref="RotorException">A block's scale is not a finite half.</exception>
    public static void Q4RowReference(ReadOnlySpan<float> v, Span<byte> nib, Span<ushort> d)
    {
        int supers = d.Length / 16;
        for (int s = 0; s < supers; s++)
            for (int l = 0; l < 16; l++)
            {
                float max = float.NegativeInfinity, min = float.PositiveInfinity;
                for (int t = 0; t < 8; t++)
                    for (int e = 0; e < 4; e++)
                    {
                        int c = SuperCols * s + 64 * t + 4 * l + e;
                        float w = c < v.Length ? v[c] : 0f;
                        max = MathF.Max(max, w); min = MathF.Min(min, w);
                    }
                float m = max >= -min ? max : min;
                Half dh = (Half)(m / -8f);
                if (!Half.IsFinite(dh)) throw new RotorException($"the weight {m} is too large for Q4's half-precision block scales");
                d[16 * s + l] = BitConverter.HalfToUInt16Bits(dh);
                float df = (float)dh, inv = df == 0 ? 0f : 1f / df;
                for (int t = 0; t < 8; t++)
                    for (int e = 0; e < 4; e++)
                    {
                        int c = SuperCols * s + 64 * t + 4 * l + e;
                        float w = c < v.Length ? v[c] : 0f;
                        int u = (int)Math.Clamp(MathF.Round(w * inv), -8f, 7f) + 8;
                        int b = 256 * s + 64 * (t / 2) + 4 * l + e;
                        nib[b] = (byte)((t & 1) == 0 ? (nib[b] & 0xF0) | u : (nib[b] & 0x0F) | (u << 4));
                    }
            }
    }

    /// <summary>The first block of the superblock <paramref name="v"/> (512 finite values) whose scale
    /// <c>(Half)(m / -8)</c> is not finite, and its m as <see cref="Q4RowReference"/> takes it; (-1, 0) when there is
    /// none (an error message's).</summary>
    public static (int Block, float M) Q4ScaleOverflow(float* v)
    {
        for (int l = 0; l < 16; l++)
        {
            float max = float.NegativeInfinity, min = float.PositiveInfinity;
            for (int t = 0; t < 8; t++)
                for (int e = 0; e < 4; e++) { max = MathF.Max(max, v[64 * t + 4 * l + e]); min = MathF.Min(min, v[64 * t + 4 * l + e]); }
            float m = max >= -min ? max : min;
            if (!Half.IsFinite((Half)(m / -8f))) return (l, m);
        }
        return (-1, 0);
    }

    /// <summary>Quantizes the 512 values at <paramref name="v"/> as <see cref="Q4RowReference"/> does one superblock:
    /// 256 bytes of nibbles at <paramref name="nib"/>, 16 block scales at <paramref name="d"/>. On a status other than
    /// <see cref="Q4Status.Ok"/> nothing is written.</summary>
    [SkipLocalsInit, MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Q4Status Q4Superblock(float* v, byte* nib, ushort* d, bool wide)
    {
        // Each column's extremes over the 8 steps, as ordered integer keys: a float's bits with the magnitude bits
        // flipped when negative order as the floats do (-0 < +0), and infinities and NaNs lie beyond the finite keys at
        // both ends.
        int* hi = stackalloc int[64], lo = stackalloc int[64];
        float* inv = stackalloc float[64];
        if (wide)
        {
            for (int j = 0; j < 64; j += 8)
            {
                var h = Key(Vector256.Load((int*)v + j)); var w = h;
                for (int t = 1; t < 8; t++) { var x = Key(Vector256.Load((int*)v + 64 * t + j)); h = Vector256.Max(h, x); w = Vector256.Min(w, x); }
                h.Store(hi + j); w.Store(lo + j);
            }
            // Blocks 0 .. 7 and 8 .. 15, a lane each, in the lane order 0 2 4 6 1 3 5 7.
            var h0 = BlockMax256(hi); var w0 = BlockMin256(lo);
            var h1 = BlockMax256(hi + 32); var w1 = BlockMin256(lo + 32);
            if ((NonFinite(h0, w0) | NonFinite(h1, w1)) != Vector256<int>.Zero) return Q4Status.NonFinite;
            var s0 = Scales(h0, w0, out var i0); var s1 = Scales(h1, w1, out var i1);
            if (Infinite(s0) | Infinite(s1)) return Q4Status.ScaleOverflow;
            var order = Vector256.Create(0u, 4, 1, 5, 2, 6, 3, 7);
            Vector256.Narrow(Vector256.Shuffle(s0, order), Vector256.Shuffle(s1, order)).Store(d);
            // Column group k of a step (8 columns, blocks 2k and 2k + 1) takes its two multipliers four lanes each.
            for (int k = 0; k < 4; k++)
            {
                var spread = Vector256.Create(k, k, k, k, k + 4, k + 4, k + 4, k + 4);
                Vector256.Shuffle(i0, spread).Store(inv + 8 * k);
                Vector256.Shuffle(i1, spread).Store(inv + 32 + 8 * k);
            }
        }
        else
        {
            for (int j = 0; j < 64; j += 4)
            {
                var h = Key(Vector128.Load((int*)v + j)); var w = h;
                for (int t = 1; t < 8; t++) { var x = Key(Vector128.Load((int*)v + 64 * t + j)); h = Vector128.Max(h, x); w = Vector128.Min(w, x); }
                h.Store(hi + j); w.Store(lo + j);
            }
            // Blocks 4g .. 4g + 3, a lane each.
            Span<Vector128<uint>> s = stackalloc Vector128<uint>[4];
            var nonFinite = Vector128<int>.Zero;
            bool overflow = false;
            for (int g = 0; g < 4; g++)
            {
                var h = BlockMax128(hi + 16 * g); var w = BlockMin128(lo + 16 * g);
                nonFinite |= NonFinite(h, w);
                s[g] = Scales(h, w, out var iv);
                overflow |= Infinite(s[g]);
                for (int e = 0; e < 4; e++) Vector128.Shuffle(iv, Vector128.Create(e)).Store(inv + 16 * g + 4 * e);
            }
            if (nonFinite != Vector128<int>.Zero) return Q4Status.NonFinite;
            if (overflow) return Q4Status.ScaleOverflow;
            Vector128.Narrow(s[0], s[1]).Store(d);
            Vector128.Narrow(s[2], s[3]).Store(d + 8);
        }

        // Steps 2p and 2p + 1 share bytes 64p .. 64p + 63: u(2p) + 16 u(2p + 1) = q(2p) + 16 q(2p + 1) + 136, formed in
        // floats (integers up to 255: exact) and converted once.
        if (wide)
        {
            for (int p = 0; p < 4; p++)
                for (int j = 0; j < 64; j += 32)
                {
                    float* a = v + 128 * p + j;
                    var c0 = Pair256(a, inv + j); var c1 = Pair256(a + 8, inv + j + 8);
                    var c2 = Pair256(a + 16, inv + j + 16); var c3 = Pair256(a + 24, inv + j + 24);
                    Vector256.Narrow(Vector256.Narrow(c0, c1), Vector256.Narrow(c2, c3)).AsByte().Store(nib + 64 * p + j);
                }
        }
        else
        {
            for (int p = 0; p < 4; p++)
                for (int j = 0; j < 64; j += 16)
                {
                    float* a = v + 128 * p + j;
                    var c0 = Pair128(a, inv + j); var c1 = Pair128(a + 4, inv + j + 4);
                    var c2 = Pair128(a + 8, inv + j + 8); var c3 = Pair128(a + 12, inv + j + 12);
                    Vector128.Narrow(Vector128.Narrow(c0, c1), Vector128.Narrow(c2, c3)).AsByte().Store(nib + 64 * p + j);
                }
        }
        return Q4Status.Ok;
    }

    /// <summary>The float order key of each lane's float bits, and back (the map is its own inverse).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Key(Vector256<int> x) => x ^ (Vector256.ShiftRightArithmetic(x, 31) & Vector256.Create(0x7FFFFFFF));

    /// <summary>The float order key of each lane's float bits, and back (the map is its own inverse).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Key(Vector128<int> x) => x ^ (Vector128.ShiftRightArithmetic(x, 31) & Vector128.Create(0x7FFFFFFF));

    // Four blocks' keys, four lanes each (a, b, c, e: lanes 0-3 of k, k + w, k + 2w, k + 3w for a vector of w lanes),
    // reduced to one lane each by two rounds of pairing lanes: [a01 b01 a23 b23] from a and b, [c01 e01 c23 e23] from c
    // and e, then [a b c e]. A Vector256 does this for two groups of four blocks at once, one in each 128-bit half.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockMax256(int* k)
    {
        var (p, q) = Pair1(Vector256.Load(k), Vector256.Load(k + 8)); var y = Vector256.Max(p, q);
        (p, q) = Pair1(Vector256.Load(k + 16), Vector256.Load(k + 24)); var z = Vector256.Max(p, q);
        (p, q) = Pair2(y, z);
        return Vector256.Max(p, q);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockMin256(int* k)
    {
        var (p, q) = Pair1(Vector256.Load(k), Vector256.Load(k + 8)); var y = Vector256.Min(p, q);
        (p, q) = Pair1(Vector256.Load(k + 16), Vector256.Load(k + 24)); var z = Vector256.Min(p, q);
        (p, q) = Pair2(y, z);
        return Vector256.Min(p, q);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int>, Vector256<int>) Pair1(Vector256<int> a, Vector256<int> b)
    {
        var even = Vector256.Create(-1, 0, -1, 0, -1, 0, -1, 0);
        var swap = Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6);
        return (Vector256.ConditionalSelect(even, a, Vector256.Shuffle(b, swap)), Vector256.ConditionalSelect(even, Vector256.Shuffle(a, swap), b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int>, Vector256<int>) Pair2(Vector256<int> a, Vector256<int> b)
    {
        var low = Vector256.Create(-1, -1, 0, 0, -1, -1, 0, 0);
        var swap = Vector256.Create(2, 3, 0, 1, 6, 7, 4, 5);
        return (Vector256.ConditionalSelect(low, a, Vector256.Shuffle(b, swap)), Vector256.ConditionalSelect(low, Vector256.Shuffle(a, swap), b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> BlockMax128(int* k)
    {
        var (p, q) = Pair1(Vector128.Load(k), Vector128.Load(k + 4)); var y = Vector128.Max(p, q);
        (p, q) = Pair1(Vector128.Load(k + 8), Vector128.Load(k + 12)); var z = Vector128.Max(p, q);
        (p, q) = Pair2(y, z);
        return Vector128.Max(p, q);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> BlockMin128(int* k)
    {
        var (p, q) = Pair1(Vector128.Load(k), Vector128.Load(k + 4)); var y = Vector128.Min(p, q);
        (p, q) = Pair1(Vector128.Load(k + 8), Vector128.Load(k + 12)); var z = Vector128.Min(p, q);
        (p, q) = Pair2(y, z);
        return Vector128.Min(p, q);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int>, Vector128<int>) Pair1(Vector128<int> a, Vector128<int> b)
    {
        var even = Vector128.Create(-1, 0, -1, 0);
        var swap = Vector128.Create(1, 0, 3, 2);
        return (Vector128.ConditionalSelect(even, a, Vector128.Shuffle(b, swap)), Vector128.ConditionalSelect(even, Vector128.Shuffle(a, swap), b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int>, Vector128<int>) Pair2(Vector128<int> a, Vector128<int> b)
    {
        var low = Vector128.Create(-1, -1, 0, 0);
        var swap = Vector128.Create(2, 3, 0, 1);
        return (Vector128.ConditionalSelect(low, a, Vector128.Shuffle(b, swap)), Vector128.ConditionalSelect(low, Vector128.Shuffle(a, swap), b));
    }

    /// <summary>Lanes whose block holds a NaN or an infinity, from the block's largest and smallest keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> NonFinite(Vector256<int> hi, Vector256<int> lo)
        => Vector256.GreaterThanOrEqual(hi, Vector256.Create(0x7F800000)) | Vector256.LessThanOrEqual(lo, Vector256.Create(unchecked((int)0x807FFFFF)));

    /// <summary>Lanes whose block holds a NaN or an infinity, from the block's largest and smallest keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NonFinite(Vector128<int> hi, Vector128<int> lo)
        => Vector128.GreaterThanOrEqual(hi, Vector128.Create(0x7F800000)) | Vector128.LessThanOrEqual(lo, Vector128.Create(unchecked((int)0x807FFFFF)));

    /// <summary>Whether a lane holds the half bits of an infinity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Infinite(Vector256<uint> h) => Vector256.EqualsAny(h & Vector256.Create(0x7FFFu), Vector256.Create(0x7C00u));

    /// <summary>Whether a lane holds the half bits of an infinity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Infinite(Vector128<uint> h) => Vector128.EqualsAny(h & Vector128.Create(0x7FFFu), Vector128.Create(0x7C00u));

    /// <summary>Each lane's block scale bits d = (Half)(m / -8) from the block's largest and smallest keys (finite
    /// values), and its multiplier (d == 0 ? 0 : 1 / d) in <paramref name="inv"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Scales(Vector256<int> hi, Vector256<int> lo, out Vector256<float> inv)
    {
        var max = Key(hi).AsSingle(); var min = Key(lo).AsSingle();
        var m = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(max, -min), max, min);
        var d = SingleToHalfBits(m * Vector256.Create(-0.125f));   // m / -8 exactly: a power of two
        var df = HalfBitsToSingle(d);
        // A zero scale quantizes every weight of the block to 0.
        inv = Vector256.ConditionalSelect(Vector256.Equals(df, Vector256<float>.Zero), Vector256<float>.Zero, Vector256<float>.One / df);
        return d;
    }

    /// <summary>Each lane's block scale bits d = (Half)(m / -8) from the block's largest and smallest keys (finite
    /// values), and its multiplier (d == 0 ? 0 : 1 / d) in <paramref name="inv"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Scales(Vector128<int> hi, Vector128<int> lo, out Vector128<float> inv)
    {
        var max = Key(hi).AsSingle(); var min = Key(lo).AsSingle();
        var m = Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(max, -min), max, min);
        var d = SingleToHalfBits(m * Vector128.Create(-0.125f));   // m / -8 exactly: a power of two
        var df = HalfBitsToSingle(d);
        inv = Vector128.ConditionalSelect(Vector128.Equals(df, Vector128<float>.Zero), Vector128<float>.Zero, Vector128<float>.One / df);
        return d;
    }

    /// <summary>Bytes of eight columns of a step pair: <c>u(a) + 16 u(a + 64)</c>, in int lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair256(float* a, float* inv)
    {
        var iv = Vector256.Load(inv);
        var lowest = Vector256.Create(-8f); var highest = Vector256.Create(7f);
        // Finite values times finite multipliers, clamped: the native operations give the same values as the IEEE ones.
        var x = Vector256.ClampNative(Vector256.Round(Vector256.Load(a) * iv), lowest, highest);
        var y = Vector256.ClampNative(Vector256.Round(Vector256.Load(a + 64) * iv), lowest, highest);
        return Vector256.ConvertToInt32Native(y * Vector256.Create(16f) + x + Vector256.Create(136f));
    }

    /// <summary>Bytes of four columns of a step pair: <c>u(a) + 16 u(a + 64)</c>, in int lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Pair128(float* a, float* inv)
    {
        var iv = Vector128.Load(inv);
        var lowest = Vector128.Create(-8f); var highest = Vector128.Create(7f);
        var x = Vector128.ClampNative(Vector128.Round(Vector128.Load(a) * iv), lowest, highest);
        var y = Vector128.ClampNative(Vector128.Round(Vector128.Load(a + 64) * iv), lowest, highest);
        return Vector128.ConvertToInt32Native(y * Vector128.Create(16f) + x + Vector128.Create(136f));
    }
}

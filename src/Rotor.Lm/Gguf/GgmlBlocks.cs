using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Rotor.Lm.Gguf;

// Storage formats of the tensor types Rotor decodes, declared once, each with its bits per weight; the size of every
// block struct is checked against its byte count in GgmlTypeTraits' static constructor (and by a test). The kernels
// below are the plain scalar reference: they read and write little-endian bytes and run anywhere.
//
// Element order inside a block follows ggml's reference (de)quantizers (ggml-quants.c) and bitnet.cpp's
// quantize_i2_s (ggml-bitnet-mad.cpp); the comment on each decoder states it as an index formula.

/// <summary>Q4_0: 32 weights, x = (q - 8) * d. // 4.5 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ4_0 { public ushort D; public fixed byte Qs[16]; public const int Size = 2 + 16; }

/// <summary>Q8_0: 32 weights, x = q * d. // 8.5 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ8_0 { public ushort D; public fixed sbyte Qs[32]; public const int Size = 2 + 32; }

/// <summary>Q6_K: 256 weights in 16 groups of 16, x = d * scales[g] * (q - 32), q 6 bits (low 4 in ql, high 2 in qh).
/// // 6.5625 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockQ6_K
{
    public fixed byte Ql[128]; public fixed byte Qh[64]; public fixed sbyte Scales[16]; public ushort D;
    public const int Size = 128 + 64 + 16 + 2;
}

/// <summary>TQ1_0: 256 trits; 48 bytes of five trits (base 3, first trit most significant, stored as
/// ceil(v * 256 / 243)), 4 bytes of four trits, f16 scale. // 1.6875 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockTQ1_0 { public fixed byte Qs[48]; public fixed byte Qh[4]; public ushort D; public const int Size = 48 + 4 + 2; }

/// <summary>TQ2_0: 256 trits as 2-bit codes t + 1, f16 scale. // 2.0625 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockTQ2_0 { public fixed byte Qs[64]; public ushort D; public const int Size = 64 + 2; }

/// <summary>I2_S (bitnet.cpp, x86 layout): 128 trits as 2-bit codes t + 1 in 32 bytes; no scale in the block (one f32
/// for the whole tensor follows the data, in a 32-byte tail). // 2 bpw</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal unsafe struct BlockI2_S { public fixed byte Qs[32]; public const int Size = 32; }

/// <summary>How bitnet.cpp laid out an I2_S tensor. The file does not record it: llama-quantize built for x86 writes
/// <see cref="X86"/>, built for Arm (NEON) <see cref="Arm"/>; both take the same bytes.</summary>
public enum I2SLayout
{
    /// <summary>Blocks of 128 weights in 32 bytes; byte j holds weights j, 32+j, 64+j, 96+j in bits 7-6, 5-4, 3-2,
    /// 1-0 (bitnet.cpp's converter and its x86 build; what Rotor writes).</summary>
    X86 = 0,
    /// <summary>Blocks of 64 weights in 16 bytes; byte j holds weights j, 16+j, 32+j, 48+j in bits 7-6, 5-4, 3-2,
    /// 1-0 (bitnet.cpp's Arm build).</summary>
    Arm = 1,
}

/// <summary>The scalar reference kernels of each format.</summary>
internal static class GgmlQuants
{
    internal const int QK_K = 256;
    internal const int QK8_0 = 32;
    internal const int QK4_0 = 32;
    internal const int QK_I2_S = 128;
    /// <summary>Bytes after an I2_S tensor's data: its f32 scale, padded to 32 for alignment.</summary>
    internal const int I2STailBytes = 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Half(ReadOnlySpan<byte> b) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WriteHalf(Span<byte> b, float v) => BinaryPrimitives.WriteUInt16LittleEndian(b, BitConverter.HalfToUInt16Bits((Half)v));

    /// <summary>f32 -> bf16 as ggml rounds: to nearest even, NaN kept quiet.</summary>
    internal static ushort ToBF16(float v)
    {
        uint u = BitConverter.SingleToUInt32Bits(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
    }

    internal static float FromBF16(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    // ---- floats ----

    // The float conversions reinterpret the bytes on little-endian hosts (vectorized); the *Reference versions are the
    // byte-by-byte definition they are tested against, and the path on big-endian hosts.

    internal static void DecodeF32(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(src.Slice(0, 4 * dst.Length)).CopyTo(dst);
        else DecodeF32Reference(src, dst);
    }

    internal static void DecodeF32Reference(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src.Slice(4 * i));
    }

    internal static void EncodeF32(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(dst.Slice(4 * i), src[i]);
    }

    internal static void DecodeF16(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (BitConverter.IsLittleEndian) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src.Slice(0, 2 * dst.Length)), dst);
        else DecodeF16Reference(src, dst);
    }

    internal static void DecodeF16Reference(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int i = 0; i < dst.Length; i++) dst[i] = Half(src.Slice(2 * i));
    }

    internal static void EncodeF16(ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (BitConverter.IsLittleEndian) TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<byte, Half>(dst.Slice(0, 2 * src.Length)));
        else EncodeF16Reference(src, dst);
    }

    internal static void EncodeF16Reference(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int i = 0; i < src.Length; i++) WriteHalf(dst.Slice(2 * i), src[i]);
    }

    internal static void DecodeBF16(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int i = 0; i < dst.Length; i++) dst[i] = FromBF16(BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i)));
    }

    internal static void EncodeBF16(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i), ToBF16(src[i]));
    }

    // ---- Q4_0: x[j] = ((qs[j] & 15) - 8) * d, x[16 + j] = ((qs[j] >> 4) - 8) * d ----

    internal static void DecodeQ4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK4_0; b++)
        {
            ReadOnlySpan<byte> blk = src.Slice(b * BlockQ4_0.Size, BlockQ4_0.Size);
            float d = Half(blk);
            Span<float> y = dst.Slice(b * QK4_0, QK4_0);
            for (int j = 0; j < 16; j++)
            {
                y[j] = ((blk[2 + j] & 15) - 8) * d;
                y[16 + j] = ((blk[2 + j] >> 4) - 8) * d;
            }
        }
    }

    // ---- Q8_0: x[j] = qs[j] * d; d = f16(amax / 127), q = round-half-away(x / d) ----

    internal static void DecodeQ8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK8_0; b++)
        {
            ReadOnlySpan<byte> blk = src.Slice(b * BlockQ8_0.Size, BlockQ8_0.Size);
            float d = Half(blk);
            for (int j = 0; j < QK8_0; j++) dst[b * QK8_0 + j] = (sbyte)blk[2 + j] * d;
        }
    }

    internal static void EncodeQ8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / QK8_0; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * QK8_0, QK8_0);
            Span<byte> blk = dst.Slice(b * BlockQ8_0.Size, BlockQ8_0.Size);
            float amax = 0;
            foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            WriteHalf(blk, d);
            for (int j = 0; j < QK8_0; j++) blk[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    // ---- Q6_K: per 128 half n (ql += 64, qh += 32, sc += 8 each half), l in 0..32, is = l / 16:
    //      y[l]      = d * sc[is]     * ((ql[l]      & 15) | ((qh[l] >> 0) & 3) << 4) - 32)
    //      y[l + 32] = d * sc[is + 2] * ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32)
    //      y[l + 64] = d * sc[is + 4] * ((ql[l]      >> 4) | ((qh[l] >> 4) & 3) << 4) - 32)
    //      y[l + 96] = d * sc[is + 6] * ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32) ----

    internal static void DecodeQ6_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0; b < dst.Length / QK_K; b++)
        {
            ReadOnlySpan<byte> blk = src.Slice(b * BlockQ6_K.Size, BlockQ6_K.Size);
            float d = Half(blk.Slice(208));
            for (int h = 0; h < 2; h++)
            {
                ReadOnlySpan<byte> ql = blk.Slice(64 * h, 64), qh = blk.Slice(128 + 32 * h, 32), sc = blk.Slice(192 + 8 * h, 8);
                Span<float> y = dst.Slice(b * QK_K + 128 * h, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    y[l] = d * (sbyte)sc[s] * (((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32);
                    y[l + 32] = d * (sbyte)sc[s + 2] * (((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32);
                    y[l + 64] = d * (sbyte)sc[s + 4] * (((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                    y[l + 96] = d * (sbyte)sc[s + 6] * (((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
                }
            }
        }
    }

    // ---- TQ1_0. Trit n (0 = most significant) of a byte q: ((byte)(q * 3^n) * 3) >> 8, minus 1.
    //      qs[m], m < 32:       trit n is weight 32n + m
    //      qs[32 + m], m < 16:  trit n is weight 160 + 16n + m
    //      qh[j], j < 4:        trit n is weight 240 + 4n + j ----

    private static ReadOnlySpan<byte> Pow3 => [1, 3, 9, 27, 81, 243];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static sbyte Trit(byte q, int n) => (sbyte)((((byte)(q * Pow3[n])) * 3 >> 8) - 1);

    internal static void TritsTQ1_0(ReadOnlySpan<byte> blk, Span<sbyte> t)
    {
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 32; m++) t[32 * n + m] = Trit(blk[m], n);
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 16; m++) t[160 + 16 * n + m] = Trit(blk[32 + m], n);
        for (int n = 0; n < 4; n++)
            for (int j = 0; j < 4; j++) t[240 + 4 * n + j] = Trit(blk[48 + j], n);
    }

    /// <summary>Packs k trits (first most significant), shifted up to five places, as ggml stores them.</summary>
    private static byte PackTrits(ReadOnlySpan<sbyte> t, int start, int stride, int k)
    {
        int q = 0;
        for (int n = 0; n < k; n++) q = q * 3 + t[start + n * stride] + 1;
        for (int n = k; n < 5; n++) q *= 3;
        return (byte)((q * 256 + 242) / 243); // ceiling division, 243 = 3^5
    }

    internal static void PackTQ1_0(ReadOnlySpan<sbyte> t, float d, Span<byte> blk)
    {
        for (int m = 0; m < 32; m++) blk[m] = PackTrits(t, m, 32, 5);
        for (int m = 0; m < 16; m++) blk[32 + m] = PackTrits(t, 160 + m, 16, 5);
        for (int j = 0; j < 4; j++) blk[48 + j] = PackTrits(t, 240 + j, 4, 4);
        WriteHalf(blk.Slice(52), d);
    }

    // ---- TQ2_0. qs[32h + m], h < 2, m < 32: bits 2n..2n+1 hold weight 128h + 32n + m, as t + 1 ----

    internal static void TritsTQ2_0(ReadOnlySpan<byte> blk, Span<sbyte> t)
    {
        for (int h = 0; h < 2; h++)
            for (int n = 0; n < 4; n++)
                for (int m = 0; m < 32; m++) t[128 * h + 32 * n + m] = (sbyte)(((blk[32 * h + m] >> (2 * n)) & 3) - 1);
    }

    internal static void PackTQ2_0(ReadOnlySpan<sbyte> t, float d, Span<byte> blk)
    {
        for (int h = 0; h < 2; h++)
            for (int m = 0; m < 32; m++)
            {
                int q = 0;
                for (int n = 0; n < 4; n++) q |= (t[128 * h + 32 * n + m] + 1) << (2 * n);
                blk[32 * h + m] = (byte)q;
            }
        WriteHalf(blk.Slice(64), d);
    }

    // ---- I2_S. x86: byte 32b + j holds weight 128b + 32g + j at bits 6 - 2g, g < 4, as t + 1.
    //      Arm: byte 16b + j holds weight 64b + 16g + j at bits 6 - 2g. Code 3 is invalid. ----

    /// <summary>Weights an I2_S block of <paramref name="layout"/> covers (bytes = that / 4).</summary>
    internal static int I2SBlock(I2SLayout layout) => layout == I2SLayout.Arm ? 64 : QK_I2_S;

    /// <summary>Decodes trits from I2_S bytes starting at a block boundary; returns the index of the first code 3, or -1.</summary>
    internal static int TritsI2S(ReadOnlySpan<byte> src, Span<sbyte> t, I2SLayout layout)
    {
        int qk = I2SBlock(layout), group = qk / 4, bad = -1;
        for (int b = 0; b < t.Length / qk; b++)
            for (int g = 0; g < 4; g++)
                for (int j = 0; j < group; j++)
                {
                    int code = (src[b * group + j] >> (6 - 2 * g)) & 3;
                    if (code == 3 && bad < 0) bad = b * qk + g * group + j;
                    t[b * qk + g * group + j] = (sbyte)(code - 1);
                }
        return bad;
    }

    internal static void PackI2S(ReadOnlySpan<sbyte> t, Span<byte> dst)
    {
        for (int b = 0; b < t.Length / QK_I2_S; b++)
            for (int j = 0; j < 32; j++)
            {
                int q = 0;
                for (int g = 0; g < 4; g++) q |= (t[b * QK_I2_S + 32 * g + j] + 1) << (6 - 2 * g);
                dst[b * 32 + j] = (byte)q;
            }
    }
}

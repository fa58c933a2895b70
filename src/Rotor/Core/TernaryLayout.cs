using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>The order in which a <see cref="TernaryMatrix"/>'s rows keep their 2-bit codes (w + 1 in {0, 1, 2}, four a
/// byte) within each block of 256 weights. The kernels are written for <see cref="I2_256"/>; a matrix in another order
/// is multiplied by the same kernels with its activations reordered to match, so weights another program wrote can be
/// used where they lie (a memory-mapped model file) without a copy.</summary>
public enum TernaryLayout
{
    /// <summary>Rotor's compute layout (<see cref="TernaryFormat.I2_256"/>): byte j (0..63) of a 256-weight block holds
    /// weights j, 64 + j, 128 + j, 192 + j in bit pairs 0-1, 2-3, 4-5, 6-7.</summary>
    I2_256 = 0,
    /// <summary>bitnet.cpp's I2_S as its x86 build writes it: 128-weight blocks of 32 bytes, byte j holding weights
    /// j, 32 + j, 64 + j, 96 + j of its block in bit pairs 6-7, 4-5, 2-3, 0-1. Two such blocks make one 256-weight block.</summary>
    I2S = 1,
}

/// <summary>
/// What the kernels need to know of a <see cref="TernaryLayout"/>. Every layout here differs from
/// <see cref="TernaryLayout.I2_256"/> by a permutation of the eight 32-weight chunks of a 256-weight block as the
/// I2_256 kernels see them: a kernel pairs the code it reads for chunk c of a block with activation chunk c, and that
/// code belongs to weight chunk <see cref="ChunkOrder"/>[c]. Reordering each activation row's chunks by that table once
/// a call therefore makes every I2_256 kernel (each SIMD width, scalar, CUDA) compute the product of the other layout.
/// </summary>
public static class TernaryLayouts
{
    // I2_256 byte b at pair g is weight 64g + b; the same pair of an I2_S byte b is weight 32(3 - g) + b (b < 32) or
    // 128 + 32(3 - g) + (b - 32) (b >= 32). In chunks of 32: kernel chunk 2g reads weight chunk 3 - g, 2g + 1 reads 7 - g.
    private static readonly byte[] s_i2s = [3, 7, 2, 6, 1, 5, 0, 4];
    private static readonly byte[] s_identity = [0, 1, 2, 3, 4, 5, 6, 7];

    /// <summary>Weights a chunk of the permutation.</summary>
    public const int ChunkWeights = 32;

    /// <summary>For chunk c (0..7) of a 256-weight block in the kernels' order, the chunk of the layout's weights whose
    /// codes sit there.</summary>
    public static ReadOnlySpan<byte> ChunkOrder(TernaryLayout layout) => layout switch
    {
        TernaryLayout.I2_256 => s_identity,
        TernaryLayout.I2S => s_i2s,
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "unknown ternary layout"),
    };

    /// <summary>Copies a row of activations (whole 256-value blocks) into the order the kernels need for weights in
    /// <paramref name="layout"/>: <c>dst[256b + 32c + i] = src[256b + 32 ChunkOrder[c] + i]</c>.</summary>
    public static void ReorderActivations<T>(TernaryLayout layout, ReadOnlySpan<T> src, Span<T> dst)
    {
        if (src.Length % I2Blocks.BlockWeights != 0) throw new ArgumentException($"{src.Length} activations are not whole blocks of {I2Blocks.BlockWeights}", nameof(src));
        Check.AtLeast(dst.Length, src.Length, nameof(dst));
        ReadOnlySpan<byte> order = ChunkOrder(layout);
        for (int b = 0; b < src.Length; b += I2Blocks.BlockWeights)
            for (int c = 0; c < 8; c++)
                src.Slice(b + order[c] * ChunkWeights, ChunkWeights).CopyTo(dst.Slice(b + c * ChunkWeights, ChunkWeights));
    }

    /// <summary>Converts packed rows (whole 64-byte blocks) of <paramref name="layout"/> to <see cref="TernaryLayout.I2_256"/>.</summary>
    public static void ToI2_256(TernaryLayout layout, ReadOnlySpan<byte> src, Span<byte> dst)
    {
        if (src.Length % I2Blocks.BlockBytes != 0) throw new ArgumentException($"{src.Length} bytes are not whole blocks of {I2Blocks.BlockBytes}", nameof(src));
        Check.AtLeast(dst.Length, src.Length, nameof(dst));
        switch (layout)
        {
            case TernaryLayout.I2_256: src.CopyTo(dst); break;
            case TernaryLayout.I2S:
                for (int k = 0; k < src.Length; k += 64)
                    ShuffleHalves(src.Slice(k, 32), src.Slice(k + 32, 32), dst.Slice(k, 64), 6, 4, 2, 0);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(layout), layout, "unknown ternary layout");
        }
    }

    /// <summary>Unpacks <c>values.Length</c> trits of one row stored in <paramref name="layout"/> (codes already valid).</summary>
    public static void Unpack(TernaryLayout layout, ReadOnlySpan<byte> packed, Span<sbyte> values)
    {
        if (layout == TernaryLayout.I2_256) { I2Blocks.Unpack(packed, values); return; }
        Check.AtLeast(packed.Length, I2Blocks.PackedBytes(values.Length), nameof(packed));
        ReadOnlySpan<byte> order = ChunkOrder(layout);
        for (int c = 0; c < values.Length; c++)
        {
            // Weight c sits where the I2_256 kernels read kernel chunk k with ChunkOrder[k] = its chunk.
            int b = c >> 8, chunk = (c & 255) >> 5, k = order.IndexOf((byte)chunk), slot = k * ChunkWeights + (c & 31);
            int q = slot >> 6, j = slot & 63;
            values[c] = (sbyte)(((packed[b * I2Blocks.BlockBytes + j] >> (2 * q)) & 3) - 1);
        }
    }

    /// <summary>
    /// Rotor's 64 bytes from the two 32-byte halves A (weights 0..127) and B (128..255) of a layout where weight 32s + m
    /// of a half sits in byte m at bit position <c>p[s]</c>: Rotor byte m (m &lt; 32) takes weights m (s0 of A), 64 + m
    /// (s2 of A), 128 + m (s0 of B), 192 + m (s2 of B); byte 32 + m takes 32 + m (s1 of A), 96 + m (s3 of A), 160 + m
    /// (s1 of B), 224 + m (s3 of B).
    /// </summary>
    internal static void ShuffleHalves(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> dst, int p0, int p1, int p2, int p3)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a); var vb = Vector256.Create(b); var three = Vector256.Create((byte)3);
            var lo = (Vector256.ShiftRightLogical(va, p0) & three) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(va, p2) & three, 2)
                | Vector256.ShiftLeft(Vector256.ShiftRightLogical(vb, p0) & three, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(vb, p2) & three, 6);
            var hi = (Vector256.ShiftRightLogical(va, p1) & three) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(va, p3) & three, 2)
                | Vector256.ShiftLeft(Vector256.ShiftRightLogical(vb, p1) & three, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(vb, p3) & three, 6);
            lo.CopyTo(dst);
            hi.CopyTo(dst[32..]);
            return;
        }
        for (int m = 0; m < 32; m++)
        {
            int x = a[m], y = b[m];
            dst[m] = (byte)(((x >> p0) & 3) | ((x >> p2) & 3) << 2 | ((y >> p0) & 3) << 4 | ((y >> p2) & 3) << 6);
            dst[32 + m] = (byte)(((x >> p1) & 3) | ((x >> p3) & 3) << 2 | ((y >> p1) & 3) << 4 | ((y >> p3) & 3) << 6);
        }
    }
}

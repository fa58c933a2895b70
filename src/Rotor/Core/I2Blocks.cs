namespace Rotor;

/// <summary>
/// The compute layout (<see cref="TernaryFormat.I2_256"/>) as a vector codec: blocks of 256 weights in 64 bytes, byte j
/// of a block holding weights j, j+64, j+128, j+192 as codes <c>w + 1</c> in bit pairs 0-1, 2-3, 4-5, 6-7. The last
/// block is padded with w = 0 (code 1). Each row of a <see cref="TernaryMatrix"/> is one such vector; code 3 is invalid.
/// </summary>
public static class I2Blocks
{
    /// <summary>Weights a block.</summary>
    public const int BlockWeights = 256;
    /// <summary>Bytes a block.</summary>
    public const int BlockBytes = 64;

    /// <summary>Bytes for <paramref name="count"/> trits: whole blocks, ceil(count / 256) * 64.</summary>
    public static long PackedBytes(long count) => (count + BlockWeights - 1) / BlockWeights * BlockBytes;

    /// <summary>Packs trit values (-1, 0, +1) into <see cref="PackedBytes"/>(values.Length) bytes, padding included.</summary>
    /// <exception cref="ArgumentException">A value is not a trit, or <paramref name="packed"/> is too short.</exception>
    public static void Pack(ReadOnlySpan<sbyte> values, Span<byte> packed)
    {
        long bytes = PackedBytes(values.Length);
        Check.AtLeast(packed.Length, bytes, nameof(packed));
        Span<byte> dst = packed[..(int)bytes];
        dst.Fill(0x55);   // code 1 (w = 0) in every pair, padding included
        for (int c = 0; c < values.Length; c++)
        {
            int v = values[c];
            if ((uint)(v + 1) > 2) throw new ArgumentException($"values[{c}] = {v}: a trit is -1, 0 or +1", nameof(values));
            int b = c >> 8, within = c & 255, q = within >> 6, j = within & 63;
            ref byte cell = ref dst[b * BlockBytes + j];
            cell = (byte)((cell & ~(3 << (2 * q))) | ((v + 1) << (2 * q)));
        }
    }

    /// <summary>Unpacks <c>values.Length</c> trits (the codes must be valid: see <see cref="Validate"/>).</summary>
    public static void Unpack(ReadOnlySpan<byte> packed, Span<sbyte> values)
    {
        Check.AtLeast(packed.Length, PackedBytes(values.Length), nameof(packed));
        for (int c = 0; c < values.Length; c++)
        {
            int b = c >> 8, within = c & 255, q = within >> 6, j = within & 63;
            values[c] = (sbyte)(((packed[b * BlockBytes + j] >> (2 * q)) & 3) - 1);
        }
    }

    /// <summary>Throws <see cref="RotorException"/> naming <paramref name="where"/> and the byte when any code of the
    /// first <see cref="PackedBytes"/>(count) bytes, padding included, is 3.</summary>
    public static void Validate(ReadOnlySpan<byte> packed, long count, string where)
    {
        long bytes = Math.Min(PackedBytes(count), packed.Length);
        for (int i = 0; i < bytes; i++)
        {
            int b = packed[i];
            if ((b & (b >> 1) & 0x55) != 0) throw new RotorException($"{where}: invalid i2_256 code 3 in byte {i} (codes are w + 1 in 0..2)");
        }
    }
}

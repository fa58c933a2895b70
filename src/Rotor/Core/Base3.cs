namespace Rotor;

/// <summary>The 1.6-bit file form (<see cref="TernaryFormat.T1_6"/>): five trits a byte, base 3,
/// <c>byte = sum over j = 0..4 of (w[5i + j] + 1) * 3^j</c>. Missing trits of the last byte count as 0 (digit 1).
/// Bytes 243..255 are invalid and rejected on decode.</summary>
public static class Base3
{
    private static readonly sbyte[] s_decode = BuildDecode();

    private static sbyte[] BuildDecode()
    {
        var t = new sbyte[243 * 5];
        for (int b = 0; b < 243; b++)
        {
            int v = b;
            for (int j = 0; j < 5; j++) { t[b * 5 + j] = (sbyte)(v % 3 - 1); v /= 3; }
        }
        return t;
    }

    /// <summary>Bytes for <paramref name="count"/> trits: ceil(count / 5).</summary>
    public static long PackedBytes(long count) => (count + 4) / 5;

    /// <summary>Packs trit values (-1, 0, +1) five a byte.</summary>
    public static void Pack(ReadOnlySpan<sbyte> values, Span<byte> packed)
    {
        Check.AtLeast(packed.Length, PackedBytes(values.Length), nameof(packed));
        int o = 0;
        for (int i = 0; i < values.Length; i += 5, o++)
        {
            int b = 0, p = 1;
            for (int j = 0; j < 5; j++, p *= 3)
            {
                int v = i + j < values.Length ? values[i + j] : 0;
                if ((uint)(v + 1) > 2) throw new ArgumentException($"values[{i + j}] = {v}: a trit is -1, 0 or +1", nameof(values));
                b += (v + 1) * p;
            }
            packed[o] = (byte)b;
        }
    }

    /// <summary>Unpacks <c>values.Length</c> trits. Throws naming the byte index on a byte above 242.</summary>
    public static void Unpack(ReadOnlySpan<byte> packed, Span<sbyte> values, string? where = null)
    {
        Check.AtLeast(packed.Length, PackedBytes(values.Length), nameof(packed));
        int full = values.Length / 5, i = 0;
        ReadOnlySpan<sbyte> t = s_decode;
        for (; i < full; i++)
        {
            int b = packed[i];
            if (b >= 243) ThrowBad(i, b, where);
            t.Slice(b * 5, 5).CopyTo(values.Slice(i * 5, 5));
        }
        int rest = values.Length - full * 5;
        if (rest > 0)
        {
            int b = packed[full];
            if (b >= 243) ThrowBad(full, b, where);
            t.Slice(b * 5, rest).CopyTo(values.Slice(full * 5));
        }
    }

    /// <summary>Throws <see cref="RotorException"/> naming <paramref name="where"/> and the byte when any of the first
    /// <see cref="PackedBytes"/>(count) bytes is above 242.</summary>
    public static void Validate(ReadOnlySpan<byte> packed, long count, string where)
    {
        long bytes = Math.Min(PackedBytes(count), packed.Length);
        for (int i = 0; i < bytes; i++)
            if (packed[i] >= 243) ThrowBad(i, packed[i], where);
    }

    private static void ThrowBad(int index, int b, string? where) =>
        throw new RotorException($"invalid base-3 byte {b} at byte {index}{(where is null ? "" : " of " + where)} (valid: 0..242)");
}

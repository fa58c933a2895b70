using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>
/// The trit encoding: a trit is two bits and its value is bit0 - bit1.
/// <code>
///   code  bit1 bit0  value
///   00      0    0     0
///   01      0    1    +1
///   10      1    0    -1
///   11      1    1    invalid (detected by <see cref="FindInvalid"/>)
/// </code>
/// Packed form (<see cref="TernaryFormat.T2"/>): four trits a byte, trit i in bits 2*(i%4)..2*(i%4)+1 of byte i/4,
/// least significant pair first. The layout is fixed and does not depend on the machine.
/// </summary>
public static class Trits
{
    /// <summary>Code of the trit 0.</summary>
    public const byte Zero = 0b00;
    /// <summary>Code of the trit +1 (bit0 set).</summary>
    public const byte Plus = 0b01;
    /// <summary>Code of the trit -1 (bit1 set).</summary>
    public const byte Minus = 0b10;
    /// <summary>The invalid code (both bits set).</summary>
    public const byte Invalid = 0b11;

    /// <summary>Bytes needed to pack <paramref name="count"/> trits: ceil(count / 4).</summary>
    public static long PackedBytes(long count) => (count + 3) / 4;

    /// <summary>Value of one 2-bit code: bit0 - bit1. Throws for the invalid code 11.</summary>
    public static int Decode(int code)
    {
        if ((uint)code > 2) throw new InvalidTritException(0, $"code 0b{Convert.ToString(code & 3, 2).PadLeft(2, '0')}");
        return (code & 1) - (code >> 1);
    }

    /// <summary>Code of one value in {-1, 0, +1}.</summary>
    public static byte Encode(int value) => value switch
    {
        0 => Zero, 1 => Plus, -1 => Minus,
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, $"a trit is -1, 0 or +1, got {value}"),
    };

    /// <summary>Packs <paramref name="values"/> (each -1, 0 or +1) into <paramref name="packed"/>, four a byte.
    /// <c>packed[i/4] |= code(values[i]) &lt;&lt; 2*(i%4)</c>; unused pairs of the last byte are 00.</summary>
    /// <exception cref="ArgumentException">a value outside {-1, 0, +1} (its index is named), or <paramref name="packed"/> too short.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Pack(ReadOnlySpan<sbyte> values, Span<byte> packed)
    {
        Check.AtLeast(packed.Length, PackedBytes(values.Length), nameof(packed));
        int i = 0, o = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            // 16 values -> 4 bytes per step. code = (v & 3) ^ ((v & 3) >> 1) maps 0->00, 1->01, -1 (0xFF)->10.
            Vector128<uint> three = Vector128.Create(3u);
            for (; i + 16 <= values.Length; i += 16, o += 4)
            {
                Vector128<sbyte> v = Vector128.LoadUnsafe(ref Unsafe.AsRef(in values[i]));
                // valid iff (v + 1) as unsigned <= 2
                if (Vector128.GreaterThanAny((v + Vector128<sbyte>.One).AsByte(), Vector128.Create((byte)2)))
                    ThrowBadValue(values, i);
                Vector128<uint> c = v.AsUInt32() & Vector128.Create(0x03030303u);
                c ^= (c >> 1) & Vector128.Create(0x01010101u);
                // gather the four 2-bit codes of each 32-bit lane into its low byte
                Vector128<uint> b = (c & three) | ((c >> 6) & (three << 2)) | ((c >> 12) & (three << 4)) | ((c >> 18) & (three << 6));
                Vector128<ushort> n16 = Vector128.Narrow(b, b);
                Vector128<byte> n8 = Vector128.Narrow(n16, n16);
                Unsafe.WriteUnaligned(ref packed[o], n8.AsUInt32().ToScalar());
            }
        }
        for (; i < values.Length; i += 4, o++)
        {
            int b = 0;
            for (int j = 0; j < 4 && i + j < values.Length; j++)
            {
                int v = values[i + j];
                if ((uint)(v + 1) > 2) ThrowBadValue(values, i + j);
                b |= (v == 1 ? Plus : v == -1 ? Minus : Zero) << (2 * j);
            }
            packed[o] = (byte)b;
        }
    }

    /// <summary>Unpacks <c>values.Length</c> trits from <paramref name="packed"/>:
    /// <c>values[i] = bit0 - bit1</c> of pair i. Throws <see cref="InvalidTritException"/> on the code 11.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unpack(ReadOnlySpan<byte> packed, Span<sbyte> values)
    {
        int count = values.Length;
        Check.AtLeast(packed.Length, PackedBytes(count), nameof(packed));
        long bad = FindInvalid(packed, count);
        if (bad >= 0) throw new InvalidTritException(bad);
        int i = 0, o = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            // 4 packed bytes -> 16 values: spread each byte over 4 lanes, test its bit0 / bit1 with per-lane masks.
            Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
            Vector128<byte> bit0 = Vector128.Create((byte)0x01, 0x04, 0x10, 0x40, 0x01, 0x04, 0x10, 0x40, 0x01, 0x04, 0x10, 0x40, 0x01, 0x04, 0x10, 0x40);
            Vector128<byte> bit1 = bit0 << 1;
            for (; i + 16 <= count; i += 16, o += 4)
            {
                Vector128<byte> p = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<uint>(in packed[o])).AsByte();
                Vector128<byte> s = Vector128.Shuffle(p, spread);
                Vector128<sbyte> plus = Vector128.Equals(s & bit0, bit0).AsSByte();   // -1 where +1
                Vector128<sbyte> minus = Vector128.Equals(s & bit1, bit1).AsSByte();  // -1 where -1
                (minus - plus).StoreUnsafe(ref Unsafe.As<sbyte, sbyte>(ref values[i]));
            }
        }
        for (; i < count; i++)
        {
            int code = (packed[i >> 2] >> (2 * (i & 3))) & 3;
            values[i] = (sbyte)((code & 1) - (code >> 1));
        }
    }

    /// <summary>Packs float values that are exactly -1, 0 or +1.</summary>
    public static void Pack(ReadOnlySpan<float> values, Span<byte> packed)
    {
        sbyte[] tmp = new sbyte[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (v != 0f && v != 1f && v != -1f)
                throw new ArgumentException($"values[{i}] = {v}: a trit is -1, 0 or +1", nameof(values));
            tmp[i] = (sbyte)v;
        }
        Pack(tmp, packed);
    }

    /// <summary>Unpacks trits to floats (-1, 0, +1).</summary>
    public static void Unpack(ReadOnlySpan<byte> packed, Span<float> values)
    {
        sbyte[] tmp = new sbyte[values.Length];
        Unpack(packed, tmp);
        for (int i = 0; i < tmp.Length; i++) values[i] = tmp[i];
    }

    /// <summary>Index of the first invalid code (11) among the first <paramref name="count"/> trits of
    /// <paramref name="packed"/>, or -1 when all are valid.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static long FindInvalid(ReadOnlySpan<byte> packed, long count)
    {
        long bytes = PackedBytes(count);
        Check.AtLeast(packed.Length, bytes, nameof(packed));
        int full = (int)(count / 4);
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<byte> lo = Vector128.Create((byte)0x55);
            for (; i + 16 <= full; i += 16)
            {
                Vector128<byte> v = Vector128.LoadUnsafe(ref Unsafe.AsRef(in packed[i]));
                if ((v & (v >> 1) & lo) != Vector128<byte>.Zero) break;   // locate it below
            }
        }
        for (; i < bytes; i++)
        {
            int b = packed[i];
            int bad = b & (b >> 1) & 0x55;
            if (bad == 0) continue;
            long pos = 4L * i + System.Numerics.BitOperations.TrailingZeroCount(bad) / 2;
            if (pos < count) return pos;
        }
        return -1;
    }

    /// <summary>Throws <see cref="InvalidTritException"/> naming <paramref name="where"/> if any of the first
    /// <paramref name="count"/> trits is invalid. Every loader calls this.</summary>
    public static void Validate(ReadOnlySpan<byte> packed, long count, string where)
    {
        long bad = FindInvalid(packed, count);
        if (bad >= 0) throw new InvalidTritException(bad, where);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadValue(ReadOnlySpan<sbyte> values, int from)
    {
        for (int i = from; i < values.Length; i++)
            if ((uint)(values[i] + 1) > 2)
                throw new ArgumentException($"values[{i}] = {values[i]}: a trit is -1, 0 or +1", nameof(values));
    }
}

using System.Runtime.CompilerServices;

namespace Rotor.Lm.Gguf;

/// <summary>Decodes <paramref name="dst"/>.Length elements (whole blocks) from the start of <paramref name="src"/>.</summary>
internal delegate void GgmlDecoder(ReadOnlySpan<byte> src, Span<float> dst);
/// <summary>Encodes <paramref name="src"/> (whole blocks) into the start of <paramref name="dst"/>.</summary>
internal delegate void GgmlEncoder(ReadOnlySpan<float> src, Span<byte> dst);

/// <summary>
/// One row of the type table, in the spirit of ggml's <c>type_traits</c>: how a storage type lays out its weights and
/// what Rotor can do with it. Adding a type means one block declaration in GgmlBlocks.cs and one row here.
/// </summary>
public sealed class GgmlTypeTraits
{
    /// <summary>The type.</summary>
    public GgmlType Type { get; }
    /// <summary>ggml's name of the type ("tq2_0").</summary>
    public string Name { get; }
    /// <summary>Weights a block holds; a row is a whole number of blocks.</summary>
    public int BlockSize { get; }
    /// <summary>Bytes a block takes.</summary>
    public int BlockBytes { get; }
    /// <summary>Bytes after the last block of a tensor (I2_S keeps its scale there), 0 for the others.</summary>
    public int TailBytes { get; }
    /// <summary>Whether the type stores trits (one scale a block or a tensor).</summary>
    public bool IsTernary { get; }
    /// <summary>Bits a weight takes: 8 * BlockBytes / BlockSize (tails not counted).</summary>
    public double BitsPerWeight => 8.0 * BlockBytes / BlockSize;
    /// <summary>Whether Rotor can turn the type into floats.</summary>
    public bool CanDecode => ToFloat is not null || Type == GgmlType.I2_S;
    /// <summary>Whether Rotor can turn floats into the type (the ternary types encode from trits, see GgufWriter).</summary>
    public bool CanEncode => FromFloat is not null;

    internal GgmlDecoder? ToFloat { get; }
    internal GgmlEncoder? FromFloat { get; }

    private GgmlTypeTraits(GgmlType type, string name, int blockSize, int blockBytes, bool ternary = false, int tail = 0,
        GgmlDecoder? toFloat = null, GgmlEncoder? fromFloat = null)
    {
        Type = type; Name = name; BlockSize = blockSize; BlockBytes = blockBytes; IsTernary = ternary; TailBytes = tail;
        ToFloat = toFloat; FromFloat = fromFloat;
    }

    /// <summary>Bytes <paramref name="n"/> weights (a whole number of blocks) take, without the tail.</summary>
    public long RowSize(long n)
    {
        if (n < 0 || n % BlockSize != 0) throw new ArgumentException($"{Name} stores whole blocks of {BlockSize} weights; {n} is not a multiple of {BlockSize}", nameof(n));
        return n / BlockSize * BlockBytes;
    }

    /// <summary>Bytes a tensor of <paramref name="elements"/> weights takes in a file: its blocks plus the tail.</summary>
    public long TensorBytes(long elements) => RowSize(elements) + TailBytes;

    /// <inheritdoc/>
    public override string ToString() => Name;

    private static readonly Dictionary<GgmlType, GgmlTypeTraits> Table = Build();

    private static Dictionary<GgmlType, GgmlTypeTraits> Build()
    {
        // Block size checks: the declared structs must take exactly the bytes the table says.
        Check<BlockQ4_0>(BlockQ4_0.Size, 18); Check<BlockQ8_0>(BlockQ8_0.Size, 34); Check<BlockQ6_K>(BlockQ6_K.Size, 210);
        Check<BlockTQ1_0>(BlockTQ1_0.Size, 54); Check<BlockTQ2_0>(BlockTQ2_0.Size, 66); Check<BlockI2_S>(BlockI2_S.Size, 32);
        const int K = GgmlQuants.QK_K;
        GgmlTypeTraits[] rows =
        [
            new(GgmlType.F32, "f32", 1, 4, toFloat: GgmlQuants.DecodeF32, fromFloat: GgmlQuants.EncodeF32),      // 32 bpw
            new(GgmlType.F16, "f16", 1, 2, toFloat: GgmlQuants.DecodeF16, fromFloat: GgmlQuants.EncodeF16),      // 16 bpw
            new(GgmlType.BF16, "bf16", 1, 2, toFloat: GgmlQuants.DecodeBF16, fromFloat: GgmlQuants.EncodeBF16),  // 16 bpw
            new(GgmlType.Q4_0, "q4_0", 32, BlockQ4_0.Size, toFloat: GgmlQuants.DecodeQ4_0),                     // 4.5 bpw
            new(GgmlType.Q8_0, "q8_0", 32, BlockQ8_0.Size, toFloat: GgmlQuants.DecodeQ8_0, fromFloat: GgmlQuants.EncodeQ8_0), // 8.5 bpw
            new(GgmlType.Q6_K, "q6_K", K, BlockQ6_K.Size, toFloat: GgmlQuants.DecodeQ6_K),                       // 6.5625 bpw
            new(GgmlType.TQ1_0, "tq1_0", K, BlockTQ1_0.Size, ternary: true, toFloat: DecodeTQ1_0),               // 1.6875 bpw
            new(GgmlType.TQ2_0, "tq2_0", K, BlockTQ2_0.Size, ternary: true, toFloat: DecodeTQ2_0),               // 2.0625 bpw
            new(GgmlType.I2_S, "i2_s", GgmlQuants.QK_I2_S, BlockI2_S.Size, ternary: true, tail: GgmlQuants.I2STailBytes), // 2 bpw + 32 B
            // Sizes only (ggml's type_traits): files holding them open, their data cannot be decoded.
            new(GgmlType.Q4_1, "q4_1", 32, 20), new(GgmlType.Q5_0, "q5_0", 32, 22), new(GgmlType.Q5_1, "q5_1", 32, 24),
            new(GgmlType.Q8_1, "q8_1", 32, 36), new(GgmlType.Q2_K, "q2_K", K, 84), new(GgmlType.Q3_K, "q3_K", K, 110),
            new(GgmlType.Q4_K, "q4_K", K, 144), new(GgmlType.Q5_K, "q5_K", K, 176), new(GgmlType.Q8_K, "q8_K", K, 292),
            new(GgmlType.IQ2_XXS, "iq2_xxs", K, 66), new(GgmlType.IQ2_XS, "iq2_xs", K, 74), new(GgmlType.IQ3_XXS, "iq3_xxs", K, 98),
            new(GgmlType.IQ1_S, "iq1_s", K, 50), new(GgmlType.IQ4_NL, "iq4_nl", 32, 18), new(GgmlType.IQ3_S, "iq3_s", K, 110),
            new(GgmlType.IQ2_S, "iq2_s", K, 82), new(GgmlType.IQ4_XS, "iq4_xs", K, 136), new(GgmlType.I8, "i8", 1, 1),
            new(GgmlType.I16, "i16", 1, 2), new(GgmlType.I32, "i32", 1, 4), new(GgmlType.I64, "i64", 1, 8),
            new(GgmlType.F64, "f64", 1, 8), new(GgmlType.IQ1_M, "iq1_m", K, 56),
        ];
        return rows.ToDictionary(r => r.Type);
    }

    private static void Check<T>(int declared, int expected) where T : unmanaged
    {
        if (Unsafe.SizeOf<T>() != declared || declared != expected)
            throw new InvalidOperationException($"{typeof(T).Name} takes {Unsafe.SizeOf<T>()} bytes, declared {declared}, format says {expected}");
    }

    private static void DecodeTQ1_0(ReadOnlySpan<byte> src, Span<float> dst) => DecodeTernary(src, dst, BlockTQ1_0.Size, 52, GgmlQuants.TritsTQ1_0);
    private static void DecodeTQ2_0(ReadOnlySpan<byte> src, Span<float> dst) => DecodeTernary(src, dst, BlockTQ2_0.Size, 64, GgmlQuants.TritsTQ2_0);

    private delegate void TritReader(ReadOnlySpan<byte> block, Span<sbyte> trits);

    private static void DecodeTernary(ReadOnlySpan<byte> src, Span<float> dst, int blockBytes, int scaleAt, TritReader trits)
    {
        Span<sbyte> t = stackalloc sbyte[GgmlQuants.QK_K];
        for (int b = 0; b < dst.Length / GgmlQuants.QK_K; b++)
        {
            ReadOnlySpan<byte> blk = src.Slice(b * blockBytes, blockBytes);
            trits(blk, t);
            float d = GgmlQuants.Half(blk.Slice(scaleAt));
            for (int j = 0; j < t.Length; j++) dst[b * GgmlQuants.QK_K + j] = t[j] * d;
        }
    }

    /// <summary>The row of <paramref name="type"/>.</summary>
    /// <exception cref="ArgumentException">The type has no row (Rotor does not know its size).</exception>
    public static GgmlTypeTraits Of(GgmlType type) =>
        Table.TryGetValue(type, out var t) ? t : throw new ArgumentException($"{Describe((uint)type)} is not supported", nameof(type));

    /// <summary>The row of type id <paramref name="id"/>, if Rotor knows the type's size.</summary>
    public static bool TryGet(uint id, out GgmlTypeTraits traits)
    {
        traits = null!;
        return Table.TryGetValue((GgmlType)id, out traits!);
    }

    /// <summary>Every type Rotor knows the size of.</summary>
    public static IReadOnlyCollection<GgmlTypeTraits> All => Table.Values;

    /// <summary>A type id as errors name it: "type 35 (tq2_0)", "type 99 (unknown)".</summary>
    public static string Describe(uint id) => id switch
    {
        _ when Table.TryGetValue((GgmlType)id, out var t) => $"type {id} ({t.Name})",
        (uint)GgmlType.I8_S => $"type {id} (bitnet.cpp's i8_s activations)",
        (uint)GgmlType.TL1 => $"type {id} (bitnet.cpp's TL1, a lookup-table layout for its Arm kernels)",
        (uint)GgmlType.TL2 => $"type {id} (bitnet.cpp's TL2 lookup-table layout for its x86 kernels, or MXFP4 in later ggml)",
        31 or 32 or 33 => $"type {id} (an interleaved Q4_0 layout that ggml removed)",
        _ => $"type {id} (unknown)",
    };
}

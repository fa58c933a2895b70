namespace Rotor;

/// <summary>The storage formats of ternary weights. Each is declared once in <see cref="TernaryFormats"/> with its
/// block size, bytes a block and bits a weight; a static check verifies that the three agree.</summary>
public enum TernaryFormat
{
    /// <summary>The trit encoding (<see cref="Trits"/>): 4 trits a byte, value = bit0 - bit1. 2 bits a weight.</summary>
    T2 = 1,
    /// <summary>Base 3: 5 trits a byte, byte = sum (w_j + 1) * 3^j for j = 0..4 (values 0..242). 1.6 bits a weight. For files.</summary>
    T1_6 = 2,
    /// <summary>The compute layout of <see cref="TernaryMatrix"/>: codes w + 1 in {0, 1, 2}, blocks of 256 weights in
    /// 64 bytes, byte j of a block holding weights j, j+64, j+128, j+192 in bit pairs 0-1, 2-3, 4-5, 6-7. 2 bits a weight.</summary>
    I2_256 = 3,
    /// <summary>Two 1-bit planes, a +1 plane and a -1 plane, 64 weights a 64-bit word each, for popcount dot products. 2 bits a weight.</summary>
    BitPlanes = 4,
}

/// <summary>The traits of one storage format: one row of the table in <see cref="TernaryFormats"/>.</summary>
/// <param name="Format">The format.</param>
/// <param name="Name">Short name used in files and reports.</param>
/// <param name="BlockWeights">Weights in one block.</param>
/// <param name="BlockBytes">Bytes of one block.</param>
/// <param name="BitsPerWeight">Declared bits a weight; must equal 8 * BlockBytes / BlockWeights.</param>
public sealed record TernaryFormatInfo(TernaryFormat Format, string Name, int BlockWeights, int BlockBytes, double BitsPerWeight)
{
    /// <summary>Bytes needed for <paramref name="weights"/> weights stored densely (last block padded).</summary>
    public long BytesFor(long weights) => (weights + BlockWeights - 1) / BlockWeights * BlockBytes;
}

/// <summary>The format table: every ternary storage format with its size check.</summary>
public static class TernaryFormats
{
    /// <summary>2 bpw: 4 trits in 1 byte.</summary>
    public static readonly TernaryFormatInfo T2 = new(TernaryFormat.T2, "t2", 4, 1, 2.0);
    /// <summary>1.6 bpw: 5 trits in 1 byte (3^5 = 243 &lt;= 256).</summary>
    public static readonly TernaryFormatInfo T1_6 = new(TernaryFormat.T1_6, "t1.6", 5, 1, 1.6);
    /// <summary>2 bpw: 256 weights in 64 bytes.</summary>
    public static readonly TernaryFormatInfo I2_256 = new(TernaryFormat.I2_256, "i2_256", 256, 64, 2.0);
    /// <summary>2 bpw: 64 weights in two 8-byte planes.</summary>
    public static readonly TernaryFormatInfo BitPlanes = new(TernaryFormat.BitPlanes, "bitplanes", 64, 16, 2.0);

    /// <summary>All formats.</summary>
    public static IReadOnlyList<TernaryFormatInfo> All { get; } = [T2, T1_6, I2_256, BitPlanes];

    static TernaryFormats()
    {
        foreach (var f in All)
            if (Math.Abs(f.BlockBytes * 8.0 / f.BlockWeights - f.BitsPerWeight) > 1e-12)
                throw new InvalidOperationException($"format {f.Name}: {f.BlockBytes} bytes for {f.BlockWeights} weights is not {f.BitsPerWeight} bits a weight");
    }

    /// <summary>The traits of <paramref name="format"/>.</summary>
    public static TernaryFormatInfo Get(TernaryFormat format) => format switch
    {
        TernaryFormat.T2 => T2,
        TernaryFormat.T1_6 => T1_6,
        TernaryFormat.I2_256 => I2_256,
        TernaryFormat.BitPlanes => BitPlanes,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, $"unknown ternary format {(int)format}"),
    };

    /// <summary>The traits of the format named <paramref name="name"/> (as in <see cref="TernaryFormatInfo.Name"/>).</summary>
    public static TernaryFormatInfo Get(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new RotorException($"unknown ternary format '{name}' (known: {string.Join(", ", All.Select(f => f.Name))})");
}

namespace Rotor;

/// <summary>The storage formats of ternary weights. Each is declared once, as a row of <see cref="TernaryFormats"/>
/// with its sizes and codec; a static check verifies that the sizes agree.</summary>
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

/// <summary>Writes <c>values.Length</c> trits (-1, 0, +1) into <paramref name="packed"/>
/// (<see cref="TernaryFormatInfo.BytesFor"/> bytes); throws <see cref="ArgumentException"/> on a value that is not a trit.</summary>
public delegate void TritEncoder(ReadOnlySpan<sbyte> values, Span<byte> packed);

/// <summary>Reads <c>values.Length</c> trits from <paramref name="packed"/>, already validated.</summary>
public delegate void TritDecoder(ReadOnlySpan<byte> packed, Span<sbyte> values);

/// <summary>Throws <see cref="RotorException"/> naming <paramref name="where"/> when the first <paramref name="count"/>
/// trits of <paramref name="packed"/> hold an invalid code.</summary>
public delegate void TritValidator(ReadOnlySpan<byte> packed, long count, string where);

/// <summary>The traits of one storage format: one row of the table in <see cref="TernaryFormats"/>. A format that
/// stores matrices has a codec (<see cref="Encode"/>, <see cref="Decode"/>, <see cref="Validate"/>) over a vector of
/// trits; a matrix is stored as one vector of rows * cols trits, or, when <see cref="RowAligned"/>, as one vector a row.</summary>
/// <param name="Format">The format.</param>
/// <param name="Name">Short name used in files and reports.</param>
/// <param name="BlockWeights">Weights in one block.</param>
/// <param name="BlockBytes">Bytes of one block.</param>
/// <param name="BitsPerWeight">Declared bits a weight; must equal 8 * BlockBytes / BlockWeights.</param>
public sealed record TernaryFormatInfo(TernaryFormat Format, string Name, int BlockWeights, int BlockBytes, double BitsPerWeight)
{
    /// <summary>Packs trits; null when the format is not a storage form of a matrix.</summary>
    public TritEncoder? Encode { get; init; }
    /// <summary>Unpacks validated trits; null when <see cref="Encode"/> is.</summary>
    public TritDecoder? Decode { get; init; }
    /// <summary>Rejects invalid codes with a message naming the source; null when every byte is valid.</summary>
    public TritValidator? Validate { get; init; }
    /// <summary>Each matrix row starts a new block (padded), as in the compute layout; otherwise the matrix is packed
    /// densely as one vector, row after row.</summary>
    public bool RowAligned { get; init; }
    /// <summary>Whether Rotor's model files may store weights in this format (dense and independent of the machine).</summary>
    public bool ForFiles { get; init; }

    /// <summary>Whether <see cref="TernaryMatrix.Encode"/> and <see cref="TernaryMatrix.Decode"/> support the format.</summary>
    public bool StoresMatrices => Encode is not null && Decode is not null;

    /// <summary>Bytes needed for <paramref name="weights"/> weights stored densely (last block padded).</summary>
    public long BytesFor(long weights) => (weights + BlockWeights - 1) / BlockWeights * BlockBytes;

    /// <summary>Bytes of a rows x cols matrix in this format.</summary>
    public long MatrixBytes(int rows, int cols) => RowAligned ? rows * BytesFor(cols) : BytesFor((long)rows * cols);
}

/// <summary>The format table: every ternary storage format with its size check. To add a format: write its codec in
/// one file (as <see cref="Base3"/>), add a <see cref="TernaryFormat"/> value and a row here; the round-trip tests
/// cover every row that <see cref="TernaryFormatInfo.StoresMatrices"/>.</summary>
public static class TernaryFormats
{
    /// <summary>2 bpw: 4 trits in 1 byte.</summary>
    public static readonly TernaryFormatInfo T2 = new(TernaryFormat.T2, "t2", 4, 1, 2.0)
    { Encode = Trits.Pack, Decode = Trits.Unpack, Validate = Trits.Validate, ForFiles = true };
    /// <summary>1.6 bpw: 5 trits in 1 byte (3^5 = 243 &lt;= 256).</summary>
    public static readonly TernaryFormatInfo T1_6 = new(TernaryFormat.T1_6, "t1.6", 5, 1, 1.6)
    { Encode = Base3.Pack, Decode = (p, v) => Base3.Unpack(p, v), Validate = Base3.Validate, ForFiles = true };
    /// <summary>2 bpw: 256 weights in 64 bytes, each matrix row padded to whole blocks.</summary>
    public static readonly TernaryFormatInfo I2_256 = new(TernaryFormat.I2_256, "i2_256", I2Blocks.BlockWeights, I2Blocks.BlockBytes, 2.0)
    { Encode = I2Blocks.Pack, Decode = I2Blocks.Unpack, Validate = I2Blocks.Validate, RowAligned = true };
    /// <summary>2 bpw: 64 weights in two 8-byte planes (the layout of <see cref="BitPlaneVector"/>; not a matrix form).</summary>
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
    public static TernaryFormatInfo Get(TernaryFormat format) =>
        All.FirstOrDefault(f => f.Format == format)
        ?? throw new ArgumentOutOfRangeException(nameof(format), format, $"unknown ternary format {(int)format}");

    /// <summary>The traits of the format named <paramref name="name"/> (as in <see cref="TernaryFormatInfo.Name"/>).</summary>
    public static TernaryFormatInfo Get(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new RotorException($"unknown ternary format '{name}' (known: {string.Join(", ", All.Select(f => f.Name))})");

    /// <summary>The names of the formats that satisfy <paramref name="which"/>, as "a, b or c" for messages.</summary>
    public static string Names(Func<TernaryFormatInfo, bool> which)
    {
        string[] n = All.Where(which).Select(f => f.Name).ToArray();
        return n.Length <= 1 ? string.Join("", n) : string.Join(", ", n[..^1]) + " or " + n[^1];
    }
}

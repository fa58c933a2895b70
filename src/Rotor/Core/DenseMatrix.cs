using System.Numerics.Tensors;

namespace Rotor;

/// <summary>Element types of a <see cref="DenseMatrix"/>.</summary>
public enum DenseType
{
    /// <summary>32-bit float, 4 bytes a weight.</summary>
    F32 = 0,
    /// <summary>IEEE half, 2 bytes a weight.</summary>
    F16 = 1,
    /// <summary>int8 with one float scale a row (absmax / 127), 1 byte a weight.</summary>
    Int8 = 2,
}

/// <summary>
/// A dense (non-ternary) weight matrix W (rows x cols, row-major): embeddings, LM heads and the linear layers of
/// float models. Rows start on 64-byte boundaries: a row takes <see cref="RowStride"/> bytes, its padding is zero.
/// For <see cref="DenseType.Int8"/> rows are padded to a multiple of 256 columns (the kernels then need no tail) and
/// <c>W[r, c] = Scales[r] * q[r, c]</c> with <c>Scales[r] = max_c |W[r, c]| / 127</c>, q rounded half to even.
/// </summary>
public sealed unsafe class DenseMatrix
{
    private readonly AlignedArray<byte> _data;
    private readonly float[] _scales;

    /// <summary>Rows (output features, or vocabulary entries of an embedding).</summary>
    public int Rows { get; }
    /// <summary>Columns (input features).</summary>
    public int Cols { get; }
    /// <summary>Element type.</summary>
    public DenseType Type { get; }
    /// <summary>Bytes from one row to the next (a multiple of 64).</summary>
    public int RowStride { get; }
    /// <summary>Per-row scales of an <see cref="DenseType.Int8"/> matrix (empty otherwise).</summary>
    public ReadOnlySpan<float> Scales => _scales;
    /// <summary>Bytes the matrix holds (rows with padding, plus scales).</summary>
    public long AllocatedBytes => (long)Rows * RowStride + (long)_scales.Length * sizeof(float);
    /// <summary>The <see cref="AllocatedBytes"/> a matrix of this shape and type will have, without making it (for
    /// memory estimates from file headers).</summary>
    public static long BytesFor(int rows, int cols, DenseType type)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        long padded = type == DenseType.Int8 ? ((long)cols + 255) / 256 * 256 : cols;
        long stride = (padded * ElementBytes(type) + 63) / 64 * 64;
        return rows * stride + (type == DenseType.Int8 ? rows * 4L : 0);
    }

    /// <summary>Bytes one element takes.</summary>
    public static int ElementBytes(DenseType t) => t switch { DenseType.F32 => 4, DenseType.F16 => 2, DenseType.Int8 => 1, _ => throw new ArgumentOutOfRangeException(nameof(t)) };

    internal byte* DataPointer => _data.Pointer;
    internal float[] ScaleArray => _scales;
    /// <summary>Columns a row holds in memory (Int8: a multiple of 256; others: <see cref="Cols"/>).</summary>
    internal int PaddedCols => Type == DenseType.Int8 ? (Cols + 255) / 256 * 256 : Cols;

    private DenseMatrix(int rows, int cols, DenseType type)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Rows = rows; Cols = cols; Type = type;
        long rowBytes = (long)PaddedCols * ElementBytes(type);
        long stride = (rowBytes + 63) / 64 * 64;
        if (stride > int.MaxValue / 2) throw new RotorException($"dense matrix rows of {cols} values are too long");
        RowStride = (int)stride;
        _data = new AlignedArray<byte>((long)rows * RowStride, hugePages: true);
        _scales = type == DenseType.Int8 ? new float[rows] : [];
    }

    /// <summary>A matrix of <paramref name="type"/> from float weights (rows x cols, row-major).</summary>
    /// <exception cref="RotorException">A weight is NaN or infinite.</exception>
    public static DenseMatrix FromFloat(ReadOnlySpan<float> weights, int rows, int cols, DenseType type)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Check.Length(weights.Length, (long)rows * cols, nameof(weights));
        Check.Finite(weights, nameof(weights));
        var m = new DenseMatrix(rows, cols, type);
        for (int r = 0; r < rows; r++) m.SetRow(r, weights.Slice(r * cols, cols));
        return m;
    }

    /// <summary>An empty matrix to be filled row by row with <see cref="SetRow(int, ReadOnlySpan{float})"/> (a loader that converts while it reads).</summary>
    public static DenseMatrix Create(int rows, int cols, DenseType type) => new(rows, cols, type);

    /// <summary>Writes row <paramref name="row"/> from float values (converted to the element type).</summary>
    public void SetRow(int row, ReadOnlySpan<float> values)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.Length(values.Length, Cols, nameof(values));
        byte* p = _data.Pointer + (long)row * RowStride;
        switch (Type)
        {
            case DenseType.F32:
                values.CopyTo(new Span<float>(p, Cols));
                break;
            case DenseType.F16:
                TensorPrimitives.ConvertToHalf(values, new Span<Half>(p, Cols));
                break;
            case DenseType.Int8:
                {
                    float amax = values.IsEmpty ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(values));
                    var q = new Span<sbyte>(p, PaddedCols);
                    q.Clear();
                    _scales[row] = amax / 127f;
                    if (amax == 0) break;
                    float inv = 127f / amax;
                    for (int c = 0; c < Cols; c++) q[c] = (sbyte)Math.Clamp(MathF.Round(values[c] * inv), -127f, 127f);
                    break;
                }
        }
    }

    /// <summary>Writes row <paramref name="row"/> of an <see cref="DenseType.F16"/> matrix from half values as they are
    /// (a loader copying F16 weights: no rounding through float).</summary>
    /// <exception cref="InvalidOperationException">The matrix is not F16.</exception>
    public void SetRow(int row, ReadOnlySpan<Half> values)
    {
        if (Type != DenseType.F16) throw new InvalidOperationException($"SetRow(Half) needs an F16 matrix, this one is {Type}");
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.Length(values.Length, Cols, nameof(values));
        values.CopyTo(new Span<Half>(_data.Pointer + (long)row * RowStride, Cols));
    }

    /// <summary>Row <paramref name="row"/> as floats (an embedding lookup).</summary>
    public void GetRow(int row, Span<float> dst)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.AtLeast(dst.Length, Cols, nameof(dst));
        byte* p = _data.Pointer + (long)row * RowStride;
        switch (Type)
        {
            case DenseType.F32: new ReadOnlySpan<float>(p, Cols).CopyTo(dst); break;
            case DenseType.F16: TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(p, Cols), dst[..Cols]); break;
            case DenseType.Int8:
                {
                    var q = new ReadOnlySpan<sbyte>(p, Cols);
                    float s = _scales[row];
                    for (int c = 0; c < Cols; c++) dst[c] = q[c] * s;
                    break;
                }
        }
        GC.KeepAlive(this);
    }

    /// <summary>The whole matrix as floats, row-major.</summary>
    public float[] ToFloat()
    {
        var f = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++) GetRow(r, f.AsSpan(r * Cols, Cols));
        return f;
    }

    /// <inheritdoc/>
    public override string ToString() => $"DenseMatrix {Rows}x{Cols} {Type} ({AllocatedBytes} bytes)";
}

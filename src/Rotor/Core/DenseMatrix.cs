using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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
    /// <summary>4-bit integers with one half-precision scale a block of 32 weights: 4.5 bits a weight
    /// (layout in <see cref="DenseMatrix"/>).</summary>
    Q4 = 3,
}

/// <summary>
/// A dense (non-ternary) weight matrix W (rows x cols, row-major): embeddings, LM heads and the linear layers of
/// float models. Rows of a matrix that allocates its memory start on 64-byte boundaries: a row takes
/// <see cref="RowStride"/> bytes, its padding is zero.
/// For <see cref="DenseType.Int8"/> rows are padded to a multiple of 256 columns (the kernels then need no tail) and
/// <c>W[r, c] = Scales[r] * q[r, c]</c> with <c>Scales[r] = max_c |W[r, c]| / 127</c>, q rounded half to even.
/// <para><see cref="DenseType.Q4"/> (4.5 bits a weight): rows are padded to a multiple of 512 columns, a superblock
/// each. Column <c>c = 512 s + 64 t + 4 l + e</c> (step t &lt; 8, lane l &lt; 16, e &lt; 4) is in block <c>16 s + l</c>
/// of its row: the 32 columns of a block are the four-column groups that one 32-bit lane of a 64-byte vector meets
/// over the eight 64-column steps of its superblock, so that a dot product accumulates each block in its own lane and
/// applies the 16 block scales of a superblock with one vector multiply. The weight is
/// <c>W[r, c] = BlockScales[r, 16 s + l] * (u - 8)</c> with the nibble u (0..15) in byte <c>256 s + 64 (t / 2) + 4 l + e</c>
/// of the row, low nibble for even t, high for odd. Block quantization follows ggml's Q4_0: <c>d = m / -8</c> rounded
/// to half, with m the block's weight of largest magnitude (its largest weight when that is at least minus its
/// smallest, else its smallest); <c>u - 8 = clamp(round_half_even(w * (1 / d)), -8, 7)</c>, 0 where d is 0
/// (the scalar definition: <c>DenseQuantizer.Q4RowReference</c>).
/// Block scales are a second buffer, <see cref="PaddedCols"/> / 32 halves a row.</para>
/// <para>A view (<see cref="FromMemory"/>) reads F32 or F16 rows where another owner keeps them (a memory-mapped model
/// file): rows are packed (<see cref="RowStride"/> = <see cref="Cols"/> times the element size, a multiple of 64, so
/// there is no padding to clear) and start wherever the owner puts them, element-aligned; it is read-only, and reading
/// it after its owner is closed throws <see cref="ObjectDisposedException"/>.</para>
/// </summary>
public sealed unsafe class DenseMatrix
{
    private readonly AlignedArray<byte>? _data;
    private readonly byte* _view;                 // a view's first row, else null
    private readonly SafeHandle? _owner;          // what keeps a view's memory mapped
    private readonly float[] _scales;
    private readonly AlignedArray<ushort>? _blockScales;

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
    /// <summary>Per-block scales of a <see cref="DenseType.Q4"/> matrix as half bits, <see cref="PaddedCols"/> / 32 a row
    /// (empty otherwise).</summary>
    public ReadOnlySpan<ushort> BlockScales => _blockScales is null ? default : _blockScales.Span;
    /// <summary>Bytes of the matrix's data (rows with padding, plus scales): what a pass over every row reads, whether
    /// the matrix owns them or is a view.</summary>
    public long DataBytes => (long)Rows * RowStride + (long)_scales.Length * sizeof(float) + (_blockScales is null ? 0 : (long)_blockScales.Length * sizeof(ushort));
    /// <summary>Bytes the matrix allocated: <see cref="DataBytes"/>, or 0 for a view (its rows are its owner's).</summary>
    public long AllocatedBytes => IsView ? 0 : DataBytes;
    /// <summary>Whether the rows live in memory another owner keeps (<see cref="FromMemory"/>).</summary>
    public bool IsView => _owner is not null;
    /// <summary>Bytes one element takes (<see cref="DenseType.Q4"/>: 1, two weights a byte rounded up; its exact size is
    /// <see cref="AllocatedBytes"/>).</summary>
    public static int ElementBytes(DenseType t) => t switch { DenseType.F32 => 4, DenseType.F16 => 2, DenseType.Int8 => 1, DenseType.Q4 => 1, _ => throw new ArgumentOutOfRangeException(nameof(t)) };

    /// <summary>Columns a <see cref="DenseType.Q4"/> superblock covers.</summary>
    internal const int Q4SuperCols = 512;
    /// <summary>Bytes of nibbles a <see cref="DenseType.Q4"/> superblock takes.</summary>
    internal const int Q4SuperBytes = Q4SuperCols / 2;
    /// <summary>Blocks (and block scales) a <see cref="DenseType.Q4"/> superblock holds.</summary>
    internal const int Q4Blocks = 16;
    /// <summary>The <see cref="AllocatedBytes"/> a matrix of this shape and type will have, without making it (for
    /// memory estimates from file headers).</summary>
    public static long BytesFor(int rows, int cols, DenseType type)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        long padded = type switch
        {
            DenseType.Int8 => ((long)cols + 255) / 256 * 256,
            DenseType.Q4 => ((long)cols + Q4SuperCols - 1) / Q4SuperCols * Q4SuperCols,
            _ => cols,
        };
        long rowBytes = type == DenseType.Q4 ? padded / 2 : padded * ElementBytes(type);
        long stride = (rowBytes + 63) / 64 * 64;
        long extra = type switch { DenseType.Int8 => rows * 4L, DenseType.Q4 => rows * (padded / 32) * sizeof(ushort), _ => 0 };
        return rows * stride + extra;
    }

    /// <summary>The first row. A view checks that its owner still keeps the memory (a kernel handed this pointer must
    /// finish before the owner is closed).</summary>
    /// <exception cref="ObjectDisposedException">The view's owner is closed.</exception>
    internal byte* DataPointer
    {
        get
        {
            if (_data is not null) return _data.Pointer;
            ObjectDisposedException.ThrowIf(_owner!.IsClosed, this);
            return _view;
        }
    }
    internal float[] ScaleArray => _scales;
    internal ushort* BlockScalePointer => _blockScales is null ? null : _blockScales.Pointer;
    /// <summary>Columns a row holds in memory (Int8: a multiple of 256; Q4: of 512; others: <see cref="Cols"/>).</summary>
    internal int PaddedCols => Type switch
    {
        DenseType.Int8 => (Cols + 255) / 256 * 256,
        DenseType.Q4 => (int)(((long)Cols + Q4SuperCols - 1) / Q4SuperCols * Q4SuperCols),
        _ => Cols,
    };
    /// <summary>Superblocks a <see cref="DenseType.Q4"/> row holds.</summary>
    internal int Q4Superblocks => PaddedCols / Q4SuperCols;

    private DenseMatrix(int rows, int cols, DenseType type, bool zeroed = true)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Rows = rows; Cols = cols; Type = type;
        if (type == DenseType.Q4 && cols > int.MaxValue / 2) throw new RotorException($"dense matrix rows of {cols} values are too long");
        long rowBytes = type == DenseType.Q4 ? PaddedCols / 2 : (long)PaddedCols * ElementBytes(type);
        long stride = (rowBytes + 63) / 64 * 64;
        if (stride > int.MaxValue / 2) throw new RotorException($"dense matrix rows of {cols} values are too long");
        RowStride = (int)stride;
        _data = new AlignedArray<byte>((long)rows * RowStride, hugePages: true, zeroed);
        _scales = type == DenseType.Int8 ? new float[rows] : [];
        if (type == DenseType.Q4) _blockScales = new AlignedArray<ushort>((long)rows * (PaddedCols / 32), hugePages: true, zeroed);
    }

    private DenseMatrix(SafeHandle owner, byte* rows, int rowCount, int cols, DenseType type)
    {
        Rows = rowCount; Cols = cols; Type = type;
        RowStride = cols * ElementBytes(type);
        _owner = owner; _view = rows;
        _scales = [];
    }

    /// <summary>Whether <see cref="FromMemory"/> takes rows of <paramref name="cols"/> values of <paramref name="type"/>
    /// stored one after another: F32 or F16 rows whose bytes are a multiple of 64 (the kernels read whole rows of
    /// <see cref="RowStride"/> bytes, so a view has no room for padding).</summary>
    public static bool CanView(int cols, DenseType type)
        => cols > 0 && type is DenseType.F32 or DenseType.F16 && (long)cols * ElementBytes(type) % 64 == 0
           && (long)cols * ElementBytes(type) <= int.MaxValue / 2;

    /// <summary>A read-only view of <paramref name="rows"/> x <paramref name="cols"/> values of <paramref name="type"/>
    /// (F32 or F16, row-major, rows packed) at <paramref name="data"/>, memory that <paramref name="owner"/> keeps valid
    /// until it is closed (a memory-mapped file's view handle): nothing is copied, so only the rows read become resident.
    /// <see cref="SetRow(int, ReadOnlySpan{float})"/> is refused; reads after the owner is closed throw
    /// <see cref="ObjectDisposedException"/>. The caller keeps <paramref name="owner"/> open as long as the matrix is
    /// used and closes it when done.</summary>
    /// <exception cref="ArgumentException">The shape is not one <see cref="CanView"/> takes, <paramref name="data"/> is
    /// null or not aligned to the element size, or the owner is closed.</exception>
    public static DenseMatrix FromMemory(SafeHandle owner, nint data, int rows, int cols, DenseType type)
    {
        ArgumentNullException.ThrowIfNull(owner);
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        if (!CanView(cols, type)) throw new ArgumentException($"a view takes F32 or F16 rows of a multiple of 64 bytes, not {cols} {type} values", nameof(cols));
        if (data == 0 || data % ElementBytes(type) != 0) throw new ArgumentException($"a view of {type} values needs an address aligned to {ElementBytes(type)} bytes", nameof(data));
        if (owner.IsClosed || owner.IsInvalid) throw new ArgumentException("the owner of a view's memory is closed", nameof(owner));
        return new DenseMatrix(owner, (byte*)data, rows, cols, type);
    }

    /// <summary>A matrix of <paramref name="type"/> from float weights (rows x cols, row-major).</summary>
    /// <exception cref="RotorException">A weight is NaN or infinite.</exception>
    public static DenseMatrix FromFloat(ReadOnlySpan<float> weights, int rows, int cols, DenseType type)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Check.Length(weights.Length, (long)rows * cols, nameof(weights));
        Check.Finite(weights, nameof(weights));
        var m = new DenseMatrix(rows, cols, type, zeroed: false);
        for (int r = 0; r < rows; r++) m.SetRow(r, weights.Slice(r * cols, cols));
        return m;
    }

    /// <summary>An empty matrix to be filled row by row with <see cref="SetRow(int, ReadOnlySpan{float})"/> (a loader that converts while it reads).</summary>
    public static DenseMatrix Create(int rows, int cols, DenseType type) => new(rows, cols, type);

    /// <summary>As <see cref="Create"/>, for a loader that writes every row with <c>SetRow</c> before the matrix is
    /// read: the memory is not cleared first (rows not written hold undefined values), so a load touches each page of
    /// the weights once.</summary>
    public static DenseMatrix CreateUninitialized(int rows, int cols, DenseType type) => new(rows, cols, type, zeroed: false);

    /// <summary>Writes row <paramref name="row"/> from float values (converted to the element type).</summary>
    /// <exception cref="InvalidOperationException">The matrix is a view (read-only).</exception>
    /// <exception cref="RotorException">An <see cref="DenseType.Int8"/> or <see cref="DenseType.Q4"/> row holds a NaN or
    /// an infinity, or a Q4 block's scale would not be a finite half (a refused Q4 row is left partly written).</exception>
    public void SetRow(int row, ReadOnlySpan<float> values)
    {
        if (_data is null) throw new InvalidOperationException("a view of another owner's memory is read-only");
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.Length(values.Length, Cols, nameof(values));
        byte* p = _data.Pointer + (long)row * RowStride;
        ClearRowTail(p);
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
                    // MaxMagnitude is NaN or infinite exactly when a value is.
                    float amax = MathF.Abs(TensorPrimitives.MaxMagnitude(values));
                    if (!float.IsFinite(amax)) Check.Finite(values, $"Int8 row {row}");
                    _scales[row] = amax / 127f;
                    if (amax == 0) { new Span<sbyte>(p, PaddedCols).Clear(); break; }
                    new Span<sbyte>(p + Cols, PaddedCols - Cols).Clear();
                    fixed (float* v = values) DenseQuantizer.QuantizeInt8(v, Cols, 127f / amax, (sbyte*)p, DenseQuantizer.Wide);
                    break;
                }
            case DenseType.Q4:
                SetQ4Row(row, values, p, _blockScales!.Pointer + (long)row * (PaddedCols / 32));
                break;
        }
        GC.KeepAlive(this);
    }

    /// <summary>Quantizes one row to the <see cref="DenseType.Q4"/> layout (<see cref="DenseQuantizer.Q4RowReference"/>
    /// defines it): nibbles at <paramref name="nib"/> (PaddedCols / 2 bytes), block scales at <paramref name="d"/>
    /// (PaddedCols / 32 halves). Padding columns are 0. A superblock at a time (<see cref="DenseQuantizer.Q4Superblock"/>),
    /// which also finds NaN and infinite values: a refused row is left partly written.</summary>
    /// <exception cref="RotorException">A weight is NaN or infinite, or so large that its block's scale is not a finite
    /// half (the kernels widen finite halves only).</exception>
    [SkipLocalsInit, MethodImpl(MethodImplOptions.AggressiveOptimization)]   // see DenseQuantizer
    private void SetQ4Row(int row, ReadOnlySpan<float> values, byte* nib, ushort* d)
    {
        float* padded = stackalloc float[Q4SuperCols];
        fixed (float* all = values)
            for (int s = 0; s < Q4Superblocks; s++)
            {
                float* v = all + (long)s * Q4SuperCols;
                int valid = Math.Min(Q4SuperCols, Cols - s * Q4SuperCols);
                if (valid < Q4SuperCols)
                {
                    new ReadOnlySpan<float>(v, valid).CopyTo(new Span<float>(padded, Q4SuperCols));
                    new Span<float>(padded + valid, Q4SuperCols - valid).Clear();
                    v = padded;
                }
                if (DenseQuantizer.Q4Superblock(v, nib + (long)s * Q4SuperBytes, d + s * Q4Blocks, DenseQuantizer.Wide) != DenseQuantizer.Q4Status.Ok)
                    throw Q4Refusal(row, values, v);
            }
    }

    /// <summary>As <see cref="SetQ4Row(int, ReadOnlySpan{float}, byte*, ushort*)"/> from <see cref="Cols"/> half bit
    /// patterns: each superblock is widened (exactly) and quantized as floats. A row with a NaN or infinite value is
    /// refused before anything is written.</summary>
    [SkipLocalsInit, MethodImpl(MethodImplOptions.AggressiveOptimization)]   // see DenseQuantizer
    private void SetQ4Row(int row, ushort* h, byte* nib, ushort* d)
    {
        if (DenseQuantizer.MaxMagnitudeBits(h, Cols, DenseQuantizer.Wide) >= DenseQuantizer.HalfNonFinite) throw NonFinite(row, h);
        float* v = stackalloc float[Q4SuperCols];
        for (int s = 0; s < Q4Superblocks; s++)
        {
            int valid = Math.Min(Q4SuperCols, Cols - s * Q4SuperCols);
            DenseQuantizer.WidenHalves(h + (long)s * Q4SuperCols, v, valid, DenseQuantizer.Wide);
            if (valid < Q4SuperCols) new Span<float>(v + valid, Q4SuperCols - valid).Clear();
            if (DenseQuantizer.Q4Superblock(v, nib + (long)s * Q4SuperBytes, d + s * Q4Blocks, DenseQuantizer.Wide) != DenseQuantizer.Q4Status.Ok)
                throw Q4Refusal(row, Widened(h), v);
        }
    }

    /// <summary>As the float <see cref="DenseType.Int8"/> row of <see cref="SetRow(int, ReadOnlySpan{float})"/> from
    /// <see cref="Cols"/> half bit patterns: amax is the half of largest magnitude; the values are widened (exactly) and
    /// quantized in pieces that stay in the first-level cache.</summary>
    [SkipLocalsInit, MethodImpl(MethodImplOptions.AggressiveOptimization)]   // see DenseQuantizer
    private void SetInt8Row(int row, ushort* h, sbyte* q)
    {
        int bits = DenseQuantizer.MaxMagnitudeBits(h, Cols, DenseQuantizer.Wide);
        if (bits >= DenseQuantizer.HalfNonFinite) throw NonFinite(row, h);
        float amax = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
        _scales[row] = amax / 127f;
        if (amax == 0) { new Span<sbyte>(q, PaddedCols).Clear(); return; }
        new Span<sbyte>(q + Cols, PaddedCols - Cols).Clear();
        float inv = 127f / amax;
        const int piece = 512;
        float* v = stackalloc float[piece];
        for (int c = 0; c < Cols; c += piece)
        {
            int n = Math.Min(piece, Cols - c);
            DenseQuantizer.WidenHalves(h + c, v, n, DenseQuantizer.Wide);
            DenseQuantizer.QuantizeInt8(v, n, inv, q + c, DenseQuantizer.Wide);
        }
    }

    /// <summary>The error for a <see cref="DenseType.Q4"/> row that <see cref="DenseQuantizer.Q4Superblock"/> refused in
    /// the superblock <paramref name="v"/>: a NaN or infinity anywhere in the row is named first, as
    /// <see cref="Check.Finite"/> names it.</summary>
    private static RotorException Q4Refusal(int row, ReadOnlySpan<float> values, float* v)
    {
        Check.Finite(values, $"Q4 row {row}");
        var (_, m) = DenseQuantizer.Q4ScaleOverflow(v);
        return new RotorException($"row {row}: the weight {m} is too large for Q4's half-precision block scales (at most {(float)Half.MaxValue * 8})");
    }

    /// <summary>The error for row <paramref name="row"/> of half bits <paramref name="h"/>, which holds a NaN or an
    /// infinity: <see cref="Check.Finite"/>'s, naming the first.</summary>
    private RotorException NonFinite(int row, ushort* h)
    {
        Check.Finite(Widened(h), $"{Type} row {row}");
        return new RotorException($"{Type} row {row} holds a NaN or an infinity");
    }

    /// <summary>A row of <see cref="Cols"/> half bit patterns as floats (any halves, NaN and infinities too).</summary>
    private float[] Widened(ushort* h)
    {
        var f = new float[Cols];
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(h, Cols), f);
        return f;
    }

    /// <summary>Weight <paramref name="c"/> of a <see cref="DenseType.Q4"/> row (nibbles at <paramref name="nib"/>, block
    /// scales at <paramref name="d"/>).</summary>
    internal static float Q4Weight(byte* nib, ushort* d, int c)
    {
        int s = c / Q4SuperCols, t = (c % Q4SuperCols) / 64, j = c % 64;
        int b = nib[s * Q4SuperBytes + 64 * (t >> 1) + j];
        int u = (t & 1) == 0 ? b & 0xF : b >> 4;
        return (float)BitConverter.UInt16BitsToHalf(d[s * Q4Blocks + j / 4]) * (u - 8);
    }

    /// <summary>Writes row <paramref name="row"/> from half values: an <see cref="DenseType.F16"/> matrix takes them as
    /// they are (a loader copying F16 weights: no rounding through float); the other types convert them as
    /// <see cref="SetRow(int, ReadOnlySpan{float})"/> converts their float values (halves widen to float exactly: the same
    /// bits), without a float copy of the row.</summary>
    /// <exception cref="InvalidOperationException">The matrix is a view.</exception>
    /// <exception cref="RotorException">An <see cref="DenseType.Int8"/> or <see cref="DenseType.Q4"/> row holds a NaN or
    /// an infinity (the row is left as it was).</exception>
    public void SetRow(int row, ReadOnlySpan<Half> values)
    {
        if (_data is null) throw new InvalidOperationException("a view of another owner's memory is read-only");
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.Length(values.Length, Cols, nameof(values));
        fixed (Half* h = values) SetHalfRow(row, (ushort*)h);
        GC.KeepAlive(this);
    }

    /// <summary><see cref="SetRow(int, ReadOnlySpan{Half})"/> of <see cref="Cols"/> half bit patterns at
    /// <paramref name="h"/>, arguments checked.</summary>
    private void SetHalfRow(int row, ushort* h)
    {
        byte* p = _data!.Pointer + (long)row * RowStride;
        ClearRowTail(p);
        switch (Type)
        {
            case DenseType.F32:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(h, Cols), new Span<float>(p, Cols));
                break;
            case DenseType.F16:
                new ReadOnlySpan<ushort>(h, Cols).CopyTo(new Span<ushort>(p, Cols));
                break;
            case DenseType.Int8:
                SetInt8Row(row, h, (sbyte*)p);
                break;
            case DenseType.Q4:
                SetQ4Row(row, h, p, _blockScales!.Pointer + (long)row * (PaddedCols / 32));
                break;
        }
    }

    /// <summary>A new matrix of <paramref name="type"/> with this matrix's weights: row r is what
    /// <see cref="SetRow(int, ReadOnlySpan{float})"/> writes from row r's values as <see cref="GetRow"/> reads them
    /// (<see cref="DenseType.F16"/> rows convert straight from their halves, <see cref="SetRow(int, ReadOnlySpan{Half})"/>:
    /// the same bits). Rows convert on <see cref="Threading.ThreadCount.Default"/> threads, about 1 MiB of this matrix a
    /// work item; the new matrix's memory is not cleared first, so each of its pages is first touched by the thread
    /// that writes it. A view stays open for the whole pass.</summary>
    /// <exception cref="RotorException">Converting to <see cref="DenseType.Int8"/> or <see cref="DenseType.Q4"/>, a
    /// weight is NaN or infinite, or too large for Q4's block scales (the error of one such row).</exception>
    /// <exception cref="ObjectDisposedException">The matrix is a view whose owner is closed.</exception>
    public DenseMatrix ConvertTo(DenseType type)
    {
        var m = new DenseMatrix(Rows, Cols, type, zeroed: false);   // every row is set below
        int chunk = Math.Max(1, (1 << 20) / RowStride);   // rows a work item: each writes only its own rows (and scales)
        bool added = false;
        try
        {
            if (_owner is not null)
            {
                // The owner cannot release the memory while the reference taken here is held.
                try { _owner.DangerousAddRef(ref added); }
                catch (ObjectDisposedException) { throw new ObjectDisposedException(nameof(DenseMatrix), "the owner of this view's memory is closed"); }
            }
            byte* src = _owner is null ? _data!.Pointer : _view;
            Parallel.For(0, (Rows + chunk - 1) / chunk, Threading.ThreadCount.Options(), () => (float[]?)null, (k, _, buffer) =>
            {
                for (int r = k * chunk, end = Math.Min(Rows, r + chunk); r < end; r++)
                {
                    byte* p = src + (long)r * RowStride;
                    switch (Type)
                    {
                        case DenseType.F16: m.SetHalfRow(r, (ushort*)p); break;
                        case DenseType.F32: m.SetRow(r, new ReadOnlySpan<float>(p, Cols)); break;
                        default: buffer ??= new float[Cols]; ReadRow(p, r, buffer); m.SetRow(r, buffer); break;
                    }
                }
                return buffer;
            }, _ => { });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // A row's own error, as a sequential pass would report it.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        finally { if (added) _owner!.DangerousRelease(); }
        GC.KeepAlive(this);
        return m;
    }

    /// <summary>Zeroes the bytes of the row at <paramref name="p"/> past its F32 or F16 values (the stride's padding):
    /// with the values, SetRow then writes every byte of the row, which <see cref="CreateUninitialized"/> relies on.
    /// Int8 and Q4 rows fill their whole stride themselves.</summary>
    private void ClearRowTail(byte* p)
    {
        if (Type is DenseType.Int8 or DenseType.Q4) return;
        int used = Cols * ElementBytes(Type);
        new Span<byte>(p + used, RowStride - used).Clear();
    }

    /// <summary>Row <paramref name="row"/> as floats (an embedding lookup).</summary>
    /// <exception cref="ObjectDisposedException">The matrix is a view whose owner is closed.</exception>
    public void GetRow(int row, Span<float> dst)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.AtLeast(dst.Length, Cols, nameof(dst));
        if (_owner is null) { ReadRow(_data!.Pointer + (long)row * RowStride, row, dst); return; }
        // The owner cannot release the memory while the reference taken here is held.
        bool added = false;
        try
        {
            try { _owner.DangerousAddRef(ref added); }
            catch (ObjectDisposedException) { throw new ObjectDisposedException(nameof(DenseMatrix), "the owner of this view's memory is closed"); }
            ReadRow(_view + (long)row * RowStride, row, dst);
        }
        finally { if (added) _owner.DangerousRelease(); }
    }

    private void ReadRow(byte* p, int row, Span<float> dst)
    {
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
            case DenseType.Q4:
                {
                    ushort* d = _blockScales!.Pointer + (long)row * (PaddedCols / 32);
                    for (int c = 0; c < Cols; c++) dst[c] = Q4Weight(p, d, c);
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
    public override string ToString() => $"DenseMatrix {Rows}x{Cols} {Type} ({DataBytes} bytes{(IsView ? ", a view" : "")})";
}

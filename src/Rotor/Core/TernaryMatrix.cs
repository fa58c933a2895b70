using System.Runtime.InteropServices;

namespace Rotor;

/// <summary>How a <see cref="TernaryMatrix"/> scales its trits back to real values.</summary>
public enum ScaleMode
{
    /// <summary>One float for the whole matrix (BitNet b1.58 absmean).</summary>
    PerTensor = 0,
    /// <summary>One float a row (output channel).</summary>
    PerRow = 1,
}

/// <summary>
/// A packed ternary weight matrix W (rows x cols, row-major) in the compute layout <see cref="TernaryFormat.I2_256"/>,
/// with its scales: the real matrix is <c>scale[r] * W[r, c]</c>.
/// <para>Layout: each row is padded to <see cref="PaddedCols"/> (a multiple of 256) and takes <see cref="RowBytes"/> =
/// PaddedCols / 4 bytes; the buffer is 64-byte aligned so every row is. Block b of a row covers columns 256b..256b+255
/// in bytes 64b..64b+63; byte j of the block holds <c>(w[256b+j]+1) | (w[256b+64+j]+1) &lt;&lt; 2 |
/// (w[256b+128+j]+1) &lt;&lt; 4 | (w[256b+192+j]+1) &lt;&lt; 6</c>. Padding columns hold w = 0.</para>
/// <para>A view (<see cref="FromMemory"/>) reads rows where another owner keeps them (a memory-mapped model file), in
/// the <see cref="Layout"/> that owner wrote, packed without padding (its columns a multiple of 256); it is read-only,
/// and using it after its owner is closed throws <see cref="ObjectDisposedException"/>.</para>
/// </summary>
public sealed unsafe partial class TernaryMatrix
{
    /// <summary>Columns are padded to a multiple of this.</summary>
    public const int BlockCols = I2Blocks.BlockWeights;

    private readonly AlignedArray<byte>? _data;
    private readonly byte* _view;                 // a view's first row, else null
    private readonly SafeHandle? _owner;          // what keeps a view's memory mapped
    private readonly float[] _scales;

    /// <summary>Rows (output features).</summary>
    public int Rows { get; }
    /// <summary>Columns (input features).</summary>
    public int Cols { get; }
    /// <summary>Columns rounded up to a multiple of 256.</summary>
    public int PaddedCols { get; }
    /// <summary>Bytes a row: PaddedCols / 4.</summary>
    public int RowBytes => PaddedCols / 4;
    /// <summary>Blocks of 256 columns a row.</summary>
    public int Blocks => PaddedCols / BlockCols;
    /// <summary>Per tensor or per row scales.</summary>
    public ScaleMode ScaleMode { get; }
    /// <summary>The scales: one value, or one a row.</summary>
    public ReadOnlySpan<float> Scales => _scales;
    /// <summary>The order of the codes within a block: <see cref="TernaryLayout.I2_256"/> unless the matrix is a view
    /// of another program's layout.</summary>
    public TernaryLayout Layout { get; }
    /// <summary>Whether the rows live in memory another owner keeps (<see cref="FromMemory"/>).</summary>
    public bool IsView => _owner is not null;
    /// <summary>The packed codes in <see cref="Layout"/>, Rows * RowBytes bytes (<see cref="CopyRowsI2_256"/> gives
    /// them in the compute layout whatever the layout).</summary>
    /// <exception cref="ObjectDisposedException">The view's owner is closed.</exception>
    public ReadOnlySpan<byte> Data => new(DataPointer, checked((int)((long)Rows * RowBytes)));
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

    /// <summary>Bytes the weights take at exactly 2 bits each, without row padding or scales: rows * cols / 4.</summary>
    public long PayloadBytes => ((long)Rows * Cols * 2 + 7) / 8;
    /// <summary>Bytes of the packed rows (with padding) plus the scales: what a pass over the matrix reads, whether it
    /// owns the rows or is a view.</summary>
    public long DataBytes => (long)Rows * RowBytes + (long)_scales.Length * sizeof(float);
    /// <summary>Bytes this matrix allocated: <see cref="DataBytes"/>, or only the scales for a view (its rows are its
    /// owner's).</summary>
    public long AllocatedBytes => IsView ? (long)_scales.Length * sizeof(float) : DataBytes;

    /// <summary>The <see cref="AllocatedBytes"/> a matrix of this shape and scale mode will have, without making it (for
    /// memory estimates from file headers).</summary>
    public static long BytesFor(int rows, int cols, ScaleMode mode)
    {
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"a ternary matrix needs positive dimensions, got {rows}x{cols}");
        long padded = ((long)cols + BlockCols - 1) / BlockCols * BlockCols;
        return rows * (padded / 4) + (mode == ScaleMode.PerRow ? rows : 1) * 4L;
    }

    private TernaryMatrix(int rows, int cols, ScaleMode mode)
    {
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"a ternary matrix needs positive dimensions, got {rows}x{cols}");
        Rows = rows; Cols = cols; ScaleMode = mode;
        PaddedCols = (int)(((long)cols + BlockCols - 1) / BlockCols * BlockCols);
        // Uninitialized: every factory writes every byte of every row before it returns the matrix (SetRow packs a
        // whole row, padding included; FromPackedRows sets a row to code 1 just before its filler writes it), so a
        // load touches each page of the weights once, by those writes.
        _data = new AlignedArray<byte>((long)rows * RowBytes, hugePages: true, zeroed: false);
        _scales = new float[mode == ScaleMode.PerRow ? rows : 1];
    }

    private TernaryMatrix(SafeHandle owner, byte* rows, int rowCount, int cols, TernaryLayout layout, float[] scales)
    {
        Rows = rowCount; Cols = cols; PaddedCols = cols; Layout = layout;
        ScaleMode = scales.Length == 1 ? ScaleMode.PerTensor : ScaleMode.PerRow;
        _owner = owner; _view = rows; _scales = scales;
    }

    /// <summary>
    /// A read-only matrix over packed rows that <paramref name="owner"/> keeps in memory (a memory-mapped model file):
    /// <paramref name="rows"/> rows of <paramref name="cols"/> / 4 bytes from <paramref name="data"/> on, codes in
    /// <paramref name="layout"/>, with its scales (one, or one a row). Nothing is copied; every code is checked for the
    /// invalid value 3 here (a read of every row, spread over the threads). The caller keeps <paramref name="owner"/>
    /// open as long as the matrix is used; afterwards the matrix throws <see cref="ObjectDisposedException"/>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="cols"/> is not a positive multiple of 256, or the scales do
    /// not fit.</exception>
    /// <exception cref="RotorException">A row holds code 3 (the message names <paramref name="where"/> and the row).</exception>
    public static TernaryMatrix FromMemory(SafeHandle owner, nint data, int rows, int cols, TernaryLayout layout, ReadOnlySpan<float> scales, string where = "tensor")
    {
        ArgumentNullException.ThrowIfNull(owner);
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        if (cols % BlockCols != 0) throw new ArgumentException($"a view's rows are whole blocks: {cols} columns are not a multiple of {BlockCols}", nameof(cols));
        if (data == 0) throw new ArgumentException("the rows' address is null", nameof(data));
        _ = TernaryLayouts.ChunkOrder(layout);
        if (scales.Length != 1 && scales.Length != rows)
            throw new ArgumentException($"scales has length {scales.Length}, expected 1 (per tensor) or {rows} (per row)", nameof(scales));
        Check.Finite(scales, nameof(scales));
        var m = new TernaryMatrix(owner, (byte*)data, rows, cols, layout, scales.ToArray());
        int rowBytes = m.RowBytes, chunk = Math.Max(1, (1 << 20) / rowBytes);   // rows a work item: about 1 MiB
        int bad = int.MaxValue;
        bool added = false;
        try
        {
            owner.DangerousAddRef(ref added);
            Parallel.For(0, (rows + chunk - 1) / chunk, Threading.ThreadCount.Options(), k =>
            {
                for (int r = k * chunk, end = Math.Min(rows, r + chunk); r < end; r++)
                    if (HasCode3(new ReadOnlySpan<byte>((byte*)data + (long)r * rowBytes, rowBytes))) { InterlockedMin(ref bad, r); return; }
            });
        }
        finally { if (added) owner.DangerousRelease(); }
        if (bad != int.MaxValue) throw new RotorException($"{where}: row {bad} holds the invalid 2-bit code 3");
        return m;
    }

    private static void InterlockedMin(ref int target, int value)
    {
        int seen = Volatile.Read(ref target);
        while (value < seen)
        {
            int was = Interlocked.CompareExchange(ref target, value, seen);
            if (was == seen) return;
            seen = was;
        }
    }

    /// <summary>Copies rows <paramref name="firstRow"/>..+<paramref name="count"/> into <paramref name="dst"/> in the
    /// compute layout <see cref="TernaryLayout.I2_256"/> (count * <see cref="RowBytes"/> bytes), converting a view of
    /// another layout: what a device that runs the I2_256 kernels uploads.</summary>
    public void CopyRowsI2_256(int firstRow, int count, Span<byte> dst)
    {
        if (firstRow < 0 || count < 0 || firstRow > Rows - count) throw new ArgumentOutOfRangeException(nameof(count), $"rows {firstRow}..+{count} are not within the {Rows} rows");
        long bytes = (long)count * RowBytes;
        Check.AtLeast(dst.Length, bytes, nameof(dst));
        var src = new ReadOnlySpan<byte>(DataPointer + (long)firstRow * RowBytes, checked((int)bytes));
        TernaryLayouts.ToI2_256(Layout, src, dst);
        GC.KeepAlive(this);
    }

    /// <summary>Scale of row <paramref name="row"/>.</summary>
    public float ScaleOf(int row) => ScaleMode == ScaleMode.PerRow ? _scales[row] : _scales[0];

    /// <summary>Builds a matrix from trit values (row-major, rows*cols, each -1, 0 or +1) and its scales
    /// (length 1 for per tensor, rows for per row).</summary>
    public static TernaryMatrix FromTrits(ReadOnlySpan<sbyte> trits, int rows, int cols, ReadOnlySpan<float> scales)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Check.Length(trits.Length, (long)rows * cols, nameof(trits));
        if (scales.Length != 1 && scales.Length != rows)
            throw new ArgumentException($"scales has length {scales.Length}, expected 1 (per tensor) or {rows} (per row)", nameof(scales));
        Check.Finite(scales, nameof(scales));
        var m = new TernaryMatrix(rows, cols, scales.Length == 1 ? ScaleMode.PerTensor : ScaleMode.PerRow);
        scales.CopyTo(m._scales);
        for (int r = 0; r < rows; r++) m.SetRow(r, trits.Slice(r * cols, cols));
        return m;
    }

    /// <summary>Quantizes float weights (rows x cols) to a ternary matrix with <paramref name="method"/>.</summary>
    public static TernaryMatrix Quantize(ReadOnlySpan<float> weights, int rows, int cols, QuantizationMethod method = QuantizationMethod.AbsMean, ScaleMode mode = ScaleMode.PerTensor)
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        Check.Length(weights.Length, (long)rows * cols, nameof(weights));
        var q = new sbyte[weights.Length];
        float[] scales;
        if (mode == ScaleMode.PerTensor)
            scales = [TernaryQuantizer.Quantize(weights, q, method)];
        else
        {
            scales = new float[rows];
            for (int r = 0; r < rows; r++)
                scales[r] = TernaryQuantizer.Quantize(weights.Slice(r * cols, cols), q.AsSpan(r * cols, cols), method);
        }
        var m = new TernaryMatrix(rows, cols, mode);
        scales.CopyTo(m._scales);
        for (int r = 0; r < rows; r++) m.SetRow(r, q.AsSpan(r * cols, cols));
        return m;
    }

    /// <summary>Writes row <paramref name="row"/> from trit values.</summary>
    /// <exception cref="InvalidOperationException">The matrix is a view (read-only).</exception>
    public void SetRow(int row, ReadOnlySpan<sbyte> trits)
    {
        if (_data is null) throw new InvalidOperationException("a view of another owner's memory is read-only");
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.Length(trits.Length, Cols, nameof(trits));
        for (int c = 0; c < Cols; c++)
            if ((uint)(trits[c] + 1) > 2) throw new ArgumentException($"trits[{c}] of row {row} = {trits[c]}: a trit is -1, 0 or +1", nameof(trits));
        I2Blocks.Pack(trits, _data.Span.Slice(row * RowBytes, RowBytes));
    }

    /// <summary>Reads row <paramref name="row"/> as trit values.</summary>
    public void GetRow(int row, Span<sbyte> trits)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {Rows})");
        Check.AtLeast(trits.Length, Cols, nameof(trits));
        TernaryLayouts.Unpack(Layout, new ReadOnlySpan<byte>(DataPointer + (long)row * RowBytes, RowBytes), trits[..Cols]);
        GC.KeepAlive(this);
    }

    /// <summary>All trit values, row-major.</summary>
    public sbyte[] ToTrits()
    {
        var t = new sbyte[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++) GetRow(r, t.AsSpan(r * Cols, Cols));
        return t;
    }

    /// <summary>The dequantized matrix: <c>scale[r] * W[r, c]</c>, row-major.</summary>
    public float[] ToFloat()
    {
        var f = new float[(long)Rows * Cols];
        var row = new sbyte[Cols];
        for (int r = 0; r < Rows; r++)
        {
            GetRow(r, row);
            float s = ScaleOf(r);
            for (int c = 0; c < Cols; c++) f[(long)r * Cols + c] = row[c] * s;
        }
        return f;
    }

    /// <summary>Encodes the trits in a storage format that <see cref="TernaryFormatInfo.StoresMatrices"/> (T2, T1_6,
    /// I2_256): row-major, densely or a row at a time as the format's <see cref="TernaryFormatInfo.RowAligned"/> says.</summary>
    public byte[] Encode(TernaryFormat format)
    {
        TernaryFormatInfo f = MatrixFormat(format);
        var packed = new byte[f.MatrixBytes(Rows, Cols)];
        if (!f.RowAligned) { f.Encode!(ToTrits(), packed); return packed; }
        long rowBytes = f.BytesFor(Cols);
        var row = new sbyte[Cols];
        for (int r = 0; r < Rows; r++)
        {
            GetRow(r, row);
            f.Encode!(row, packed.AsSpan((int)(r * rowBytes), (int)rowBytes));
        }
        return packed;
    }

    /// <summary>Decodes a matrix stored by <see cref="Encode"/>. Validates sizes and codes; <paramref name="where"/>
    /// names the source (file and tensor) in errors.</summary>
    public static TernaryMatrix Decode(TernaryFormat format, ReadOnlySpan<byte> data, int rows, int cols, ReadOnlySpan<float> scales, string where = "tensor")
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        TernaryFormatInfo f = MatrixFormat(format);
        long n = (long)rows * cols, expected = f.MatrixBytes(rows, cols);
        if (data.Length != expected) throw new RotorException($"{where}: {data.Length} bytes for {rows}x{cols} trits in {f.Name}, expected {expected}");
        var t = new sbyte[n];
        if (!f.RowAligned)
        {
            f.Validate?.Invoke(data, n, where);
            f.Decode!(data, t);
        }
        else
        {
            long rowBytes = f.BytesFor(cols);
            f.Validate?.Invoke(data, rows * (rowBytes / f.BlockBytes * f.BlockWeights), where);
            for (int r = 0; r < rows; r++) f.Decode!(data.Slice((int)(r * rowBytes), (int)rowBytes), t.AsSpan((int)((long)r * cols), cols));
        }
        return FromTrits(t, rows, cols, scales);
    }

    private static TernaryFormatInfo MatrixFormat(TernaryFormat format)
    {
        TernaryFormatInfo f = TernaryFormats.Get(format);
        if (!f.StoresMatrices) throw new ArgumentException($"format {format} is not a storage form of a matrix; use {TernaryFormats.Names(x => x.StoresMatrices)}", nameof(format));
        return f;
    }

    /// <summary>Share of zeros and counts of +1 and -1.</summary>
    public (double ZeroShare, long Plus, long Minus) CountTrits()
    {
        long plus = 0, minus = 0;
        var row = new sbyte[Cols];
        for (int r = 0; r < Rows; r++)
        {
            GetRow(r, row);
            foreach (sbyte v in row) { if (v > 0) plus++; else if (v < 0) minus++; }
        }
        long total = (long)Rows * Cols;
        return ((double)(total - plus - minus) / total, plus, minus);
    }

    /// <inheritdoc/>
    public override string ToString() => $"TernaryMatrix {Rows}x{Cols} ({ScaleMode}, {DataBytes} bytes{(IsView ? $", a view in {Layout}" : "")})";
}

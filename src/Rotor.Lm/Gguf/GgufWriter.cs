using System.Buffers.Binary;
using System.Text;

namespace Rotor.Lm.Gguf;

/// <summary>
/// Builds a GGUF v3 file: typed metadata in the order added, then tensors (name, type, ggml dims, bytes) at offsets
/// aligned to <see cref="Alignment"/>; <see cref="Write"/> writes it atomically. Also the encoders that make tensor
/// bytes: floats to F32/F16/BF16/Q8_0, ternary matrices to TQ1_0/TQ2_0/I2_S, byte-for-byte as ggml's and bitnet.cpp's
/// quantizers write them.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValueType Type, GgufValueType Element, object Value)> _kv = [];
    private readonly List<(string Name, GgmlType Type, long[] Dims, long Bytes, Action<Stream> Write)> _tensors = [];

    /// <summary>Alignment of tensor data, a power of two; written as <c>general.alignment</c> unless it is 32.</summary>
    public long Alignment { get; }

    /// <summary>Creates an empty file with the given tensor data alignment.</summary>
    /// <exception cref="ArgumentException">The alignment is not a power of two.</exception>
    public GgufWriter(long alignment = GgufFile.DefaultAlignment)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0 || alignment > uint.MaxValue)
            throw new ArgumentException($"alignment {alignment} is not a power of two", nameof(alignment));
        Alignment = alignment;
        if (alignment != GgufFile.DefaultAlignment) Add("general.alignment", GgufValueType.UInt32, alignment);
    }

    // ---- metadata ----

    /// <summary>Adds a string value.</summary>
    public void AddString(string key, string value) => Add(key, GgufValueType.String, value ?? throw new ArgumentNullException(nameof(value)));
    /// <summary>Adds a bool value.</summary>
    public void AddBool(string key, bool value) => Add(key, GgufValueType.Bool, value);
    /// <summary>Adds a uint32 value.</summary>
    public void AddUInt32(string key, uint value) => Add(key, GgufValueType.UInt32, (long)value);
    /// <summary>Adds an int32 value.</summary>
    public void AddInt32(string key, int value) => Add(key, GgufValueType.Int32, (long)value);
    /// <summary>Adds a uint64 value.</summary>
    public void AddUInt64(string key, long value) => Add(key, GgufValueType.UInt64, value);
    /// <summary>Adds a float32 value.</summary>
    public void AddFloat32(string key, float value) => Add(key, GgufValueType.Float32, (double)value);
    /// <summary>Adds a float64 value.</summary>
    public void AddFloat64(string key, double value) => Add(key, GgufValueType.Float64, value);
    /// <summary>Adds an array of strings.</summary>
    public void AddArray(string key, string[] values) => Add(key, GgufValueType.Array, values, GgufValueType.String);
    /// <summary>Adds an array of bools.</summary>
    public void AddArray(string key, bool[] values) => Add(key, GgufValueType.Array, values, GgufValueType.Bool);
    /// <summary>Adds an array of integers stored as <paramref name="elementType"/> (an integer type).</summary>
    public void AddArray(string key, GgufValueType elementType, long[] values) => Add(key, GgufValueType.Array, values, elementType);
    /// <summary>Adds an array of floats stored as <paramref name="elementType"/> (Float32 or Float64).</summary>
    public void AddArray(string key, GgufValueType elementType, double[] values) => Add(key, GgufValueType.Array, values, elementType);

    /// <summary>
    /// Adds a value of any type: <paramref name="value"/> is normalized as <see cref="GgufFile.Metadata"/> holds it
    /// (string, bool, long for every integer type, double for floats; string[], bool[], long[], double[] for arrays
    /// with <paramref name="elementType"/>), so a file's metadata can be copied with its <see cref="GgufFile.TypeOf"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The key is present already, or the value does not fit the type.</exception>
    public void Add(string key, GgufValueType type, object value, GgufValueType elementType = default)
    {
        ArgumentNullException.ThrowIfNull(key); ArgumentNullException.ThrowIfNull(value);
        if (key == "general.alignment")
        {
            if (value is not long a || a != Alignment)
                throw new ArgumentException($"general.alignment is set by the writer's alignment ({Alignment})", nameof(key));
            _kv.RemoveAll(e => e.Key == key); // the copy of a file's own key takes the place and type it had there
        }
        if (_kv.Exists(e => e.Key == key)) throw new ArgumentException($"metadata key {key} is present already", nameof(key));
        if (type == GgufValueType.Array)
        {
            bool ok = (elementType, value) switch
            {
                (GgufValueType.String, string[] s) => Array.TrueForAll(s, x => x is not null),
                (GgufValueType.Bool, bool[]) => true,
                (GgufValueType.Float32 or GgufValueType.Float64, double[]) => true,
                (_, long[] l) when IntSize(elementType) > 0 => Array.TrueForAll(l, x => FitsInt(elementType, x)),
                _ => false,
            };
            if (!ok) throw new ArgumentException($"metadata key {key}: {value.GetType().Name} is not an array of {elementType}", nameof(value));
        }
        else
        {
            bool ok = (type, value) switch
            {
                (GgufValueType.String, string) => true,
                (GgufValueType.Bool, bool) => true,
                (GgufValueType.Float32 or GgufValueType.Float64, double) => true,
                (_, long l) when IntSize(type) > 0 => FitsInt(type, l),
                _ => false,
            };
            if (!ok) throw new ArgumentException($"metadata key {key}: {value} is not a {type}", nameof(value));
        }
        _kv.Add((key, type, elementType, value));
    }

    private static int IntSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 => 8,
        _ => 0,
    };

    private static bool FitsInt(GgufValueType t, long v) => t switch
    {
        GgufValueType.UInt8 => v is >= 0 and <= byte.MaxValue,
        GgufValueType.Int8 => v is >= sbyte.MinValue and <= sbyte.MaxValue,
        GgufValueType.UInt16 => v is >= 0 and <= ushort.MaxValue,
        GgufValueType.Int16 => v is >= short.MinValue and <= short.MaxValue,
        GgufValueType.UInt32 => v is >= 0 and <= uint.MaxValue,
        GgufValueType.Int32 => v is >= int.MinValue and <= int.MaxValue,
        GgufValueType.UInt64 => v >= 0,
        _ => true,
    };

    // ---- tensors ----

    /// <summary>Adds a tensor of ggml shape <paramref name="dims"/> (<c>dims[0]</c> = row length) whose bytes are
    /// <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentException">The name is taken, the shape is invalid for the type, or the byte count is
    /// not what the type and shape take.</exception>
    public void AddTensor(string name, GgmlType type, long[] dims, ReadOnlyMemory<byte> data) =>
        AddTensor(name, type, dims, data.Length, s => s.Write(data.Span));

    /// <summary>Adds a tensor whose <paramref name="byteSize"/> bytes <paramref name="write"/> writes when the file is
    /// written (large tensors need not be held in memory).</summary>
    /// <exception cref="ArgumentException">As <see cref="AddTensor(string, GgmlType, long[], ReadOnlyMemory{byte})"/>.</exception>
    public void AddTensor(string name, GgmlType type, long[] dims, long byteSize, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(name); ArgumentNullException.ThrowIfNull(dims); ArgumentNullException.ThrowIfNull(write);
        if (_tensors.Exists(t => t.Name == name)) throw new ArgumentException($"tensor {name} is present already", nameof(name));
        if (dims.Length is 0 or > GgufFile.MaxDims || Array.Exists(dims, d => d < 0))
            throw new ArgumentException($"tensor {name}: shape [{string.Join(", ", dims)}] is not 1 to {GgufFile.MaxDims} dimensions of size >= 0", nameof(dims));
        GgmlTypeTraits tr = GgmlTypeTraits.Of(type);
        long n = 1;
        foreach (long d in dims) n = checked(n * d);
        if (type == GgmlType.I2_S ? n % tr.BlockSize != 0 : dims[0] % tr.BlockSize != 0)
            throw new ArgumentException($"tensor {name}: shape [{string.Join(", ", dims)}] is not whole {tr.Name} blocks of {tr.BlockSize}", nameof(dims));
        long expected = tr.TensorBytes(n);
        if (byteSize != expected)
            throw new ArgumentException($"tensor {name}: {byteSize} bytes given, {tr.Name} [{string.Join(", ", dims)}] takes {expected}", nameof(byteSize));
        _tensors.Add((name, type, (long[])dims.Clone(), byteSize, write));
    }

    // ---- writing ----

    /// <summary>Writes the file to <paramref name="path"/> atomically (a temporary file renamed over it).</summary>
    public void Write(string path) => AtomicFile.Write(path, WriteTo);

    /// <summary>Writes the file to <paramref name="stream"/>.</summary>
    /// <exception cref="InvalidOperationException">A tensor's writer wrote a different number of bytes than declared.</exception>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var header = new MemoryStream();
        var w = new BinaryWriter(header, new UTF8Encoding(false), leaveOpen: true);
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((long)_tensors.Count);
        w.Write((long)_kv.Count);
        foreach (var (key, type, element, value) in _kv)
        {
            WriteString(w, key);
            w.Write((uint)type);
            if (type == GgufValueType.Array)
            {
                w.Write((uint)element);
                switch (value)
                {
                    case string[] s: w.Write((long)s.Length); foreach (var x in s) WriteString(w, x); break;
                    case bool[] b: w.Write((long)b.Length); foreach (var x in b) w.Write(x); break;
                    case double[] d: w.Write((long)d.Length); foreach (var x in d) WriteScalar(w, element, x); break;
                    case long[] l: w.Write((long)l.Length); foreach (var x in l) WriteScalar(w, element, x); break;
                }
            }
            else if (value is string s) WriteString(w, s);
            else WriteScalar(w, type, value);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write(d);
            w.Write((uint)t.Type);
            w.Write(offset);
            offsets[i] = offset;
            offset = Align(offset + t.Bytes);
        }
        w.Flush();
        long pad = Align(header.Length) - header.Length;
        header.Write(new byte[pad]);
        header.Position = 0;
        header.CopyTo(stream);
        long written = 0;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            if (written < offsets[i]) { stream.Write(new byte[offsets[i] - written]); written = offsets[i]; }
            var counting = new CountingStream(stream);
            t.Write(counting);
            if (counting.Count != t.Bytes)
                throw new InvalidOperationException($"tensor {t.Name}: {counting.Count} bytes written, {t.Bytes} declared");
            written += t.Bytes;
        }
    }

    private long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        w.Write((long)b.Length);
        w.Write(b);
    }

    private static void WriteScalar(BinaryWriter w, GgufValueType type, object v)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)(long)v); break;
            case GgufValueType.Int8: w.Write((sbyte)(long)v); break;
            case GgufValueType.UInt16: w.Write((ushort)(long)v); break;
            case GgufValueType.Int16: w.Write((short)(long)v); break;
            case GgufValueType.UInt32: w.Write((uint)(long)v); break;
            case GgufValueType.Int32: w.Write((int)(long)v); break;
            case GgufValueType.UInt64: w.Write((ulong)(long)v); break;
            case GgufValueType.Int64: w.Write((long)v); break;
            case GgufValueType.Float32: w.Write((float)(double)v); break;
            case GgufValueType.Float64: w.Write((double)v); break;
            case GgufValueType.Bool: w.Write((bool)v); break;
            default: throw new InvalidOperationException($"{type} is not a scalar");
        }
    }

    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Count { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Count; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Count += count; }
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Count += buffer.Length; }
    }

    // ---- encoders ----

    /// <summary>Encodes <paramref name="values"/> (whole blocks) as <paramref name="type"/>: F32, F16, BF16 (ggml's
    /// rounding) or Q8_0 (ggml's reference quantizer).</summary>
    /// <exception cref="ArgumentException">The type has no float encoder, or the count is not whole blocks.</exception>
    public static byte[] EncodeFloats(GgmlType type, ReadOnlySpan<float> values)
    {
        GgmlTypeTraits tr = GgmlTypeTraits.Of(type);
        if (tr.FromFloat is null) throw new ArgumentException($"Rotor has no float encoder for {tr.Name}", nameof(type));
        var dst = new byte[tr.TensorBytes(values.Length)];
        tr.FromFloat(values, dst);
        return dst;
    }

    /// <summary>F32 bytes of <paramref name="values"/>.</summary>
    public static byte[] EncodeF32(ReadOnlySpan<float> values) => EncodeFloats(GgmlType.F32, values);
    /// <summary>F16 bytes of <paramref name="values"/> (round to nearest even).</summary>
    public static byte[] EncodeF16(ReadOnlySpan<float> values) => EncodeFloats(GgmlType.F16, values);
    /// <summary>Q8_0 bytes of <paramref name="values"/> (a multiple of 32).</summary>
    public static byte[] EncodeQ8_0(ReadOnlySpan<float> values) => EncodeFloats(GgmlType.Q8_0, values);

    /// <summary>TQ1_0 bytes of <paramref name="m"/> (ggml dims [Cols, Rows]); each block's scale is its row's scale
    /// in f16, or 0 for an all-zero block (as ggml's quantizer gives for weights trit * scale).</summary>
    /// <exception cref="ArgumentException">Cols is not a multiple of 256.</exception>
    public static byte[] EncodeTQ1_0(TernaryMatrix m) => EncodeTQ(m, GgmlType.TQ1_0);

    /// <summary>TQ2_0 bytes of <paramref name="m"/>; scales as <see cref="EncodeTQ1_0"/>.</summary>
    /// <exception cref="ArgumentException">Cols is not a multiple of 256.</exception>
    public static byte[] EncodeTQ2_0(TernaryMatrix m) => EncodeTQ(m, GgmlType.TQ2_0);

    private static byte[] EncodeTQ(TernaryMatrix m, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(m);
        GgmlTypeTraits tr = GgmlTypeTraits.Of(type);
        if (m.Cols % GgmlQuants.QK_K != 0)
            throw new ArgumentException($"{tr.Name} needs rows of whole 256-weight blocks; {m.Cols} columns is not (store such a tensor as F16)", nameof(m));
        int blocks = m.Cols / GgmlQuants.QK_K;
        var dst = new byte[(long)m.Rows * blocks * tr.BlockBytes];
        var row = new sbyte[m.Cols];
        for (int r = 0; r < m.Rows; r++)
        {
            m.GetRow(r, row);
            for (int b = 0; b < blocks; b++)
            {
                ReadOnlySpan<sbyte> t = row.AsSpan(b * GgmlQuants.QK_K, GgmlQuants.QK_K);
                float d = t.ContainsAnyExcept((sbyte)0) ? m.ScaleOf(r) : 0f;
                Span<byte> blk = dst.AsSpan((int)(((long)r * blocks + b) * tr.BlockBytes), tr.BlockBytes);
                if (type == GgmlType.TQ1_0) GgmlQuants.PackTQ1_0(t, d, blk); else GgmlQuants.PackTQ2_0(t, d, blk);
            }
        }
        return dst;
    }

    /// <summary>I2_S bytes of <paramref name="m"/> in bitnet.cpp's x86 layout: Rows * Cols / 4 bytes of codes (blocks
    /// of 128 over the flattened matrix, as bitnet.cpp's quantize_i2_s), then a 32-byte tail whose first 4 bytes are
    /// the f32 scale and the rest zero.</summary>
    /// <exception cref="ArgumentException">Rows * Cols is not a multiple of 128, or the rows have different scales
    /// (I2_S holds one scale a tensor).</exception>
    public static byte[] EncodeI2S(TernaryMatrix m)
    {
        ArgumentNullException.ThrowIfNull(m);
        long n = (long)m.Rows * m.Cols;
        if (n % GgmlQuants.QK_I2_S != 0)
            throw new ArgumentException($"i2_s stores whole 128-weight blocks; {m.Rows} x {m.Cols} is not", nameof(m));
        float s = m.ScaleOf(0);
        for (int r = 1; r < m.Rows; r++)
            if (m.ScaleOf(r) != s) throw new ArgumentException($"i2_s holds one scale a tensor; row {r} has {m.ScaleOf(r)}, row 0 {s}", nameof(m));
        var dst = new byte[n / 4 + GgmlQuants.I2STailBytes];
        GgmlQuants.PackI2S(m.ToTrits(), dst);
        BinaryPrimitives.WriteSingleLittleEndian(dst.AsSpan((int)(n / 4)), s);
        return dst;
    }
}

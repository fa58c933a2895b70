using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace Rotor.Lm.Gguf;

/// <summary>The value types of GGUF metadata (the ids are the file format).</summary>
public enum GgufValueType : uint
{
    /// <summary>uint8.</summary>
    UInt8 = 0,
    /// <summary>int8.</summary>
    Int8 = 1,
    /// <summary>uint16.</summary>
    UInt16 = 2,
    /// <summary>int16.</summary>
    Int16 = 3,
    /// <summary>uint32.</summary>
    UInt32 = 4,
    /// <summary>int32.</summary>
    Int32 = 5,
    /// <summary>float32.</summary>
    Float32 = 6,
    /// <summary>bool (one byte, 0 or 1).</summary>
    Bool = 7,
    /// <summary>UTF-8 string: uint64 length, bytes.</summary>
    String = 8,
    /// <summary>Array: uint32 element type, uint64 count, elements.</summary>
    Array = 9,
    /// <summary>uint64.</summary>
    UInt64 = 10,
    /// <summary>int64.</summary>
    Int64 = 11,
    /// <summary>float64.</summary>
    Float64 = 12,
}

/// <summary>A tensor of a GGUF file: its name, storage type, ggml shape (<c>Dims[0]</c> is the row length, the fastest
/// varying index), absolute byte offset in the file and byte size.</summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dims, long Offset, long ByteSize)
{
    /// <summary>Weights in the tensor: the product of <see cref="Dims"/>.</summary>
    public long Elements { get { long n = 1; foreach (long d in Dims) n *= d; return n; } }
    /// <summary>Weights a row: <c>Dims[0]</c>.</summary>
    public long RowLength => Dims[0];
    /// <summary>Rows: the product of <c>Dims[1..]</c> (1 for a vector).</summary>
    public long Rows => RowLength == 0 ? 0 : Elements / RowLength;
    /// <summary>The type's traits.</summary>
    public GgmlTypeTraits Traits => GgmlTypeTraits.Of(Type);
    /// <summary>"blk.0.attn_q.weight tq2_0 [256, 256]".</summary>
    public override string ToString() => $"{Name} {Traits.Name} [{string.Join(", ", Dims)}]";
}

/// <summary>
/// A GGUF file (versions 3 and 2, little-endian), memory-mapped read-only: the header is parsed and every field
/// checked on <see cref="Open"/>; tensor data stays in the mapping until read (<see cref="GetData"/>).
/// <para>Layout: "GGUF", uint32 version, int64 tensor count, int64 metadata count; metadata (string key, uint32 value
/// type, value); tensor infos (string name, uint32 dims, int64 ne[dims], uint32 ggml type, uint64 offset from the
/// data start); padding to the alignment (<c>general.alignment</c>, default 32); tensor data. Strings are a uint64
/// byte count and UTF-8 bytes.</para>
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>The alignment of tensor data when <c>general.alignment</c> is absent.</summary>
    public const long DefaultAlignment = 32;
    /// <summary>Most dimensions a ggml tensor has.</summary>
    public const int MaxDims = 4;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly Dictionary<string, object> _metadata;
    private readonly Dictionary<string, (GgufValueType Type, GgufValueType Element)> _types;
    private readonly List<GgufTensorInfo> _tensors;
    private readonly Dictionary<string, GgufTensorInfo> _byName;

    /// <summary>The path the file was opened with.</summary>
    public string Path { get; }
    /// <summary>Format version (2 or 3).</summary>
    public uint Version { get; }
    /// <summary>Alignment of tensor data (bytes, a power of two).</summary>
    public long Alignment { get; }
    /// <summary>Absolute offset of the tensor data section.</summary>
    public long DataOffset { get; }
    /// <summary>File length in bytes.</summary>
    public long Length { get; }
    /// <summary>Metadata, values normalized: string, bool, long (every integer type), double (float32/64), and arrays
    /// as string[], long[], double[], bool[].</summary>
    public IReadOnlyDictionary<string, object> Metadata => _metadata;
    /// <summary>The tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;
    /// <summary><c>general.architecture</c>, or null.</summary>
    public string? Architecture => TryGetString("general.architecture", out var a) ? a : null;

    private GgufFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* p, long length)
    {
        Path = path; _map = map; _view = view; _base = p; Length = length;
        _metadata = new(StringComparer.Ordinal); _types = new(StringComparer.Ordinal);
        _tensors = []; _byName = new(StringComparer.Ordinal);
        try
        {
            var r = new HeaderReader(this, p, length);
            (Version, Alignment, DataOffset) = r.Parse();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Maps <paramref name="path"/> and checks its header: magic, version, every count, string, type id and
    /// array length, tensor shapes and types, the alignment, and that every tensor's bytes lie inside the file without
    /// overlapping another's.</summary>
    /// <exception cref="RotorException">The file is missing, unreadable, truncated or malformed; the message names the
    /// file and the field or tensor.</exception>
    public static GgufFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream fs;
        try { fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new RotorException($"{path}: cannot open: {e.Message}", e);
        }
        long length = fs.Length;
        if (length < 24)
        {
            fs.Dispose();
            throw new RotorException($"{path}: truncated: {length} bytes, a GGUF header takes at least 24");
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor view;
        try
        {
            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            map?.Dispose();
            fs.Dispose();
            throw new RotorException($"{path}: cannot map: {e.Message}", e);
        }
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        return new GgufFile(path, map, view, p + view.PointerOffset, length);
    }

    /// <summary>Releases the mapping; spans from <see cref="GetData"/> must not be used afterwards.</summary>
    public void Dispose()
    {
        if (_base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view.Dispose();
        _map.Dispose();
    }

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public GgufTensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    /// <exception cref="RotorException">No tensor has that name.</exception>
    public GgufTensorInfo Get(string name) => Find(name) ?? throw Error($"tensor {name} is missing");

    /// <summary>The bytes of tensor <paramref name="t"/> in the mapping (no copy).</summary>
    /// <exception cref="RotorException">The tensor is not one of this file's, or is larger than a span holds.</exception>
    public ReadOnlySpan<byte> GetData(GgufTensorInfo t)
    {
        ArgumentNullException.ThrowIfNull(t);
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_byName.TryGetValue(t.Name, out var own) || own.Offset != t.Offset || own.ByteSize != t.ByteSize || own.Type != t.Type)
            throw Error($"tensor {t.Name} is not a tensor of this file");
        if (t.ByteSize > int.MaxValue) throw Error($"tensor {t.Name}: {t.ByteSize} bytes, more than one span holds (2 GiB)");
        return new ReadOnlySpan<byte>(_base + t.Offset, (int)t.ByteSize);
    }

    /// <summary><paramref name="count"/> bytes of the file from <paramref name="offset"/> (no copy).</summary>
    public ReadOnlySpan<byte> GetBytes(long offset, int count)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (offset < 0 || count < 0 || offset > Length - count)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset}..{offset + count} are outside the file ({Length} bytes)");
        return new ReadOnlySpan<byte>(_base + offset, count);
    }

    // ---- metadata lookups ----

    /// <summary>Whether <paramref name="key"/> is present.</summary>
    public bool Contains(string key) => _metadata.ContainsKey(key);

    /// <summary>The stored type of <paramref name="key"/> and, for arrays, of its elements.</summary>
    /// <exception cref="RotorException">The key is missing.</exception>
    public (GgufValueType Type, GgufValueType ElementType) TypeOf(string key) =>
        _types.TryGetValue(key, out var t) ? t : throw Error($"metadata key {key} is missing");

    /// <summary>A string value.</summary><exception cref="RotorException">Missing or not a string.</exception>
    public string GetString(string key) => TryGetString(key, out var v) ? v : throw Missing(key, "a string");
    /// <summary>An integer value (any integer type).</summary><exception cref="RotorException">Missing or not an integer.</exception>
    public long GetInt(string key) => TryGetInt(key, out var v) ? v : throw Missing(key, "an integer");
    /// <summary>A float value (float32/64, or an integer).</summary><exception cref="RotorException">Missing or not a number.</exception>
    public double GetFloat(string key) => TryGetFloat(key, out var v) ? v : throw Missing(key, "a number");
    /// <summary>A bool value.</summary><exception cref="RotorException">Missing or not a bool.</exception>
    public bool GetBool(string key) => TryGetBool(key, out var v) ? v : throw Missing(key, "a bool");
    /// <summary>A string array.</summary><exception cref="RotorException">Missing or not a string array.</exception>
    public string[] GetStringArray(string key) => TryGetStringArray(key, out var v) ? v : throw Missing(key, "an array of strings");
    /// <summary>An integer array.</summary><exception cref="RotorException">Missing or not an integer array.</exception>
    public long[] GetIntArray(string key) => TryGetIntArray(key, out var v) ? v : throw Missing(key, "an array of integers");
    /// <summary>A float array.</summary><exception cref="RotorException">Missing or not a float array.</exception>
    public double[] GetFloatArray(string key) => TryGetFloatArray(key, out var v) ? v : throw Missing(key, "an array of floats");

    /// <summary>An integer value, or <paramref name="fallback"/> when the key is absent.</summary>
    public long GetInt(string key, long fallback) => TryGetInt(key, out var v) ? v : fallback;
    /// <summary>A float value, or <paramref name="fallback"/> when the key is absent.</summary>
    public double GetFloat(string key, double fallback) => TryGetFloat(key, out var v) ? v : fallback;

    /// <summary>A string value if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetString(string key, out string value) => TryGet(key, "a string", out value);
    /// <summary>An integer value if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetInt(string key, out long value) => TryGet(key, "an integer", out value);
    /// <summary>A bool value if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetBool(string key, out bool value) => TryGet(key, "a bool", out value);
    /// <summary>A string array if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetStringArray(string key, out string[] value) => TryGet(key, "an array of strings", out value);
    /// <summary>An integer array if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetIntArray(string key, out long[] value) => TryGet(key, "an array of integers", out value);
    /// <summary>A float array if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetFloatArray(string key, out double[] value) => TryGet(key, "an array of floats", out value);

    /// <summary>A float value (float32/64 or an integer) if present.</summary><exception cref="RotorException">Present with another type.</exception>
    public bool TryGetFloat(string key, out double value)
    {
        value = 0;
        if (!_metadata.TryGetValue(key, out var o)) return false;
        value = o switch { double d => d, long l => l, _ => throw WrongType(key, "a number") };
        return true;
    }

    private bool TryGet<T>(string key, string expected, out T value)
    {
        value = default!;
        if (!_metadata.TryGetValue(key, out var o)) return false;
        if (o is not T t) throw WrongType(key, expected);
        value = t;
        return true;
    }

    private RotorException Missing(string key, string expected) =>
        _metadata.ContainsKey(key) ? WrongType(key, expected) : Error($"metadata key {key} is missing (expected {expected})");

    private RotorException WrongType(string key, string expected)
    {
        var (type, element) = _types[key];
        string stored = type == GgufValueType.Array ? $"an array of {element}" : type.ToString();
        return Error($"metadata key {key} is {stored}, expected {expected}");
    }

    private RotorException Error(string what) => new($"{Path}: {what}");

    // ---- header parsing ----

    /// <summary>Reads the header with a bounds check before every read; errors name the file and the field.</summary>
    private sealed class HeaderReader(GgufFile file, byte* p, long length)
    {
        private long _pos;

        public (uint Version, long Alignment, long DataOffset) Parse()
        {
            ReadOnlySpan<byte> magic = Bytes(4, "magic");
            if (!magic.SequenceEqual("GGUF"u8))
                throw Error($"not a GGUF file (magic {Show(magic)}, expected \"GGUF\")");
            uint version = U32("version");
            if (version != 3 && version != 2)
                throw Error(version is 1 ? "version 1 (32-bit counts) is not supported; Rotor reads versions 2 and 3"
                    : $"version {version} is not supported (Rotor reads little-endian versions 2 and 3{(BinaryPrimitives.ReverseEndianness(version) is 2 or 3 ? "; this looks like a big-endian file" : "")})");
            long nTensors = Count("tensor count", 8 + 4 + 8 + 4 + 8);
            long nKv = Count("metadata count", 8 + 4 + 1);

            for (long i = 0; i < nKv; i++)
            {
                string key = String($"metadata key {i}");
                uint type = U32($"metadata key {key}: value type");
                if (file._types.ContainsKey(key)) throw Error($"metadata key {key} appears twice");
                var (value, element) = Value(key, type);
                file._metadata[key] = value;
                file._types[key] = ((GgufValueType)type, element);
            }

            long alignment = DefaultAlignment;
            if (file._metadata.TryGetValue("general.alignment", out var a))
            {
                if (a is not long al || al <= 0 || (al & (al - 1)) != 0 || al > 1 << 30)
                    throw Error($"metadata key general.alignment = {Show(a)}: the alignment must be a power of two");
                alignment = al;
            }

            var infos = new List<(string Name, GgmlTypeTraits Traits, long[] Dims, long Rel, long Bytes)>();
            for (long i = 0; i < nTensors; i++)
            {
                string name = String($"tensor info {i}: name");
                if (file._byName.ContainsKey(name) || infos.Exists(t => t.Name == name)) throw Error($"tensor {name} appears twice");
                uint nDims = U32($"tensor {name}: dimension count");
                if (nDims is 0 or > MaxDims) throw Error($"tensor {name}: {nDims} dimensions (1 to {MaxDims} allowed)");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    dims[d] = I64($"tensor {name}: dimension {d}");
                    if (dims[d] < 0) throw Error($"tensor {name}: dimension {d} is {dims[d]}");
                    if (dims[d] != 0 && elements > long.MaxValue / dims[d]) throw Error($"tensor {name}: shape [{string.Join(", ", dims)}] overflows");
                    elements *= dims[d];
                }
                uint typeId = U32($"tensor {name}: type");
                if (!GgmlTypeTraits.TryGet(typeId, out var traits))
                    throw Error($"tensor {name}: " + (Enum.IsDefined((GgmlType)typeId)
                        ? $"{GgmlTypeTraits.Describe(typeId)} is not supported; quantize the model to I2_S, TQ1_0 or TQ2_0 instead"
                        : $"type {typeId} is unknown"));
                // I2_S blocks run over the flattened tensor (bitnet.cpp quantizes rows of any length that way);
                // every other type stores whole blocks a row.
                if (traits.Type == GgmlType.I2_S ? elements % traits.BlockSize != 0 : dims[0] % traits.BlockSize != 0)
                    throw Error($"tensor {name}: {(traits.Type == GgmlType.I2_S ? $"{elements} weights are" : $"row length {dims[0]} is")} not a multiple of the {traits.Name} block ({traits.BlockSize} weights)");
                long rel = I64($"tensor {name}: offset");
                if (rel < 0) throw Error($"tensor {name}: offset {(ulong)rel} is past any file");
                if (rel % alignment != 0) throw Error($"tensor {name}: offset {rel} is not a multiple of the alignment {alignment}");
                if (elements > long.MaxValue / 8) throw Error($"tensor {name}: {elements} weights is too many");
                infos.Add((name, traits, dims, rel, traits.TensorBytes(elements)));
            }

            long dataOffset = (_pos + alignment - 1) / alignment * alignment;
            if (nTensors > 0 && dataOffset > length)
                throw Error($"truncated: tensor data would start at byte {dataOffset}, the file has {length}");
            foreach (var t in infos)
            {
                if (t.Rel > length - dataOffset || t.Bytes > length - dataOffset - t.Rel)
                    throw Error($"tensor {t.Name}: its {t.Bytes} bytes at {dataOffset + t.Rel} run past the end of the file ({length} bytes); truncated?");
                var info = new GgufTensorInfo(t.Name, t.Traits.Type, t.Dims, dataOffset + t.Rel, t.Bytes);
                file._tensors.Add(info);
                file._byName[t.Name] = info;
            }
            var sorted = file._tensors.Where(t => t.ByteSize > 0).OrderBy(t => t.Offset).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].ByteSize)
                    throw Error($"tensors {sorted[i - 1].Name} (bytes {sorted[i - 1].Offset}..{sorted[i - 1].Offset + sorted[i - 1].ByteSize}) and {sorted[i].Name} (from {sorted[i].Offset}) overlap");
            return (version, alignment, dataOffset);
        }

        private (object Value, GgufValueType Element) Value(string key, uint type)
        {
            string field = $"metadata key {key}";
            switch ((GgufValueType)type)
            {
                case GgufValueType.String: return (String(field), default);
                case GgufValueType.Bool: return (Bool(field), default);
                case GgufValueType.Float32: return ((double)F32(field), default);
                case GgufValueType.Float64: return (F64(field), default);
                case GgufValueType.Array:
                    break;
                default:
                    if (IntSize(type) > 0) return (Int(type, field), default);
                    throw Error($"{field}: value type {type} is unknown");
            }
            uint et = U32($"{field}: array element type");
            long count = I64($"{field}: array length");
            var e = (GgufValueType)et;
            int minSize = e switch
            {
                GgufValueType.String => 8, GgufValueType.Bool => 1, GgufValueType.Float32 => 4, GgufValueType.Float64 => 8,
                GgufValueType.Array => throw Error($"{field}: arrays of arrays are not supported"),
                _ => IntSize(et) > 0 ? IntSize(et) : throw Error($"{field}: array element type {et} is unknown"),
            };
            if (count < 0 || count > (length - _pos) / minSize)
                throw Error($"{field}: array length {(ulong)count} of {e} needs more bytes than the file has left ({length - _pos}); truncated?");
            switch (e)
            {
                case GgufValueType.String:
                {
                    var a = new string[count];
                    for (long i = 0; i < count; i++) a[i] = String($"{field}[{i}]");
                    return (a, e);
                }
                case GgufValueType.Bool:
                {
                    var a = new bool[count];
                    for (long i = 0; i < count; i++) a[i] = Bool($"{field}[{i}]");
                    return (a, e);
                }
                case GgufValueType.Float32 or GgufValueType.Float64:
                {
                    var a = new double[count];
                    for (long i = 0; i < count; i++) a[i] = e == GgufValueType.Float32 ? F32(field) : F64(field);
                    return (a, e);
                }
                default:
                {
                    var a = new long[count];
                    for (long i = 0; i < count; i++) a[i] = Int(et, $"{field}[{i}]");
                    return (a, e);
                }
            }
        }

        private static int IntSize(uint type) => (GgufValueType)type switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 => 8,
            _ => 0,
        };

        private long Int(uint type, string field)
        {
            ReadOnlySpan<byte> b = Bytes(IntSize(type), field);
            switch ((GgufValueType)type)
            {
                case GgufValueType.UInt8: return b[0];
                case GgufValueType.Int8: return (sbyte)b[0];
                case GgufValueType.UInt16: return BinaryPrimitives.ReadUInt16LittleEndian(b);
                case GgufValueType.Int16: return BinaryPrimitives.ReadInt16LittleEndian(b);
                case GgufValueType.UInt32: return BinaryPrimitives.ReadUInt32LittleEndian(b);
                case GgufValueType.Int32: return BinaryPrimitives.ReadInt32LittleEndian(b);
                case GgufValueType.Int64: return BinaryPrimitives.ReadInt64LittleEndian(b);
                default:
                    ulong u = BinaryPrimitives.ReadUInt64LittleEndian(b);
                    if (u > long.MaxValue) throw Error($"{field}: uint64 value {u} is larger than Rotor reads (2^63 - 1)");
                    return (long)u;
            }
        }

        private string String(string field)
        {
            long n = I64($"{field} (string length)");
            if (n < 0 || n > length - _pos) throw Error($"{field}: string of {(ulong)n} bytes at byte {_pos} runs past the end of the file ({length} bytes); truncated?");
            if (n > int.MaxValue) throw Error($"{field}: string of {n} bytes is too long");
            ReadOnlySpan<byte> b = Bytes((int)n, field);
            try { return Strict.GetString(b); }
            catch (DecoderFallbackException) { throw Error($"{field}: the string is not valid UTF-8"); }
        }

        private static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

        private bool Bool(string field)
        {
            byte b = Bytes(1, field)[0];
            return b switch { 0 => false, 1 => true, _ => throw Error($"{field}: bool byte is {b}, expected 0 or 1") };
        }

        private float F32(string field) => BinaryPrimitives.ReadSingleLittleEndian(Bytes(4, field));
        private double F64(string field) => BinaryPrimitives.ReadDoubleLittleEndian(Bytes(8, field));
        private uint U32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4, field));
        private long I64(string field) => BinaryPrimitives.ReadInt64LittleEndian(Bytes(8, field));

        private long Count(string field, int minBytesEach)
        {
            long n = I64(field);
            if (n < 0 || n > (length - _pos) / minBytesEach)
                throw Error($"{field} {(ulong)n} is more than the file's {length} bytes can hold; corrupt or truncated header");
            return n;
        }

        private ReadOnlySpan<byte> Bytes(int n, string field)
        {
            if (n > length - _pos)
                throw Error($"truncated: {field} needs {n} bytes at byte {_pos}, the file has {length}");
            var s = new ReadOnlySpan<byte>(p + _pos, n);
            _pos += n;
            return s;
        }

        private static string Show(ReadOnlySpan<byte> b)
        {
            var sb = new StringBuilder("\"");
            foreach (byte c in b) sb.Append(c is >= 32 and < 127 ? ((char)c).ToString() : $"\\x{c:x2}");
            return sb.Append('"').ToString();
        }

        private static string Show(object o) => o switch
        {
            long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
            double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            string s => $"\"{s}\"",
            _ => o.GetType().Name,
        };

        private RotorException Error(string what) => file.Error(what);
    }
}

using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Rotor.IO;

/// <summary>Element types of a safetensors tensor that Rotor reads or writes.</summary>
public enum SafeDType
{
    /// <summary>32-bit IEEE float.</summary>
    F32,
    /// <summary>16-bit IEEE float.</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of a float32.</summary>
    BF16,
    /// <summary>Unsigned byte (packed ternary weights).</summary>
    U8,
    /// <summary>64-bit signed integer.</summary>
    I64,
    /// <summary>32-bit signed integer.</summary>
    I32,
}

/// <summary>One tensor of a safetensors file: its type, shape and bytes (little-endian).</summary>
/// <param name="Name">Its key in the header.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Sizes, outermost first.</param>
/// <param name="Data">Raw little-endian bytes, length = elements * element size.</param>
public sealed record SafeTensor(string Name, SafeDType DType, long[] Shape, byte[] Data)
{
    /// <summary>Number of elements.</summary>
    public long Elements => Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>Bytes an element of <paramref name="t"/> takes.</summary>
    public static int SizeOf(SafeDType t) => t switch
    {
        SafeDType.F32 or SafeDType.I32 => 4,
        SafeDType.F16 or SafeDType.BF16 => 2,
        SafeDType.U8 => 1,
        SafeDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>A float32 tensor.</summary>
    public static SafeTensor FromFloats(string name, ReadOnlySpan<float> values, params long[] shape)
    {
        long n = shape.Aggregate(1L, (a, d) => a * d);
        if (n != values.Length) throw new ArgumentException($"tensor {name}: {values.Length} values for shape [{string.Join(", ", shape)}]");
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4 * i), values[i]);
        return new SafeTensor(name, SafeDType.F32, shape, b);
    }

    /// <summary>The values as float32, converted from F32, F16 or BF16.</summary>
    /// <exception cref="RotorException">The tensor is of another type.</exception>
    public float[] ToFloats(string where = "")
    {
        long n = Elements;
        var f = new float[n];
        switch (DType)
        {
            case SafeDType.F32:
                for (int i = 0; i < n; i++) f[i] = BinaryPrimitives.ReadSingleLittleEndian(Data.AsSpan(4 * i));
                break;
            case SafeDType.F16:
                for (int i = 0; i < n; i++) f[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(Data.AsSpan(2 * i));
                break;
            case SafeDType.BF16:
                for (int i = 0; i < n; i++) f[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(Data.AsSpan(2 * i)) << 16);
                break;
            default:
                throw new RotorException($"{where}tensor {Name} has type {DType}, expected a float type (F32, F16 or BF16)");
        }
        return f;
    }
}

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// (<c>{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "value"}}</c>),
/// then the tensor bytes. Rotor adds <c>rotor.sha256</c> to the metadata, the SHA-256 of the data section, and
/// <c>rotor.header_sha256</c>, that of the rest of the metadata and the tensor entries (<see cref="SafeTensors.HeaderDigest"/>), and checks them
/// on load when present (files of other tools load without it). Writes are atomic.
/// </summary>
public static class SafeTensors
{
    /// <summary>The metadata key holding the hex SHA-256 of the data section.</summary>
    public const string HashKey = "rotor.sha256";
    /// <summary>Metadata key of the SHA-256 of the header's meaning (<see cref="HeaderDigest"/>): every other metadata
    /// entry and every tensor's name, dtype, shape and offsets, so that a changed activation width, format or shape is
    /// caught like changed data. Files without it (older files, other tools' files) are read unchecked.</summary>
    public const string HeaderHashKey = "rotor.header_sha256";

    /// <summary>The SHA-256 (hex) of the metadata other than the two hashes, sorted by key, and the tensor entries in
    /// file order: <c>key\0value\0</c> each, then <c>name\0dtype\0d0,d1,..\0begin,end\0</c> each, UTF-8.</summary>
    public static string HeaderDigest(IReadOnlyDictionary<string, string> metadata, IEnumerable<(string Name, SafeDType DType, long[] Shape, long Begin, long End)> tensors)
    {
        ArgumentNullException.ThrowIfNull(metadata); ArgumentNullException.ThrowIfNull(tensors);
        var sb = new StringBuilder();
        foreach (var kv in metadata.Where(kv => kv.Key is not (HashKey or HeaderHashKey)).OrderBy(kv => kv.Key, StringComparer.Ordinal))
            sb.Append(kv.Key).Append('\0').Append(kv.Value).Append('\0');
        foreach (var t in tensors)
            sb.Append(t.Name).Append('\0').Append(t.DType).Append('\0').AppendJoin(',', t.Shape).Append('\0').Append(t.Begin).Append(',').Append(t.End).Append('\0');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }
    private const long MaxHeader = 100L << 20;

    /// <summary>Writes <paramref name="tensors"/> and <paramref name="metadata"/> to <paramref name="path"/> atomically.</summary>
    public static void Write(string path, IEnumerable<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        byte[] bytes = ToBytes(tensors, metadata);
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>The bytes of a safetensors file (header padded with spaces to a multiple of 8).</summary>
    public static byte[] ToBytes(IEnumerable<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>();
        long total = 0;
        foreach (var t in list)
        {
            if (!names.Add(t.Name)) throw new ArgumentException($"tensor name {t.Name} appears twice");
            if (t.Name == "__metadata__") throw new ArgumentException("__metadata__ is not a tensor name");
            if (t.Data.LongLength != t.Elements * SafeTensor.SizeOf(t.DType))
                throw new ArgumentException($"tensor {t.Name}: {t.Data.Length} bytes for {t.DType} shape [{string.Join(", ", t.Shape)}]");
            total += t.Data.LongLength;
        }
        var data = new byte[total];
        long off = 0;
        foreach (var t in list) { t.Data.CopyTo(data, off); off += t.Data.LongLength; }
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null) foreach (var kv in metadata) meta[kv.Key] = kv.Value;
        meta[HashKey] = Convert.ToHexStringLower(SHA256.HashData(data));
        var entries = new List<(string, SafeDType, long[], long, long)>();
        off = 0;
        foreach (var t in list) { entries.Add((t.Name, t.DType, t.Shape, off, off + t.Data.LongLength)); off += t.Data.LongLength; }
        meta[HeaderHashKey] = HeaderDigest(meta, entries);

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            foreach (var kv in meta) w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            off = 0;
            foreach (var t in list)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToString());
                w.WriteStartArray("shape"); foreach (long d in t.Shape) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(off); w.WriteNumberValue(off + t.Data.LongLength); w.WriteEndArray();
                w.WriteEndObject();
                off += t.Data.LongLength;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        byte[] header = ms.ToArray();
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    /// <summary>Reads and validates a safetensors file.</summary>
    /// <exception cref="RotorException">Missing, truncated or corrupt file, bad header, unknown dtype, offsets that
    /// disagree with the shapes, or a hash mismatch; the message names the file and the tensor or field.</exception>
    public static SafeTensorFile Read(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
        byte[] raw;
        try { raw = File.ReadAllBytes(path); }
        catch (IOException e) { throw new RotorException($"{path}: cannot read: {e.Message}", e); }
        return Parse(raw, path);
    }

    /// <summary>Parses the bytes of a safetensors file; <paramref name="name"/> names it in errors.</summary>
    public static SafeTensorFile Parse(byte[] raw, string name)
    {
        if (raw.Length < 8) throw new RotorException($"{name}: truncated safetensors file: {raw.Length} bytes, the header length alone takes 8");
        ulong hlen = BinaryPrimitives.ReadUInt64LittleEndian(raw);
        if (hlen < 2 || hlen > MaxHeader) throw new RotorException($"{name}: safetensors header length {hlen} is not plausible (2 to {MaxHeader} bytes)");
        if ((long)hlen > raw.Length - 8) throw new RotorException($"{name}: truncated safetensors file: header says {hlen} bytes, only {raw.Length - 8} follow");
        int dataStart = 8 + (int)hlen;
        long dataLen = raw.Length - dataStart;
        // The JSON reader checks UTF-8 only when a string is read: a header that is not UTF-8 is refused here, whole.
        if (!System.Text.Unicode.Utf8.IsValid(raw.AsSpan(8, (int)hlen))) throw new RotorException($"{name}: safetensors header is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(raw.AsMemory(8, (int)hlen)); }
        catch (JsonException e) { throw new RotorException($"{name}: safetensors header is not valid JSON: {e.Message}", e); }
        try { return Interpret(doc, raw, name, dataStart, dataLen); }
        // Escapes that decode to invalid text (a lone surrogate), sizes whose product overflows.
        catch (Exception e) when (e is InvalidOperationException or OverflowException)
        {
            throw new RotorException($"{name}: safetensors header is invalid: {e.Message}", e);
        }
        finally { doc.Dispose(); }
    }

    private static SafeTensorFile Interpret(JsonDocument doc, byte[] raw, string name, int dataStart, long dataLen)
    {
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new RotorException($"{name}: safetensors header is not a JSON object");
            var meta = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new Dictionary<string, SafeTensor>(StringComparer.Ordinal);
            var order = new List<string>();
            var ranges = new List<(long Begin, long End, string Name)>();
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    if (p.Value.ValueKind != JsonValueKind.Object) throw new RotorException($"{name}: __metadata__ is not an object");
                    foreach (JsonProperty m in p.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw new RotorException($"{name}: __metadata__.{m.Name} is not a string");
                        meta[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                string where = $"{name}: tensor {p.Name}";
                if (p.Value.ValueKind != JsonValueKind.Object) throw new RotorException($"{where}: entry is not an object");
                if (!p.Value.TryGetProperty("dtype", out JsonElement dt) || dt.ValueKind != JsonValueKind.String) throw new RotorException($"{where}: missing dtype");
                SafeDType dtype = dt.GetString() switch
                {
                    "F32" => SafeDType.F32, "F16" => SafeDType.F16, "BF16" => SafeDType.BF16, "U8" => SafeDType.U8,
                    "I64" => SafeDType.I64, "I32" => SafeDType.I32,
                    var s => throw new RotorException($"{where}: dtype {s} is not supported (F32, F16, BF16, U8, I32, I64)"),
                };
                if (!p.Value.TryGetProperty("shape", out JsonElement sh) || sh.ValueKind != JsonValueKind.Array) throw new RotorException($"{where}: missing shape");
                var shape = new List<long>();
                foreach (JsonElement d in sh.EnumerateArray())
                {
                    if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0) throw new RotorException($"{where}: shape entry {d} is not a non-negative integer");
                    shape.Add(v);
                }
                if (!p.Value.TryGetProperty("data_offsets", out JsonElement of) || of.ValueKind != JsonValueKind.Array || of.GetArrayLength() != 2)
                    throw new RotorException($"{where}: data_offsets must be [begin, end]");
                if (!of[0].TryGetInt64(out long begin) || !of[1].TryGetInt64(out long end) || begin < 0 || end < begin)
                    throw new RotorException($"{where}: data_offsets [{of[0]}, {of[1]}] are not a valid range");
                if (end > dataLen) throw new RotorException($"{where}: data_offsets end {end} is past the {dataLen} data bytes (truncated file?)");
                long elements = 1;
                foreach (long d in shape) elements = checked(elements * d);
                long bytes = elements * SafeTensor.SizeOf(dtype);
                if (end - begin != bytes) throw new RotorException($"{where}: {end - begin} bytes for {dtype} shape [{string.Join(", ", shape)}], expected {bytes}");
                tensors[p.Name] = new SafeTensor(p.Name, dtype, shape.ToArray(), raw.AsSpan(dataStart + (int)begin, (int)bytes).ToArray());
                order.Add(p.Name);
                ranges.Add((begin, end, p.Name));
            }
            ranges.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < ranges.Count; i++)
                if (ranges[i].Begin < ranges[i - 1].End) throw new RotorException($"{name}: tensors {ranges[i - 1].Name} and {ranges[i].Name} overlap");
            if (meta.TryGetValue(HeaderHashKey, out string? headerHash))
            {
                var span = new Dictionary<string, (long Begin, long End)>(StringComparer.Ordinal);
                foreach (var r in ranges) span[r.Name] = (r.Begin, r.End);
                string actual = HeaderDigest(meta, order.Select(n => (n, tensors[n].DType, tensors[n].Shape, span[n].Begin, span[n].End)));
                if (!string.Equals(actual, headerHash, StringComparison.OrdinalIgnoreCase))
                    throw new RotorException($"{name}: corrupt header: its metadata, dtypes, shapes or offsets do not match {HeaderHashKey}");
            }
            if (meta.TryGetValue(HashKey, out string? hash))
            {
                string actual = Convert.ToHexStringLower(SHA256.HashData(raw.AsSpan(dataStart)));
                if (!string.Equals(actual, hash, StringComparison.OrdinalIgnoreCase))
                    throw new RotorException($"{name}: corrupt file: SHA-256 of the data section is {actual}, the header records {hash}");
            }
            else
            {
                long covered = ranges.Count == 0 ? 0 : ranges[^1].End;
                if (covered != dataLen) throw new RotorException($"{name}: {dataLen - covered} bytes past the last tensor (corrupt file?)");
            }
            return new SafeTensorFile(name, tensors, order, meta);
        }
    }
}

/// <summary>A loaded safetensors file: tensors by name (in header order) and the string metadata.</summary>
public sealed class SafeTensorFile
{
    private readonly Dictionary<string, SafeTensor> _tensors;

    internal SafeTensorFile(string path, Dictionary<string, SafeTensor> tensors, List<string> order, Dictionary<string, string> metadata)
    {
        Path = path; _tensors = tensors; Names = order; Metadata = metadata;
    }

    /// <summary>The file it came from.</summary>
    public string Path { get; }
    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names { get; }
    /// <summary>The <c>__metadata__</c> entries.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>All tensors.</summary>
    public IReadOnlyDictionary<string, SafeTensor> Tensors => _tensors;

    /// <summary>The tensor <paramref name="name"/>.</summary>
    /// <exception cref="RotorException">No such tensor.</exception>
    public SafeTensor Get(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new RotorException($"{Path}: no tensor named {name}");

    /// <summary>The tensor <paramref name="name"/> as float32, checking it has <paramref name="elements"/> elements.</summary>
    public float[] Floats(string name, long elements)
    {
        SafeTensor t = Get(name);
        if (t.Elements != elements) throw new RotorException($"{Path}: tensor {name} has {t.Elements} elements (shape [{string.Join(", ", t.Shape)}]), expected {elements}");
        return t.ToFloats($"{Path}: ");
    }

    /// <summary>The metadata value <paramref name="key"/>.</summary>
    /// <exception cref="RotorException">The key is absent.</exception>
    public string Meta(string key) =>
        Metadata.TryGetValue(key, out var v) ? v : throw new RotorException($"{Path}: __metadata__ has no {key}");
}

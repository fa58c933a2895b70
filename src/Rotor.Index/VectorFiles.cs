using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Rotor.Index;

/// <summary>
/// Input files of <c>rotor index add</c>:
/// <list type="bullet">
/// <item>JSONL: one record a line, <c>{"key": "doc-1", "vector": [0.1, -0.2, ...], "data": {"year": 2021, "lang": "en"}}</c>;
/// <c>data</c> is optional, its values are strings, numbers (integers become long, others double) or booleans.</item>
/// <item>.npy: a little-endian float32 C-order array of shape (n, d); record i gets the key <c>prefix + (start + i)</c>.</item>
/// </list>
/// </summary>
public static class VectorFiles
{
    /// <summary>Reads records from a .jsonl or .npy file, lazily, in batches of <paramref name="batch"/>.</summary>
    /// <exception cref="RotorException">A malformed line or header (file and line named).</exception>
    public static IEnumerable<List<IndexRecord>> Read(string path, int batch = 10_000, string keyPrefix = "", long keyStart = 0)
    {
        if (!File.Exists(path)) throw new RotorException($"input file {path} does not exist");
        return path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) ? ReadNpy(path, batch, keyPrefix, keyStart) : ReadJsonl(path, batch);
    }

    /// <summary>Reads JSONL records in batches.</summary>
    public static IEnumerable<List<IndexRecord>> ReadJsonl(string path, int batch = 10_000)
    {
        var list = new List<IndexRecord>(batch);
        foreach (var (lineNo, line) in TextLines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            list.Add(ParseLine(line, path, lineNo));
            if (list.Count == batch) { yield return list; list = new List<IndexRecord>(batch); }
        }
        if (list.Count > 0) yield return list;
    }

    /// <summary>Parses one JSONL record.</summary>
    public static IndexRecord ParseLine(string line, string path, int lineNo)
    {
        string where = $"{path}:{lineNo}";
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new RotorException($"{where}: a record is a JSON object");
            if (!root.TryGetProperty("key", out var keyEl)) throw new RotorException($"{where}: field 'key' is missing");
            string key = keyEl.ValueKind switch
            {
                JsonValueKind.String => keyEl.GetString()!,
                JsonValueKind.Number => keyEl.GetRawText(),
                _ => throw new RotorException($"{where}: field 'key' must be a string or a number, got {keyEl.ValueKind}"),
            };
            if (!root.TryGetProperty("vector", out var vecEl) || vecEl.ValueKind != JsonValueKind.Array)
                throw new RotorException($"{where}: field 'vector' must be an array of numbers");
            var v = new float[vecEl.GetArrayLength()];
            int i = 0;
            foreach (var x in vecEl.EnumerateArray())
            {
                if (x.ValueKind != JsonValueKind.Number) throw new RotorException($"{where}: vector[{i}] is {x.ValueKind}, expected a number");
                v[i++] = x.GetSingle();
            }
            Dictionary<string, object>? fields = null;
            if (root.TryGetProperty("data", out var data) && data.ValueKind != JsonValueKind.Null)
            {
                if (data.ValueKind != JsonValueKind.Object) throw new RotorException($"{where}: field 'data' must be an object");
                fields = new Dictionary<string, object>(StringComparer.Ordinal);
                foreach (var p in data.EnumerateObject())
                {
                    object? value = p.Value.ValueKind switch
                    {
                        JsonValueKind.String => p.Value.GetString()!,
                        JsonValueKind.Number => p.Value.TryGetInt64(out long l) ? (object)l : p.Value.GetDouble(),
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        JsonValueKind.Null => null,
                        _ => throw new RotorException($"{where}: data.{p.Name} is {p.Value.ValueKind}; stored fields are strings, numbers or booleans"),
                    };
                    if (value is not null) fields[p.Name] = value;
                }
            }
            return new IndexRecord(key, v, fields);
        }
        catch (JsonException e) { throw new RotorException($"{where}: invalid JSON: {e.Message}", e); }
        catch (FormatException e) { throw new RotorException($"{where}: {e.Message}", e); }
    }

    /// <summary>Reads a float32 (n, d) .npy file in batches.</summary>
    public static IEnumerable<List<IndexRecord>> ReadNpy(string path, int batch = 10_000, string keyPrefix = "", long keyStart = 0)
    {
        using var fs = File.OpenRead(path);
        var (rows, cols, dataOffset) = ReadNpyHeader(fs, path);
        // Rows and columns are checked in ReadNpyHeader (cols <= 65536), so rows * cols * 4 only overflows for absurd rows.
        if (rows > (long.MaxValue - dataOffset) / ((long)cols * 4)) throw new RotorException($"{path}: .npy shape ({rows}, {cols}) is impossibly large");
        long expect = dataOffset + rows * cols * 4;
        if (fs.Length < expect) throw new RotorException($"{path} is truncated: {fs.Length} bytes, shape ({rows}, {cols}) needs {expect}");
        fs.Position = dataOffset;
        var buf = new byte[cols * 4];
        var list = new List<IndexRecord>(batch);
        for (long r = 0; r < rows; r++)
        {
            fs.ReadExactly(buf);
            var v = new float[cols];
            for (int j = 0; j < cols; j++) v[j] = BinaryPrimitives.ReadSingleLittleEndian(buf.AsSpan(j * 4));
            list.Add(new IndexRecord(keyPrefix + (keyStart + r).ToString(CultureInfo.InvariantCulture), v));
            if (list.Count == batch) { yield return list; list = new List<IndexRecord>(batch); }
        }
        if (list.Count > 0) yield return list;
    }

    /// <summary>Parses a .npy header: rows, columns and where the data starts. Only '&lt;f4', C order, 1 or 2 dims.</summary>
    public static (long Rows, int Cols, long DataOffset) ReadNpyHeader(Stream s, string path)
    {
        Span<byte> pre = stackalloc byte[10];
        if (s.Read(pre) != 10 || pre[0] != 0x93 || !pre[1..6].SequenceEqual("NUMPY"u8)) throw new RotorException($"{path} is not a .npy file (bad magic)");
        int major = pre[6];
        int headerLen, prefix;
        if (major == 1) { headerLen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]); prefix = 10; }
        else if (major is 2 or 3)
        {
            Span<byte> two = stackalloc byte[2];
            if (s.ReadAtLeast(two, 2, throwOnEndOfStream: false) != 2) throw new RotorException($"{path} is truncated inside its .npy header");
            headerLen = (int)BinaryPrimitives.ReadUInt32LittleEndian([pre[8], pre[9], two[0], two[1]]); prefix = 12;
        }
        else throw new RotorException($"{path}: .npy version {major} is not supported");
        if (headerLen < 0 || (s.CanSeek && headerLen > s.Length - s.Position)) throw new RotorException($"{path} is truncated: its .npy header claims {headerLen} bytes");
        var hb = new byte[headerLen];
        if (s.ReadAtLeast(hb, headerLen, throwOnEndOfStream: false) != headerLen) throw new RotorException($"{path} is truncated inside its .npy header");
        string h = Encoding.ASCII.GetString(hb);
        if (!h.Contains("'descr': '<f4'", StringComparison.Ordinal)) throw new RotorException($"{path}: .npy dtype must be little-endian float32 ('<f4'); header: {h.Trim()}");
        if (h.Contains("'fortran_order': True", StringComparison.Ordinal)) throw new RotorException($"{path}: .npy array must be C order");
        int a = h.IndexOf("'shape': (", StringComparison.Ordinal);
        if (a < 0) throw new RotorException($"{path}: .npy header has no shape: {h.Trim()}");
        int b = h.IndexOf(')', a);
        if (b < 0) throw new RotorException($"{path}: .npy header's shape is not closed: {h.Trim()}");
        var parts = h[(a + 10)..b].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var dims = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]))
                throw new RotorException($"{path}: .npy shape ({h[(a + 10)..b]}) holds '{parts[i]}', not a size");
        var (rows, cols) = dims.Length switch
        {
            1 => (1L, dims[0]),
            2 => (dims[0], dims[1]),
            _ => throw new RotorException($"{path}: .npy shape has {dims.Length} dimensions, expected (n, d)"),
        };
        if (cols < 1 || cols > VectorIndexOptions.MaxDimensions) throw new RotorException($"{path}: .npy rows have {cols} values, expected 1..{VectorIndexOptions.MaxDimensions}");
        return (rows, (int)cols, prefix + headerLen);
    }

    /// <summary>Writes a float32 (n, d) .npy file (atomically).</summary>
    public static void WriteNpy(string path, ReadOnlySpan<float> data, int rows, int cols)
    {
        string header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}";
        int total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        var bytes = new byte[10 + header.Length + rows * cols * 4];
        bytes[0] = 0x93; "NUMPY"u8.CopyTo(bytes.AsSpan(1)); bytes[6] = 1; bytes[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)header.Length);
        Encoding.ASCII.GetBytes(header).CopyTo(bytes, 10);
        for (int i = 0; i < rows * cols; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(10 + header.Length + i * 4), data[i]);
        AtomicFile.WriteAllBytes(path, bytes);
    }
}

using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Rotor.Lm.Loading;

/// <summary>One tensor of a memory-mapped safetensors file: its element type, shape and bytes in the mapping.</summary>
internal readonly unsafe struct TensorView(string name, string dtype, long[] shape, byte* data, long bytes, string file)
{
    public string Name { get; } = name;
    public string DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;
    public long Bytes { get; } = bytes;
    public string File { get; } = file;
    public long Elements => Shape.Aggregate(1L, (a, d) => a * d);
    public ReadOnlySpan<byte> Span => new(Data, checked((int)Bytes));
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// The safetensors files of a Hugging Face model folder, memory-mapped: <c>model.safetensors</c>, or the shards that
/// <c>model.safetensors.index.json</c> lists. Each file is an 8-byte little-endian header length N, N bytes of JSON
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>), then the data; every
/// tensor's offsets are checked against its shape, the data section and the other tensors before any is read.
/// </summary>
internal sealed unsafe class SafetensorsArchive : IDisposable
{
    private readonly List<(MemoryMappedFile Map, MemoryMappedViewAccessor View)> _maps = [];
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> Names => _tensors.Keys;
    public long FileBytes { get; private set; }

    public static SafetensorsArchive Open(string folder)
    {
        var a = new SafetensorsArchive();
        try
        {
            string index = Path.Combine(folder, "model.safetensors.index.json");
            string single = Path.Combine(folder, "model.safetensors");
            if (File.Exists(index))
            {
                var files = new SortedSet<string>(StringComparer.Ordinal);
                try
                {
                    using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
                    if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                        throw new RotorException($"{index}: no weight_map object");
                    foreach (var p in map.EnumerateObject())
                    {
                        string f = p.Value.GetString() ?? throw new RotorException($"{index}: weight_map.{p.Name} is not a file name");
                        if (f.Contains('/') || f.Contains('\\') || f == "..") throw new RotorException($"{index}: weight_map.{p.Name} = {f} is not a file of this folder");
                        files.Add(f);
                    }
                }
                catch (JsonException e) { throw new RotorException($"{index}: not valid JSON: {e.Message}", e); }
                if (files.Count == 0) throw new RotorException($"{index}: weight_map names no file");
                foreach (string f in files) a.Map(Path.Combine(folder, f));
            }
            else if (File.Exists(single)) a.Map(single);
            else throw new RotorException($"{folder}: no model.safetensors or model.safetensors.index.json");
            return a;
        }
        catch { a.Dispose(); throw; }
    }

    private void Map(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
        long length = new FileInfo(path).Length;
        if (length < 8) throw new RotorException($"{path}: truncated safetensors file: {length} bytes, the header length alone takes 8");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        _maps.Add((map, view));
        FileBytes += length;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        p += view.PointerOffset;
        ulong hlen = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(p, 8));
        if (hlen < 2 || hlen > 100UL << 20) throw new RotorException($"{path}: safetensors header length {hlen} is not plausible");
        if ((long)hlen > length - 8) throw new RotorException($"{path}: truncated safetensors file: the header says {hlen} bytes, {length - 8} follow");
        byte* data = p + 8 + (long)hlen;
        long dataLen = length - 8 - (long)hlen;
        var ranges = new List<(long B, long E, string N)>();
        try
        {
            using var doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(p + 8, (int)hlen).ToArray()));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new RotorException($"{path}: the safetensors header is not a JSON object");
            foreach (var t in doc.RootElement.EnumerateObject())
            {
                if (t.Name == "__metadata__") continue;
                string where = $"{path}: tensor {t.Name}";
                if (t.Value.ValueKind != JsonValueKind.Object
                    || !t.Value.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
                    || !t.Value.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
                    || !t.Value.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
                    throw new RotorException($"{where}: entry needs dtype, shape and two data_offsets");
                string dtype = dt.GetString()!;
                int size = ElementSize(dtype) ?? throw new RotorException($"{where}: dtype {dtype} is not supported (F32, F16, BF16, U8, I8, I32, I64)");
                var shape = new long[sh.GetArrayLength()];
                int i = 0;
                foreach (var d in sh.EnumerateArray())
                {
                    if (!d.TryGetInt64(out long v) || v < 0) throw new RotorException($"{where}: shape entry {d} is not a size");
                    shape[i++] = v;
                }
                if (!off[0].TryGetInt64(out long b) || !off[1].TryGetInt64(out long e) || b < 0 || e < b || e > dataLen)
                    throw new RotorException($"{where}: data_offsets [{off[0]}, {off[1]}] fall outside the {dataLen} data bytes");
                long elements = shape.Aggregate(1L, (x, y) => checked(x * y));
                if (e - b != elements * size)
                    throw new RotorException($"{where}: {e - b} bytes for {dtype} [{string.Join(", ", shape)}], expected {elements * size}");
                if (_tensors.ContainsKey(t.Name)) throw new RotorException($"{where}: the tensor appears in two files");
                _tensors[t.Name] = new TensorView(t.Name, dtype, shape, data + b, e - b, path);
                ranges.Add((b, e, t.Name));
            }
        }
        catch (JsonException e) { throw new RotorException($"{path}: the safetensors header is not valid JSON: {e.Message}", e); }
        catch (OverflowException) { throw new RotorException($"{path}: a tensor shape overflows"); }
        ranges.Sort((x, y) => x.B.CompareTo(y.B));
        for (int i = 1; i < ranges.Count; i++)
            if (ranges[i].B < ranges[i - 1].E) throw new RotorException($"{path}: tensors {ranges[i - 1].N} and {ranges[i].N} overlap");
    }

    private static int? ElementSize(string dtype) => dtype switch
    {
        "F32" or "I32" => 4, "F16" or "BF16" => 2, "U8" or "I8" => 1, "I64" or "F64" => 8, _ => null,
    };

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorView Get(string name)
        => _tensors.TryGetValue(name, out var t) ? t : throw new RotorException($"tensor {name} is missing from the model's safetensors files");

    /// <summary>A float tensor (F32, F16, BF16) as float32.</summary>
    public float[] ReadFloats(TensorView t)
    {
        long n = t.Elements;
        if (n > Array.MaxLength) throw new RotorException($"{t.File}: tensor {t.Name} is too large to convert at once");
        var f = new float[n];
        ReadFloats(t, 0, f);
        return f;
    }

    /// <summary>Elements [start, start + dst.Length) of a float tensor as float32.</summary>
    public static void ReadFloats(TensorView t, long start, Span<float> dst)
    {
        switch (t.DType)
        {
            case "F32": new ReadOnlySpan<float>((float*)t.Data + start, dst.Length).CopyTo(dst); break;
            case "F16": System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)t.Data + start, dst.Length), dst); break;
            case "BF16":
                {
                    ushort* s = (ushort*)t.Data + start;
                    for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
                    break;
                }
            default: throw new RotorException($"{t.File}: tensor {t.Name} has dtype {t.DType}, expected F32, F16 or BF16");
        }
    }

    public void Dispose()
    {
        foreach (var (map, view) in _maps)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose(); map.Dispose();
        }
        _maps.Clear();
    }
}

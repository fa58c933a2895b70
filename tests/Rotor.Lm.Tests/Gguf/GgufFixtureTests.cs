using System.Security.Cryptography;
using System.Text.Json;
using Rotor.Lm.Gguf;

namespace Rotor.Lm.Tests.Gguf;

/// <summary>
/// The fixtures of Data/gguf were made by llama.cpp's gguf-py and llama-quantize and by bitnet.cpp's llama-quantize
/// (see Data/gguf/README.md); each FILE.expected.json holds what gguf-py reads from FILE: metadata, tensor infos and a
/// SHA-256 of every tensor dequantized to f32 by gguf-py's own dequantize. Rotor must read exactly the same.
/// </summary>
public class GgufFixtureTests
{
    internal static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Data", "gguf", name);

    public static TheoryData<string> Files() =>
    [
        "bitnet-tiny-f32.gguf", "bitnet-tiny-tq1_0.gguf", "bitnet-tiny-tq2_0.gguf", "bitnet-tiny-i2_s.gguf",
        "bitnet-ffn320-tq1_0.gguf", "bitnet-ffn320-tq2_0.gguf", "bitnet-ffn320-i2_s.gguf", "types.gguf",
    ];

    private static JsonElement Expected(string file) =>
        JsonDocument.Parse(File.ReadAllText(Fixture(Path.ChangeExtension(file, ".expected.json")))).RootElement;

    private static string Sha(float[] v)
    {
        var bytes = new byte[v.Length * 4];
        Buffer.BlockCopy(v, 0, bytes, 0, bytes.Length); // little-endian host, as the expected hashes
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    [Theory, MemberData(nameof(Files))]
    public void HeaderAndMetadataEqualGgufPy(string file)
    {
        JsonElement e = Expected(file);
        using var f = GgufFile.Open(Fixture(file));
        Assert.Equal(3u, f.Version);
        Assert.Equal(e.GetProperty("alignment").GetInt64(), f.Alignment);
        Assert.Equal(e.GetProperty("data_offset").GetInt64(), f.DataOffset);
        var meta = e.GetProperty("metadata");
        Assert.Equal(meta.EnumerateObject().Select(p => p.Name).Order(), f.Metadata.Keys.Order());
        foreach (var p in meta.EnumerateObject())
        {
            string type = p.Value.GetProperty("type").GetString()!;
            JsonElement v = p.Value.GetProperty("value");
            object got = f.Metadata[p.Name];
            switch (type)
            {
                case "STRING": Assert.Equal(v.GetString(), f.GetString(p.Name)); break;
                case "BOOL": Assert.Equal(v.GetBoolean(), f.GetBool(p.Name)); break;
                case "FLOAT32" or "FLOAT64": Assert.Equal(v.GetDouble(), f.GetFloat(p.Name)); break;
                case "ARRAY":
                    switch (got)
                    {
                        case string[] s: Assert.Equal(v.EnumerateArray().Select(x => x.GetString()!), s); break;
                        case long[] l: Assert.Equal(v.EnumerateArray().Select(x => x.GetInt64()), l); break;
                        case double[] d: Assert.Equal(v.EnumerateArray().Select(x => x.GetDouble()), d); break;
                        case bool[] b: Assert.Equal(v.EnumerateArray().Select(x => x.GetBoolean()), b); break;
                        default: Assert.Fail($"{p.Name}: {got.GetType()}"); break;
                    }
                    break;
                default: Assert.Equal(v.GetInt64(), f.GetInt(p.Name)); Assert.Equal(type, f.TypeOf(p.Name).Type.ToString().ToUpperInvariant()); break;
            }
        }
        var tensors = e.GetProperty("tensors").EnumerateArray().ToArray();
        Assert.Equal(tensors.Length, f.Tensors.Count);
        foreach (var t in tensors)
        {
            var info = f.Find(t.GetProperty("name").GetString()!);
            Assert.NotNull(info);
            Assert.Equal(t.GetProperty("type_id").GetUInt32(), (uint)info.Type);
            Assert.Equal(t.GetProperty("dims").EnumerateArray().Select(x => x.GetInt64()), info.Dims);
            Assert.Equal(t.GetProperty("offset").GetInt64(), info.Offset);
            long bytes = t.GetProperty("bytes").GetInt64();
            // gguf-py does not know I2_S's 32-byte scale tail (the fixture script maps only the n/4 code bytes)
            Assert.Equal(info.Type == GgmlType.I2_S ? bytes + 32 : bytes, info.ByteSize);
            Assert.Equal(info.ByteSize, f.GetData(info).Length);
        }
    }

    [Theory, MemberData(nameof(Files))]
    public void EveryTensorDequantizesAsGgufPy(string file)
    {
        JsonElement e = Expected(file);
        using var f = GgufFile.Open(Fixture(file));
        foreach (var t in e.GetProperty("tensors").EnumerateArray())
        {
            var info = f.Find(t.GetProperty("name").GetString()!)!;
            float[] v = GgufTensors.ReadFloats(f, info);
            Assert.Equal(t.GetProperty("head").EnumerateArray().Select(x => (float)x.GetDouble()), v.Take(16));
            Assert.Equal(t.GetProperty("tail").EnumerateArray().Select(x => (float)x.GetDouble()), v.TakeLast(16));
            Assert.True(t.GetProperty("sha256").GetString() == Sha(v), $"{file}: {info}: dequantized values differ from gguf-py's");

            // Rows read one at a time are the same values.
            var row = new float[info.RowLength];
            foreach (long r in new[] { 0, info.Rows / 2, info.Rows - 1 }.Distinct())
            {
                GgufTensors.ReadRow(f, info, r, row);
                Assert.True(v.AsSpan((int)(r * info.RowLength), (int)info.RowLength).SequenceEqual(row), $"{info} row {r}");
            }

            // A ternary type gives exactly its values as trits times scale.
            if (info.Traits.IsTernary && file == "types.gguf")
            {
                // gguf-py's TQ quantizer on random floats: each block has its own scale, which no ternary matrix holds.
                var err = Assert.Throws<RotorException>(() => GgufTensors.ReadTernary(f, info));
                Assert.Contains($"tensor {info.Name}: row 0: block scales differ", err.Message);
            }
            else if (info.Traits.IsTernary)
            {
                TernaryMatrix m = GgufTensors.ReadTernary(f, info);
                Assert.Equal((info.Rows, info.RowLength), ((long)m.Rows, (long)m.Cols));
                Assert.True(t.GetProperty("sha256").GetString() == Sha(m.ToFloat()), $"{file}: {info}: ternary values differ from gguf-py's");
            }
        }
    }

    private static readonly string[] Ternary = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    private static IEnumerable<GgufTensorInfo> Projections(GgufFile f) =>
        f.Tensors.Where(t => Ternary.Any(n => t.Name.EndsWith($".{n}.weight", StringComparison.Ordinal)));

    [Fact]
    public void TheF32ModelHoldsExactTernaryWeights()
    {
        using var f = GgufFile.Open(Fixture("bitnet-tiny-f32.gguf"));
        Assert.Equal(14, Projections(f).Count());
        foreach (var t in Projections(f))
        {
            float[] v = GgufTensors.ReadFloats(f, t);
            TernaryMatrix m = GgufTensors.ReadTernary(f, t);
            Assert.Equal(ScaleMode.PerTensor, m.ScaleMode);
            Assert.Equal(v, m.ToFloat()); // {-s, 0, +s} read back exactly
            Assert.Contains((sbyte)0, m.ToTrits());
        }
    }

    [Theory]
    [InlineData("bitnet-tiny-tq1_0.gguf"), InlineData("bitnet-tiny-tq2_0.gguf"), InlineData("bitnet-tiny-i2_s.gguf")]
    public void QuantizedTritsEqualTheF32Source(string file)
    {
        using var src = GgufFile.Open(Fixture("bitnet-tiny-f32.gguf"));
        using var q = GgufFile.Open(Fixture(file));
        foreach (var t in Projections(src))
        {
            TernaryMatrix a = GgufTensors.ReadTernary(src, t), b = GgufTensors.ReadTernary(q, q.Get(t.Name));
            Assert.Equal(a.ToTrits(), b.ToTrits());
            Assert.Equal(ScaleMode.PerTensor, b.ScaleMode);
            // TQ blocks store the scale as f16; I2_S keeps the f32.
            float expected = q.Get(t.Name).Type == GgmlType.I2_S ? a.ScaleOf(0) : (float)(Half)a.ScaleOf(0);
            Assert.Equal(expected, b.ScaleOf(0));
        }
    }

    [Theory]
    [InlineData("bitnet-tiny-tq1_0.gguf"), InlineData("bitnet-tiny-tq2_0.gguf"), InlineData("bitnet-tiny-i2_s.gguf"),
     InlineData("bitnet-ffn320-tq1_0.gguf"), InlineData("bitnet-ffn320-tq2_0.gguf"), InlineData("bitnet-ffn320-i2_s.gguf")]
    public void RotorsEncodersWriteTheToolsBytes(string file)
    {
        using var q = GgufFile.Open(Fixture(file));
        int checkedTensors = 0;
        foreach (var t in q.Tensors.Where(t => t.Traits.IsTernary))
        {
            TernaryMatrix m = GgufTensors.ReadTernary(q, t);
            byte[] mine = t.Type switch
            {
                GgmlType.TQ1_0 => GgufWriter.EncodeTQ1_0(m),
                GgmlType.TQ2_0 => GgufWriter.EncodeTQ2_0(m),
                _ => GgufWriter.EncodeI2S(m),
            };
            ReadOnlySpan<byte> theirs = q.GetData(t);
            // llama-quantize leaves bytes 4..31 of the I2_S tail as they were in its buffer; the codes and scale must match.
            int compare = t.Type == GgmlType.I2_S ? (int)(t.Elements / 4 + 4) : theirs.Length;
            Assert.Equal(theirs.Length, mine.Length);
            Assert.True(theirs[..compare].SequenceEqual(mine.AsSpan(0, compare)), $"{file}: {t}");
            checkedTensors++;
        }
        Assert.True(checkedTensors >= 6);
    }

    [Fact]
    public void FallbacksMixTypesInOneFile()
    {
        // llama-quantize stores a TQ tensor whose rows are not whole 256-weight blocks as Q4_0; bitnet.cpp's quantizer
        // keeps I2_S, whose blocks run over the flattened tensor. The embedding becomes Q6_K (TQ) or F16 (I2_S, as asked).
        using var tq = GgufFile.Open(Fixture("bitnet-ffn320-tq2_0.gguf"));
        Assert.Equal(GgmlType.Q4_0, tq.Get("blk.0.ffn_down.weight").Type);
        Assert.Equal(GgmlType.TQ2_0, tq.Get("blk.0.ffn_up.weight").Type);
        Assert.Equal(GgmlType.Q6_K, tq.Get("token_embd.weight").Type);
        using var i2 = GgufFile.Open(Fixture("bitnet-ffn320-i2_s.gguf"));
        var down = i2.Get("blk.0.ffn_down.weight");
        Assert.Equal(GgmlType.I2_S, down.Type);
        Assert.Equal([320L, 256], down.Dims);
        Assert.Equal(GgmlType.F16, i2.Get("token_embd.weight").Type);

        // The Q4_0 fallback of ternary weights is not exact ({-7s/8, 0, s} or its mirror), yet its signs are the trits.
        TernaryMatrix fromQ4 = GgufTensors.ReadTernary(tq, tq.Get("blk.0.ffn_down.weight"));
        TernaryMatrix fromI2 = GgufTensors.ReadTernary(i2, down);
        Assert.Equal(fromI2.ToTrits(), fromQ4.ToTrits());
    }

    [Fact]
    public void TheFloatEncodersWriteGgufPysBytes()
    {
        using var f = GgufFile.Open(Fixture("types.gguf"));
        float[] x = GgufTensors.ReadFloats(f, f.Get("f32.weight"));
        Assert.True(f.GetData(f.Get("f32.weight")).SequenceEqual(GgufWriter.EncodeF32(x)));
        Assert.True(f.GetData(f.Get("f16.weight")).SequenceEqual(GgufWriter.EncodeF16(x)));
        Assert.True(f.GetData(f.Get("bf16.weight")).SequenceEqual(GgufWriter.EncodeFloats(GgmlType.BF16, x)));
        Assert.True(f.GetData(f.Get("q8_0.weight")).SequenceEqual(GgufWriter.EncodeQ8_0(x)));
    }

    [Fact]
    public void MetadataLookupsNameFileAndKey()
    {
        string path = Fixture("types.gguf");
        using var f = GgufFile.Open(path);
        Assert.Equal("rotor-types", f.Architecture);
        Assert.Equal(1L << 40, f.GetInt("rotor.big"));
        Assert.Equal(-7, f.GetInt("rotor.i8"));
        Assert.Equal(Math.PI, f.GetFloat("rotor.f64"));
        Assert.Equal(["a", "béta", ""], f.GetStringArray("rotor.strings"));
        Assert.Equal([1L, -2, 3], f.GetIntArray("rotor.ints"));
        Assert.Equal([0.5, -1.25], f.GetFloatArray("rotor.floats"));
        Assert.True(f.GetBool("rotor.flag"));
        Assert.Equal(9, f.GetInt("absent.key", 9));
        Assert.False(f.TryGetString("absent.key", out _));
        var e = Assert.Throws<RotorException>(() => f.GetString("rotor.big"));
        Assert.Contains(path, e.Message); Assert.Contains("rotor.big", e.Message); Assert.Contains("UInt64", e.Message);
        e = Assert.Throws<RotorException>(() => f.GetInt("absent.key"));
        Assert.Contains("absent.key is missing", e.Message);
        e = Assert.Throws<RotorException>(() => f.GetIntArray("rotor.strings"));
        Assert.Contains("an array of String", e.Message);
        e = Assert.Throws<RotorException>(() => f.Get("nope.weight"));
        Assert.Contains("tensor nope.weight is missing", e.Message);
    }
}

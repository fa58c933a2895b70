using System.Buffers.Binary;
using System.Text;
using Rotor.Lm.Gguf;

namespace Rotor.Lm.Tests.Gguf;

/// <summary>Damaged files: every problem is one RotorException that names the file and the field or tensor.</summary>
public sealed class GgufCorruptionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rotor-gguf-bad-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Fixture(string name) => File.ReadAllBytes(GgufFixtureTests.Fixture(name));

    /// <summary>Writes <paramref name="bytes"/> as model.gguf and returns the message of the one RotorException that
    /// opening and reading every tensor gives.</summary>
    private string Fails(byte[] bytes, I2SLayout layout = I2SLayout.X86)
    {
        string path = Path.Combine(_dir, "model.gguf");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<RotorException>(() =>
        {
            using var f = GgufFile.Open(path);
            foreach (var t in f.Tensors)
                if (t.Traits.IsTernary) GgufTensors.ReadTernary(f, t, layout); else GgufTensors.ReadFloats(f, t, layout);
        });
        Assert.StartsWith(path + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    /// <summary>Position of tensor <paramref name="name"/>'s info: after its name come dims count, dims, type, offset.</summary>
    private static (int Type, int Offset) InfoOf(byte[] file, string name, int dims)
    {
        byte[] n = Encoding.UTF8.GetBytes(name);
        int at = file.AsSpan().IndexOf([.. BitConverter.GetBytes((long)n.Length), .. n]);
        Assert.True(at > 0);
        int type = at + 8 + n.Length + 4 + 8 * dims;
        return (type, type + 4);
    }

    /// <summary>Position of metadata key <paramref name="key"/>'s value type (the value follows it).</summary>
    private static int KeyOf(byte[] file, string key)
    {
        byte[] k = Encoding.UTF8.GetBytes(key);
        int at = file.AsSpan().IndexOf([.. BitConverter.GetBytes((long)k.Length), .. k]);
        Assert.True(at > 0);
        return at + 8 + k.Length;
    }

    [Fact]
    public void TruncatedAnywhere()
    {
        byte[] good = Fixture("bitnet-tiny-tq2_0.gguf");
        using (var f = GgufFile.Open(GgufFixtureTests.Fixture("bitnet-tiny-tq2_0.gguf")))
        {
            Assert.Contains("truncated", Fails(good[..10]));
            Assert.Contains("truncated", Fails(good[..30]));                  // in the metadata count / first key
            Assert.Contains("truncated", Fails(good[..(int)(f.DataOffset - 100)])); // in the tensor infos
            string m = Fails(good[..(good.Length - 1)]);                      // in the last tensor's data
            Assert.Contains($"tensor {f.Tensors.MaxBy(t => t.Offset)!.Name}", m);
            Assert.Contains("run past the end of the file", m);
        }
        Assert.Contains("truncated", Fails(good[..0]));
    }

    [Fact]
    public void FlippedHeaderBytes()
    {
        byte[] b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[0] ^= 0x20;
        Assert.Contains("not a GGUF file (magic \"gGUF\"", Fails(b));

        b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[4] = 7;
        Assert.Contains("version 7 is not supported", Fails(b));
        b = Fixture("bitnet-tiny-tq2_0.gguf");
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), 3);
        Assert.Contains("big-endian", Fails(b));

        b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[15] = 0x10;                                  // tensor count's high byte
        Assert.Contains("tensor count", Fails(b));
        b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[23] = 0x7f;                                  // metadata count's high byte
        Assert.Contains("metadata count", Fails(b));

        b = Fixture("bitnet-tiny-tq2_0.gguf");
        int at = KeyOf(b, "general.name");
        b[at] = 77;                                    // value type
        Assert.Contains("metadata key general.name: value type 77 is unknown", Fails(b));
        b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[at + 4 + 6] = 0x40;                          // the string length's high bytes
        Assert.Contains("metadata key general.name", Fails(b));

        b = Fixture("bitnet-tiny-tq2_0.gguf");
        b[KeyOf(b, "general.architecture") + 4 + 8] = 0xff; // not UTF-8
        Assert.Contains("metadata key general.architecture: the string is not valid UTF-8", Fails(b));

        b = Fixture("bitnet-tiny-tq2_0.gguf");
        var (type, _) = InfoOf(b, "blk.0.attn_q.weight", 2);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(type - 4 - 16), 9); // dimension count
        Assert.Contains("tensor blk.0.attn_q.weight: 9 dimensions", Fails(b));
    }

    [Fact]
    public void UnknownAndUnsupportedTypeIds()
    {
        byte[] b = Fixture("bitnet-tiny-tq2_0.gguf");
        var (type, _) = InfoOf(b, "blk.1.ffn_up.weight", 2);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(type), 99);
        Assert.Contains("tensor blk.1.ffn_up.weight: type 99 is unknown", Fails(b));

        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(type), 38);
        string m = Fails(b);
        Assert.Contains("tensor blk.1.ffn_up.weight: type 38 (bitnet.cpp's TL1", m);
        Assert.Contains("quantize the model to I2_S, TQ1_0 or TQ2_0", m);

        // A known type Rotor cannot decode opens, and fails when read.
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(type), (uint)GgmlType.IQ2_XXS); // 66 bytes a block, as TQ2_0
        Assert.Contains("tensor blk.1.ffn_up.weight: Rotor cannot decode iq2_xxs weights", Fails(b));
    }

    [Fact]
    public void TensorPastTheEndOverlappingOrMisaligned()
    {
        byte[] b = Fixture("bitnet-tiny-tq2_0.gguf");
        var (_, offset) = InfoOf(b, "blk.0.ffn_gate.weight", 2);
        long rel = BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(offset));
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), rel + (1L << 40));
        Assert.Contains("tensor blk.0.ffn_gate.weight: its 33792 bytes at", Fails(b));

        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), rel + 1);
        Assert.Contains("tensor blk.0.ffn_gate.weight: offset", Fails(b));
        Assert.Contains("is not a multiple of the alignment 32", Fails(b));

        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), 0);
        Assert.Contains("overlap", Fails(b));

        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), -64);
        Assert.Contains("tensor blk.0.ffn_gate.weight: offset", Fails(b));
    }

    [Fact]
    public void WrongAlignment()
    {
        var w = new GgufWriter(alignment: 64);
        w.AddTensor("w", GgmlType.F32, [4], new byte[16]);
        var ms = new MemoryStream();
        w.WriteTo(ms);
        byte[] b = ms.ToArray();
        int at = KeyOf(b, "general.alignment");
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at + 4), 48);
        Assert.Contains("metadata key general.alignment = 48: the alignment must be a power of two", Fails(b));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), (uint)GgufValueType.String);
        Assert.Contains("general.alignment", Fails(b));
    }

    [Fact]
    public void InvalidTernaryData()
    {
        // An I2_S code 3 is no trit.
        byte[] b = Fixture("bitnet-tiny-i2_s.gguf");
        using (var f = GgufFile.Open(GgufFixtureTests.Fixture("bitnet-tiny-i2_s.gguf")))
            b[f.Get("blk.0.attn_k.weight").Offset + 10] = 0xff;
        Assert.Contains("tensor blk.0.attn_k.weight: I2_S weight", Fails(b));

        // TQ blocks of one row with different scales cannot be one ternary matrix.
        byte[] t = Fixture("bitnet-tiny-tq2_0.gguf");
        using (var f = GgufFile.Open(GgufFixtureTests.Fixture("bitnet-tiny-tq2_0.gguf")))
        {
            var down = f.Get("blk.1.ffn_down.weight");              // 2 blocks a row
            BinaryPrimitives.WriteUInt16LittleEndian(t.AsSpan((int)down.Offset + 66 + 64), BitConverter.HalfToUInt16Bits((Half)0.125f));
        }
        string m = Fails(t);
        Assert.Contains("tensor blk.1.ffn_down.weight: row 0: block scales differ", m);

        // A NaN float weight.
        var w = new GgufWriter();
        w.AddTensor("w", GgmlType.F32, [2], GgufWriter.EncodeF32([1f, float.NaN]));
        var ms = new MemoryStream();
        w.WriteTo(ms);
        string path = Path.Combine(_dir, "nan.gguf");
        File.WriteAllBytes(path, ms.ToArray());
        using var nan = GgufFile.Open(path);
        Assert.Contains("tensor w: weight 1 is NaN", Assert.Throws<RotorException>(() => GgufTensors.ReadTernary(nan, nan.Get("w"))).Message);
    }

    [Fact]
    public void Version2IsReadAsVersion3()
    {
        // Versions 2 and 3 lay out little-endian files the same way (3 added big-endian files).
        byte[] b = Fixture("bitnet-tiny-tq1_0.gguf");
        b[4] = 2;
        string path = Path.Combine(_dir, "v2.gguf");
        File.WriteAllBytes(path, b);
        using var v2 = GgufFile.Open(path);
        using var v3 = GgufFile.Open(GgufFixtureTests.Fixture("bitnet-tiny-tq1_0.gguf"));
        Assert.Equal(2u, v2.Version);
        Assert.Equal(v3.Tensors, v2.Tensors, (x, y) => x.Name == y.Name && x.Offset == y.Offset && x.Dims.SequenceEqual(y.Dims));
        Assert.Equal(GgufTensors.ReadFloats(v3, v3.Get("token_embd.weight")), GgufTensors.ReadFloats(v2, v2.Get("token_embd.weight")));
    }

    [Fact]
    public void MissingFile()
    {
        string path = Path.Combine(_dir, "absent.gguf");
        Assert.StartsWith($"{path}: cannot open", Assert.Throws<RotorException>(() => GgufFile.Open(path)).Message);
    }
}

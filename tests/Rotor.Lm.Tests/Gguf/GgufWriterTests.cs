using Rotor.Lm.Gguf;

namespace Rotor.Lm.Tests.Gguf;

public sealed class GgufWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rotor-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Temp(string name) => Path.Combine(_dir, name);

    internal static sbyte[] Trits(int n, int seed, double zeroShare = 0.33)
    {
        var r = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = r.NextDouble() < zeroShare ? (sbyte)0 : (sbyte)(r.Next(2) * 2 - 1);
        return t;
    }

    internal static float[] Floats(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var t = new float[n];
        for (int i = 0; i < n; i++) t[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return t;
    }

    [Fact]
    public void EveryMetadataTypeRoundTrips()
    {
        var w = new GgufWriter(alignment: 64);
        w.AddString("s", "héllo");
        w.AddBool("b", true);
        w.AddUInt32("u32", uint.MaxValue);
        w.AddInt32("i32", int.MinValue);
        w.AddUInt64("u64", long.MaxValue);
        w.AddFloat32("f32", 0.1f);
        w.AddFloat64("f64", 0.1);
        w.Add("u8", GgufValueType.UInt8, 255L);
        w.Add("i8", GgufValueType.Int8, -128L);
        w.Add("u16", GgufValueType.UInt16, 65535L);
        w.Add("i16", GgufValueType.Int16, -32768L);
        w.Add("i64", GgufValueType.Int64, long.MinValue);
        w.AddArray("as", ["", "x", "ÿ"]);
        w.AddArray("ab", [true, false]);
        w.AddArray("ai", GgufValueType.Int16, [1, -2, 300]);
        w.AddArray("af", GgufValueType.Float32, [0.5, -2]);
        w.AddArray("ad", GgufValueType.Float64, [0.1]);
        w.AddArray("empty", GgufValueType.UInt32, Array.Empty<long>());
        string path = Temp("meta.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(64, f.Alignment);
        Assert.Equal(64, f.GetInt("general.alignment"));
        Assert.Equal("héllo", f.GetString("s"));
        Assert.True(f.GetBool("b"));
        Assert.Equal(uint.MaxValue, f.GetInt("u32"));
        Assert.Equal(int.MinValue, f.GetInt("i32"));
        Assert.Equal(long.MaxValue, f.GetInt("u64"));
        Assert.Equal(0.1f, (float)f.GetFloat("f32"));
        Assert.Equal(0.1, f.GetFloat("f64"));
        Assert.Equal(255, f.GetInt("u8")); Assert.Equal(-128, f.GetInt("i8"));
        Assert.Equal(65535, f.GetInt("u16")); Assert.Equal(-32768, f.GetInt("i16"));
        Assert.Equal(long.MinValue, f.GetInt("i64"));
        Assert.Equal(["", "x", "ÿ"], f.GetStringArray("as"));
        Assert.Equal([true, false], (bool[])f.Metadata["ab"]);
        Assert.Equal([1L, -2, 300], f.GetIntArray("ai"));
        Assert.Equal((GgufValueType.Array, GgufValueType.Int16), f.TypeOf("ai"));
        Assert.Equal([0.5, -2], f.GetFloatArray("af"));
        Assert.Equal([0.1], f.GetFloatArray("ad"));
        Assert.Empty(f.GetIntArray("empty"));
        Assert.Equal((GgufValueType.UInt8, default(GgufValueType)), f.TypeOf("u8"));
        Assert.Empty(f.Tensors);

        // Copied key by key with their stored types (general.alignment included), the file is the same bytes.
        var copy = new GgufWriter(f.Alignment);
        foreach (var (key, value) in f.Metadata) { var (t, e) = f.TypeOf(key); copy.Add(key, t, value, e); }
        var ms = new MemoryStream();
        copy.WriteTo(ms);
        Assert.Equal(File.ReadAllBytes(path), ms.ToArray());
    }

    [Fact]
    public void ValuesThatDoNotFitTheirTypeAreRefused()
    {
        var w = new GgufWriter();
        Assert.Throws<ArgumentException>(() => w.Add("x", GgufValueType.UInt8, 256L));
        Assert.Throws<ArgumentException>(() => w.Add("x", GgufValueType.UInt32, -1L));
        Assert.Throws<ArgumentException>(() => w.Add("x", GgufValueType.String, 1L));
        Assert.Throws<ArgumentException>(() => w.AddArray("x", GgufValueType.Int8, [1000]));
        Assert.Throws<ArgumentException>(() => w.AddArray("x", GgufValueType.String, new double[] { 1 }));
        w.AddString("x", "a");
        Assert.Throws<ArgumentException>(() => w.AddString("x", "b"));
        Assert.Throws<ArgumentException>(() => w.AddUInt32("general.alignment", 64));
        w.AddUInt32("general.alignment", 32); // a copied key equal to the writer's alignment is taken as it is
        Assert.Throws<ArgumentException>(() => w.AddUInt32("general.alignment", 16));
        Assert.Throws<ArgumentException>(() => new GgufWriter(alignment: 48));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.TQ2_0, [100, 2], new byte[66]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [3, 2], new byte[23]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4]));
    }

    /// <summary>Every encoder, every shape class (one row, odd row counts, several blocks, a 1-D vector), written,
    /// reopened and read back: ternary types exactly, float types within their rounding.</summary>
    [Theory]
    [InlineData(1, 256), InlineData(3, 512), InlineData(7, 768), InlineData(64, 256)]
    public void EveryEncoderRoundTripsThroughAFile(int rows, int cols)
    {
        sbyte[] trits = Trits(rows * cols, seed: rows * 31 + cols);
        float[] rowScales = Floats(rows, seed: rows).Select(v => 0.01f + MathF.Abs(v)).ToArray();
        var perTensor = TernaryMatrix.FromTrits(trits, rows, cols, [0.0371f]);
        var perRow = TernaryMatrix.FromTrits(trits, rows, cols, rowScales);
        float[] x = Floats(rows * cols, seed: 5, scale: 3f);
        long[] dims = [cols, rows];

        var w = new GgufWriter();
        w.AddString("general.architecture", "test");
        w.AddTensor("tq1.t", GgmlType.TQ1_0, dims, GgufWriter.EncodeTQ1_0(perTensor));
        w.AddTensor("tq2.t", GgmlType.TQ2_0, dims, GgufWriter.EncodeTQ2_0(perTensor));
        w.AddTensor("tq1.r", GgmlType.TQ1_0, dims, GgufWriter.EncodeTQ1_0(perRow));
        w.AddTensor("tq2.r", GgmlType.TQ2_0, dims, GgufWriter.EncodeTQ2_0(perRow));
        w.AddTensor("i2s", GgmlType.I2_S, dims, GgufWriter.EncodeI2S(perTensor));
        w.AddTensor("f32", GgmlType.F32, dims, GgufWriter.EncodeF32(x));
        w.AddTensor("f16", GgmlType.F16, dims, GgufWriter.EncodeF16(x));
        w.AddTensor("bf16", GgmlType.BF16, dims, GgufWriter.EncodeFloats(GgmlType.BF16, x));
        w.AddTensor("q8_0", GgmlType.Q8_0, dims, GgufWriter.EncodeQ8_0(x));
        w.AddTensor("vec", GgmlType.F32, [5], GgufWriter.EncodeF32([1, 2, 3, 4, 5]));
        w.AddTensor("ternary.f32", GgmlType.F32, dims, GgufWriter.EncodeF32(perTensor.ToFloat()));
        string path = Temp($"rt-{rows}x{cols}.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path);
        foreach (var t in f.Tensors) Assert.Equal(0, (t.Offset - f.DataOffset) % 32);
        foreach (string name in new[] { "tq1.t", "tq2.t", "i2s", "ternary.f32" })
        {
            TernaryMatrix m = GgufTensors.ReadTernary(f, f.Get(name));
            Assert.Equal(trits, m.ToTrits());
            Assert.Equal(ScaleMode.PerTensor, m.ScaleMode);
            Assert.Equal(name.StartsWith("tq") ? (float)(Half)0.0371f : 0.0371f, m.ScaleOf(0));
        }
        foreach (string name in new[] { "tq1.r", "tq2.r" })
        {
            TernaryMatrix m = GgufTensors.ReadTernary(f, f.Get(name));
            Assert.Equal(trits, m.ToTrits());
            if (rows > 1) Assert.Equal(ScaleMode.PerRow, m.ScaleMode);
            for (int r = 0; r < rows; r++)
                if (trits.AsSpan(r * cols, cols).ContainsAnyExcept((sbyte)0)) Assert.Equal((float)(Half)rowScales[r], m.ScaleOf(r));
        }
        Assert.Equal(x, GgufTensors.ReadFloats(f, f.Get("f32")));
        float[] h = GgufTensors.ReadFloats(f, f.Get("f16")), b = GgufTensors.ReadFloats(f, f.Get("bf16")), q = GgufTensors.ReadFloats(f, f.Get("q8_0"));
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal((float)(Half)x[i], h[i]);                               // f16: round to nearest even
            Assert.True(MathF.Abs(b[i] - x[i]) <= MathF.Abs(x[i]) / 256f, $"bf16 {i}"); // 8 significant bits
            float amax = 0;
            for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
            // half a step, plus 127 steps of d's f16 rounding (2^-11 relative)
            Assert.True(MathF.Abs(q[i] - x[i]) <= amax / 127f * (0.5f + 127f / 2048f) * 1.001f, $"q8_0 {i}: {q[i]} vs {x[i]}");
        }
        Assert.Equal([1f, 2, 3, 4, 5], GgufTensors.ReadFloats(f, f.Get("vec")));
    }

    [Fact]
    public void AnAllZeroBlockTakesScaleZeroAndAgreesWithAnyScale()
    {
        var trits = new sbyte[2 * 512];
        Trits(256, 3).CopyTo(trits, 0);        // row 0: block 0 live, block 1 zero
        Trits(256, 4).CopyTo(trits, 512 + 256); // row 1: block 0 zero, block 1 live
        var m = TernaryMatrix.FromTrits(trits, 2, 512, [0.5f, 0.25f]);
        byte[] tq = GgufWriter.EncodeTQ2_0(m);
        Assert.Equal(0, BitConverter.ToUInt16(tq, 66 + 64));   // row 0 block 1: d = 0, as ggml's quantizer writes
        var w = new GgufWriter();
        w.AddTensor("w", GgmlType.TQ2_0, [512, 2], tq);
        string path = Temp("zero.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        TernaryMatrix back = GgufTensors.ReadTernary(f, f.Get("w"));
        Assert.Equal(ScaleMode.PerRow, back.ScaleMode);
        Assert.Equal([0.5f, 0.25f], back.Scales.ToArray());
        Assert.Equal(trits, back.ToTrits());
    }

    [Fact]
    public void TritPackingMatchesItsIndexFormulaForEveryByte()
    {
        // TQ1_0: a byte holds five trits in base 3, first most significant, scaled by 256/243 rounding up.
        var t = new sbyte[256];
        var blk = new byte[54];
        var back = new sbyte[256];
        for (int v = 0; v < 243; v++)
        {
            for (int n = 0; n < 5; n++) t[32 * n] = (sbyte)(v / (int)Math.Pow(3, 4 - n) % 3 - 1);
            GgmlQuants.PackTQ1_0(t, 1f, blk);
            Assert.Equal((byte)((v * 256 + 242) / 243), blk[0]);
            GgmlQuants.TritsTQ1_0(blk, back);
            for (int n = 0; n < 5; n++) Assert.Equal(t[32 * n], back[32 * n]);
        }
        // Random blocks of every ternary format unpack to what was packed.
        var tq2 = new byte[66];
        var i2 = new byte[64];
        for (int seed = 0; seed < 50; seed++)
        {
            sbyte[] r = Trits(256, seed);
            GgmlQuants.PackTQ1_0(r, 1f, blk); GgmlQuants.TritsTQ1_0(blk, back); Assert.Equal(r, back);
            GgmlQuants.PackTQ2_0(r, 1f, tq2); GgmlQuants.TritsTQ2_0(tq2, back); Assert.Equal(r, back);
            GgmlQuants.PackI2S(r, i2); Assert.Equal(-1, GgmlQuants.TritsI2S(i2, back, I2SLayout.X86)); Assert.Equal(r, back);
        }
        // I2_S x86: byte j of a block holds weights j, 32+j, 64+j, 96+j from the high bits down.
        var one = new sbyte[128];
        one[32 + 5] = 1;
        var bytes = new byte[32];
        GgmlQuants.PackI2S(one, bytes);
        Assert.Equal(0b01_10_01_01, bytes[5]);
    }

    [Fact]
    public void VectorizedHalfConversionsEqualTheScalarDefinition()
    {
        // Every f16 bit pattern to f32 (odd length: a tail), and f32 values around every f16 rounding boundary back.
        var all = new byte[2 * 65535];
        for (int i = 0; i < 65535; i++) BitConverter.TryWriteBytes(all.AsSpan(2 * i), (ushort)i);
        float[] fast = new float[65535], slow = new float[65535];
        GgmlQuants.DecodeF16(all, fast);
        GgmlQuants.DecodeF16Reference(all, slow);
        for (int i = 0; i < fast.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(fast[i]) == BitConverter.SingleToInt32Bits(slow[i]) || float.IsNaN(fast[i]) && float.IsNaN(slow[i]), $"f16 {i:x4}");
        var x = new List<float> { 0f, -0f, 65504f, 65520f, 1e-8f, 6.1e-5f, float.PositiveInfinity, float.NegativeInfinity, float.NaN };
        for (int i = 0; i < 65535; i += 7)
        {
            float v = slow[i];
            if (!float.IsFinite(v)) continue;
            x.Add(v); x.Add(MathF.BitIncrement(v)); x.Add(MathF.BitDecrement(v));
            if (i + 1 < slow.Length && float.IsFinite(slow[i + 1])) x.Add((v + slow[i + 1]) / 2); // a tie
        }
        byte[] a = new byte[2 * x.Count], b = new byte[2 * x.Count];
        GgmlQuants.EncodeF16(x.ToArray(), a);
        GgmlQuants.EncodeF16Reference(x.ToArray(), b);
        Assert.Equal(b, a);
        float[] f32 = Floats(37, 3);
        float[] back = new float[37], backRef = new float[37];
        byte[] raw = GgufWriter.EncodeF32(f32);
        GgmlQuants.DecodeF32(raw, back);
        GgmlQuants.DecodeF32Reference(raw, backRef);
        Assert.Equal(backRef, back);
        Assert.Equal(f32, back);
    }

    [Fact]
    public void TheArmI2SLayoutIsReadWhenAsked()
    {
        // bitnet.cpp's Arm build: blocks of 64 weights, byte j holding weights j, 16+j, 32+j, 48+j.
        sbyte[] trits = Trits(2 * 128, 9);
        var data = new byte[trits.Length / 4 + 32];
        for (int b = 0; b < trits.Length / 64; b++)
            for (int j = 0; j < 16; j++)
                for (int g = 0; g < 4; g++) data[b * 16 + j] |= (byte)((trits[b * 64 + 16 * g + j] + 1) << (6 - 2 * g));
        BitConverter.GetBytes(0.5f).CopyTo(data, trits.Length / 4);
        var w = new GgufWriter();
        w.AddTensor("w", GgmlType.I2_S, [128, 2], data);
        string path = Temp("arm.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(trits, GgufTensors.ReadTernary(f, f.Get("w"), I2SLayout.Arm).ToTrits());
        Assert.NotEqual(trits, GgufTensors.ReadTernary(f, f.Get("w")).ToTrits());
    }

    [Fact]
    public void FloatWeightsUseTheOnlineAbsmeanRule()
    {
        float[] x = Floats(3 * 64, 21);
        var w = new GgufWriter();
        w.AddTensor("w", GgmlType.F32, [64, 3], GgufWriter.EncodeF32(x));
        string path = Temp("online.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        TernaryMatrix m = GgufTensors.ReadTernary(f, f.Get("w"));
        float mean = (float)(x.Sum(v => (double)Math.Abs(v)) / x.Length), inv = 1f / mean;
        Assert.Equal(1f / inv, m.ScaleOf(0));
        sbyte[] t = m.ToTrits();
        for (int i = 0; i < x.Length; i++) Assert.Equal((sbyte)Math.Clamp(Math.Round(x[i] * inv, MidpointRounding.ToEven), -1, 1), t[i]);
    }

    [Fact]
    public void RewritingAToolsFileWithItsMetadataGivesTheSameBytes()
    {
        // GgufWriter lays a file out as llama-quantize does (keys and tensors in order, 32-byte aligned data).
        string src = GgufFixtureTests.Fixture("bitnet-tiny-tq2_0.gguf");
        using var f = GgufFile.Open(src);
        var w = new GgufWriter(f.Alignment);
        foreach (var (key, value) in f.Metadata)
        {
            var (type, element) = f.TypeOf(key);
            w.Add(key, type, value, element);
        }
        foreach (var t in f.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, f.GetData(t).ToArray());
        string path = Temp("copy.gguf");
        w.Write(path);
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(path));
    }

    /// <summary>
    /// Re-encodes the tiny model with Rotor's writer (TQ1_0, TQ2_0, I2_S) and checks the files read back. When
    /// ROTOR_GGUF_WRITE_DIR is set the files are kept there, for checks with llama.cpp's own readers (README.md), and
    /// ROTOR_GGUF_WRITE_ARCH, if set, names the architecture (its keys renamed) so that older tools load them.
    /// </summary>
    [Fact]
    public void RotorWritesTheTinyModelInEveryTernaryType()
    {
        string dir = Environment.GetEnvironmentVariable("ROTOR_GGUF_WRITE_DIR") is { Length: > 0 } d ? d : _dir;
        using var f = GgufFile.Open(GgufFixtureTests.Fixture("bitnet-tiny-f32.gguf"));
        string arch = f.Architecture!, newArch = Environment.GetEnvironmentVariable("ROTOR_GGUF_WRITE_ARCH") is { Length: > 0 } a ? a : arch;
        foreach (GgmlType type in new[] { GgmlType.TQ1_0, GgmlType.TQ2_0, GgmlType.I2_S })
        {
            var w = new GgufWriter();
            foreach (var (key, value) in f.Metadata)
            {
                var (vt, element) = f.TypeOf(key);
                // llama.cpp's file types: 36 MOSTLY_TQ1_0, 37 MOSTLY_TQ2_0; bitnet.cpp's 40 MOSTLY_I2_S
                object v = key == "general.file_type" ? type switch { GgmlType.TQ1_0 => 36L, GgmlType.TQ2_0 => 37L, _ => 40L }
                    : key == "general.architecture" ? newArch : value;
                w.Add(key.StartsWith(arch + ".", StringComparison.Ordinal) ? newArch + key[arch.Length..] : key, vt, v, element);
            }
            foreach (var t in f.Tensors)
            {
                bool ternary = t.Dims.Length == 2 && !t.Name.StartsWith("token_embd", StringComparison.Ordinal);
                if (!ternary) { w.AddTensor(t.Name, t.Type == GgmlType.F32 && t.Dims.Length == 2 ? GgmlType.F16 : t.Type, t.Dims,
                    t.Dims.Length == 2 ? GgufWriter.EncodeF16(GgufTensors.ReadFloats(f, t)) : f.GetData(t).ToArray()); continue; }
                TernaryMatrix m = GgufTensors.ReadTernary(f, t);
                byte[] bytes = type switch { GgmlType.TQ1_0 => GgufWriter.EncodeTQ1_0(m), GgmlType.TQ2_0 => GgufWriter.EncodeTQ2_0(m), _ => GgufWriter.EncodeI2S(m) };
                w.AddTensor(t.Name, type, t.Dims, bytes);
            }
            string path = Path.Combine(dir, $"rotor-tiny-{GgmlTypeTraits.Of(type).Name}.gguf");
            w.Write(path);
            using var back = GgufFile.Open(path);
            foreach (var t in f.Tensors.Where(t => t.Dims.Length == 2 && !t.Name.StartsWith("token_embd", StringComparison.Ordinal)))
                Assert.Equal(GgufTensors.ReadTernary(f, t).ToTrits(), GgufTensors.ReadTernary(back, back.Get(t.Name)).ToTrits());
        }
    }
}

using System.Buffers.Binary;

namespace Rotor.Lm.Gguf;

/// <summary>Options of <see cref="GgufConverter.Create"/>.</summary>
public sealed record GgufConvertOptions
{
    /// <summary>Type of the ternary projections: TQ1_0, TQ2_0 or I2_S (bitnet.cpp, x86 layout). A tensor whose rows
    /// are not whole blocks of the type (256 weights for TQ, 128 for I2_S) is written as F16 instead, as llama.cpp's
    /// converters do.</summary>
    public GgmlType TernaryType { get; init; } = GgmlType.TQ2_0;
    /// <summary>Type of the token embedding and an untied head: F16 or F32.</summary>
    public GgmlType EmbeddingType { get; init; } = GgmlType.F16;
    /// <summary>The <c>general.architecture</c> to write; null chooses by the model: <c>bitnet-b1.58</c> for BitNet
    /// with squared ReLU, <c>bitnet</c> with SiLU, <c>llama</c> for float models.</summary>
    public string? Architecture { get; init; }
    /// <summary>Written as <c>general.name</c>.</summary>
    public string Name { get; init; } = "rotor";
    /// <summary>Called after each tensor with (tensors written, tensors in all).</summary>
    public Action<int, int>? Progress { get; init; }
}

/// <summary>
/// Writes a loaded model as a GGUF file that llama.cpp-family readers accept: llama.cpp's tensor names and
/// <c>{arch}.*</c> hyperparameter keys, norms in F32, ternary projections in TQ1_0 / TQ2_0 / I2_S, the embedding in
/// F16 or F32. Dense projections (float models) are written in F16 or F32, and q/k of rotate-half models are permuted
/// to adjacent pairs for the <c>llama</c> architecture, as llama.cpp's converter does. Tokenizer metadata is added by
/// the caller (<see cref="GgufWriter"/> keys).
/// </summary>
public static class GgufConverter
{
    /// <summary>The architecture name written for <paramref name="c"/> by default.</summary>
    public static string ArchitectureFor(ModelConfig c) => c.SubNorms
        ? (c.Activation == FfnActivation.Relu2 ? "bitnet-b1.58" : "bitnet")
        : "llama";

    /// <summary>A writer holding the model's metadata and tensors; add tokenizer keys, then <see cref="GgufWriter.Write"/>.</summary>
    /// <exception cref="RotorException">The architecture disagrees with the model, or a type is not one this writes.</exception>
    public static GgufWriter Create(ModelConfig c, ModelWeights w, GgufConvertOptions? options = null)
    {
        options ??= new GgufConvertOptions();
        string arch = options.Architecture ?? ArchitectureFor(c);
        var row = Loading.GgufArchitecture.Find(arch) ?? throw new RotorException($"--arch {arch} is not an architecture Rotor writes ({string.Join(", ", Loading.GgufArchitecture.All.Select(a => a.Name))})");
        if (row.SubNorms != c.SubNorms) throw new RotorException($"architecture {arch} {(row.SubNorms ? "needs" : "has no")} BitNet sub-norms; the model {(c.SubNorms ? "has" : "has none")}");
        if (options.TernaryType is not (GgmlType.TQ1_0 or GgmlType.TQ2_0 or GgmlType.I2_S))
            throw new RotorException($"ternary type {options.TernaryType} is not one Rotor writes (TQ1_0, TQ2_0, I2_S)");
        if (options.EmbeddingType is not (GgmlType.F16 or GgmlType.F32))
            throw new RotorException($"embedding type {options.EmbeddingType} is not one Rotor writes (F16, F32)");
        bool permute = arch == "llama" && c.Rope == RopeStyle.Half;
        if (row.Rope == RopeStyle.Half && c.Rope != RopeStyle.Half)
            throw new RotorException($"architecture {arch} rotates halves; this model's q/k are stored for adjacent pairs");

        var g = new GgufWriter();
        g.AddString("general.architecture", arch);
        g.AddString("general.name", options.Name);
        g.AddUInt32("general.quantization_version", 2);
        g.AddUInt32($"{arch}.vocab_size", (uint)c.VocabSize);
        g.AddUInt32($"{arch}.context_length", (uint)c.ContextLength);
        g.AddUInt32($"{arch}.embedding_length", (uint)c.Dim);
        g.AddUInt32($"{arch}.block_count", (uint)c.Layers);
        g.AddUInt32($"{arch}.feed_forward_length", (uint)c.FfnDim);
        g.AddUInt32($"{arch}.attention.head_count", (uint)c.Heads);
        g.AddUInt32($"{arch}.attention.head_count_kv", (uint)c.KvHeads);
        g.AddUInt32($"{arch}.attention.key_length", (uint)c.HeadDim);
        g.AddUInt32($"{arch}.attention.value_length", (uint)c.HeadDim);
        g.AddUInt32($"{arch}.rope.dimension_count", (uint)c.HeadDim);
        g.AddFloat32($"{arch}.rope.freq_base", c.RopeTheta);
        g.AddFloat32($"{arch}.attention.layer_norm_rms_epsilon", c.NormEps);

        int total = 3 + w.Layers.Length * (c.SubNorms ? 11 : 9) + (ReferenceEquals(w.LmHead, w.Embedding) ? 0 : 1), done = 0;
        void Tick() => options.Progress?.Invoke(++done, total);
        void Vector(string name, float[] v)
        {
            byte[] bytes = GgufWriter.EncodeF32(v);
            g.AddTensor(name, GgmlType.F32, [v.Length], bytes.Length, s => { s.Write(bytes); Tick(); });
        }
        void Dense(string name, DenseMatrix m, GgmlType type, int heads = 0)
        {
            int esz = type == GgmlType.F16 ? 2 : 4;
            g.AddTensor(name, type, [m.Cols, m.Rows], (long)m.Rows * m.Cols * esz, s =>
            {
                var f = new float[m.Cols];
                var bytes = new byte[m.Cols * esz];
                for (int r = 0; r < m.Rows; r++)
                {
                    m.GetRow(heads > 0 ? Unpermuted(r, m.Rows / heads) : r, f);
                    for (int j = 0; j < f.Length; j++)
                        if (esz == 2) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * j), (Half)f[j]);
                        else BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * j), f[j]);
                    s.Write(bytes);
                }
                Tick();
            });
        }
        void Linear(string name, LinearWeights lw, int heads = 0)
        {
            if (lw.Dense is { } d) { Dense(name, d, options.EmbeddingType, permute ? heads : 0); return; }
            var m = lw.Ternary!;
            if (permute && heads > 0) throw new RotorException($"{name}: permuting ternary q/k for the llama architecture is not supported");
            var tr = GgmlTypeTraits.Of(options.TernaryType);
            bool whole = options.TernaryType == GgmlType.I2_S ? m.Cols % tr.BlockSize == 0 : m.Cols % 256 == 0;
            if (!whole)
            {
                // Rows that are not whole blocks: F16 values trit * scale, as llama.cpp's fallback writes them.
                g.AddTensor(name, GgmlType.F16, [m.Cols, m.Rows], (long)m.Rows * m.Cols * 2, s =>
                {
                    var t = new sbyte[m.Cols];
                    var bytes = new byte[m.Cols * 2];
                    for (int r = 0; r < m.Rows; r++)
                    {
                        m.GetRow(r, t);
                        float sc = m.ScaleOf(r);
                        for (int j = 0; j < t.Length; j++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * j), (Half)(t[j] * sc));
                        s.Write(bytes);
                    }
                    Tick();
                });
                return;
            }
            if (options.TernaryType == GgmlType.I2_S && m.ScaleMode == ScaleMode.PerRow)
                throw new RotorException($"{name}: I2_S holds one scale a tensor; this matrix has one a row (use TQ1_0 or TQ2_0)");
            byte[] data = options.TernaryType switch
            {
                GgmlType.TQ1_0 => GgufWriter.EncodeTQ1_0(m),
                GgmlType.TQ2_0 => GgufWriter.EncodeTQ2_0(m),
                _ => GgufWriter.EncodeI2S(m),
            };
            g.AddTensor(name, options.TernaryType, [m.Cols, m.Rows], data.Length, s => { s.Write(data); Tick(); });
        }

        Dense("token_embd.weight", w.Embedding, options.EmbeddingType);
        var names = LayerTensorNames.Gguf;
        for (int l = 0; l < w.Layers.Length; l++)
        {
            var L = w.Layers[l];
            string N(string pattern) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, l);
            Vector(N(names.AttnNorm), L.AttnNorm);
            Linear(N(names.Wq), L.Wq, c.Heads);
            Linear(N(names.Wk), L.Wk, c.KvHeads);
            Linear(N(names.Wv), L.Wv);
            Linear(N(names.Wo), L.Wo);
            if (L.AttnSubNorm is { } asn) Vector(N(names.AttnSubNorm), asn);
            Vector(N(names.FfnNorm), L.FfnNorm);
            Linear(N(names.WGate), L.WGate);
            Linear(N(names.WUp), L.WUp);
            Linear(N(names.WDown), L.WDown);
            if (L.FfnSubNorm is { } fsn) Vector(N(names.FfnSubNorm), fsn);
        }
        Vector("output_norm.weight", w.FinalNorm);
        if (!ReferenceEquals(w.LmHead, w.Embedding)) Dense("output.weight", w.LmHead, options.EmbeddingType);
        return g;
    }

    /// <summary>The rotate-half row that goes to adjacent-pair row <paramref name="r"/> within heads of
    /// <paramref name="headDim"/> rows: pair (2i, 2i + 1) is (i, i + headDim / 2) of the same head.</summary>
    internal static int Unpermuted(int r, int headDim)
    {
        int h = r / headDim, within = r % headDim, half = headDim / 2;
        return h * headDim + (within % 2 == 0 ? within / 2 : within / 2 + half);
    }
}

using Rotor.Lm.Gguf;
using Rotor.Lm.Loading;

namespace Rotor.Lm;

/// <summary>
/// The memory a model will take once loaded, from its headers alone (GGUF tensor infos, safetensors headers and
/// config.json, the llama2.c header): no weight is read. Every matrix is counted in the layout Rotor converts it to
/// (<see cref="TernaryMatrix.BytesFor"/>, <see cref="DenseMatrix.BytesFor"/>) by the same rules as the loaders, so
/// <see cref="WeightBytes"/> equals <see cref="ModelWeights.Bytes"/> of the loaded model (tested on every fixture).
/// </summary>
/// <param name="Source">The file or folder.</param>
/// <param name="Format">"gguf", "hugging face" or "llama2.c".</param>
/// <param name="FileBytes">Bytes of the file (or of the folder's safetensors files).</param>
/// <param name="Config">The configuration.</param>
/// <param name="Linears">The layers' linear weights by kind ("ternary", "f32", "f16"): matrices and bytes.</param>
/// <param name="EmbeddingType">Element type of the token embedding.</param>
/// <param name="EmbeddingBytes">Bytes of the token embedding.</param>
/// <param name="LmHeadType">Element type of the LM head.</param>
/// <param name="LmHeadBytes">Bytes of the LM head when it is a matrix of its own; 0 when it is the embedding.</param>
/// <param name="NormBytes">Bytes of every norm vector.</param>
/// <param name="UncertainBytes">How much less <see cref="ModelWeights.Bytes"/> may be than <see cref="WeightBytes"/>: a
/// TQ1_0 or TQ2_0 matrix keeps one scale a tensor when all its block scales agree, else one a row, which only its data
/// tells; it is counted here at one a row (4 bytes a row), the most it can take.</param>
/// <param name="MappedBytes">Bytes of the weights the load keeps in the memory-mapped file instead of copying (the
/// token embedding, by <see cref="LanguageModelOptions.MapTiedHead"/>'s rule, where its stored type and row size allow;
/// x86 I2_S projections by <see cref="LanguageModelOptions.MapWeights"/>'): what <see cref="ModelWeights.MappedBytes"/>
/// will be.</param>
public sealed record ModelMemory(string Source, string Format, long FileBytes, ModelConfig Config,
    IReadOnlyList<(string Kind, int Matrices, long Bytes)> Linears, DenseType EmbeddingType, long EmbeddingBytes,
    DenseType LmHeadType, long LmHeadBytes, long NormBytes, long UncertainBytes, long MappedBytes)
{
    /// <summary>Bytes of every weight (a tied head counted once): what <see cref="ModelWeights.Bytes"/> will be, exactly
    /// or at most <see cref="UncertainBytes"/> less.</summary>
    public long WeightBytes => Linears.Sum(l => l.Bytes) + EmbeddingBytes + LmHeadBytes + NormBytes;

    /// <summary>Bytes the load allocates (<see cref="WeightBytes"/> less <see cref="MappedBytes"/>): the model's own
    /// copies, resident from the load on; what <see cref="ModelWeights.AllocatedBytes"/> will be, exactly or at most
    /// <see cref="UncertainBytes"/> less. Mapped weights become resident as file pages as they are read: an embedding
    /// a row a token, a mapped tied head all of it from the first decode step.</summary>
    public long AllocatedBytes => WeightBytes - MappedBytes;

    /// <summary>Bytes the key/value cache takes a token (float32 keys and values, every layer).</summary>
    public long KvBytesPerToken => Config.KvBytesPerToken();

    /// <summary>Weights plus the key/value cache of <paramref name="tokens"/> positions.</summary>
    public long TotalBytes(int tokens) => WeightBytes + KvBytesPerToken * tokens;

    /// <summary>Reads the headers of <paramref name="path"/> (a GGUF file, a Hugging Face folder or a llama2.c
    /// checkpoint) and works out the memory; <paramref name="lmHeadType"/> is <c>--lm-head</c>'s choice (null: the file's),
    /// <paramref name="mapTiedHead"/> <see cref="LanguageModelOptions.MapTiedHead"/>'s and <paramref name="mapWeights"/>
    /// <see cref="LanguageModelOptions.MapWeights"/>'s (null: their defaults).</summary>
    /// <exception cref="RotorException">The path is not a model, or a header, shape or type is invalid (named as the
    /// loader names it).</exception>
    public static ModelMemory Of(string path, DenseType? lmHeadType = null, bool? mapTiedHead = null, bool? mapWeights = null)
    {
        bool mapTied = mapTiedHead ?? new LanguageModelOptions().MapTiedHead;
        bool mapTernary = mapWeights ?? new LanguageModelOptions().MapWeights;
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path) && !Directory.Exists(path)) throw new RotorException($"{path}: no such file or folder");
        ModelMemory m;
        if (Directory.Exists(path))
        {
            if (!HuggingFaceLoader.Probe(path)) throw new RotorException($"{path}: a folder without config.json is not a Hugging Face model");
            m = HuggingFace(path);
        }
        else if (GgufLoader.Probe(path)) m = GgufFileOf(path, lmHeadType, mapTied, mapTernary);
        else if (Llama2cLoader.Probe(path)) m = Llama2c(path);
        else throw new RotorException($"{path}: not a model this version reads (a GGUF file, a Hugging Face folder with config.json, or a llama2.c checkpoint)");
        // LanguageModel.Load converts the head to the type asked for (a tied head then becomes a matrix of its own).
        if (lmHeadType is { } t && t != m.LmHeadType)
            m = m with { LmHeadType = t, LmHeadBytes = DenseMatrix.BytesFor(m.Config.VocabSize, m.Config.Dim, t) };
        return m;
    }

    private static long Norms(ModelConfig c)
        => 4L * (c.Dim + (long)c.Layers * (2L * c.Dim + (c.SubNorms ? c.QDim + c.FfnDim : 0)));

    /// <summary>The (name, out, in) of every linear layer, by <see cref="LayerTensorNames"/>.</summary>
    private static IEnumerable<(string Name, int Rows, int Cols)> LinearShapes(ModelConfig c, LayerTensorNames n)
    {
        for (int l = 0; l < c.Layers; l++)
        {
            string N(string pattern) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, l);
            yield return (N(n.Wq), c.QDim, c.Dim); yield return (N(n.Wk), c.KvDim, c.Dim); yield return (N(n.Wv), c.KvDim, c.Dim);
            yield return (N(n.Wo), c.Dim, c.QDim); yield return (N(n.WGate), c.FfnDim, c.Dim); yield return (N(n.WUp), c.FfnDim, c.Dim);
            yield return (N(n.WDown), c.Dim, c.FfnDim);
        }
    }

    /// <summary>The norm vectors' names and lengths, checked where a format lists its tensors.</summary>
    private static IEnumerable<(string Name, int Length)> NormShapes(ModelConfig c, LayerTensorNames n)
    {
        for (int l = 0; l < c.Layers; l++)
        {
            string N(string pattern) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, l);
            yield return (N(n.AttnNorm), c.Dim); yield return (N(n.FfnNorm), c.Dim);
            if (c.SubNorms) { yield return (N(n.AttnSubNorm), c.QDim); yield return (N(n.FfnSubNorm), c.FfnDim); }
        }
    }

    private static IReadOnlyList<(string, int, long)> Group(IEnumerable<(string Kind, long Bytes, long Uncertain)> linears)
        => linears.GroupBy(x => x.Kind).Select(g => (g.Key, g.Count(), g.Sum(x => x.Bytes))).ToList();

    private static ModelMemory GgufFileOf(string path, DenseType? lmHeadType, bool mapTiedHead, bool mapTernary)
    {
        using var f = GgufFile.Open(path);
        var (c, arch) = GgufLoader.ReadConfig(f);
        GgufTensorInfo Tensor(string name, params long[] dims)
        {
            var t = f.Get(name);
            if (!t.Dims.SequenceEqual(dims))
                throw new RotorException($"{f.Path}: tensor {name} has shape [{string.Join(", ", t.Dims)}], the configuration implies [{string.Join(", ", dims)}]");
            return t;
        }
        // GgufLoader's rule: F32 and BF16 become float32, every other dense type float16.
        static DenseType DenseOf(GgufTensorInfo t) => GgufLoader.DenseTypeOf(t.Type);
        foreach (var (name, length) in NormShapes(c, LayerTensorNames.Gguf)) Tensor(name, length);
        Tensor("output_norm.weight", c.Dim);
        var linears = LinearShapes(c, LayerTensorNames.Gguf).Select(x =>
        {
            var t = Tensor(x.Name, x.Cols, x.Rows);
            if (!(arch.BitLinear || t.Traits.IsTernary)) { var d = DenseOf(t); return (d.ToString().ToLowerInvariant(), DenseMatrix.BytesFor(x.Rows, x.Cols, d), 0L); }
            // GgufTensors.ReadTernary: I2_S and float tensors keep one scale; TQ1_0 and TQ2_0 one, or one a row when the
            // block scales differ between rows (counted at the most).
            bool tq = t.Type is GgmlType.TQ1_0 or GgmlType.TQ2_0;
            return ("ternary", TernaryMatrix.BytesFor(x.Rows, x.Cols, tq ? ScaleMode.PerRow : ScaleMode.PerTensor), tq ? (x.Rows - 1) * 4L : 0L);
        }).ToList();
        var embd = Tensor("token_embd.weight", c.Dim, c.VocabSize);
        var et = DenseOf(embd);
        DenseType ht = et; long headBytes = 0;
        if (!c.TiedEmbeddings)
        {
            ht = DenseOf(Tensor("output.weight", c.Dim, c.VocabSize));
            headBytes = DenseMatrix.BytesFor(c.VocabSize, c.Dim, ht);
        }
        long embeddingBytes = DenseMatrix.BytesFor(c.VocabSize, c.Dim, et);
        // LanguageModel.Load's rule; a view's rows are packed, so it reads the bytes a copy would hold.
        long mapped = LanguageModel.MapsEmbedding(c.TiedEmbeddings, et, lmHeadType, mapTiedHead) && GgufLoader.CanMap(embd) ? embeddingBytes : 0;
        // GgufLoader's rule for ternary views: their rows are the file's (only the scale is the model's own).
        if (mapTernary)
            foreach (var x in LinearShapes(c, LayerTensorNames.Gguf))
                if (f.Get(x.Name) is var t && (arch.BitLinear || t.Traits.IsTernary) && GgufTensors.CanMapTernary(t)) mapped += (long)x.Rows * x.Cols / 4;
        return new ModelMemory(path, "gguf", f.Length, c, Group(linears), et, embeddingBytes, ht, headBytes, Norms(c),
            linears.Sum(x => x.Item3), mapped);
    }

    private static ModelMemory HuggingFace(string folder)
    {
        var (c, form) = HuggingFaceLoader.ReadConfig(folder);
        using var st = SafetensorsArchive.Open(folder);
        // HuggingFaceLoader's rule: F16 stays float16, every other float type becomes float32.
        static DenseType DenseOf(TensorView t) => t.DType == "F16" ? DenseType.F16 : DenseType.F32;
        TensorView Matrix(string name, int rows, int cols)
        {
            var t = st.Get(name);
            if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
                throw new RotorException($"{t.File}: tensor {t.Name} has shape {t.ShapeText}, the configuration implies [{rows}, {cols}]");
            return t;
        }
        foreach (var (name, length) in NormShapes(c, LayerTensorNames.HuggingFace).Append(("model.norm.weight", c.Dim)))
        {
            var t = st.Get(name);
            if (t.Shape.Length != 1 || t.Shape[0] != length) throw new RotorException($"{t.File}: tensor {name} has shape {t.ShapeText}, the configuration implies [{length}]");
        }
        var linears = LinearShapes(c, LayerTensorNames.HuggingFace).Select(x =>
        {
            if (form is null) { var d = DenseOf(Matrix(x.Name, x.Rows, x.Cols)); return (d.ToString().ToLowerInvariant(), DenseMatrix.BytesFor(x.Rows, x.Cols, d), 0L); }
            if (form == BitLinearForm.Online) Matrix(x.Name, x.Rows, x.Cols);
            else
            {
                var t = st.Get(x.Name);
                if (x.Rows % 4 != 0 || t.Shape.Length != 2 || t.Shape[0] != x.Rows / 4 || t.Shape[1] != x.Cols)
                    throw new RotorException($"{t.File}: tensor {x.Name} has shape {t.ShapeText}, the configuration implies packed [{x.Rows / 4}, {x.Cols}]");
            }
            return ("ternary", TernaryMatrix.BytesFor(x.Rows, x.Cols, ScaleMode.PerTensor), 0L);
        }).ToList();
        var et = DenseOf(Matrix("model.embed_tokens.weight", c.VocabSize, c.Dim));
        bool tied = c.TiedEmbeddings || !st.Contains("lm_head.weight");
        DenseType ht = tied ? et : DenseOf(Matrix("lm_head.weight", c.VocabSize, c.Dim));
        long fileBytes = Directory.EnumerateFiles(folder, "*.safetensors").Sum(p => new FileInfo(p).Length);
        return new ModelMemory(folder, "hugging face", fileBytes, c with { TiedEmbeddings = tied }, Group(linears), et,
            DenseMatrix.BytesFor(c.VocabSize, c.Dim, et), ht, tied ? 0 : DenseMatrix.BytesFor(c.VocabSize, c.Dim, ht), Norms(c), 0, 0);
    }

    private static ModelMemory Llama2c(string path)
    {
        // Llama2cLoader: every matrix float32; the header's sign of vocab_size says whether the head is shared.
        var (c, shared) = Llama2cLoader.ReadHeader(path);
        var linears = LinearShapes(c, LayerTensorNames.Gguf).Select(x => ("f32", DenseMatrix.BytesFor(x.Rows, x.Cols, DenseType.F32), 0L)).ToList();
        long matrix = DenseMatrix.BytesFor(c.VocabSize, c.Dim, DenseType.F32);
        return new ModelMemory(path, "llama2.c", new FileInfo(path).Length, c, Group(linears), DenseType.F32, matrix, DenseType.F32, shared ? 0 : matrix, Norms(c), 0, 0);
    }
}

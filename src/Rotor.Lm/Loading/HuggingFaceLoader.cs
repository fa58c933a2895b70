using System.Numerics.Tensors;
using System.Text.Json;

namespace Rotor.Lm.Loading;

/// <summary>How a BitNet checkpoint stores its BitLinear weights (from <c>quantization_config</c>).</summary>
public enum BitLinearForm
{
    /// <summary>Float master weights, quantized at load by absmean (<c>quantization_mode: online</c>, "-bf16"
    /// checkpoints).</summary>
    Online = 0,
    /// <summary>Packed uint8 (out/4, in), four rows a byte, with <c>weight_scale</c> that the output is divided by
    /// (<c>linear_class: bitlinear</c>).</summary>
    PackedDivide = 1,
    /// <summary>Packed as above, with <c>weight_scale</c> that the output is multiplied by (<c>linear_class:
    /// autobitlinear</c>, offline).</summary>
    PackedMultiply = 2,
}

/// <summary>
/// Loads Hugging Face model folders: <c>config.json</c> plus <c>model.safetensors</c> (or shards listed in
/// <c>model.safetensors.index.json</c>), memory-mapped. Architectures: <c>BitNetForCausalLM</c> (model_type
/// <c>bitnet</c>: ternary q/k/v/o/gate/up/down, int8 activations, sub-norms, squared ReLU) and
/// <c>LlamaForCausalLM</c> (float weights, SiLU). Both use rotate-half rotary embeddings.
/// </summary>
public static class HuggingFaceLoader
{
    /// <summary>Whether <paramref name="path"/> is a folder with a config.json.</summary>
    public static bool Probe(string path) => Directory.Exists(path) && File.Exists(Path.Combine(path, "config.json"));

    /// <summary>Reads config.json into a configuration and the BitLinear storage form.</summary>
    /// <exception cref="RotorException">The file is missing, not JSON, names an unknown architecture or activation,
    /// lacks a field, or asks for something Rotor does not run (rope scaling, biases).</exception>
    public static (ModelConfig Config, BitLinearForm? Form) ReadConfig(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path)) throw new RotorException($"{folder}: no config.json");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            string modelType = Str(root, "model_type", path) ?? throw new RotorException($"{path}: model_type is missing");
            bool bitnet = modelType switch
            {
                "bitnet" => true,
                "llama" => false,
                _ => throw new RotorException($"{path}: model_type {modelType} is not supported (bitnet, llama)"),
            };
            int Int(string name, int? fallback = null)
            {
                if (root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
                if (root.TryGetProperty(name, out v) && v.ValueKind != JsonValueKind.Null) throw new RotorException($"{path}: {name} = {v} is not an integer");
                return fallback ?? throw new RotorException($"{path}: {name} is missing");
            }
            float Num(string name, float fallback)
            {
                if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
                if (v.ValueKind != JsonValueKind.Number) throw new RotorException($"{path}: {name} = {v} is not a number");
                return v.GetSingle();
            }
            if (root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object
                && !(rs.TryGetProperty("rope_type", out var rt) && rt.GetString() == "default"))
                throw new RotorException($"{path}: rope_scaling {rs} is not supported");
            foreach (string b in new[] { "attention_bias", "mlp_bias" })
                if (root.TryGetProperty(b, out var bv) && bv.ValueKind == JsonValueKind.True) throw new RotorException($"{path}: {b} = true is not supported");
            string act = Str(root, "hidden_act", path) ?? (bitnet ? "relu2" : "silu");
            var activation = act switch
            {
                "relu2" => FfnActivation.Relu2,
                "silu" or "swish" => FfnActivation.Silu,
                _ => throw new RotorException($"{path}: hidden_act {act} is not supported (relu2, silu)"),
            };
            int dim = Int("hidden_size"), heads = Int("num_attention_heads");
            var c = new ModelConfig
            {
                Architecture = modelType,
                Dim = dim, Layers = Int("num_hidden_layers"), Heads = heads, KvHeads = Int("num_key_value_heads", heads),
                HeadDim = Int("head_dim", heads > 0 ? dim / heads : 0), FfnDim = Int("intermediate_size"), VocabSize = Int("vocab_size"),
                ContextLength = Int("max_position_embeddings", 2048), RopeTheta = Num("rope_theta", 10000f),
                NormEps = Num("rms_norm_eps", 1e-6f), Activation = activation, Rope = RopeStyle.Half,
                SubNorms = bitnet, TiedEmbeddings = root.TryGetProperty("tie_word_embeddings", out var tie) && tie.ValueKind == JsonValueKind.True,
            };
            c.Validate(path);
            BitLinearForm? form = null;
            if (bitnet)
            {
                form = BitLinearForm.Online;
                if (root.TryGetProperty("quantization_config", out var q) && q.ValueKind == JsonValueKind.Object)
                {
                    string? method = Str(q, "quant_method", path);
                    if (method is not null && method != "bitnet") throw new RotorException($"{path}: quantization_config.quant_method {method} is not supported (bitnet)");
                    string linear = Str(q, "linear_class", path) ?? "bitlinear";
                    string mode = Str(q, "quantization_mode", path) ?? "offline";
                    form = (linear, mode) switch
                    {
                        (_, "online") => BitLinearForm.Online,
                        ("bitlinear", "offline") => BitLinearForm.PackedDivide,
                        ("autobitlinear", "offline") => BitLinearForm.PackedMultiply,
                        _ => throw new RotorException($"{path}: quantization_config linear_class {linear} with quantization_mode {mode} is not supported"),
                    };
                }
            }
            return (c, form);
        }
    }

    private static string? Str(JsonElement e, string name, string path)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw new RotorException($"{path}: {name} = {v} is not a string");
        return v.GetString();
    }

    /// <summary>Loads the folder. Dense float weights become <paramref name="denseType"/> (default: F16 for F16
    /// files, F32 otherwise, so that F32 and BF16 values stay exact).</summary>
    public static (ModelConfig Config, ModelWeights Weights) Load(string folder, DenseType? denseType = null)
    {
        var (c, form) = ReadConfig(folder);
        using var st = SafetensorsArchive.Open(folder);
        DenseType Dense(TensorView t) => denseType ?? (t.DType == "F16" ? DenseType.F16 : DenseType.F32);

        DenseMatrix Matrix(string name, int rows, int cols)
        {
            var t = st.Get(name);
            CheckShape(t, rows, cols);
            var m = DenseMatrix.CreateUninitialized(rows, cols, Dense(t));   // every row is set below
            var row = new float[cols];
            for (int r = 0; r < rows; r++) { SafetensorsArchive.ReadFloats(t, (long)r * cols, row); m.SetRow(r, row); }
            return m;
        }
        float[] Vector(string name, int n)
        {
            var t = st.Get(name);
            if (t.Shape.Length != 1 || t.Shape[0] != n) throw new RotorException($"{t.File}: tensor {name} has shape {t.ShapeText}, the configuration implies [{n}]");
            return st.ReadFloats(t);
        }
        LinearWeights Linear(string name, int rows, int cols)
        {
            if (form is null) return new LinearWeights(Matrix(name, rows, cols));
            var t = st.Get(name);
            if (form == BitLinearForm.Online)
            {
                CheckShape(t, rows, cols);
                return new LinearWeights(QuantizeOnline(st.ReadFloats(t), rows, cols, $"{t.File}: tensor {name}"));
            }
            return new LinearWeights(Unpack(st, t, name, rows, cols, form.Value));
        }

        var layers = LayerTensorNames.HuggingFace.BuildLayers(c, Vector, Linear);
        var embedding = Matrix("model.embed_tokens.weight", c.VocabSize, c.Dim);
        bool tied = c.TiedEmbeddings || !st.Contains("lm_head.weight");
        var weights = new ModelWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = Vector("model.norm.weight", c.Dim),
            LmHead = tied ? embedding : Matrix("lm_head.weight", c.VocabSize, c.Dim),
        };
        weights.Validate(c, folder);
        return (c with { TiedEmbeddings = tied }, weights);
    }

    private static void CheckShape(TensorView t, int rows, int cols)
    {
        if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
            throw new RotorException($"{t.File}: tensor {t.Name} has shape {t.ShapeText}, the configuration implies [{rows}, {cols}]");
    }

    /// <summary>BitNet's online weight quantization, as transformers computes it in float32:
    /// <c>s = 1 / max(mean|W|, 1e-5)</c>, <c>trit = clamp(round(W * s), -1, 1)</c> (round half to even), and the layer
    /// computes with <c>trit / s</c>.</summary>
    internal static TernaryMatrix QuantizeOnline(float[] w, int rows, int cols, string where)
    {
        double sum = 0;
        foreach (float v in w)
        {
            if (!float.IsFinite(v)) throw new RotorException($"{where}: holds a non-finite weight");
            sum += MathF.Abs(v);
        }
        float mean = (float)(sum / w.Length);
        float s = 1f / MathF.Max(mean, 1e-5f);
        var trits = new sbyte[w.Length];
        for (int i = 0; i < w.Length; i++) trits[i] = (sbyte)Math.Clamp(MathF.Round(w[i] * s), -1f, 1f);
        return TernaryMatrix.FromTrits(trits, rows, cols, [1f / s]);
    }

    /// <summary>transformers' packed BitLinear weights: uint8 (rows / 4, cols); row <c>i * rows/4 + p</c> is bits
    /// <c>2i .. 2i+1</c> of packed row p, minus one. The scale tensor <c>weight_scale</c> (one value) divides or multiplies
    /// the output per <paramref name="form"/>.</summary>
    private static unsafe TernaryMatrix Unpack(SafetensorsArchive st, TensorView t, string name, int rows, int cols, BitLinearForm form)
    {
        if (t.DType != "U8") throw new RotorException($"{t.File}: tensor {name} has dtype {t.DType}; the configuration's packed BitLinear form stores U8");
        if (rows % 4 != 0 || t.Shape.Length != 2 || t.Shape[0] != rows / 4 || t.Shape[1] != cols)
            throw new RotorException($"{t.File}: tensor {name} has shape {t.ShapeText}, the configuration implies packed [{rows / 4}, {cols}]");
        string scaleName = name[..^".weight".Length] + ".weight_scale";
        var st2 = st.Get(scaleName);
        if (st2.Elements != 1) throw new RotorException($"{st2.File}: tensor {scaleName} has shape {st2.ShapeText}, expected one value");
        float scale = st.ReadFloats(st2)[0];
        if (!(scale > 0) || !float.IsFinite(scale)) throw new RotorException($"{st2.File}: tensor {scaleName} = {scale} is not a positive scale");
        int p = rows / 4;
        var trits = new sbyte[(long)rows * cols];
        byte* src = t.Data;
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < p; r++)
                for (int col = 0; col < cols; col++)
                {
                    int code = (src[(long)r * cols + col] >> (2 * i)) & 3;
                    if (code == 3) throw new RotorException($"{t.File}: tensor {name} holds the invalid code 3 at [{r}, {col}]");
                    trits[(long)(i * p + r) * cols + col] = (sbyte)(code - 1);
                }
        float real = form == BitLinearForm.PackedDivide ? 1f / scale : scale;
        return TernaryMatrix.FromTrits(trits, rows, cols, [real]);
    }
}

using Rotor.Kernels;

namespace Rotor.Lm;

/// <summary>
/// The weights of one linear layer <c>y = W x</c>, W (Rows = out, Cols = in): ternary (BitNet's BitLinear: the input is
/// quantized to int8 per token by absmax, <see cref="TernaryMatrix"/> holds the trits and their scale) or dense.
/// </summary>
public sealed class LinearWeights
{
    /// <summary>The ternary matrix, or null for a dense layer.</summary>
    public TernaryMatrix? Ternary { get; }
    /// <summary>The dense matrix, or null for a ternary layer.</summary>
    public DenseMatrix? Dense { get; }
    /// <summary>Output features.</summary>
    public int Rows => Ternary?.Rows ?? Dense!.Rows;
    /// <summary>Input features.</summary>
    public int Cols => Ternary?.Cols ?? Dense!.Cols;
    /// <summary>Bytes the weights hold (a ternary or dense matrix's data), whether copies or views of the model file.</summary>
    public long Bytes => Ternary?.DataBytes ?? Dense!.DataBytes;
    /// <summary>Bytes the weights allocated: <see cref="Bytes"/> for a copy; for a ternary view of the mapped model file
    /// only its scales.</summary>
    public long AllocatedBytes => Ternary?.AllocatedBytes ?? Dense!.AllocatedBytes;
    /// <summary>"ternary" or the dense element type, for reports.</summary>
    public string Kind => Ternary is not null ? "ternary" : Dense!.Type.ToString().ToLowerInvariant();

    /// <summary>A BitLinear layer.</summary>
    public LinearWeights(TernaryMatrix w) => Ternary = w ?? throw new ArgumentNullException(nameof(w));
    /// <summary>A dense layer.</summary>
    public LinearWeights(DenseMatrix w) => Dense = w ?? throw new ArgumentNullException(nameof(w));
}

/// <summary>The weights of one decoder layer; shapes in (out, in) order.</summary>
public sealed class LayerWeights
{
    /// <summary>RMSNorm before attention, (dim).</summary>
    public required float[] AttnNorm { get; init; }
    /// <summary>Query projection, (qDim, dim).</summary>
    public required LinearWeights Wq { get; init; }
    /// <summary>Key projection, (kvDim, dim).</summary>
    public required LinearWeights Wk { get; init; }
    /// <summary>Value projection, (kvDim, dim).</summary>
    public required LinearWeights Wv { get; init; }
    /// <summary>Output projection, (dim, qDim).</summary>
    public required LinearWeights Wo { get; init; }
    /// <summary>BitNet's RMSNorm before the output projection, (qDim), or null.</summary>
    public float[]? AttnSubNorm { get; init; }
    /// <summary>RMSNorm before the feed-forward block, (dim).</summary>
    public required float[] FfnNorm { get; init; }
    /// <summary>Gate projection, (ffn, dim).</summary>
    public required LinearWeights WGate { get; init; }
    /// <summary>Up projection, (ffn, dim).</summary>
    public required LinearWeights WUp { get; init; }
    /// <summary>Down projection, (dim, ffn).</summary>
    public required LinearWeights WDown { get; init; }
    /// <summary>BitNet's RMSNorm before the down projection, (ffn), or null.</summary>
    public float[]? FfnSubNorm { get; init; }

    /// <summary>The seven linear layers with their GGUF names.</summary>
    public IEnumerable<(string Name, LinearWeights W)> Linears =>
        [("attn_q", Wq), ("attn_k", Wk), ("attn_v", Wv), ("attn_output", Wo), ("ffn_gate", WGate), ("ffn_up", WUp), ("ffn_down", WDown)];
}

/// <summary>The names of one layer's tensors in a file format, with <c>{0}</c> for the layer index: the one place each
/// format's naming is written down (loaders and the GGUF writer read it).</summary>
public sealed record LayerTensorNames(string AttnNorm, string Wq, string Wk, string Wv, string Wo, string AttnSubNorm,
    string FfnNorm, string WGate, string WUp, string WDown, string FfnSubNorm)
{
    /// <summary>llama.cpp's GGUF names (<c>blk.N.attn_q.weight</c> ...).</summary>
    public static LayerTensorNames Gguf { get; } = new("blk.{0}.attn_norm.weight", "blk.{0}.attn_q.weight", "blk.{0}.attn_k.weight",
        "blk.{0}.attn_v.weight", "blk.{0}.attn_output.weight", "blk.{0}.attn_sub_norm.weight", "blk.{0}.ffn_norm.weight",
        "blk.{0}.ffn_gate.weight", "blk.{0}.ffn_up.weight", "blk.{0}.ffn_down.weight", "blk.{0}.ffn_sub_norm.weight");

    /// <summary>Hugging Face's <c>LlamaForCausalLM</c> / <c>BitNetForCausalLM</c> names.</summary>
    public static LayerTensorNames HuggingFace { get; } = new("model.layers.{0}.input_layernorm.weight",
        "model.layers.{0}.self_attn.q_proj.weight", "model.layers.{0}.self_attn.k_proj.weight", "model.layers.{0}.self_attn.v_proj.weight",
        "model.layers.{0}.self_attn.o_proj.weight", "model.layers.{0}.self_attn.attn_sub_norm.weight",
        "model.layers.{0}.post_attention_layernorm.weight", "model.layers.{0}.mlp.gate_proj.weight", "model.layers.{0}.mlp.up_proj.weight",
        "model.layers.{0}.mlp.down_proj.weight", "model.layers.{0}.mlp.ffn_sub_norm.weight");

    /// <summary>Builds every layer of <paramref name="c"/> by reading vectors (name, length) and linear layers
    /// (name, out, in) under these names; layers are read on every processor at once (the callbacks must be safe for
    /// that: the loaders only read their memory-mapped files), since converting and first-touching the weights is most
    /// of a load.</summary>
    public LayerWeights[] BuildLayers(ModelConfig c, Func<string, int, float[]> vector, Func<string, int, int, LinearWeights> linear)
    {
        ArgumentNullException.ThrowIfNull(c); ArgumentNullException.ThrowIfNull(vector); ArgumentNullException.ThrowIfNull(linear);
        var layers = new LayerWeights[c.Layers];
        try { Parallel.For(0, c.Layers, Rotor.Threading.ThreadCount.Options(), l => layers[l] = Build(l)); }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // The first layer's error, as a sequential load would report it.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        return layers;

        LayerWeights Build(int l)
        {
            string N(string pattern) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, l);
            return new LayerWeights
            {
                AttnNorm = vector(N(AttnNorm), c.Dim),
                Wq = linear(N(Wq), c.QDim, c.Dim), Wk = linear(N(Wk), c.KvDim, c.Dim), Wv = linear(N(Wv), c.KvDim, c.Dim),
                Wo = linear(N(Wo), c.Dim, c.QDim),
                AttnSubNorm = c.SubNorms ? vector(N(AttnSubNorm), c.QDim) : null,
                FfnNorm = vector(N(FfnNorm), c.Dim),
                WGate = linear(N(WGate), c.FfnDim, c.Dim), WUp = linear(N(WUp), c.FfnDim, c.Dim), WDown = linear(N(WDown), c.Dim, c.FfnDim),
                FfnSubNorm = c.SubNorms ? vector(N(FfnSubNorm), c.FfnDim) : null,
            };
        }
    }
}

/// <summary>All weights of a decoder-only model (the run state and the cache live elsewhere).</summary>
public sealed class ModelWeights
{
    /// <summary>Token embedding, (vocab, dim).</summary>
    public required DenseMatrix Embedding { get; init; }
    /// <summary>The decoder layers.</summary>
    public required LayerWeights[] Layers { get; init; }
    /// <summary>Final RMSNorm, (dim).</summary>
    public required float[] FinalNorm { get; init; }
    /// <summary>LM head, (vocab, dim): the embedding itself when tied, unless a different type was asked for.</summary>
    public required DenseMatrix LmHead { get; init; }

    /// <summary>The read-only mapping of the model file that views among these weights read (a token embedding or
    /// ternary projections kept in the file, <see cref="DenseMatrix.IsView"/>, <see cref="TernaryMatrix.IsView"/>), or null when every weight is a copy. Whoever owns the weights
    /// closes it when done (<see cref="LanguageModel.Dispose"/>); views read after that throw
    /// <see cref="ObjectDisposedException"/>.</summary>
    public System.Runtime.InteropServices.SafeHandle? Mapping { get; init; }

    /// <summary>Bytes of every weight (a tied head counted once): what the model reads, copies and views alike.</summary>
    public long Bytes => AllocatedBytes + MappedBytes;

    /// <summary>Bytes of the weights that are views of the model file (<see cref="Mapping"/>): file pages, resident
    /// only once read (an embedding, a row a token; ternary projections, all of them at the first token), shared with
    /// the page cache.</summary>
    public long MappedBytes
    {
        get
        {
            long b = Embedding.IsView ? Embedding.DataBytes : 0;
            if (!ReferenceEquals(LmHead, Embedding) && LmHead.IsView) b += LmHead.DataBytes;
            foreach (var l in Layers)
                foreach (var (_, w) in l.Linears) b += w.Bytes - w.AllocatedBytes;
            return b;
        }
    }

    /// <summary>Bytes the weights allocated: the model's own copies (converted layers, norms, a copied embedding or
    /// head), resident from the load on.</summary>
    public long AllocatedBytes
    {
        get
        {
            long b = Embedding.AllocatedBytes + FinalNorm.Length * 4L;
            if (!ReferenceEquals(LmHead, Embedding)) b += LmHead.AllocatedBytes;
            foreach (var l in Layers)
            {
                b += (l.AttnNorm.Length + l.FfnNorm.Length + (l.AttnSubNorm?.Length ?? 0) + (l.FfnSubNorm?.Length ?? 0)) * 4L;
                foreach (var (_, w) in l.Linears) b += w.AllocatedBytes;
            }
            return b;
        }
    }

    /// <summary>Checks every shape against <paramref name="c"/>; <paramref name="where"/> names the source.</summary>
    /// <exception cref="RotorException">A shape disagrees with the configuration.</exception>
    public void Validate(ModelConfig c, string where)
    {
        void Shape(string name, int rows, int cols, int er, int ec)
        {
            if (rows != er || cols != ec) throw new RotorException($"{where}: {name} is {rows}x{cols}, the configuration implies {er}x{ec}");
        }
        void Vec(string name, float[]? v, int n)
        {
            if (v is null) throw new RotorException($"{where}: {name} is missing");
            if (v.Length != n) throw new RotorException($"{where}: {name} has {v.Length} values, the configuration implies {n}");
        }
        Shape("token embedding", Embedding.Rows, Embedding.Cols, c.VocabSize, c.Dim);
        Shape("LM head", LmHead.Rows, LmHead.Cols, c.VocabSize, c.Dim);
        Vec("final norm", FinalNorm, c.Dim);
        if (Layers.Length != c.Layers) throw new RotorException($"{where}: {Layers.Length} layers, the configuration says {c.Layers}");
        for (int i = 0; i < Layers.Length; i++)
        {
            var l = Layers[i];
            string p = $"layer {i} ";
            Vec(p + "attention norm", l.AttnNorm, c.Dim);
            Vec(p + "feed-forward norm", l.FfnNorm, c.Dim);
            Shape(p + "attn_q", l.Wq.Rows, l.Wq.Cols, c.QDim, c.Dim);
            Shape(p + "attn_k", l.Wk.Rows, l.Wk.Cols, c.KvDim, c.Dim);
            Shape(p + "attn_v", l.Wv.Rows, l.Wv.Cols, c.KvDim, c.Dim);
            Shape(p + "attn_output", l.Wo.Rows, l.Wo.Cols, c.Dim, c.QDim);
            Shape(p + "ffn_gate", l.WGate.Rows, l.WGate.Cols, c.FfnDim, c.Dim);
            Shape(p + "ffn_up", l.WUp.Rows, l.WUp.Cols, c.FfnDim, c.Dim);
            Shape(p + "ffn_down", l.WDown.Rows, l.WDown.Cols, c.Dim, c.FfnDim);
            if (c.SubNorms)
            {
                Vec(p + "attn_sub_norm", l.AttnSubNorm, c.QDim);
                Vec(p + "ffn_sub_norm", l.FfnSubNorm, c.FfnDim);
            }
        }
    }
}

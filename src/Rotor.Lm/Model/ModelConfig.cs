namespace Rotor.Lm;

/// <summary>The gate activation of the feed-forward block: <c>down(act(gate(x)) * up(x))</c>.</summary>
public enum FfnActivation
{
    /// <summary>SiLU, <c>x * sigmoid(x)</c> (Llama).</summary>
    Silu = 0,
    /// <summary>Squared ReLU, <c>relu(x)^2</c> (BitNet b1.58, <c>hidden_act = relu2</c>).</summary>
    Relu2 = 1,
}

/// <summary>Which pairs of a head's dimensions a rotary embedding rotates together.</summary>
public enum RopeStyle
{
    /// <summary>Adjacent pairs (2i, 2i + 1): llama2.c, GGUF <c>llama</c> (weights permuted by the converter).</summary>
    Interleaved = 0,
    /// <summary>Halves (i, i + headDim / 2), "rotate_half": Hugging Face Llama and BitNet, GPT-NeoX.</summary>
    Half = 1,
}

/// <summary>
/// The hyperparameters of a decoder-only transformer, as read from a model file's metadata. One decoder runs every
/// model these describe: Llama-architecture models with float weights and BitNet b1.58 models with ternary weights,
/// int8 activations and the extra sub-norms.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Architecture name as the file gives it ("llama", "bitnet", ...).</summary>
    public required string Architecture { get; init; }
    /// <summary>Hidden size (embedding width).</summary>
    public required int Dim { get; init; }
    /// <summary>Decoder layers.</summary>
    public required int Layers { get; init; }
    /// <summary>Query heads.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="Heads"/>).</summary>
    public required int KvHeads { get; init; }
    /// <summary>Width of one head.</summary>
    public required int HeadDim { get; init; }
    /// <summary>Feed-forward inner width.</summary>
    public required int FfnDim { get; init; }
    /// <summary>Vocabulary size (rows of the embedding and the LM head).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Longest sequence the model was trained for: the default context.</summary>
    public required int ContextLength { get; init; }
    /// <summary>Rotary embedding base.</summary>
    public required float RopeTheta { get; init; }
    /// <summary>RMSNorm epsilon.</summary>
    public required float NormEps { get; init; }
    /// <summary>Gate activation of the feed-forward block.</summary>
    public required FfnActivation Activation { get; init; }
    /// <summary>Rotary pairing convention of the stored q/k weights.</summary>
    public required RopeStyle Rope { get; init; }
    /// <summary>BitNet's <c>attn_sub_norm</c> before the output projection and <c>ffn_sub_norm</c> before the down
    /// projection.</summary>
    public bool SubNorms { get; init; }
    /// <summary>The LM head is the token embedding.</summary>
    public bool TiedEmbeddings { get; init; }

    /// <summary>Query width, <c>Heads * HeadDim</c>.</summary>
    public int QDim => Heads * HeadDim;
    /// <summary>Key/value width, <c>KvHeads * HeadDim</c>.</summary>
    public int KvDim => KvHeads * HeadDim;

    /// <summary>Checks that the numbers fit together; <paramref name="where"/> names the source in the message.</summary>
    /// <exception cref="RotorException">A value is out of range or inconsistent.</exception>
    public void Validate(string where)
    {
        void Positive(int v, string name) { if (v <= 0) throw new RotorException($"{where}: {name} = {v}, expected a positive number"); }
        Positive(Dim, "hidden size"); Positive(Layers, "layer count"); Positive(Heads, "head count");
        Positive(KvHeads, "key/value head count"); Positive(HeadDim, "head size"); Positive(FfnDim, "feed-forward size");
        Positive(VocabSize, "vocabulary size"); Positive(ContextLength, "context length");
        if (Heads % KvHeads != 0) throw new RotorException($"{where}: {Heads} heads are not a multiple of {KvHeads} key/value heads");
        if (HeadDim % 2 != 0) throw new RotorException($"{where}: head size {HeadDim} is odd; rotary embeddings rotate pairs");
        if (!(RopeTheta > 0) || !float.IsFinite(RopeTheta)) throw new RotorException($"{where}: rope theta {RopeTheta} is not a positive number");
        if (!(NormEps > 0) || !float.IsFinite(NormEps)) throw new RotorException($"{where}: norm epsilon {NormEps} is not a positive number");
    }

    /// <summary>Bytes the key/value cache takes per token (float32 keys and values, every layer).</summary>
    public long KvBytesPerToken(int bytesPerValue = 4) => 2L * Layers * KvDim * bytesPerValue;

    /// <summary>Bytes the key/value cache takes a token when it stores <paramref name="type"/> values.</summary>
    public long KvBytesPerToken(KvCacheType type) => KvBytesPerToken(type == KvCacheType.F16 ? 2 : 4);
}

using Rotor.Lm.Gguf;

namespace Rotor.Lm.Loading;

/// <summary>
/// What a GGUF <c>general.architecture</c> means for the decoder: one row per architecture Rotor runs. The activation
/// and rotary convention are those of the graph the reference implementation builds for that name (llama.cpp's
/// <c>bitnet</c> graph gates with SiLU and uses NeoX rotary; bitnet.cpp's <c>bitnet-b1.58</c>, the 2B4T converter's
/// name, gates with squared ReLU; <c>llama</c> files hold q/k permuted for adjacent-pair rotation).
/// </summary>
/// <param name="Name">The <c>general.architecture</c> value, also the prefix of its hyperparameter keys.</param>
/// <param name="Activation">Feed-forward gate activation.</param>
/// <param name="Rope">Rotary pairing of the stored q/k.</param>
/// <param name="SubNorms">attn_sub_norm and ffn_sub_norm tensors.</param>
/// <param name="BitLinear">Linear layers are BitLinear (ternary weights, int8 activations) whatever their stored type.</param>
public sealed record GgufArchitecture(string Name, FfnActivation Activation, RopeStyle Rope, bool SubNorms, bool BitLinear)
{
    /// <summary>The architectures Rotor reads.</summary>
    public static IReadOnlyList<GgufArchitecture> All { get; } =
    [
        new("llama", FfnActivation.Silu, RopeStyle.Interleaved, SubNorms: false, BitLinear: false),
        new("bitnet", FfnActivation.Silu, RopeStyle.Half, SubNorms: true, BitLinear: true),
        new("bitnet-b1.58", FfnActivation.Relu2, RopeStyle.Half, SubNorms: true, BitLinear: true),
        new("bitnet-25", FfnActivation.Relu2, RopeStyle.Half, SubNorms: true, BitLinear: true),
    ];

    /// <summary>The row named <paramref name="name"/>, or null.</summary>
    public static GgufArchitecture? Find(string name) => All.FirstOrDefault(a => a.Name == name);
}

/// <summary>Loads a decoder from a GGUF file: hyperparameters from <c>{arch}.*</c> keys, weights by llama.cpp's tensor
/// names (<c>token_embd</c>, <c>blk.N.attn_q</c> ... <c>output_norm</c>, <c>output</c> when not tied).</summary>
public static class GgufLoader
{
    /// <summary>Whether <paramref name="path"/> starts with the GGUF magic.</summary>
    public static bool Probe(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> m = stackalloc byte[4];
            return f.Read(m) == 4 && m.SequenceEqual("GGUF"u8);
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>Reads the configuration of an open file.</summary>
    /// <exception cref="RotorException">The architecture is unknown or a key is missing or out of range.</exception>
    public static (ModelConfig Config, GgufArchitecture Arch) ReadConfig(GgufFile f)
    {
        string archName = f.Architecture ?? throw new RotorException($"{f.Path}: general.architecture is missing");
        var arch = GgufArchitecture.Find(archName)
            ?? throw new RotorException($"{f.Path}: architecture {archName} is not supported ({string.Join(", ", GgufArchitecture.All.Select(a => a.Name))})");
        string a = archName;
        int Int(string key, long? fallback = null)
        {
            long v = fallback is { } fb ? f.GetInt(key, fb) : f.GetInt(key);
            if (v <= 0 || v > int.MaxValue) throw new RotorException($"{f.Path}: {key} = {v} is out of range");
            return (int)v;
        }
        var embd = f.Get("token_embd.weight");
        if (embd.Dims.Length != 2) throw new RotorException($"{f.Path}: tensor token_embd.weight has {embd.Dims.Length} dimensions, expected 2");
        int dim = Int($"{a}.embedding_length"), heads = Int($"{a}.attention.head_count");
        int vocab = (int)embd.Dims[1];
        if (f.TryGetInt($"{a}.vocab_size", out long vs) && vs != vocab)
            throw new RotorException($"{f.Path}: {a}.vocab_size = {vs}, but token_embd.weight has {vocab} rows");
        if (f.TryGetString($"{a}.rope.scaling.type", out string scaling) && scaling is not ("none" or "linear")
            || f.GetFloat($"{a}.rope.scaling.factor", 1.0) != 1.0)
            throw new RotorException($"{f.Path}: rope scaling ({a}.rope.scaling.*) other than none is not supported");
        int headDim = Int($"{a}.attention.key_length", dim / Math.Max(heads, 1));
        int rot = Int($"{a}.rope.dimension_count", headDim);
        if (rot != headDim) throw new RotorException($"{f.Path}: {a}.rope.dimension_count = {rot}: partial rotary embeddings (head size {headDim}) are not supported");
        var c = new ModelConfig
        {
            Architecture = a, Dim = dim, Layers = Int($"{a}.block_count"), Heads = heads,
            KvHeads = Int($"{a}.attention.head_count_kv", heads), HeadDim = headDim, FfnDim = Int($"{a}.feed_forward_length"),
            VocabSize = vocab, ContextLength = Int($"{a}.context_length", 2048),
            RopeTheta = (float)f.GetFloat($"{a}.rope.freq_base", 10000.0),
            NormEps = (float)f.GetFloat($"{a}.attention.layer_norm_rms_epsilon", 1e-5),
            Activation = arch.Activation, Rope = arch.Rope, SubNorms = arch.SubNorms,
            TiedEmbeddings = f.Find("output.weight") is null,
        };
        c.Validate(f.Path);
        return (c, arch);
    }

    /// <summary>Loads the weights of <paramref name="f"/>, every one a copy in Rotor's layout.</summary>
    /// <exception cref="RotorException">A tensor is missing, of the wrong shape, or of a type Rotor cannot read.</exception>
    public static (ModelConfig Config, ModelWeights Weights) Load(GgufFile f) => Load(f, mapEmbedding: false, mapHead: false, mapTernary: false, null);

    /// <summary>Loads the weights of <paramref name="f"/>; with <paramref name="mapEmbedding"/> the token embedding, and
    /// with <paramref name="mapHead"/> an untied LM head (one about to be converted to another type), stay in the file
    /// as read-only views (<see cref="DenseMatrix.FromMemory"/>) where <see cref="CanMap"/> allows, and with
    /// <paramref name="mapTernary"/> so do the ternary projections where <see cref="GgufTensors.CanMapTernary"/> allows
    /// (<see cref="TernaryMatrix.FromMemory"/>). <see cref="ModelWeights.Mapping"/> then owns a read-only mapping of the
    /// file that outlives <paramref name="f"/>; the caller closes it.</summary>
    /// <exception cref="RotorException">A tensor is missing, of the wrong shape, or of a type Rotor cannot read.</exception>
    public static (ModelConfig Config, ModelWeights Weights) Load(GgufFile f, bool mapEmbedding, bool mapHead, bool mapTernary = false) => Load(f, mapEmbedding, mapHead, mapTernary, null);

    /// <summary>Whether a GGUF matrix can be used as the file stores it: F32 or F16 rows of a multiple of 64 bytes
    /// (<see cref="DenseMatrix.CanView"/>) at an offset aligned to the element size.</summary>
    public static bool CanMap(GgufTensorInfo t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (t.Dims.Length != 2 || t.Dims[0] > int.MaxValue || t.Dims[1] > int.MaxValue) return false;
        DenseType? type = t.Type switch { GgmlType.F32 => DenseType.F32, GgmlType.F16 => DenseType.F16, _ => null };
        return type is { } d && DenseMatrix.CanView((int)t.Dims[0], d) && t.Offset % DenseMatrix.ElementBytes(d) == 0;
    }

    /// <summary>The element type a dense GGUF tensor of <paramref name="type"/> loads as: F32 and BF16 as F32, every
    /// other dense type as F16.</summary>
    public static DenseType DenseTypeOf(GgmlType type) => type is GgmlType.F32 or GgmlType.BF16 ? DenseType.F32 : DenseType.F16;

    internal static (ModelConfig Config, ModelWeights Weights) Load(GgufFile f, bool mapEmbedding, bool mapHead, bool mapTernary, LoadClock? clock)
    {
        // One read-only mapping of the whole file for every view: address space only until rows are read. It is not f's
        // mapping, so that the pages the load read elsewhere in the file are unmapped with f.
        FileMapping? mapping = null;
        FileMapping Map()
        {
            if (mapping is null) { var (h, a) = FileView.Map(f.Path, 0, f.Length); mapping = new FileMapping(h, a); }
            return mapping.Value;
        }
        try { return LoadCore(f, mapEmbedding, mapHead, mapTernary, clock, Map, () => mapping?.Handle); }
        catch
        {
            mapping?.Handle.Dispose();
            throw;
        }
    }

    private static (ModelConfig Config, ModelWeights Weights) LoadCore(GgufFile f, bool mapEmbedding, bool mapHead, bool mapTernary, LoadClock? clock,
        Func<FileMapping> map, Func<System.Runtime.InteropServices.SafeHandle?> mapped)
    {
        var (c, arch) = ReadConfig(f);
        GgufTensorInfo Tensor(string name, params long[] dims)
        {
            var t = f.Get(name);
            if (!t.Dims.SequenceEqual(dims))
                throw new RotorException($"{f.Path}: tensor {name} has shape [{string.Join(", ", t.Dims)}], the configuration implies [{string.Join(", ", dims)}]");
            return t;
        }
        float[] Vector(string name, int n) => GgufTensors.ReadFloats(f, Tensor(name, n));
        DenseMatrix Dense(GgufTensorInfo t, int rows, int cols)
        {
            var type = DenseTypeOf(t.Type);
            var m = DenseMatrix.CreateUninitialized(rows, cols, type);   // every row is set below
            const int chunk = 256;   // rows a work item: each item writes only its own rows
            if (t.Type == GgmlType.F16)
            {
                // F16 rows are copied as they are.
                Parallel.For(0, (rows + chunk - 1) / chunk, Rotor.Threading.ThreadCount.Options(), k =>
                {
                    var bytes = f.GetData(t);
                    for (int r = k * chunk, end = Math.Min(rows, r + chunk); r < end; r++)
                        m.SetRow(r, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes.Slice(r * cols * 2, cols * 2)));
                });
                return m;
            }
            Parallel.For(0, (rows + chunk - 1) / chunk, Rotor.Threading.ThreadCount.Options(), () => new float[cols], (k, _, row) =>
            {
                for (int r = k * chunk, end = Math.Min(rows, r + chunk); r < end; r++) { GgufTensors.ReadRow(f, t, r, row); m.SetRow(r, row); }
                return row;
            }, _ => { });
            return m;
        }
        LinearWeights Linear(string name, int rows, int cols)
        {
            var t = Tensor(name, cols, rows);
            bool ternary = arch.BitLinear || t.Traits.IsTernary;
            if (!ternary) return new LinearWeights(Dense(t, rows, cols));
            // llama.cpp's bitnet graph multiplies a projection's output by an optional one-value scale tensor.
            string scaleName = name[..^".weight".Length] + ".scale";
            float s = 1f;
            if (f.Find(scaleName) is { } st)
            {
                if (st.Elements != 1) throw new RotorException($"{f.Path}: tensor {scaleName} has {st.Elements} values, expected one");
                s = GgufTensors.ReadFloats(f, st)[0];
                if (!float.IsFinite(s)) throw new RotorException($"{f.Path}: tensor {scaleName} = {s}");
            }
            FileMapping? view = mapTernary && GgufTensors.CanMapTernary(t) ? map() : null;
            return new LinearWeights(GgufTensors.ReadTernary(f, t, I2SLayout.X86, view, s));
        }

        var layers = LayerTensorNames.Gguf.BuildLayers(c, Vector, Linear);
        clock?.Mark("layers");
        var embd = Tensor("token_embd.weight", c.Dim, c.VocabSize);
        var output = c.TiedEmbeddings ? null : Tensor("output.weight", c.Dim, c.VocabSize);
        DenseMatrix Matrix(GgufTensorInfo t, bool mapIt)
        {
            if (!mapIt || !CanMap(t)) return Dense(t, c.VocabSize, c.Dim);
            var m = map();
            return DenseMatrix.FromMemory(m.Handle, m.Address + (nint)t.Offset, c.VocabSize, c.Dim, DenseTypeOf(t.Type));
        }
        var embedding = Matrix(embd, mapEmbedding);
        clock?.Mark("embedding");
        var head = output is null ? embedding : Matrix(output, mapHead);
        clock?.Mark("head");
        var weights = new ModelWeights { Embedding = embedding, Layers = layers, FinalNorm = Vector("output_norm.weight", c.Dim), LmHead = head, Mapping = mapped() };
        weights.Validate(c, f.Path);
        clock?.Mark("norms and checks");
        return (c, weights);
    }
}

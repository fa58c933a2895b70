using Rotor.Kernels;
using Rotor.Lm.Loading;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm;

/// <summary>Options of <see cref="LanguageModel.Load"/>.</summary>
public sealed record LanguageModelOptions
{
    /// <summary>A tokenizer file for models that carry none (llama2.c <c>tok*.bin</c>, <c>tokenizer.json</c>,
    /// tiktoken <c>tokenizer.model</c>); overrides the model's own.</summary>
    public string? TokenizerPath { get; init; }
    /// <summary>An already-made tokenizer; overrides <see cref="TokenizerPath"/> and the model's own.</summary>
    public LmTokenizer? Tokenizer { get; init; }
    /// <summary>Worker threads (default: <c>ROTOR_THREADS</c>, else every processor).</summary>
    public int? Threads { get; init; }
    /// <summary>Element type of the LM head (default: the file's). The head is the largest single read of a decode
    /// step: <see cref="DenseType.Int8"/> reads half of F16's bytes a token, <see cref="DenseType.Q4"/> (4.5 bits a
    /// weight) 28 %; both quantize the activations to int8 per token. The embedding keeps the file's type.</summary>
    public DenseType? LmHeadType { get; init; }
    /// <summary>How the key/value caches of <see cref="LanguageModel.CreateSession"/> and
    /// <see cref="LanguageModel.CreateCache"/> store keys and values (default F32; F16 takes half the memory).</summary>
    public KvCacheType KvCacheType { get; init; }

    /// <summary>Whether a tied LM head (the token embedding, used as the file stores it) is read from the memory-mapped
    /// file instead of a copy (default on; <c>ROTOR_MAP_TIED_HEAD=0</c> turns it off). The mapped file costs nothing to
    /// load and is shared with the page cache, as llama.cpp's memory-mapped weights are; it is read through 4 KiB pages
    /// at every decode step. A copy in 2 MiB pages costs a pass over the head at load and memory of its own, and reads a
    /// little faster on several threads (docs/BENCHMARKS-lm.md). An embedding that is not the head (an untied model,
    /// or <see cref="LmHeadType"/> converting the head) is always mapped where its stored type and row size allow
    /// (<see cref="Loading.GgufLoader.CanMap"/>): it is read a row a token, so only the rows used become resident.</summary>
    public bool MapTiedHead { get; init; } = Environment.GetEnvironmentVariable("ROTOR_MAP_TIED_HEAD") != "0";

    /// <summary>Whether ternary weights that the file stores in a layout the kernels can run (bitnet.cpp's x86 I2_S, rows
    /// of whole 256-weight blocks, as 2B4T's GGUF has them) are used where the memory-mapped file holds them (default on;
    /// <c>ROTOR_MMAP=0</c> turns it off), as llama.cpp maps its weights: the load copies nothing, the weights are clean
    /// file pages shared with the page cache and other processes, and the products reorder each activation row's 32-value
    /// chunks to the file's order instead (<see cref="TernaryLayout.I2S"/>). Off, they are converted into Rotor's own
    /// layout in memory of the process (2 MiB pages where the system gives them), as every other ternary type is.</summary>
    public bool MapWeights { get; init; } = Environment.GetEnvironmentVariable("ROTOR_MMAP") != "0";

    /// <summary>Where the decoder runs (default <see cref="LmDevice.Cpu"/>). <see cref="LmDevice.Cuda"/> uploads the
    /// weights to the GPU; without a usable GPU the model runs on the CPU and <see cref="LanguageModel.DeviceNote"/>
    /// says why.</summary>
    public LmDevice Device { get; init; } = LmDevice.Cpu;
}

/// <summary>Where a <see cref="LanguageModel"/> runs its decoder.</summary>
public enum LmDevice
{
    /// <summary>The CPU backend.</summary>
    Cpu = 0,
    /// <summary>The GPU (Rotor's CUDA library), falling back to the CPU where there is none.</summary>
    Cuda = 1,
}

/// <summary>
/// A loaded decoder-only language model: configuration, weights, tokenizer and the CPU backend that runs it.
/// <c>Load</c> reads a GGUF file, a Hugging Face folder or a llama2.c checkpoint; <see cref="CreateSession"/> gives a
/// sequence with its own key/value cache.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private readonly bool _ownsBackend;

    private LanguageModel(string source, string format, ModelConfig config, ModelWeights weights, LmTokenizer? tokenizer,
        CpuBackend backend, bool ownsBackend, TimeSpan loadTime, long fileBytes, KvCacheType kvCacheType, IReadOnlyList<LoadStep> loadSteps)
    {
        Source = source; Format = format; Config = config; Weights = weights; Tokenizer = tokenizer;
        Backend = backend; _ownsBackend = ownsBackend; LoadTime = loadTime; FileBytes = fileBytes; KvCacheType = kvCacheType;
        LoadSteps = loadSteps;
    }

    /// <summary>The steps of <see cref="Load"/> in order, with their wall times (they add up to <see cref="LoadTime"/>);
    /// empty for a model made from weights in memory.</summary>
    public IReadOnlyList<LoadStep> LoadSteps { get; }

    /// <summary>Whether <see cref="Load"/> keeps a token embedding of <paramref name="embeddingType"/> in the file:
    /// always when it is not the LM head (an untied model, or a head converted to another type), and a tied head when
    /// <paramref name="mapTiedHead"/> asks for it. <see cref="ModelMemory"/> counts by the same rule.</summary>
    internal static bool MapsEmbedding(bool tied, DenseType embeddingType, DenseType? headType, bool mapTiedHead)
        => !tied || headType is { } h && h != embeddingType || mapTiedHead;

    /// <summary>How the caches this model makes store keys and values.</summary>
    public KvCacheType KvCacheType { get; }

    /// <summary>The path it was loaded from.</summary>
    public string Source { get; }
    /// <summary>"gguf", "hugging face" or "llama2.c".</summary>
    public string Format { get; }
    /// <summary>Hyperparameters.</summary>
    public ModelConfig Config { get; }
    /// <summary>Weights.</summary>
    public ModelWeights Weights { get; }
    /// <summary>The tokenizer, or null when neither the model nor the options supply one (ids still work).</summary>
    public LmTokenizer? Tokenizer { get; }
    /// <summary>The backend that runs the products.</summary>
    public CpuBackend Backend { get; }
    /// <summary>Wall time of <see cref="Load"/>.</summary>
    public TimeSpan LoadTime { get; }
    /// <summary>Bytes of the model's files.</summary>
    public long FileBytes { get; }

    /// <summary>The tokenizer, or a clear error naming how to supply one.</summary>
    public LmTokenizer RequireTokenizer()
        => Tokenizer ?? throw new RotorException($"{Source}: the model carries no tokenizer; name one with --tokenizer FILE");

    /// <summary>Loads <paramref name="path"/>: a GGUF file, a Hugging Face folder (config.json + safetensors) or a
    /// llama2.c checkpoint.</summary>
    /// <exception cref="RotorException">The path is missing or not a model, or the model is invalid (the message
    /// names the file and the field or tensor).</exception>
    public static LanguageModel Load(string path, LanguageModelOptions? options = null)
    {
        options ??= new LanguageModelOptions();
        var clock = new LoadClock();
        if (!File.Exists(path) && !Directory.Exists(path)) throw new RotorException($"{path}: no such file or folder");
        ModelConfig config; ModelWeights weights; string format; long bytes; LmTokenizer? tokenizer = options.Tokenizer;
        if (Directory.Exists(path))
        {
            if (!HuggingFaceLoader.Probe(path)) throw new RotorException($"{path}: a folder without config.json is not a Hugging Face model");
            (config, weights) = HuggingFaceLoader.Load(path);
            clock.Mark("weights");
            format = "hugging face";
            bytes = Directory.EnumerateFiles(path, "*.safetensors").Sum(f => new FileInfo(f).Length);
            tokenizer ??= TokenizerFiles.FromPath(options.TokenizerPath) ?? TokenizerFiles.FromFolder(path);
        }
        else if (GgufLoader.Probe(path))
        {
            using var f = Gguf.GgufFile.Open(path);
            var (c, _) = GgufLoader.ReadConfig(f);
            var embd = f.Get("token_embd.weight");
            clock.Mark("map and read headers");
            bool map = MapsEmbedding(c.TiedEmbeddings, GgufLoader.DenseTypeOf(embd.Type), options.LmHeadType, options.MapTiedHead);
            // An untied head about to be converted is read once, from the file: no copy of it is made.
            bool mapHead = !c.TiedEmbeddings && options.LmHeadType is { } h && h != GgufLoader.DenseTypeOf(f.Get("output.weight").Type);
            (config, weights) = GgufLoader.Load(f, map, mapHead, options.MapWeights, clock);
            format = "gguf";
            bytes = f.Length;
            try
            {
                tokenizer ??= TokenizerFiles.FromPath(options.TokenizerPath) ?? TokenizerFiles.FromGguf(f);
            }
            catch
            {
                weights.Mapping?.Dispose();
                throw;
            }
        }
        else if (Llama2cLoader.Probe(path))
        {
            (config, weights) = Llama2cLoader.Load(path);
            clock.Mark("weights");
            format = "llama2.c";
            bytes = new FileInfo(path).Length;
            tokenizer ??= TokenizerFiles.FromPath(options.TokenizerPath, config.VocabSize) ?? TokenizerFiles.BesideLlama2c(path, config.VocabSize);
        }
        else throw new RotorException($"{path}: not a model this version reads (a GGUF file, a Hugging Face folder with config.json, or a llama2.c checkpoint)");
        clock.Mark("tokenizer");

        try
        {
            if (options.LmHeadType is { } ht && ht != weights.LmHead.Type)
            {
                weights = Reheaded(weights, ht);
                clock.Mark("LM head conversion");
            }
            if (tokenizer is not null && tokenizer.VocabSize > config.VocabSize)
                throw new RotorException($"{path}: the tokenizer has {tokenizer.VocabSize} tokens, the model's vocabulary {config.VocabSize}");
        }
        catch
        {
            weights.Mapping?.Dispose();
            throw;
        }
        var backend = new CpuBackend(options.Threads);
        clock.Mark("backend");
        var model = new LanguageModel(path, format, config, weights, tokenizer, backend, true, clock.Elapsed, bytes, options.KvCacheType, clock.Steps);
        model.PlaceOn(options.Device);
        return model;
    }

    /// <summary>The tokenizer <see cref="Load"/> would give the model at <paramref name="path"/>, without its weights:
    /// <paramref name="tokenizerPath"/> when given, else the GGUF metadata, the folder's tokenizer files or the file beside
    /// a llama2.c checkpoint; null when there is none.</summary>
    /// <exception cref="RotorException">A tokenizer file is invalid.</exception>
    public static LmTokenizer? LoadTokenizer(string path, ModelConfig config, string? tokenizerPath = null)
    {
        ArgumentNullException.ThrowIfNull(path); ArgumentNullException.ThrowIfNull(config);
        if (TokenizerFiles.FromPath(tokenizerPath, config.VocabSize) is { } t) return t;
        if (Directory.Exists(path)) return TokenizerFiles.FromFolder(path);
        if (GgufLoader.Probe(path)) { using var f = Gguf.GgufFile.Open(path); return TokenizerFiles.FromGguf(f); }
        return TokenizerFiles.BesideLlama2c(path, config.VocabSize);
    }

    /// <summary>Opens a model by name: <c>random:SHAPE</c> (random weights of a named shape, see
    /// <see cref="RandomModel.Shape"/>: <c>random:2b4t</c>, <c>random:2b4t-4l</c>) or a path that <see cref="Load"/>
    /// reads.</summary>
    /// <exception cref="RotorException">The shape is unknown, or <see cref="Load"/> fails.</exception>
    public static LanguageModel Open(string nameOrPath, LanguageModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        options ??= new LanguageModelOptions();
        if (!nameOrPath.StartsWith("random:", StringComparison.Ordinal)) return Load(nameOrPath, options);
        var config = RandomModel.Shape(nameOrPath["random:".Length..]);
        var tokenizer = options.Tokenizer ?? TokenizerFiles.FromPath(options.TokenizerPath, config.VocabSize);
        if (tokenizer is not null && tokenizer.VocabSize > config.VocabSize)
            throw new RotorException($"{options.TokenizerPath}: the tokenizer has {tokenizer.VocabSize} tokens, the model's vocabulary {config.VocabSize}");
        return FromWeights(config, RandomModel.Create(config), options with { Tokenizer = tokenizer }, nameOrPath);
    }

    /// <summary>A model from weights already in memory (a <see cref="RandomModel"/>, weights built by code). The model
    /// takes the weights' <see cref="ModelWeights.Mapping"/>, if any, and closes it on <see cref="Dispose"/>.</summary>
    public static LanguageModel FromWeights(ModelConfig config, ModelWeights weights, LanguageModelOptions? options = null, string source = "(in memory)")
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        options ??= new LanguageModelOptions();
        config.Validate(source);
        weights.Validate(config, source);
        if (options.LmHeadType is { } ht && ht != weights.LmHead.Type) weights = Reheaded(weights, ht);
        var model = new LanguageModel(source, "memory", config, weights, options.Tokenizer, new CpuBackend(options.Threads), true, TimeSpan.Zero, 0, options.KvCacheType, []);
        model.PlaceOn(options.Device);
        return model;
    }

    /// <summary>The weights on the GPU when the model runs there, else null.</summary>
    public Cuda.CudaModel? Cuda { get; private set; }

    /// <summary>Where the decoder runs, in one line: "cpu", the GPU's name, or why the GPU asked for is not used.</summary>
    public string DeviceNote { get; private set; } = "cpu";

    private void PlaceOn(LmDevice device)
    {
        if (device != LmDevice.Cuda) return;
        var a = Rotor.Cuda.CudaBackend.Availability;
        if (!a.IsAvailable) { DeviceNote = $"cpu (CUDA {a})"; return; }
        try
        {
            Cuda = new Cuda.CudaModel(Config, Weights);
            DeviceNote = $"cuda: {a}";
            // The upload read the mapped weights whole; the GPU decoder does not read them again.
            Loading.FileView.DropPages(Weights.Embedding);
            if (!ReferenceEquals(Weights.LmHead, Weights.Embedding)) Loading.FileView.DropPages(Weights.LmHead);
            foreach (var layer in Weights.Layers)
                foreach (var (_, w) in layer.Linears)
                    if (w.Ternary is { } t) Loading.FileView.DropPages(t);
        }
        catch (Rotor.Cuda.CudaException e)
        {
            DeviceNote = $"cpu (CUDA not used: {e.Message})";
        }
        catch (RotorException e)
        {
            DeviceNote = $"cpu (CUDA not used: {e.Message})";
        }
    }

    /// <summary>The weights with the LM head converted to <paramref name="type"/> (the embedding is kept as it is), on
    /// every thread of <see cref="Rotor.Threading.ThreadCount"/> (<see cref="DenseMatrix.ConvertTo"/>).</summary>
    private static ModelWeights Reheaded(ModelWeights w, DenseType type)
    {
        var src = w.LmHead;
        var head = src.ConvertTo(type);
        // The pass over a mapped source left its file pages mapped here: drop them, so that only the rows the embedding
        // lookup reads count as this process's memory.
        if (src.IsView) Loading.FileView.DropPages(src);
        return new ModelWeights { Embedding = w.Embedding, Layers = w.Layers, FinalNorm = w.FinalNorm, LmHead = head, Mapping = w.Mapping };
    }

    /// <summary>A sequence with a key/value cache of <paramref name="contextLength"/> positions (default: the model's
    /// context, at most 4096) and batches of up to <paramref name="maxBatch"/> tokens.</summary>
    public InferenceSession CreateSession(int? contextLength = null, int maxBatch = 128)
    {
        int ctx = contextLength ?? Math.Min(Config.ContextLength, 4096);
        if (ctx <= 0) throw new RotorException($"context length {ctx} must be positive");
        return new InferenceSession(this, ctx, maxBatch);
    }

    /// <summary>A decoder over this model's weights and backend for batches of up to <paramref name="maxBatch"/> rows
    /// and positions below <paramref name="maxPositions"/>: the building block of continuous batching (prefill each
    /// sequence with <see cref="Decoder.Forward"/>, then step many with <see cref="Decoder.ForwardBatch"/>).</summary>
    public Decoder CreateDecoder(int maxPositions, int maxBatch = 64) => new(Config, Weights, Backend, maxPositions, maxBatch);

    /// <summary>A pool of <paramref name="slots"/> sequences of up to <paramref name="contextLength"/> positions decoded
    /// together (continuous batching), with steps of up to <paramref name="maxBatch"/> rows: on the GPU where the model
    /// is there (<see cref="Cuda"/>; the caches then take device memory at once), else on the CPU.</summary>
    /// <exception cref="RotorException">A size is not positive.</exception>
    public SequencePool CreateSequencePool(int slots, int contextLength, int maxBatch = 64)
    {
        if (maxBatch <= 0) throw new RotorException($"batch of {maxBatch} rows: must be positive");
        if (Cuda is { } gpu)
        {
            if (slots <= 0) throw new RotorException($"{slots} sequence slots: need at least one");
            if (contextLength <= 0) throw new RotorException($"context length {contextLength} must be positive");
            return new Cuda.CudaSequencePool(gpu, slots, contextLength, maxBatch, KvCacheType == KvCacheType.F16);
        }
        return new CpuSequencePool(this, slots, contextLength, maxBatch);
    }

    /// <summary>An empty key/value cache for one sequence of up to <paramref name="contextLength"/> positions.</summary>
    public KvCache CreateCache(int contextLength) => new(Config, contextLength, KvCacheType);

    /// <summary>Stops the backend's worker threads and unmaps the model file where weights are read from it
    /// (<see cref="ModelWeights.Mapping"/>: those weights throw <see cref="ObjectDisposedException"/> afterwards).</summary>
    public void Dispose()
    {
        Cuda?.Dispose();
        Cuda = null;
        if (_ownsBackend) Backend.Dispose();
        Weights.Mapping?.Dispose();
    }
}

/// <summary>One sequence being decoded: its key/value cache and the decoder's buffers.</summary>
public sealed class InferenceSession
{
    private readonly Decoder? _decoder;
    private readonly Cuda.CudaDecoder? _gpu;   // one sequence, slot 0; Cache then only keeps the length

    internal InferenceSession(LanguageModel model, int contextLength, int maxBatch)
    {
        Model = model;
        if (model.Cuda is { } gpu)
        {
            _gpu = new Cuda.CudaDecoder(gpu, 1, contextLength, maxBatch, f16Cache: model.KvCacheType == KvCacheType.F16);
            Cache = new KvCache(contextLength, model.Config.KvDim, _gpu.KvBytes, model.KvCacheType);
        }
        else
        {
            Cache = new KvCache(model.Config, contextLength, model.KvCacheType);
            _decoder = new Decoder(model.Config, model.Weights, model.Backend, contextLength, maxBatch);
        }
    }

    /// <summary>Whether this session runs on the GPU.</summary>
    public bool OnGpu => _gpu is not null;

    private ReadOnlySpan<float> Run(scoped ReadOnlySpan<int> ids, LogitsMode mode, Span<float> all)
    {
        if (_decoder is not null) return _decoder.Forward(ids, Cache, mode, all);
        if (ids.IsEmpty) throw new ArgumentException("no tokens to run", nameof(ids));
        var logits = _gpu!.Forward(ids, 0, Cache.Length, mode, all);
        Cache.Length += ids.Length;
        return logits;
    }

    /// <summary>The model.</summary>
    public LanguageModel Model { get; }
    /// <summary>The key/value cache.</summary>
    public KvCache Cache { get; }
    /// <summary>Positions filled so far.</summary>
    public int Position => Cache.Length;
    /// <summary>Positions the context holds.</summary>
    public int ContextLength => Cache.Capacity;

    private readonly List<int> _tokens = [];

    /// <summary>The tokens the cache holds, in order.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Runs <paramref name="ids"/> after the tokens so far (a prompt, or one sampled token) and returns the
    /// last token's logits, valid until the next call.</summary>
    /// <exception cref="RotorException">The tokens do not fit the context, or an id is outside the vocabulary.</exception>
    public ReadOnlySpan<float> Append(scoped ReadOnlySpan<int> ids)
    {
        var logits = Run(ids, LogitsMode.Last, default);
        _tokens.AddRange(ids);
        return logits;
    }

    /// <summary>Runs <paramref name="ids"/> after the tokens so far and writes every position's logits into
    /// <paramref name="logits"/> (ids.Length x vocab).</summary>
    public void AppendAll(scoped ReadOnlySpan<int> ids, Span<float> logits)
    {
        Run(ids, LogitsMode.All, logits);
        _tokens.AddRange(ids);
    }

    /// <summary>Whether <see cref="AppendChoose"/> takes <paramref name="sampling"/>: a GPU session, and options the
    /// GPU samples with (no repetition penalty; greedy or top-k 1..1024).</summary>
    public bool ChoosesOnDevice(SamplingOptions sampling)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        return _gpu is not null && Cuda.CudaDecoder.SamplesOnDevice(sampling);
    }

    /// <summary>Runs <paramref name="id"/> after the tokens so far and returns the next token, chosen on the GPU per
    /// <paramref name="sampling"/> (its draw seeded from <paramref name="seed"/> and the position): only the id comes
    /// back, not the vocabulary's logits.</summary>
    /// <exception cref="InvalidOperationException">The session is on the CPU, or the GPU does not take these options
    /// (<see cref="ChoosesOnDevice"/>).</exception>
    /// <exception cref="RotorException">The context is full, or the id is outside the vocabulary.</exception>
    public int AppendChoose(int id, SamplingOptions sampling, ulong seed)
    {
        if (!ChoosesOnDevice(sampling)) throw new InvalidOperationException("this session does not choose tokens on the GPU for these options: see ChoosesOnDevice");
        if (Cache.Length >= Cache.Capacity) throw new RotorException($"1 token after {Cache.Length} does not fit the context of {Cache.Capacity} positions");
        Span<int> next = stackalloc int[1];
        _gpu!.DecodeSample([id], [0], [Cache.Length], [sampling], [seed], next);
        Cache.Length++;
        _tokens.Add(id);
        return next[0];
    }

    /// <summary>Makes the session hold exactly <paramref name="sequence"/>: keeps the longest prefix it already holds
    /// (at least one token is always run, for its logits), runs the rest, and returns the last token's logits.</summary>
    public ReadOnlySpan<float> Continue(IReadOnlyList<int> sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.Count == 0) throw new RotorException("the sequence is empty");
        int common = KeptPrefix(sequence);
        Cache.Truncate(common);
        _tokens.RemoveRange(common, _tokens.Count - common);
        int[] rest = new int[sequence.Count - common];
        for (int i = 0; i < rest.Length; i++) rest[i] = sequence[common + i];
        return Append(rest);
    }

    /// <summary>Positions <see cref="Continue"/> would keep for <paramref name="sequence"/>: the prefix it shares with
    /// the tokens held, all but its last token at most.</summary>
    public int KeptPrefix(IReadOnlyList<int> sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        int common = 0;
        while (common < _tokens.Count && common < sequence.Count - 1 && _tokens[common] == sequence[common]) common++;
        return common;
    }

    /// <summary>Forgets the sequence.</summary>
    public void Reset() { Cache.Clear(); _tokens.Clear(); }
}

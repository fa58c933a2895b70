using System.Diagnostics;
using Microsoft.Extensions.AI;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;

namespace Rotor.Rag.Embeddings;

/// <summary>Settings of a <see cref="SentenceEmbedder"/>.</summary>
public sealed record SentenceEmbedderOptions
{
    /// <summary>Tokens a text is cut to, [CLS] and [SEP] included (sentence-transformers' max_seq_length; 256 for all-MiniLM-L6-v2).</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Texts run through the model at once. Texts are sorted by length first so a batch pads little.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Threads for tokenization and for the model's operators; 0 means <see cref="Rotor.Threading.ThreadCount.Default"/>
    /// (<c>--threads</c>, else <c>ROTOR_THREADS</c>, else every processor).</summary>
    public int Threads { get; init; }

    /// <summary>Where the model runs: the CPU, or an NVIDIA GPU through ONNX Runtime's CUDA execution provider. Where
    /// the CUDA provider cannot be had (a CPU build of ONNX Runtime, no GPU, missing CUDA libraries) the embedder runs
    /// on the CPU and <see cref="SentenceEmbedder.DeviceNote"/> says why.</summary>
    public EmbeddingDevice Device { get; init; } = EmbeddingDevice.Cpu;

    /// <summary>The CUDA device's ordinal, with <see cref="EmbeddingDevice.Cuda"/>.</summary>
    public int CudaDeviceId { get; init; }
}

/// <summary>Where a <see cref="SentenceEmbedder"/>'s model runs.</summary>
public enum EmbeddingDevice
{
    /// <summary>ONNX Runtime's CPU execution provider.</summary>
    Cpu,
    /// <summary>ONNX Runtime's CUDA execution provider (the CUDA build of ONNX Runtime: publish with
    /// <c>-p:RotorOnnxRuntime=cuda</c>), falling back to the CPU with a reason where it cannot be had.</summary>
    Cuda,
}

/// <summary>Where an embedder's time went, summed over every call so far.</summary>
/// <param name="Texts">Texts embedded.</param>
/// <param name="Tokens">Real tokens (not padding) run through the model.</param>
/// <param name="PaddedTokens">Tokens run through the model, padding included.</param>
/// <param name="Tokenize">Wall time spent tokenizing.</param>
/// <param name="Model">Wall time spent in the ONNX model.</param>
/// <param name="Pool">Wall time spent pooling and normalizing.</param>
public readonly record struct EmbeddingTimings(long Texts, long Tokens, long PaddedTokens, TimeSpan Tokenize, TimeSpan Model, TimeSpan Pool)
{
    /// <summary>Total wall time.</summary>
    public TimeSpan Total => Tokenize + Model + Pool;
}

/// <summary>
/// A sentence-transformers model (BERT family, e.g. all-MiniLM-L6-v2) run locally with ONNX Runtime: BERT WordPiece
/// tokenization (lower-cased, accents stripped), the transformer, mean pooling over the attention mask and L2
/// normalization. Thread-safe; batched; tokenization runs in parallel and the model uses <see cref="SentenceEmbedderOptions.Threads"/>
/// intra-op threads. Also an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> for Microsoft.Extensions.AI.
/// </summary>
public sealed class SentenceEmbedder : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly InferenceSession _session;
    private readonly BertTokenizer _tokenizer;
    private readonly string[] _inputNames;
    private readonly string _outputName;
    private readonly bool _hasTokenTypes;
    private readonly EmbeddingGeneratorMetadata _metadata;
    private long _texts, _tokens, _padded, _tokenizeTicks, _modelTicks, _poolTicks;

    private SentenceEmbedder(ModelFiles files, SentenceEmbedderOptions options)
    {
        if (options.MaxTokens < 3) throw new ArgumentOutOfRangeException(nameof(options), options.MaxTokens, "MaxTokens must be at least 3 ([CLS] x [SEP])");
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BatchSize, "BatchSize must be positive");
        if (options.Threads < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "Threads must be 0 (the process default) or positive");
        Options = options with { Threads = options.Threads == 0 ? Rotor.Threading.ThreadCount.Default : options.Threads };
        ModelId = files.Name;
        ModelSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(files.Model));

        // BERT uncased: lower-case, strip accents (NFD then drop non-spacing marks), split punctuation, CJK per character.
        // Accents are stripped by BertNormalizer first: the tokenizer's own stripping needs ICU, absent in invariant mode.
        _tokenizer = BertTokenizer.Create(new MemoryStream(files.Vocabulary), new BertOptions
        {
            LowerCaseBeforeTokenization = true,
            RemoveNonSpacingMarks = true,
            ApplyBasicTokenization = true,
            IndividuallyTokenizeCjk = true,
            SplitOnSpecialTokens = true,
        });

        ExecutionProvider = "CPU";
        InferenceSession? session = null;
        if (options.Device == EmbeddingDevice.Cuda)
        {
            if (options.CudaDeviceId < 0) throw new ArgumentOutOfRangeException(nameof(options), options.CudaDeviceId, "CudaDeviceId must be 0 or positive");
            DeviceNote = CudaProviderMissing();
            if (DeviceNote is null)
            {
                // The provider library and the CUDA libraries it links are loaded here or at the session's creation;
                // either failing leaves the CPU, with ONNX Runtime's own message as the reason.
                // ONNX Runtime also logs such a failure itself, in colour, on stderr: the reason goes into the one
                // line the caller prints instead, so its own log is held at Fatal while trying.
                using var cso = NewSessionOptions();
                var env = OrtEnv.Instance();
                var level = env.EnvLogLevel;
                env.EnvLogLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL;
                try
                {
                    cso.AppendExecutionProvider_CUDA(options.CudaDeviceId);
                    session = new InferenceSession(files.Model, cso);
                    ExecutionProvider = "CUDA";
                }
                catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
                {
                    string? missing = MissingCudaLibrary();
                    DeviceNote = missing is not null
                        ? $"ONNX Runtime's CUDA provider did not start: {missing} cannot be loaded (it needs an NVIDIA driver and CUDA 13's runtime, cuBLAS and cuRAND, and cuDNN 9, on the library path)"
                        : $"ONNX Runtime's CUDA provider did not start ({FirstLine(e.Message)})";
                }
                finally { env.EnvLogLevel = level; }
            }
        }
        if (session is null)
        {
            using var so = NewSessionOptions();
            try
            {
                session = new InferenceSession(files.Model, so);
            }
            catch (OnnxRuntimeException e)
            {
                throw new RotorException($"{files.Source}: ONNX Runtime cannot load the model: {e.Message}", e);
            }
        }
        _session = session;

        // Inputs: input_ids and attention_mask are required, token_type_ids optional; all int64 (B, T).
        var inputs = _session.InputMetadata;
        foreach (var required in new[] { "input_ids", "attention_mask" })
            if (!inputs.ContainsKey(required))
                throw new RotorException($"{files.Source}: model has no input '{required}' (inputs: {string.Join(", ", inputs.Keys)})");
        _hasTokenTypes = inputs.ContainsKey("token_type_ids");
        foreach (var name in inputs.Keys)
            if (name is not ("input_ids" or "attention_mask" or "token_type_ids"))
                throw new RotorException($"{files.Source}: model input '{name}' is not a BERT input (input_ids, attention_mask, token_type_ids)");
        _inputNames = _hasTokenTypes ? ["input_ids", "attention_mask", "token_type_ids"] : ["input_ids", "attention_mask"];

        // Output: token embeddings (B, T, H); named last_hidden_state or token_embeddings, else the first of rank 3.
        var outputs = _session.OutputMetadata;
        string? output = outputs.Keys.FirstOrDefault(k => k is "last_hidden_state" or "token_embeddings")
                         ?? outputs.FirstOrDefault(kv => kv.Value.Dimensions.Length == 3).Key;
        if (output is null)
            throw new RotorException($"{files.Source}: model has no (batch, tokens, hidden) output to mean-pool (outputs: {string.Join(", ", outputs.Select(kv => $"{kv.Key}[{string.Join(",", kv.Value.Dimensions)}]"))})");
        var dims = outputs[output].Dimensions;
        if (dims.Length != 3 || dims[2] <= 0)
            throw new RotorException($"{files.Source}: output '{output}' has shape [{string.Join(",", dims)}], expected (batch, tokens, hidden) with a fixed hidden size");
        _outputName = output;
        Dimensions = dims[2];
        _metadata = new EmbeddingGeneratorMetadata("rotor-onnx", null, ModelId, Dimensions);
    }

    private SessionOptions NewSessionOptions() => new()
    {
        IntraOpNumThreads = Options.Threads,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    };

    private static string FirstLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return (nl < 0 ? s : s[..nl]).Trim();
    }

    // Where the CUDA build of ONNX Runtime puts its provider library: beside a published application, or under
    // runtimes/RID/native of a build's output.
    private static string? CudaProviderLibrary()
    {
        if (!OperatingSystem.IsLinux()) return null;
        const string name = "libonnxruntime_providers_cuda.so";
        string baseDir = AppContext.BaseDirectory;
        foreach (string path in (string[])[Path.Combine(baseDir, name), Path.Combine(baseDir, "runtimes", System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier, "native", name)])
            if (File.Exists(path)) return path;
        return null;
    }

    // The libraries ONNX Runtime's CUDA provider (the 1.32 Linux build) links or opens, in the order a user would
    // install them: the first this process cannot load, or null.
    private static string? MissingCudaLibrary()
    {
        if (!OperatingSystem.IsLinux()) return null;
        foreach (string lib in (string[])["libcuda.so.1", "libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudnn.so.9"])
        {
            if (!System.Runtime.InteropServices.NativeLibrary.TryLoad(lib, out nint handle)) return lib;
            System.Runtime.InteropServices.NativeLibrary.Free(handle);
        }
        return null;
    }

    // Why this process's ONNX Runtime cannot run the CUDA provider at all (it is not in the build), or null.
    private static string? CudaProviderMissing()
    {
        string[] providers;
        try { providers = OrtEnv.Instance().GetAvailableProviders(); }
        catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            return $"ONNX Runtime could not be loaded ({FirstLine(e.Message)})";
        }
        return providers.Contains("CUDAExecutionProvider")
            ? null
            : $"this ONNX Runtime build has no CUDA provider (it has {string.Join(", ", providers)}): publish with -p:RotorOnnxRuntime=cuda for the CUDA build (Microsoft.ML.OnnxRuntime.Gpu.Linux)";
    }

    /// <summary>Why <see cref="EmbeddingDevice.Cuda"/> would fall back to the CPU in this process, as far as can be told
    /// without loading ONNX Runtime (its provider library is not beside the application, or a CUDA library it needs
    /// cannot be loaded), or null where it should start (ONNX Runtime may still refuse, with no usable GPU). ONNX
    /// Runtime itself is not loaded: a report such as <c>rotor info</c> must not depend on it starting.</summary>
    public static string? CudaUnavailableReason()
    {
        if (CudaProviderLibrary() is null)
            return "this ONNX Runtime build has no CUDA provider (no libonnxruntime_providers_cuda.so beside rotor): publish with -p:RotorOnnxRuntime=cuda for the CUDA build (Microsoft.ML.OnnxRuntime.Gpu.Linux)";
        return MissingCudaLibrary() is { } lib
            ? $"{lib} cannot be loaded (ONNX Runtime's CUDA provider needs an NVIDIA driver and CUDA 13's runtime, cuBLAS and cuRAND, and cuDNN 9, on the library path)"
            : null;
    }

    /// <summary>The execution provider the model runs on: "CPU" or "CUDA".</summary>
    public string ExecutionProvider { get; }

    /// <summary>Why the model runs on the CPU although <see cref="SentenceEmbedderOptions.Device"/> asked for CUDA; null otherwise.</summary>
    public string? DeviceNote { get; }

    /// <summary>Creates an embedder for the model in <paramref name="files"/>.</summary>
    /// <exception cref="RotorException">The model cannot be loaded or does not have BERT inputs and a token-embedding output.</exception>
    public static SentenceEmbedder Create(ModelFiles files, SentenceEmbedderOptions? options = null)
        => new(files, options ?? new SentenceEmbedderOptions());

    /// <summary>Creates an embedder for the bundled all-MiniLM-L6-v2 (384 dimensions).</summary>
    public static SentenceEmbedder CreateMiniLm(SentenceEmbedderOptions? options = null) => Create(ModelFiles.MiniLm(), options);

    /// <summary>Embedding size (384 for all-MiniLM-L6-v2).</summary>
    public int Dimensions { get; }

    /// <summary>Model name.</summary>
    public string ModelId { get; }

    /// <summary>SHA-256 of the ONNX model bytes, as hex: tells apart models that share a name.</summary>
    public string ModelSha256 { get; }

    /// <summary>The settings in use (threads resolved).</summary>
    public SentenceEmbedderOptions Options { get; }

    /// <summary>Time spent so far, by stage.</summary>
    public EmbeddingTimings Timings => new(
        Interlocked.Read(ref _texts), Interlocked.Read(ref _tokens), Interlocked.Read(ref _padded),
        StopwatchTicksToTimeSpan(Interlocked.Read(ref _tokenizeTicks)),
        StopwatchTicksToTimeSpan(Interlocked.Read(ref _modelTicks)),
        StopwatchTicksToTimeSpan(Interlocked.Read(ref _poolTicks)));

    // Through double: ticks * TimeSpan.TicksPerSecond overflows a long past 922 s when the Stopwatch counts nanoseconds.
    internal static TimeSpan StopwatchTicksToTimeSpan(long ticks) => TimeSpan.FromSeconds((double)ticks / Stopwatch.Frequency);

    /// <summary>Token ids of <paramref name="text"/> as the model sees them: [CLS] ... [SEP], cut to <see cref="SentenceEmbedderOptions.MaxTokens"/>.</summary>
    public int[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _tokenizer.EncodeToIds(BertNormalizer.LowerAndStripAccents(text), Options.MaxTokens - 2, addSpecialTokens: false, out _, out _);
        var result = new int[ids.Count + 2];
        result[0] = _tokenizer.ClassificationTokenId;
        for (int i = 0; i < ids.Count; i++) result[i + 1] = ids[i];
        result[^1] = _tokenizer.SeparatorTokenId;
        return result;
    }

    /// <summary>The unit-length embedding of one text.</summary>
    public float[] Embed(string text)
    {
        var v = new float[Dimensions];
        Embed([text], v);
        return v;
    }

    /// <summary>Embeds texts into <paramref name="destination"/>, (texts.Count, Dimensions) row-major, each row of unit length.</summary>
    /// <param name="texts">Texts; an empty text embeds as [CLS] [SEP].</param>
    /// <param name="destination">Receives the embeddings.</param>
    /// <param name="progress">Called after each batch with the number of texts done so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length or a text is null.</exception>
    public void Embed(IReadOnlyList<string> texts, Span<float> destination, Action<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (destination.Length != (long)texts.Count * Dimensions)
            throw new ArgumentException($"destination has length {destination.Length}, expected texts ({texts.Count}) x dimensions ({Dimensions})", nameof(destination));
        if (texts.Count == 0) return;

        long t0 = Stopwatch.GetTimestamp();
        var ids = new int[texts.Count][];
        Parallel.For(0, texts.Count, new ParallelOptions { MaxDegreeOfParallelism = Options.Threads, CancellationToken = cancellationToken }, i =>
        {
            string text = texts[i] ?? throw new ArgumentException($"texts[{i}] is null", nameof(texts));
            ids[i] = Tokenize(text);
        });
        Interlocked.Add(ref _tokenizeTicks, Stopwatch.GetTimestamp() - t0);

        // Longest first, so batches hold texts of similar length and pad little; a stable sort keeps the result deterministic.
        int[] order = Enumerable.Range(0, texts.Count).OrderByDescending(i => ids[i].Length).ThenBy(i => i).ToArray();
        float[] pooled = new float[Options.BatchSize * Dimensions];
        int done = 0;
        for (int start = 0; start < order.Length; start += Options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(Options.BatchSize, order.Length - start);
            var batch = order.AsSpan(start, count);
            RunBatch(ids, batch, pooled.AsSpan(0, count * Dimensions));
            for (int j = 0; j < count; j++)
                pooled.AsSpan(j * Dimensions, Dimensions).CopyTo(destination.Slice(batch[j] * Dimensions, Dimensions));
            done += count;
            progress?.Invoke(done);
        }
        Interlocked.Add(ref _texts, texts.Count);
    }

    // One padded batch: (B, T) int64 inputs -> (B, T, H) token embeddings -> (B, H) pooled.
    private void RunBatch(int[][] ids, ReadOnlySpan<int> batch, Span<float> destination)
    {
        int b = batch.Length, t = 0;
        foreach (int i in batch) t = Math.Max(t, ids[i].Length);
        var inputIds = new long[b * t];      // (B, T), padded with [PAD]
        var mask = new long[b * t];          // (B, T), 1 for real tokens
        long real = 0;
        for (int r = 0; r < b; r++)
        {
            var row = ids[batch[r]];
            for (int c = 0; c < t; c++)
            {
                inputIds[r * t + c] = c < row.Length ? row[c] : _tokenizer.PaddingTokenId;
                mask[r * t + c] = c < row.Length ? 1 : 0;
            }
            real += row.Length;
        }
        long[] shape = [b, t];
        long t0 = Stopwatch.GetTimestamp();
        using var idsValue = OrtValue.CreateTensorValueFromMemory(inputIds, shape);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
        using var typesValue = _hasTokenTypes ? OrtValue.CreateTensorValueFromMemory(new long[b * t], shape) : null; // (B, T) zeros: one segment
        OrtValue[] values = _hasTokenTypes ? [idsValue, maskValue, typesValue!] : [idsValue, maskValue];
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, _inputNames, values, [_outputName]);
        long t1 = Stopwatch.GetTimestamp();
        var hidden = outputs[0].GetTensorDataAsSpan<float>(); // (B, T, H)
        var outShape = outputs[0].GetTensorTypeAndShape().Shape;
        if (outShape.Length != 3 || outShape[0] != b || outShape[1] != t || outShape[2] != Dimensions)
            throw new RotorException($"model output '{_outputName}' has shape [{string.Join(",", outShape)}], expected [{b},{t},{Dimensions}]");
        Pooling.MeanPoolNormalize(hidden, mask, destination, b, t, Dimensions);
        long t2 = Stopwatch.GetTimestamp();
        Interlocked.Add(ref _modelTicks, t1 - t0);
        Interlocked.Add(ref _poolTicks, t2 - t1);
        Interlocked.Add(ref _tokens, real);
        Interlocked.Add(ref _padded, (long)b * t);
    }

    /// <inheritdoc />
    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (options?.Dimensions is int d && d != Dimensions)
            throw new ArgumentException($"{ModelId} makes {Dimensions}-dimensional embeddings; {d} were asked for", nameof(options));
        var texts = values as IReadOnlyList<string> ?? values.ToList();
        var all = new float[texts.Count * Dimensions];
        Embed(texts, all, null, cancellationToken);
        var result = new GeneratedEmbeddings<Embedding<float>>(texts.Count);
        var created = DateTimeOffset.UtcNow;
        for (int i = 0; i < texts.Count; i++)
            result.Add(new Embedding<float>(all.AsMemory(i * Dimensions, Dimensions)) { ModelId = ModelId, CreatedAt = created });
        return Task.FromResult(result);
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return _metadata;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Releases the ONNX Runtime session.</summary>
    public void Dispose() => _session.Dispose();
}

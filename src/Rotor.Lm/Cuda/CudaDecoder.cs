using Rotor.Cuda;

namespace Rotor.Lm.Cuda;

/// <summary>
/// The forward pass of <see cref="Decoder"/> on the GPU, for up to <see cref="MaxSequences"/> sequences with their own
/// key/value caches on the device (slots 0 .. MaxSequences - 1; the caller keeps each slot's length). Same semantics as
/// the CPU decoder: BitLinear quantizes its input per token (fused into the norm before it), BitNet's sub-norms, relu2 or
/// SiLU per the configuration, rotary embeddings in the model's pairing. Legend: B = rows of a step, D = dim,
/// Q = qDim, KV = kvDim, F = ffn, V = vocab.
/// <code>
/// x = embed(tokens)                                                            (B, D)
/// per layer: q8 = quant(rmsnorm(x [+= o])) -> qkv = Wqkv q8 -> rope(q, k), cache k, v
///            q8 = quant([rmsnorm] attention(q, cache)) -> o = Wo q8
///            q8 = quant(rmsnorm(x += o)) -> gu = Wgu q8 -> q8 = quant([rmsnorm] act(g) * u) -> o = Wdown q8
/// logits = LmHead rmsnorm(x += o)                                              (rows, V)
/// </code>
/// Steps of one row run the fused layer (<c>rotor_lm_linear</c>): the residual adds and the gated activation happen in
/// the products' epilogues, the sub-norm before the down projection in its prologue, so a layer is 8 kernels instead
/// of 10 (the same results within the norm's summation order).
/// A decode step of a given batch size is recorded once as a CUDA graph and replayed: the token ids, positions and
/// slots are copied to device memory before each replay, and every kernel reads the attention length from there.
/// Not thread-safe.
/// </summary>
public sealed class CudaDecoder : IDisposable
{
    private readonly CudaModel _m;
    private readonly ModelConfig _c;
    private readonly CudaStream _s;
    private readonly List<DeviceBuffer> _buffers = [];
    private readonly Dictionary<(int Rows, bool Sample), CudaGraph> _graphs = [];
    private readonly HashSet<(int, bool)> _warm = [];

    // Run state on the device, (MaxBatch, width) each unless noted.
    private readonly nint _x, _h, _q8, _qScale, _qSum, _qkv, _o, _gu, _logits, _half, _attnWs;
    private readonly nint _tokens, _pos, _slot, _params, _next;   // (MaxBatch) int32 / rotor_lm_sampling
    private readonly nint _sampleWs;                               // (MaxBatch, 64) uint64: the greedy argmax's partial maxima
    private readonly nint _cos, _sin;                              // (capacity, hd / 2)
    private readonly nint _kv;                                     // (sequences, layers, 2, capacity, KV)
    private readonly PinnedBuffer _hostIn, _hostOut;
    private readonly int _q8Stride, _splitLen, _splits, _logitRows, _cacheType;
    private readonly long _slotStride;                             // elements from one slot to the next
    private readonly bool _headInt8;
    private readonly bool _fusable;                                // the fused layer runs this model's one-row steps
    private readonly int _fuseMask = ParseFuseMask();              // which norms run in a product's prologue: 1 qkv, 2 gate/up, 4 down; 8 rotary in the qkv epilogue
    private bool _residualInO;                                     // the last down projection is in _o, not yet added to _x
    private readonly LmDecodeArgsNative _decode;                   // the persistent one-row step (rotor_lm_decode), when Persistent

    /// <summary>A decoder over <paramref name="model"/> for <paramref name="maxSequences"/> sequences of up to
    /// <paramref name="contextLength"/> positions, steps of up to <paramref name="maxBatch"/> rows, and a key/value
    /// cache of f16 (<paramref name="f16Cache"/>) or float32.</summary>
    /// <exception cref="CudaException">Device memory ran out (the message says how much was asked).</exception>
    public CudaDecoder(CudaModel model, int maxSequences, int contextLength, int maxBatch = 256, bool f16Cache = false)
    {
        _m = model ?? throw new ArgumentNullException(nameof(model));
        _c = model.Config;
        if (maxSequences <= 0) throw new ArgumentOutOfRangeException(nameof(maxSequences), maxSequences, "must be positive");
        if (contextLength <= 0) throw new RotorException($"context length {contextLength} must be positive");
        if (maxBatch <= 0) throw new ArgumentOutOfRangeException(nameof(maxBatch), maxBatch, "must be positive");
        MaxSequences = maxSequences; ContextLength = contextLength; MaxBatch = maxBatch;
        _s = model.Stream;
        int b = maxBatch, d = _c.Dim, qd = _c.QDim, kvd = _c.KvDim, f = _c.FfnDim;
        _headInt8 = model.LmHead.Type == LmType.I8;
        int widest = Math.Max(Math.Max(d, qd), f);
        _q8Stride = (widest + 255) / 256 * 256;
        _cacheType = f16Cache ? 1 : 0;
        try
        {
            _x = Alloc((long)b * d * 4);
            _h = Alloc((long)b * widest * 4);
            _q8 = Alloc((long)b * _q8Stride);
            _qScale = Alloc((long)b * 4); _qSum = Alloc((long)b * 4);
            _qkv = Alloc((long)b * (qd + 2 * kvd) * 4);
            _o = Alloc((long)b * d * 4);
            _gu = Alloc((long)b * 2 * f * 4);
            _logitRows = Math.Min(b, 64);
            _logits = Alloc((long)_logitRows * _c.VocabSize * 4);
            _half = Alloc((long)_logitRows * d * 2);
            unsafe
            {
                int splitLen, splits; long ws;
                Native.Check(Native.rotor_lm_attention_plan(contextLength, b, _c.Heads, _c.HeadDim, &splitLen, &splits, &ws), "planning attention");
                _splitLen = splitLen; _splits = splits;
                _attnWs = Alloc(ws);
            }
            _tokens = Alloc(b * 4L); _pos = Alloc(b * 4L); _slot = Alloc(b * 4L); _next = Alloc(b * 4L);
            _params = Alloc(b * 24L);
            _sampleWs = Alloc(b * 64L * 8);
            var (cos, sin) = Decoder.RopeTables(_c, contextLength);
            _cos = Upload(cos); _sin = Upload(sin);
            _slotStride = 2L * _c.Layers * contextLength * kvd;
            _kv = Alloc(maxSequences * _slotStride * (f16Cache ? 2 : 4));
            _hostIn = new PinnedBuffer(b * 48L);
            _hostOut = new PinnedBuffer(b * 4L);
            _s.Synchronize();
        }
        catch
        {
            Dispose();
            throw;
        }
        KvBytes = maxSequences * _slotStride * (f16Cache ? 2 : 4);
        _fusable = Fusable(model);
        try
        {
            (_decode, PersistentReason) = PlanPersistent();
        }
        catch
        {
            Dispose();
            throw;
        }
        Persistent = PersistentReason is null;
    }

    /// <summary>Whether one-row steps run as one persistent kernel (<c>rotor_lm_decode</c>: every layer, weights
    /// bulk-copied a layer ahead); else <see cref="PersistentReason"/> says why not.</summary>
    public bool Persistent { get; }
    /// <summary>Why one-row steps do not run as one persistent kernel, or null.</summary>
    public string? PersistentReason { get; }

    // The persistent kernel takes BitNet-style layers (all products ternary, gate/up halves): the layer table goes to
    // the device once, the kernel's plan says whether the shape fits (shared memory for a layer's weights a CTA, head
    // size, columns). Opt-in (ROTOR_PERSISTENT=1): it gives the CPU's results but is slower than the fused layer so far
    // (docs/CUDA.md says where its time goes).
    private unsafe (LmDecodeArgsNative Args, string? Reason) PlanPersistent()
    {
        if (Environment.GetEnvironmentVariable("ROTOR_PERSISTENT") != "1") return (default, "ROTOR_PERSISTENT=1 not set (opt-in: slower than the fused layer so far)");
        if (!_fusable) return (default, "not every product is ternary with gate/up halves (or ROTOR_FUSED=0)");
        int layers = _c.Layers;
        if (_c.QDim > _c.Dim) return (default, "query heads wider than the model dimension");
        var table = new LmDecodeLayerNative[layers];
        for (int l = 0; l < layers; l++)
        {
            DeviceLayer w = _m.Layers[l];
            DeviceLinear[] ps = [w.Qkv, w.Wo, w.GateUp, w.Down];
            nint[] norms = [w.AttnNorm, w.AttnSubNorm, w.FfnNorm, w.FfnSubNorm];
            for (int p = 0; p < 4; p++)
            {
                if (ps[p].RowBytes % 16 != 0 || ps[p].Weights % 16 != 0) return (default, "weight rows not 16-byte aligned");
                table[l].W[p] = ps[p].Weights;
                table[l].WScale[p] = ps[p].Scales;
                table[l].Norm[p] = norms[p];
                table[l].RowBytes[p] = ps[p].RowBytes;
                table[l].WScaleStride[p] = ps[p].ScaleStride;
            }
        }
        var a = new LmDecodeArgsNative
        {
            X = _x, Q = _qkv, O = _o, H = _gu, Kv = _kv, Cos = _cos, Sin = _sin, Pos = _pos, Slot = _slot,
            SlotStride = _slotStride, LayerCount = layers, Dim = _c.Dim, Heads = _c.Heads, KvHeads = _c.KvHeads, HeadDim = _c.HeadDim,
            Ffn = _c.FfnDim, Capacity = ContextLength, CacheType = _cacheType, RopeStyle = _c.Rope == RopeStyle.Half ? 1 : 0,
            Act = _c.Activation == FfnActivation.Relu2 ? 1 : 0, Eps = _c.NormEps, Scale = 1f / MathF.Sqrt(_c.HeadDim),
        };
        int ctas; long ws; int syncCount;
        int rc = Native.rotor_lm_decode_plan(&a, &ctas, &ws, &syncCount);
        if (rc != 0) return (default, Native.LastError());
        var buf = new DeviceBuffer(layers * (long)sizeof(LmDecodeLayerNative));
        _buffers.Add(buf);
        buf.Upload<LmDecodeLayerNative>(table, _s);
        a.Layers = buf.Pointer;
        a.Workspace = Alloc(ws);
        a.Sync = Alloc(syncCount * 4L);
        Native.Check(Native.rotor_cuda_memset(a.Sync, 0, (nuint)(syncCount * 4L), _s.Pointer), "clearing the decode counters");
        _s.Synchronize();
        return (a, null);
    }

    // Default 12: the rotary embeddings and the cache append run in the q/k/v product's epilogue (8; one kernel fewer
    // a layer), and the sub-norm before the down projection in that product's prologue (4). The norms before q/k/v and
    // gate/up stay kernels of their own, which the products' weight streams overlap (programmatic dependent launch):
    // every CTA of a product repeating the norm (the row and the norm weight from L2, three passes, three block
    // reductions) costs more than that kernel, most for gate/up with the most CTAs. ROTOR_FUSED=1..15 picks others
    // (benchmarks), 0 turns the fused layer off.
    private static int ParseFuseMask() =>
        int.TryParse(Environment.GetEnvironmentVariable("ROTOR_FUSED"), out int v) && v is >= 1 and <= 15 ? v : 12;

    /// <summary>Whether the fused layer (<c>rotor_lm_linear</c>) runs this model's one-row steps: every product
    /// ternary, gate/up in two halves, a row's int8 input, float row and norm weight beside a bulk-copied weight tile
    /// within the kernel's shared memory; and <c>ROTOR_FUSED=0</c> not set.</summary>
    private static bool Fusable(CudaModel m)
    {
        if (Environment.GetEnvironmentVariable("ROTOR_FUSED") == "0") return false;
        int kp = 0;
        foreach (var l in m.Layers)
        {
            if (!l.Qkv.Ternary || !l.Wo.Ternary || !l.GateUp.Ternary || !l.Down.Ternary || l.GateUp.Rows % 2 != 0) return false;
            kp = Math.Max(kp, Math.Max(Math.Max(l.Qkv.KBlocks, l.GateUp.KBlocks), l.Down.KBlocks) * 256);
        }
        // gemv_fused.cu's shared memory (kFusedMaxSmem): the weight tile (at most kBulkMaxSmem), the int8 row, and a
        // float row and the norm weight.
        const int smem = 160 * 1024, weightTile = 48 * 1024;
        return kp > 0 && weightTile + 9 * kp <= smem;
    }

    /// <summary>Sequences (cache slots).</summary>
    public int MaxSequences { get; }
    /// <summary>Positions a sequence holds at most.</summary>
    public int ContextLength { get; }
    /// <summary>Rows one internal step takes at most (longer prompts are split).</summary>
    public int MaxBatch { get; }
    /// <summary>Rows a decode step (<see cref="ForwardBatch"/>, <c>DecodeSample</c>) takes at most: the rows of
    /// logits the decoder holds.</summary>
    public int MaxStepRows => _logitRows;
    /// <summary>Bytes of device memory the key/value caches take.</summary>
    public long KvBytes { get; }
    /// <summary>The configuration.</summary>
    public ModelConfig Config => _c;
    /// <summary>The weights.</summary>
    public CudaModel Model => _m;

    private nint Alloc(long bytes)
    {
        var buf = new DeviceBuffer(Math.Max(bytes, 256));
        _buffers.Add(buf);
        return buf.Pointer;
    }

    private nint Upload(float[] v)
    {
        var buf = new DeviceBuffer(Math.Max(v.Length * 4L, 256));
        _buffers.Add(buf);
        buf.Upload<float>(v, _s);
        return buf.Pointer;
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> of sequence <paramref name="slot"/> at positions <paramref name="position"/> ..,
    /// writes their keys and values to its cache, and returns the last token's logits (or, with
    /// <see cref="LogitsMode.All"/>, writes every token's into <paramref name="allLogits"/>). Valid until the next call.
    /// </summary>
    /// <exception cref="RotorException">The tokens do not fit the context, or an id is outside the vocabulary.</exception>
    public float[] Forward(ReadOnlySpan<int> tokens, int slot, int position, LogitsMode mode = LogitsMode.Last, Span<float> allLogits = default)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        CheckSlot(slot);
        if (position < 0 || (long)position + tokens.Length > ContextLength)
            throw new RotorException($"{tokens.Length} tokens after {position} do not fit the context of {ContextLength} positions");
        CheckIds(tokens);
        if (mode == LogitsMode.All && allLogits.Length < (long)tokens.Length * _c.VocabSize)
            throw new ArgumentException($"allLogits holds {allLogits.Length} values, need {(long)tokens.Length * _c.VocabSize}", nameof(allLogits));
        var last = new float[_c.VocabSize];
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            int n = Math.Min(MaxBatch, tokens.Length - start);
            bool final = start + n == tokens.Length;
            StageInputs(tokens.Slice(start, n), i => slot, i => position + start + i);
            if (n == 1 && mode == LogitsMode.Last) RunGraph(1, sample: false);
            else
            {
                Step(n);
                if (mode == LogitsMode.All)
                {
                    for (int r0 = 0; r0 < n; r0 += _logitRows)
                    {
                        int rows = Math.Min(_logitRows, n - r0);
                        Head(r0, rows);
                        DownloadLogits(allLogits.Slice((start + r0) * _c.VocabSize, rows * _c.VocabSize));
                    }
                    if (final) allLogits.Slice((tokens.Length - 1) * _c.VocabSize, _c.VocabSize).CopyTo(last);
                    continue;
                }
                if (!final) continue;
                Head(n - 1, 1);
            }
            if (final) DownloadLogits(last);
        }
        return last;
    }

    /// <summary>One decode step of several sequences (continuous batching): token b goes to sequence
    /// <paramref name="slots"/>[b] at <paramref name="positions"/>[b]; writes (B, V) logits.</summary>
    public void ForwardBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, Span<float> logits)
    {
        int n = CheckBatch(tokens, slots, positions);
        if (logits.Length < (long)n * _c.VocabSize) throw new ArgumentException($"logits holds {logits.Length} values, need {(long)n * _c.VocabSize}", nameof(logits));
        if (n > _logitRows) throw new ArgumentException($"{n} rows of logits at once; at most {_logitRows}", nameof(tokens));
        int[] s = slots.ToArray(), p = positions.ToArray();
        StageInputs(tokens, i => s[i], i => p[i]);
        RunGraph(n, sample: false);
        DownloadLogits(logits[..(n * _c.VocabSize)]);
    }

    /// <summary>One decode step of several sequences with the next token of each chosen on the GPU per
    /// <paramref name="sampling"/> (only the ids come back), row b's draw seeded from <paramref name="seed"/>, its slot
    /// and its position. Repetition penalties and top-k of 0 or above 1024 are not done on the device:
    /// <see cref="SamplesOnDevice"/> says whether these options can be.</summary>
    public void DecodeSample(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, SamplingOptions sampling, ulong seed, Span<int> next)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        int n = tokens.Length;
        if (slots.Length != n) throw new ArgumentException($"{n} tokens, {slots.Length} slots");
        var options = new SamplingOptions[n];
        var seeds = new ulong[n];
        for (int i = 0; i < n; i++) { options[i] = sampling; seeds[i] = seed + (ulong)slots[i] * 0x9E3779B97F4A7C15UL; }
        DecodeSample(tokens, slots, positions, options, seeds, next);
    }

    /// <summary>One decode step of several sequences with row b's next token chosen on the GPU per
    /// <paramref name="sampling"/>[b], its draw seeded from <paramref name="seeds"/>[b] and its position (only the ids
    /// come back). Each options must pass <see cref="SamplesOnDevice"/>.</summary>
    public void DecodeSample(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds, Span<int> next)
    {
        int n = CheckBatch(tokens, slots, positions);
        if (n > _logitRows) throw new ArgumentException($"{n} rows at once; at most {_logitRows}", nameof(tokens));
        if (sampling.Length != n || seeds.Length != n) throw new ArgumentException($"{n} tokens, {sampling.Length} sampling options, {seeds.Length} seeds");
        foreach (var o in sampling)
            if (!SamplesOnDevice(o ?? throw new ArgumentNullException(nameof(sampling))))
                throw new ArgumentException("these sampling options are not done on the GPU (repetition penalty, or top-k 0 or above 1024)", nameof(sampling));
        if (next.Length < n) throw new ArgumentException($"next holds {next.Length} ids, need {n}", nameof(next));
        int[] s = slots.ToArray(), p = positions.ToArray();
        StageInputs(tokens, i => s[i], i => p[i]);
        StageSampling(sampling, seeds);
        RunGraph(n, sample: true);
        unsafe
        {
            Native.Check(Native.rotor_cuda_memcpy_d2h(_hostOut.Pointer, _next, (nuint)(n * 4), _s.Pointer), "copying the sampled ids");
            _s.Synchronize();
            _hostOut.AsSpan<int>(n).CopyTo(next);
        }
    }

    /// <summary>Copies the keys and values of the first <paramref name="length"/> positions of sequence
    /// <paramref name="from"/> to sequence <paramref name="to"/> (device to device, on the stream, so the next step
    /// sees them): each layer's keys and values, one copy each.</summary>
    public void CopyPrefix(int from, int to, int length)
    {
        CheckSlot(from); CheckSlot(to);
        if ((uint)length > (uint)ContextLength) throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be in [0, {ContextLength}]");
        if (length == 0 || from == to) return;
        long elem = _cacheType == 1 ? 2 : 4, kvd = _c.KvDim, block = (long)ContextLength * kvd;
        nuint bytes = (nuint)(length * kvd * elem);
        // Slot s, layer l: keys at s * slotStride + 2 l * block, values one block further (elements).
        for (int l = 0; l < _c.Layers; l++)
            for (int half = 0; half < 2; half++)
            {
                long offset = (2L * l + half) * block;
                nint src = _kv + (nint)((from * _slotStride + offset) * elem), dst = _kv + (nint)((to * _slotStride + offset) * elem);
                Native.Check(Native.rotor_cuda_memcpy_d2d(dst, src, bytes, _s.Pointer), "copying a cache prefix");
            }
    }

    /// <summary>Whether <c>DecodeSample</c> takes <paramref name="o"/>: no repetition penalty, and greedy or a
    /// top-k of 1..1024.</summary>
    public static bool SamplesOnDevice(SamplingOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.RepetitionPenalty != 1f && o.RepeatLastN > 0) return false;
        return o.Temperature == 0 || (o.TopK >= 1 && o.TopK <= 1024);
    }

    private void CheckSlot(int slot)
    {
        if ((uint)slot >= (uint)MaxSequences) throw new ArgumentOutOfRangeException(nameof(slot), slot, $"slot must be in [0, {MaxSequences})");
    }

    private void CheckIds(ReadOnlySpan<int> tokens)
    {
        foreach (int t in tokens)
            if ((uint)t >= (uint)_c.VocabSize) throw new RotorException($"token id {t} is outside the vocabulary (0..{_c.VocabSize - 1})");
    }

    private int CheckBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<int> positions)
    {
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (slots.Length != n || positions.Length != n) throw new ArgumentException($"{n} tokens, {slots.Length} slots, {positions.Length} positions");
        if (n > MaxBatch) throw new ArgumentException($"{n} sequences, the decoder was made for batches of at most {MaxBatch}", nameof(tokens));
        CheckIds(tokens);
        var seen = new HashSet<int>();
        for (int i = 0; i < n; i++)
        {
            CheckSlot(slots[i]);
            if (!seen.Add(slots[i])) throw new RotorException($"sequence slot {slots[i]} appears twice in one batch");
            if ((uint)positions[i] >= (uint)ContextLength) throw new RotorException($"sequence {slots[i]}: position {positions[i]} is outside its context of {ContextLength} positions");
        }
        return n;
    }

    /// <summary>Copies the step's ids, positions and slots to the device, on the stream.</summary>
    private void StageInputs(ReadOnlySpan<int> tokens, Func<int, int> slot, Func<int, int> pos)
    {
        int n = tokens.Length;
        // The previous step's copies from the pinned buffer must be done before it is rewritten.
        _s.Synchronize();
        var host = _hostIn.AsSpan<int>(3 * n);
        for (int i = 0; i < n; i++) { host[i] = tokens[i]; host[n + i] = pos(i); host[2 * n + i] = slot(i); }
        nint hp = _hostIn.Pointer;
        Native.Check(Native.rotor_cuda_memcpy_h2d(_tokens, hp, (nuint)(n * 4), _s.Pointer), "copying token ids");
        Native.Check(Native.rotor_cuda_memcpy_h2d(_pos, hp + n * 4, (nuint)(n * 4), _s.Pointer), "copying positions");
        Native.Check(Native.rotor_cuda_memcpy_h2d(_slot, hp + n * 8, (nuint)(n * 4), _s.Pointer), "copying slots");
    }

    /// <summary>Copies each row's sampling parameters to the device, on the stream (after <see cref="StageInputs"/>,
    /// which waited for the pinned buffer).</summary>
    private unsafe void StageSampling(ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds)
    {
        int n = sampling.Length;
        nint hparams = _hostIn.Pointer + (nint)(16L * MaxBatch);
        var ps = new Span<LmSamplingNative>((void*)hparams, n);
        for (int i = 0; i < n; i++)
        {
            var o = sampling[i];
            ps[i] = new LmSamplingNative { Temperature = o.Temperature, TopP = o.TopP, MinP = o.MinP, TopK = o.Temperature == 0 ? 1 : o.TopK, Seed = seeds[i] };
        }
        Native.Check(Native.rotor_cuda_memcpy_h2d(_params, hparams, (nuint)(n * 24), _s.Pointer), "copying sampling parameters");
    }

    /// <summary>A decode step of n rows (the last token's logits of each, optionally sampled) as a graph: the first
    /// call of a size runs the kernels directly (it sets kernel attributes, which a capture must not), the second
    /// records them, every later one replays.</summary>
    private void RunGraph(int n, bool sample)
    {
        var key = (n, sample);
        if (_graphs.TryGetValue(key, out var g)) { g.Launch(_s); return; }
        if (_warm.Add(key)) { DecodeKernels(n, sample); return; }
        g = CudaGraph.Capture(_s, () => DecodeKernels(n, sample));
        _graphs[key] = g;
        g.Launch(_s);
    }

    private void DecodeKernels(int n, bool sample)
    {
        Step(n);
        Head(0, n);
        if (sample)
        {
            Native.Check(Native.rotor_lm_sample(_logits, n, _c.VocabSize, _c.VocabSize, _params, _pos, _sampleWs, _next, _s.Pointer), "sampling");
        }
    }

    private unsafe void DownloadLogits(Span<float> dst)
    {
        fixed (float* p = dst)
            Native.Check(Native.rotor_cuda_memcpy_d2h((nint)p, _logits, (nuint)(dst.Length * 4L), _s.Pointer), "copying logits");
        _s.Synchronize();
    }

    /// <summary>The layers for the n rows staged (tokens, positions, slots). Leaves the residual in _x; without the
    /// last layer's down projection, which then stays in _o for <see cref="Head"/> to add, unless the step ran fused
    /// (<see cref="_residualInO"/>).</summary>
    private void Step(int n)
    {
        int d = _c.Dim, qd = _c.QDim, kvd = _c.KvDim, f = _c.FfnDim, qkvW = qd + 2 * kvd;
        nint st = _s.Pointer;
        var emb = _m.Embedding;
        Native.Check(Native.rotor_lm_embed(emb.Weights, (int)emb.Type, emb.RowStride, emb.Scales, emb.Rows, _tokens, n, d, _x, d, st), "embedding");
        float scale = 1f / MathF.Sqrt(_c.HeadDim);
        long cacheElem = _cacheType == 1 ? 2 : 4;
        if (n == 1 && Persistent)
        {
            var a = _decode;
            unsafe { Native.Check(Native.rotor_lm_decode(&a, st), "decode step"); }
            _residualInO = false;
            return;
        }
        // One row only: a prologue repeats its norm for each row in every CTA, and a batch of 8 ran slower fused.
        bool fused = n == 1 && _fusable;
        int act = _c.Activation == FfnActivation.Relu2 ? 1 : 0;
        for (int l = 0; l < _c.Layers; l++)
        {
            DeviceLayer w = _m.Layers[l];
            nint kc = _kv + (nint)(2L * l * ContextLength * kvd * cacheElem);
            nint vc = kc + (nint)((long)ContextLength * kvd * cacheElem);
            // The rotary embeddings and the cache append in the q/k/v product's epilogue (bit 8), else rope_kv's kernel.
            bool ropeFused = fused && (_fuseMask & 8) != 0;
            var qkvEpi = ropeFused ? LmEpilogue.Rope : LmEpilogue.Store;
            if (fused && (_fuseMask & 1) != 0) Fused(w.Qkv, n, _x, d, d, w.AttnNorm, norm: true, qkvEpi, 0, _qkv, qkvW, kc, vc);
            else if (fused)
            {
                Norm(_x, n, d, d, 0, 0, 0, w.AttnNorm, norm: true, w.Qkv);
                Fused(w.Qkv, n, 0, 0, 0, 0, norm: false, qkvEpi, 0, _qkv, qkvW, kc, vc);
            }
            else
            {
                Norm(_x, n, d, d, l == 0 ? 0 : _o, 0, 0, w.AttnNorm, norm: true, w.Qkv);
                Linear(w.Qkv, n, _qkv, qkvW);
            }
            if (!ropeFused)
                Native.Check(Native.rotor_lm_rope_kv(_qkv, n, qkvW, _c.Heads, _c.KvHeads, _c.HeadDim, _c.Rope == RopeStyle.Half ? 1 : 0, _cos, _sin, _pos, _slot,
                    kc, vc, _cacheType, _slotStride, st), "rotary embeddings");
            bool sub = w.AttnSubNorm != 0;
            Native.Check(Native.rotor_lm_attention(_qkv, n, qkvW, _c.Heads, _c.KvHeads, _c.HeadDim, kc, vc, _cacheType, _slotStride, _pos, _slot, scale,
                _splitLen, _splits, _attnWs, sub ? 1 : 0, w.AttnSubNorm, _c.NormEps,
                w.Wo.ReadsInt8 ? 0 : _h, qd, w.Wo.ReadsInt8 ? _q8 : 0, _q8Stride, _qScale, _qSum, st), "attention");
            bool fsub = w.FfnSubNorm != 0;
            if (fused)
            {
                // The residual adds happen in the products' epilogues, the norms and quantizations in their prologues.
                Fused(w.Wo, n, 0, 0, 0, 0, norm: false, LmEpilogue.Add, 0, _x, d);
                if ((_fuseMask & 2) != 0) Fused(w.GateUp, n, _x, d, d, w.FfnNorm, norm: true, LmEpilogue.Gated, act, _gu, f);
                else
                {
                    Norm(_x, n, d, d, 0, 0, 0, w.FfnNorm, norm: true, w.GateUp);
                    Fused(w.GateUp, n, 0, 0, 0, 0, norm: false, LmEpilogue.Gated, act, _gu, f);
                }
                if ((_fuseMask & 4) != 0) Fused(w.Down, n, _gu, f, f, w.FfnSubNorm, norm: fsub, LmEpilogue.Add, 0, _x, d);
                else
                {
                    Norm(_gu, n, f, f, 0, 0, 0, w.FfnSubNorm, norm: fsub, w.Down);
                    Fused(w.Down, n, 0, 0, 0, 0, norm: false, LmEpilogue.Add, 0, _x, d);
                }
                continue;
            }
            Linear(w.Wo, n, _o, d);
            Norm(_x, n, d, d, _o, 0, 0, w.FfnNorm, norm: true, w.GateUp);
            Linear(w.GateUp, n, _gu, 2 * f);
            Norm(_gu, n, f, 2 * f, 0, _gu + (nint)(f * 4L), act, w.FfnSubNorm, norm: fsub, w.Down);
            Linear(w.Down, n, _o, d);
        }
        _residualInO = !fused;
    }

    /// <summary>A ternary product of n rows (at most 8) with its input made from the float rows
    /// at <paramref name="src"/> (norm, quantization), or read from _q8 where src is 0, and the result stored, added to
    /// y or gated (<c>rotor_lm_linear</c>).</summary>
    private unsafe void Fused(DeviceLinear w, int n, nint src, int cols, int srcStride, nint normWeight, bool norm, LmEpilogue epilogue, int act, nint y, int yStride,
        nint kCache = 0, nint vCache = 0)
    {
        var a = new LmLinearNative
        {
            G = new GemmArgsNative
            {
                W = w.Weights, X = src == 0 ? _q8 : 0, XScale = src == 0 ? _qScale : 0, XSum = src == 0 ? _qSum : 0, WScale = w.Scales, Bias = 0, Y = y,
                RowBytes = w.RowBytes, KBlocks = w.KBlocks, N = w.Rows, XStride = _q8Stride, M = n, WScaleStride = w.ScaleStride, YStride = yStride, Act = 0,
            },
            Src = src, NormWeight = norm ? normWeight : 0, SrcStride = srcStride, Cols = cols, Norm = norm ? 1 : 0, Eps = _c.NormEps,
            Epilogue = (int)epilogue, Act = act,
        };
        if (epilogue == LmEpilogue.Rope)
        {
            a.RopeCos = _cos; a.RopeSin = _sin; a.Pos = _pos; a.Slot = _slot; a.KCache = kCache; a.VCache = vCache; a.SlotStride = _slotStride;
            a.Heads = _c.Heads; a.KvHeads = _c.KvHeads; a.HeadDim = _c.HeadDim; a.RopeStyle = _c.Rope == RopeStyle.Half ? 1 : 0; a.CacheType = _cacheType;
        }
        Native.Check(Native.rotor_lm_linear(&a, _s.Pointer), "fused ternary product");
    }

    /// <summary>Final norm (after the last residual add) and the LM head for rows [first, first + rows) into _logits.</summary>
    private void Head(int first, int rows)
    {
        int d = _c.Dim;
        nint st = _s.Pointer;
        nint x = _x + (nint)((long)first * d * 4), o = _o + (nint)((long)first * d * 4);
        var head = _m.LmHead;
        // The residual add writes x back, so the head of rows already added must not add again: Head is called once a
        // step for the last row (Last), or for row chunks in order (All) which each add their own rows once.
        Native.Check(Native.rotor_lm_norm(x, rows, d, d, _residualInO ? o : 0, _residualInO ? d : 0, 0, 0, 0, 1, _m.FinalNorm, _c.NormEps,
            _headInt8 ? 0 : _h, d, _headInt8 ? _q8 : 0, _q8Stride, _qScale, _qSum, st), "final norm");
        Native.Check(Native.rotor_lm_dense(head.Weights, (int)head.Type, head.RowStride, head.Scales, head.Rows, d, _h, d, _q8, _q8Stride, _qScale,
            rows, _logits, _c.VocabSize, _half, st), "LM head");
    }

    /// <summary>Norm (and residual add or gated product) of n rows into what <paramref name="consumer"/> reads: int8
    /// rows in _q8, or float rows in _h.</summary>
    private void Norm(nint x, int n, int cols, int xStride, nint add, nint up, int act, nint weight, bool norm, DeviceLinear consumer)
    {
        bool i8 = consumer.ReadsInt8;
        Native.Check(Native.rotor_lm_norm(x, n, cols, xStride, add, add != 0 ? _c.Dim : 0, up, up != 0 ? xStride : 0, act, norm ? 1 : 0, weight, _c.NormEps,
            i8 ? 0 : _h, cols, i8 ? _q8 : 0, _q8Stride, _qScale, _qSum, _s.Pointer), "norm");
    }

    private unsafe void Linear(DeviceLinear w, int n, nint y, int yStride)
    {
        if (w.Ternary)
        {
            var a = new GemmArgsNative
            {
                W = w.Weights, X = _q8, XScale = _qScale, XSum = _qSum, WScale = w.Scales, Bias = 0, Y = y,
                RowBytes = w.RowBytes, KBlocks = w.KBlocks, N = w.Rows, XStride = _q8Stride, M = n, WScaleStride = w.ScaleStride, YStride = yStride, Act = 0,
            };
            Native.Check(Native.rotor_cuda_gemm(&a, 0, _s.Pointer), "ternary product");
        }
        else
        {
            Native.Check(Native.rotor_lm_dense(w.Weights, (int)w.Type, w.RowBytes, w.Scales, w.Rows, w.Cols, _h, w.Cols, _q8, _q8Stride, _qScale,
                n, y, yStride, 0, _s.Pointer), "dense product");
        }
    }

    /// <summary>Frees the caches, buffers and graphs (the model's weights stay).</summary>
    public void Dispose()
    {
        foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        _hostIn?.Dispose();
        _hostOut?.Dispose();
    }
}

using System.Diagnostics;
using System.Numerics.Tensors;
using Rotor.Kernels;

namespace Rotor.Lm;

/// <summary>Which logits a forward pass computes.</summary>
public enum LogitsMode
{
    /// <summary>Only the last token's (generation).</summary>
    Last = 0,
    /// <summary>Every token's (perplexity, checks against other implementations).</summary>
    All = 1,
}

/// <summary>
/// The forward pass of a decoder-only transformer over a batch of tokens of one sequence (prefill) or one token
/// (decode). Legend: B = tokens in the batch, D = dim, Q = qDim, KV = kvDim, F = ffn, V = vocab.
/// <code>
/// x = embed(tokens)                                   (B, D)
/// per layer: h = rmsnorm(x) -> q, k, v = Wq h, Wk h, Wv h -> rope(q, k) -> cache k, v
///            a = attention(q, cache) [-> rmsnorm(a, attn_sub_norm)] -> x += Wo a
///            h = rmsnorm(x) -> g, u = Wgate h, Wup h -> f = act(g) * u [-> rmsnorm(f, ffn_sub_norm)] -> x += Wdown f
/// logits = LmHead rmsnorm(x)                          (B or 1, V)
/// </code>
/// A ternary layer's input is quantized to int8 once per token and shared by the layers that read it (q/k/v, gate/up),
/// as BitNet's BitLinear quantizes each input. Every buffer is allocated once, here; nothing is allocated per token.
/// Not thread-safe: one decoder a sequence stream.
/// </summary>
public sealed class Decoder
{
    private readonly ModelConfig _c;
    private readonly ModelWeights _w;
    private readonly ITernaryBackend _ternary;
    private readonly IDenseBackend _dense;
    private readonly IAttentionBackend _attention;
    private readonly IRowBackend? _rows;   // norms, the gated activation and the quantization of a batch's rows, on the backend's threads
    private readonly int _maxBatch;

    // Run state, (maxBatch, width) each.
    private readonly float[] _x, _h, _q, _k, _v, _att, _o, _gate, _up, _logits;
    private readonly QuantizedActivations _qDim, _qAtt, _qFfn;
    private readonly float[] _cos, _sin;   // (ropePositions, headDim / 2)
    private readonly int _ropePositions;
    private readonly HashSet<KvCache> _seen = new(ReferenceEqualityComparer.Instance);   // ForwardBatch's duplicate check
    // ForwardBatch's per-row caches of one layer and positions, (maxBatch) each: the attention of every row in one call.
    private readonly float[][] _rowK, _rowV;
    private readonly Half[][] _rowKH, _rowVH;
    private readonly int[] _rowPos;

    /// <summary>A decoder for <paramref name="weights"/> of a model shaped <paramref name="config"/>, computing with
    /// <paramref name="backend"/>, for batches of up to <paramref name="maxBatch"/> tokens and positions below
    /// <paramref name="maxPositions"/>.</summary>
    public Decoder(ModelConfig config, ModelWeights weights, CpuBackend backend, int maxPositions, int maxBatch = 128)
        : this(config, weights, backend, backend, backend, maxPositions, maxBatch) { }

    /// <summary>A decoder whose ternary, dense and attention products run on the given backends.</summary>
    public Decoder(ModelConfig config, ModelWeights weights, ITernaryBackend ternary, IDenseBackend dense, IAttentionBackend attention, int maxPositions, int maxBatch = 128)
    {
        _c = config ?? throw new ArgumentNullException(nameof(config));
        _w = weights ?? throw new ArgumentNullException(nameof(weights));
        _ternary = ternary; _dense = dense; _attention = attention;
        _rows = ternary as IRowBackend ?? dense as IRowBackend;
        if (maxBatch <= 0) throw new ArgumentOutOfRangeException(nameof(maxBatch), maxBatch, "maxBatch must be positive");
        if (maxPositions <= 0) throw new ArgumentOutOfRangeException(nameof(maxPositions), maxPositions, "maxPositions must be positive");
        _maxBatch = maxBatch;
        int b = maxBatch;
        _x = new float[b * _c.Dim]; _h = new float[b * Math.Max(_c.Dim, _c.FfnDim)];
        _q = new float[b * _c.QDim]; _k = new float[b * _c.KvDim]; _v = new float[b * _c.KvDim];
        _att = new float[b * _c.QDim]; _o = new float[b * _c.Dim];
        _gate = new float[b * _c.FfnDim]; _up = new float[b * _c.FfnDim];
        _logits = new float[_c.VocabSize];   // the last token's; LogitsMode.All and ForwardBatch write into the caller's span
        _qDim = new QuantizedActivations(b, _c.Dim);
        _qAtt = new QuantizedActivations(b, _c.QDim);
        _qFfn = new QuantizedActivations(b, _c.FfnDim);
        (_cos, _sin) = RopeTables(_c, maxPositions);
        _ropePositions = maxPositions;
        _rowK = new float[b][]; _rowV = new float[b][]; _rowKH = new Half[b][]; _rowVH = new Half[b][]; _rowPos = new int[b];
    }

    /// <summary>The configuration this decoder runs.</summary>
    public ModelConfig Config => _c;
    /// <summary>Tokens one internal step takes at most (longer inputs are split).</summary>
    public int MaxBatch => _maxBatch;

    /// <summary>Where the phases of each pass are timed while set (null: not timed); the caller begins its steps.</summary>
    public StepTrace? Trace { get; set; }

    /// <summary>Adds the time since <paramref name="since"/> to <paramref name="phase"/> and returns now; 0 (no clock
    /// read) without a trace.</summary>
    private long Tick(StepPhase phase, long since)
    {
        if (Trace is not { } t) return 0;
        long now = Stopwatch.GetTimestamp();
        t.Add(phase, now - since);
        return now;
    }

    private long Now() => Trace is null ? 0 : Stopwatch.GetTimestamp();

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions <c>cache.Length ..</c>, appends their keys and values to
    /// <paramref name="cache"/>, and returns the logits: (1, V) of the last token, or (B, V) of every token with
    /// <see cref="LogitsMode.All"/> (then <paramref name="allLogits"/> receives them; it must hold B * V values).
    /// The returned span is valid until the next call.
    /// </summary>
    /// <exception cref="RotorException">The tokens do not fit the cache, or an id is outside the vocabulary.</exception>
    public ReadOnlySpan<float> Forward(scoped ReadOnlySpan<int> tokens, KvCache cache, LogitsMode mode = LogitsMode.Last, Span<float> allLogits = default)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (cache.KvDim != _c.KvDim) throw new ArgumentException("the cache was made for another model", nameof(cache));
        int limit = Math.Min(cache.Capacity, _ropePositions);
        if ((long)cache.Length + tokens.Length > limit)
            throw new RotorException($"{tokens.Length} tokens after {cache.Length} do not fit the context of {limit} positions");
        foreach (int t in tokens)
            if ((uint)t >= (uint)_c.VocabSize) throw new RotorException($"token id {t} is outside the vocabulary (0..{_c.VocabSize - 1})");
        if (mode == LogitsMode.All && allLogits.Length < (long)tokens.Length * _c.VocabSize)
            throw new ArgumentException($"allLogits holds {allLogits.Length} values, need {(long)tokens.Length * _c.VocabSize}", nameof(allLogits));

        ReadOnlySpan<float> last = default;
        for (int start = 0; start < tokens.Length; start += _maxBatch)
        {
            int n = Math.Min(_maxBatch, tokens.Length - start);
            bool final = start + n == tokens.Length;
            Step(tokens.Slice(start, n), cache);
            if (mode == LogitsMode.All)
            {
                Head(n, 0, allLogits.Slice(start * _c.VocabSize, n * _c.VocabSize));
                if (final) last = allLogits.Slice((tokens.Length - 1) * _c.VocabSize, _c.VocabSize);
            }
            else if (final)
            {
                Head(1, n - 1, _logits.AsSpan(0, _c.VocabSize));
                last = _logits.AsSpan(0, _c.VocabSize);
            }
        }
        return last;
    }

    /// <summary>
    /// One decode step for several sequences at once (continuous batching): token b is appended to
    /// <paramref name="caches"/>[b] at that cache's next position; the products run once over all rows (one ternary
    /// GEMM instead of B GEMVs), attention runs per sequence on its own cache. Writes (B, V) logits.
    /// </summary>
    /// <exception cref="RotorException">A cache is full, appears twice, or an id is outside the vocabulary.</exception>
    public void ForwardBatch(scoped ReadOnlySpan<int> tokens, IReadOnlyList<KvCache> caches, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(caches);
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (caches.Count != n) throw new ArgumentException($"{n} tokens but {caches.Count} caches", nameof(caches));
        if (n > _maxBatch) throw new ArgumentException($"{n} sequences, the decoder was made for batches of at most {_maxBatch}", nameof(tokens));
        if (logits.Length < (long)n * _c.VocabSize) throw new ArgumentException($"logits holds {logits.Length} values, need {(long)n * _c.VocabSize}", nameof(logits));
        long t = Now();
        _seen.Clear();
        for (int b = 0; b < n; b++)
        {
            var cache = caches[b] ?? throw new ArgumentNullException(nameof(caches));
            if (!_seen.Add(cache)) throw new RotorException($"sequence {b}'s cache appears twice in one batch");
            if (cache.KvDim != _c.KvDim) throw new ArgumentException("a cache was made for another model", nameof(caches));
            if (cache.Length >= Math.Min(cache.Capacity, _ropePositions)) throw new RotorException($"sequence {b}: its context of {Math.Min(cache.Capacity, _ropePositions)} positions is full");
            if ((uint)tokens[b] >= (uint)_c.VocabSize) throw new RotorException($"token id {tokens[b]} is outside the vocabulary (0..{_c.VocabSize - 1})");
        }
        Tick(StepPhase.Checks, t);
        Step(tokens, null, caches);
        Head(n, 0, logits[..(n * _c.VocabSize)]);
    }

    /// <summary>The transformer layers for n tokens: of one sequence in <paramref name="single"/> at consecutive
    /// positions, or one token a sequence in <paramref name="perRow"/>. Leaves the last hidden states in _x.</summary>
    private void Step(ReadOnlySpan<int> tokens, KvCache? single, IReadOnlyList<KvCache>? perRow = null)
    {
        int n = tokens.Length, d = _c.Dim, qd = _c.QDim, kvd = _c.KvDim, f = _c.FfnDim;
        int pos0 = single?.Length ?? 0;
        long t = Now();
        Span<float> x = _x.AsSpan(0, n * d);
        for (int i = 0; i < n; i++) _w.Embedding.GetRow(tokens[i], x.Slice(i * d, d));
        t = Tick(StepPhase.Embedding, t);

        Span<float> h = _h.AsSpan(0, n * d), q = _q.AsSpan(0, n * qd), k = _k.AsSpan(0, n * kvd), v = _v.AsSpan(0, n * kvd);
        Span<float> att = _att.AsSpan(0, n * qd), o = _o.AsSpan(0, n * d), gate = _gate.AsSpan(0, n * f), up = _up.AsSpan(0, n * f);
        float scale = 1f / MathF.Sqrt(_c.HeadDim);
        for (int l = 0; l < _c.Layers; l++)
        {
            LayerWeights w = _w.Layers[l];
            RmsNorm(x, w.AttnNorm, h, n, d);
            t = Tick(StepPhase.Norms, t);
            bool quantized = Quantize(h, _qDim, w.Wq, w.Wk, w.Wv);
            t = Tick(StepPhase.Quantize, t);
            Project(w.Wq, h, quantized ? _qDim : null, q);
            Project(w.Wk, h, quantized ? _qDim : null, k);
            Project(w.Wv, h, quantized ? _qDim : null, v);
            t = Tick(StepPhase.Qkv, t);
            if (single is not null)
            {
                Rope(q, n, _c.Heads, pos0);
                Rope(k, n, _c.KvHeads, pos0);
                t = Tick(StepPhase.Rope, t);
                Attend(single, l, q, k, v, n, pos0, scale, att);
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    int pos = perRow![i].Length;
                    Rope(q.Slice(i * qd, qd), 1, _c.Heads, pos);
                    Rope(k.Slice(i * kvd, kvd), 1, _c.KvHeads, pos);
                }
                t = Tick(StepPhase.Rope, t);
                AttendRows(perRow!, l, q, k, v, n, scale, att);
            }
            t = Tick(StepPhase.Attention, t);
            if (w.AttnSubNorm is not null) RmsNorm(att, w.AttnSubNorm, att, n, qd);
            t = Tick(StepPhase.Norms, t);
            quantized = Quantize(att, _qAtt, w.Wo);
            t = Tick(StepPhase.Quantize, t);
            Project(w.Wo, att, quantized ? _qAtt : null, o);
            t = Tick(StepPhase.Wo, t);
            TensorPrimitives.Add(x, o, x);
            t = Tick(StepPhase.Elementwise, t);

            RmsNorm(x, w.FfnNorm, h, n, d);
            t = Tick(StepPhase.Norms, t);
            quantized = Quantize(h, _qDim, w.WGate, w.WUp);
            t = Tick(StepPhase.Quantize, t);
            Project(w.WGate, h, quantized ? _qDim : null, gate);
            Project(w.WUp, h, quantized ? _qDim : null, up);
            t = Tick(StepPhase.GateUp, t);
            var act = _c.Activation == FfnActivation.Relu2 ? GateActivation.Relu2 : GateActivation.Silu;
            // Without row threads: the same per-span arithmetic as the backend's, on this thread.
            if (_rows is not null) _rows.GatedActivation(gate, up, n * f, act);
            else CpuBackend.GateSpan(gate[..(n * f)], up[..(n * f)], act);
            t = Tick(StepPhase.Elementwise, t);
            if (w.FfnSubNorm is not null) RmsNorm(gate, w.FfnSubNorm, gate, n, f);
            t = Tick(StepPhase.Norms, t);
            quantized = Quantize(gate, _qFfn, w.WDown);
            t = Tick(StepPhase.Quantize, t);
            Project(w.WDown, gate, quantized ? _qFfn : null, o);
            t = Tick(StepPhase.Down, t);
            TensorPrimitives.Add(x, o, x);
            t = Tick(StepPhase.Elementwise, t);
        }
        if (single is not null) single.Length = pos0 + n;
        else for (int i = 0; i < n; i++) perRow![i].Length++;
    }

    /// <summary>Stores the n rows of k and v at positions pos0.. of layer l of the cache (in its type) and runs the
    /// attention of the n query rows over the cache.</summary>
    private void Attend(KvCache cache, int l, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int n, int pos0, float scale, Span<float> att)
    {
        int kvd = _c.KvDim;
        if (cache.Type == KvCacheType.F16)
        {
            Half[] kc = cache.KeysF16(l), vc = cache.ValuesF16(l);
            TensorPrimitives.ConvertToHalf(k[..(n * kvd)], kc.AsSpan(pos0 * kvd, n * kvd));
            TensorPrimitives.ConvertToHalf(v[..(n * kvd)], vc.AsSpan(pos0 * kvd, n * kvd));
            _attention.Attention(q, n, _c.Heads, _c.KvHeads, _c.HeadDim, kc, vc, kvd, pos0, scale, att);
        }
        else
        {
            float[] kc = cache.Keys(l), vc = cache.Values(l);
            k[..(n * kvd)].CopyTo(kc.AsSpan(pos0 * kvd, n * kvd));
            v[..(n * kvd)].CopyTo(vc.AsSpan(pos0 * kvd, n * kvd));
            _attention.Attention(q, n, _c.Heads, _c.KvHeads, _c.HeadDim, kc, vc, kvd, pos0, scale, att);
        }
    }

    /// <summary>Stores row i's key and value at its cache's next position in layer l and runs every row's attention
    /// over its own cache in one call (one job for all rows and heads); caches of mixed types go one row at a time.</summary>
    private void AttendRows(IReadOnlyList<KvCache> caches, int l, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int n, float scale, Span<float> att)
    {
        int kvd = _c.KvDim, qd = _c.QDim;
        KvCacheType type = caches[0].Type;
        bool same = true;
        for (int i = 1; i < n; i++) same &= caches[i].Type == type;
        if (!same)
        {
            for (int i = 0; i < n; i++)
                Attend(caches[i], l, q.Slice(i * qd, qd), k.Slice(i * kvd, kvd), v.Slice(i * kvd, kvd), 1, caches[i].Length, scale, att.Slice(i * qd, qd));
            return;
        }
        for (int i = 0; i < n; i++)
        {
            KvCache cache = caches[i];
            int pos = _rowPos[i] = cache.Length;
            if (type == KvCacheType.F16)
            {
                Half[] kc = _rowKH[i] = cache.KeysF16(l), vc = _rowVH[i] = cache.ValuesF16(l);
                TensorPrimitives.ConvertToHalf(k.Slice(i * kvd, kvd), kc.AsSpan(pos * kvd, kvd));
                TensorPrimitives.ConvertToHalf(v.Slice(i * kvd, kvd), vc.AsSpan(pos * kvd, kvd));
            }
            else
            {
                float[] kc = _rowK[i] = cache.Keys(l), vc = _rowV[i] = cache.Values(l);
                k.Slice(i * kvd, kvd).CopyTo(kc.AsSpan(pos * kvd, kvd));
                v.Slice(i * kvd, kvd).CopyTo(vc.AsSpan(pos * kvd, kvd));
            }
        }
        try
        {
            if (type == KvCacheType.F16)
                _attention.AttentionRows(q, _c.Heads, _c.KvHeads, _c.HeadDim, _rowKH.AsSpan(0, n), _rowVH.AsSpan(0, n), _rowPos.AsSpan(0, n), kvd, scale, att);
            else
                _attention.AttentionRows(q, _c.Heads, _c.KvHeads, _c.HeadDim, _rowK.AsSpan(0, n), _rowV.AsSpan(0, n), _rowPos.AsSpan(0, n), kvd, scale, att);
        }
        finally
        {
            // The tables must not keep a finished sequence's cache alive.
            Array.Clear(_rowK); Array.Clear(_rowV); Array.Clear(_rowKH); Array.Clear(_rowVH);
        }
    }

    /// <summary>Final norm and LM head for rows [first, first + rows) of _x into <paramref name="dst"/>.</summary>
    private void Head(int rows, int first, Span<float> dst)
    {
        int d = _c.Dim;
        long t = Now();
        Span<float> h = _h.AsSpan(0, rows * d);
        RmsNorm(_x.AsSpan(first * d, rows * d), _w.FinalNorm, h, rows, d);
        _dense.MatMul(_w.LmHead, h, dst);
        Tick(StepPhase.Head, t);
    }

    /// <summary>Quantizes x for the ternary layers among <paramref name="consumers"/> (the rows on the backend's
    /// threads where it has them); false when all are dense.</summary>
    private bool Quantize(ReadOnlySpan<float> x, QuantizedActivations q, params ReadOnlySpan<LinearWeights> consumers)
    {
        foreach (var c in consumers)
            if (c.Ternary is not null)
            {
                if (_rows is not null) _rows.Quantize(x, q);
                else q.Quantize(x);
                return true;
            }
        return false;
    }

    private void Project(LinearWeights w, ReadOnlySpan<float> x, QuantizedActivations? xq, Span<float> y)
    {
        if (w.Ternary is { } t) _ternary.MatMul(t, xq!, y);
        else _dense.MatMul(w.Dense!, x, y);
    }

    /// <summary><c>y[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight</c> for n rows of width; y may be x.</summary>
    private void RmsNorm(ReadOnlySpan<float> x, float[] weight, Span<float> y, int n, int width)
    {
        if (_rows is not null) { _rows.RmsNorm(x, weight, y, n, width, _c.NormEps); return; }
        for (int i = 0; i < n; i++) CpuBackend.RmsNormRow(x.Slice(i * width, width), weight, y.Slice(i * width, width), _c.NormEps);
    }

    /// <summary>Rotates each head of n rows (heads * headDim wide) by its position pos0 + i.</summary>
    private void Rope(Span<float> x, int n, int heads, int pos0)
    {
        int hd = _c.HeadDim, half = hd / 2;
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<float> cos = _cos.AsSpan((pos0 + i) * half, half), sin = _sin.AsSpan((pos0 + i) * half, half);
            for (int hh = 0; hh < heads; hh++)
            {
                Span<float> v = x.Slice((i * heads + hh) * hd, hd);
                if (_c.Rope == RopeStyle.Half)
                {
                    for (int j = 0; j < half; j++)
                    {
                        float a = v[j], b = v[j + half];
                        v[j] = a * cos[j] - b * sin[j];
                        v[j + half] = b * cos[j] + a * sin[j];
                    }
                }
                else
                {
                    for (int j = 0; j < half; j++)
                    {
                        float a = v[2 * j], b = v[2 * j + 1];
                        v[2 * j] = a * cos[j] - b * sin[j];
                        v[2 * j + 1] = a * sin[j] + b * cos[j];
                    }
                }
            }
        }
    }

    /// <summary>cos and sin of <c>pos * theta^(-2j / headDim)</c>, in float32 as the reference implementations
    /// compute them (the frequency first, then the product with the position).</summary>
    internal static (float[] Cos, float[] Sin) RopeTables(ModelConfig c, int positions)
    {
        int half = c.HeadDim / 2;
        var cos = new float[(long)positions * half];
        var sin = new float[(long)positions * half];
        var freq = new float[half];
        for (int j = 0; j < half; j++) freq[j] = 1f / MathF.Pow(c.RopeTheta, 2 * j / (float)c.HeadDim);
        for (int p = 0; p < positions; p++)
            for (int j = 0; j < half; j++)
            {
                float a = p * freq[j];
                cos[p * half + j] = MathF.Cos(a);
                sin[p * half + j] = MathF.Sin(a);
            }
        return (cos, sin);
    }
}

namespace Rotor.Lm;

/// <summary>
/// Sequences decoded together (the building block of continuous batching): <see cref="Slots"/> slots, each with its own
/// key/value cache of <see cref="ContextLength"/> positions. <see cref="Prefill(int, ReadOnlySpan{int})"/> runs prompt tokens of one sequence;
/// <see cref="Step"/> runs one token of each of several sequences in one batched step (one product a projection) and
/// writes their logits; <see cref="StepSample"/> also chooses each row's next token where the pool can do that itself
/// (on the GPU: only the ids come back). Made by <see cref="LanguageModel.CreateSequencePool"/>: on the CPU the caches are
/// made when a slot is first used, on the GPU (<see cref="LanguageModel.Cuda"/>) they are device memory made at once.
/// Not thread-safe: one decode thread.
/// </summary>
public abstract class SequencePool : IDisposable
{
    private readonly int[] _length;
    private readonly HashSet<int> _seen = [];

    /// <summary>A pool of <paramref name="slots"/> sequences of up to <paramref name="contextLength"/> positions.</summary>
    protected SequencePool(ModelConfig config, int slots, int contextLength)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        if (slots <= 0) throw new RotorException($"{slots} sequence slots: need at least one");
        if (contextLength <= 0) throw new RotorException($"context length {contextLength} must be positive");
        Slots = slots; ContextLength = contextLength;
        _length = new int[slots];
    }

    /// <summary>The model's configuration.</summary>
    public ModelConfig Config { get; }
    /// <summary>Sequences the pool holds at most.</summary>
    public int Slots { get; }
    /// <summary>Positions a sequence holds at most (prompt and output together).</summary>
    public int ContextLength { get; }
    /// <summary>Whether the sequences are decoded on the GPU.</summary>
    public abstract bool OnGpu { get; }
    /// <summary>Slots whose key/value cache exists (the CPU makes them on first use; the GPU all at once).</summary>
    public abstract int SlotsAllocated { get; }
    /// <summary>Where the phases of CPU steps go (<see cref="Decoder.Trace"/>), or null; the GPU pool does not trace.</summary>
    public virtual StepTrace? Trace { get => null; set { } }

    /// <summary>Positions sequence <paramref name="slot"/> holds.</summary>
    public int Length(int slot) { CheckSlot(slot); return _length[slot]; }

    /// <summary>Forgets sequence <paramref name="slot"/> (its memory stays for the next one).</summary>
    public void Reset(int slot) { CheckSlot(slot); _length[slot] = 0; }

    /// <summary>Keeps the first <paramref name="length"/> positions of sequence <paramref name="slot"/> and forgets the
    /// rest: the next tokens run after them (a prompt that shares a prefix with what the slot held reuses its keys and
    /// values).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or above <see cref="Length"/>.</exception>
    public void Truncate(int slot, int length)
    {
        CheckSlot(slot);
        if ((uint)length > (uint)_length[slot])
            throw new ArgumentOutOfRangeException(nameof(length), length, $"slot {slot} holds {_length[slot]} positions");
        _length[slot] = length;
    }

    /// <summary>Runs <paramref name="tokens"/> after what sequence <paramref name="slot"/> holds and returns the last
    /// token's logits (valid until the next call).</summary>
    /// <exception cref="RotorException">The tokens do not fit the context, or an id is outside the vocabulary.</exception>
    public ReadOnlySpan<float> Prefill(int slot, ReadOnlySpan<int> tokens)
    {
        CheckSlot(slot);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        if ((long)_length[slot] + tokens.Length > ContextLength)
            throw new RotorException($"{tokens.Length} tokens after {_length[slot]} do not fit the context of {ContextLength} positions");
        CheckIds(tokens);
        var logits = PrefillCore(slot, _length[slot], tokens);
        _length[slot] += tokens.Length;
        return logits;
    }

    /// <summary>Whether <see cref="CopyPrefix"/> is done by this pool.</summary>
    public virtual bool CanCopyPrefix => false;

    /// <summary>Makes sequence <paramref name="to"/> hold the first <paramref name="length"/> positions of sequence
    /// <paramref name="from"/>, their keys and values copied (a prompt prefix another sequence has already run, while
    /// that one goes on).</summary>
    /// <exception cref="ArgumentException">The slots are the same, or <paramref name="from"/> holds fewer positions.</exception>
    /// <exception cref="NotSupportedException">The pool does not copy (<see cref="CanCopyPrefix"/>).</exception>
    public void CopyPrefix(int from, int to, int length)
    {
        CheckSlot(from); CheckSlot(to);
        if (from == to) throw new ArgumentException($"slot {from} is both the source and the destination", nameof(to));
        if ((uint)length > (uint)_length[from])
            throw new ArgumentOutOfRangeException(nameof(length), length, $"slot {from} holds {_length[from]} positions");
        if (!CanCopyPrefix) throw new NotSupportedException("this pool does not copy prefixes between sequences");
        CopyPrefixCore(from, to, length);
        _length[to] = length;
    }

    /// <summary>Copies the first positions of one sequence to another; checked by the caller.</summary>
    protected virtual void CopyPrefixCore(int from, int to, int length) => throw new NotSupportedException("this pool does not copy prefixes between sequences");

    /// <summary>Runs <paramref name="tokens"/> after what sequence <paramref name="slot"/> holds as <see cref="Prefill(int, ReadOnlySpan{int})"/>
    /// and writes every token's logits to <paramref name="allLogits"/> (n x V: row i predicts the token after tokens[i];
    /// the prompt's own log-probabilities); returns the last row.</summary>
    /// <exception cref="RotorException">The tokens do not fit the context, or an id is outside the vocabulary.</exception>
    public ReadOnlySpan<float> Prefill(int slot, ReadOnlySpan<int> tokens, Span<float> allLogits)
    {
        CheckSlot(slot);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        int v = Config.VocabSize;
        if (allLogits.Length < (long)tokens.Length * v)
            throw new ArgumentException($"allLogits holds {allLogits.Length} values, need {(long)tokens.Length * v}", nameof(allLogits));
        if ((long)_length[slot] + tokens.Length > ContextLength)
            throw new RotorException($"{tokens.Length} tokens after {_length[slot]} do not fit the context of {ContextLength} positions");
        CheckIds(tokens);
        var all = allLogits[..(tokens.Length * v)];
        PrefillAllCore(slot, _length[slot], tokens, all);
        _length[slot] += tokens.Length;
        return all[((tokens.Length - 1) * v)..];
    }

    /// <summary>One decode step: token b goes to sequence <paramref name="slots"/>[b] after what it holds; writes the
    /// (B, V) logits to <paramref name="logits"/>.</summary>
    /// <exception cref="RotorException">A slot appears twice or its context is full, or an id is outside the vocabulary.</exception>
    public void Step(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits)
    {
        CheckStep(tokens, slots);
        if (logits.Length < (long)tokens.Length * Config.VocabSize)
            throw new ArgumentException($"logits holds {logits.Length} values, need {(long)tokens.Length * Config.VocabSize}", nameof(logits));
        StepCore(tokens, slots, logits[..(tokens.Length * Config.VocabSize)]);
        foreach (int s in slots) _length[s]++;
    }

    /// <summary>Whether <see cref="StepSample"/> takes <paramref name="options"/> (the GPU: no repetition penalty,
    /// greedy or top-k 1..1024; the CPU: never, its caller samples the logits of <see cref="Step"/>).</summary>
    public virtual bool CanSample(SamplingOptions options) => false;

    /// <summary>One decode step as <see cref="Step"/> whose next tokens are chosen by the pool: row b per
    /// <paramref name="sampling"/>[b] (each accepted by <see cref="CanSample"/>), its draw seeded from
    /// <paramref name="seeds"/>[b] and the row's position. Writes the ids to <paramref name="next"/>.</summary>
    /// <exception cref="NotSupportedException">The pool does not sample (the CPU).</exception>
    public void StepSample(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds, Span<int> next)
    {
        CheckStep(tokens, slots);
        int n = tokens.Length;
        if (sampling.Length != n || seeds.Length != n) throw new ArgumentException($"{n} tokens, {sampling.Length} sampling options, {seeds.Length} seeds");
        if (next.Length < n) throw new ArgumentException($"next holds {next.Length} ids, need {n}", nameof(next));
        foreach (var o in sampling)
            if (!CanSample(o ?? throw new ArgumentNullException(nameof(sampling))))
                throw new ArgumentException("these sampling options are not done by this pool: see CanSample", nameof(sampling));
        StepSampleCore(tokens, slots, sampling, seeds, next[..n]);
        foreach (int s in slots) _length[s]++;
    }

    /// <summary>Runs prompt tokens of <paramref name="slot"/> from <paramref name="position"/>; checked by the caller.</summary>
    protected abstract ReadOnlySpan<float> PrefillCore(int slot, int position, ReadOnlySpan<int> tokens);
    /// <summary>Runs prompt tokens of <paramref name="slot"/> from <paramref name="position"/> writing every token's
    /// logits; checked by the caller. This one runs them one at a time through <see cref="PrefillCore"/>; pools
    /// override it with one batched pass.</summary>
    protected virtual void PrefillAllCore(int slot, int position, ReadOnlySpan<int> tokens, Span<float> allLogits)
    {
        int v = Config.VocabSize;
        for (int i = 0; i < tokens.Length; i++)
            PrefillCore(slot, position + i, tokens.Slice(i, 1)).CopyTo(allLogits.Slice(i * v, v));
    }

    /// <summary>One batched step; checked by the caller (positions: <see cref="Length"/>).</summary>
    protected abstract void StepCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits);
    /// <summary>One batched step with the choice on the pool's side; checked by the caller.</summary>
    protected virtual void StepSampleCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds, Span<int> next)
        => throw new NotSupportedException("this pool does not sample: sample the logits of Step");

    /// <summary>Releases what the pool holds.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases what the pool holds (<paramref name="disposing"/>: called from <see cref="Dispose()"/>).</summary>
    protected virtual void Dispose(bool disposing) { }

    private void CheckSlot(int slot)
    {
        if ((uint)slot >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(slot), slot, $"slot must be in [0, {Slots})");
    }

    private void CheckIds(ReadOnlySpan<int> tokens)
    {
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize) throw new RotorException($"token id {t} is outside the vocabulary (0..{Config.VocabSize - 1})");
    }

    private void CheckStep(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (slots.Length != tokens.Length) throw new ArgumentException($"{tokens.Length} tokens but {slots.Length} slots", nameof(slots));
        CheckIds(tokens);
        _seen.Clear();
        foreach (int s in slots)
        {
            CheckSlot(s);
            if (!_seen.Add(s)) throw new RotorException($"sequence slot {s} appears twice in one step");
            if (_length[s] >= ContextLength) throw new RotorException($"sequence slot {s}: its context of {ContextLength} positions is full");
        }
    }
}

/// <summary>The CPU pool: a <see cref="Decoder"/> and a <see cref="KvCache"/> a slot, made on the slot's first use.</summary>
internal sealed class CpuSequencePool : SequencePool
{
    private readonly LanguageModel _model;
    private readonly Decoder _decoder;
    private readonly KvCache?[] _caches;
    private readonly List<KvCache> _batch = [];
    private int _allocated;

    public CpuSequencePool(LanguageModel model, int slots, int contextLength, int maxBatch) : base(model.Config, slots, contextLength)
    {
        _model = model;
        _decoder = model.CreateDecoder(contextLength, maxBatch);
        _caches = new KvCache?[slots];
    }

    public override bool OnGpu => false;
    public override int SlotsAllocated => _allocated;
    public override StepTrace? Trace { get => _decoder.Trace; set => _decoder.Trace = value; }

    private KvCache Cache(int slot, int position)
    {
        var c = _caches[slot];
        if (c is null)
        {
            c = _caches[slot] = _model.CreateCache(ContextLength);
            _allocated++;
        }
        // The base class keeps the lengths; a slot reset or truncated there continues from that length here.
        if (c.Length != position) c.Truncate(position);
        return c;
    }

    protected override ReadOnlySpan<float> PrefillCore(int slot, int position, ReadOnlySpan<int> tokens)
        => _decoder.Forward(tokens, Cache(slot, position));

    protected override void PrefillAllCore(int slot, int position, ReadOnlySpan<int> tokens, Span<float> allLogits)
        => _decoder.Forward(tokens, Cache(slot, position), LogitsMode.All, allLogits);

    public override bool CanCopyPrefix => true;

    protected override void CopyPrefixCore(int from, int to, int length)
    {
        if (length == 0) return;
        var source = Cache(from, Length(from));
        Cache(to, 0).CopyPrefixFrom(source, length);
    }

    protected override void StepCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits)
    {
        _batch.Clear();
        foreach (int s in slots) _batch.Add(Cache(s, Length(s)));
        // Rows beyond the decoder's batch run as further steps.
        int v = Config.VocabSize, max = _decoder.MaxBatch;
        if (tokens.Length <= max) { _decoder.ForwardBatch(tokens, _batch, logits); return; }
        for (int b0 = 0; b0 < tokens.Length; b0 += max)
        {
            int n = Math.Min(max, tokens.Length - b0);
            _decoder.ForwardBatch(tokens.Slice(b0, n), _batch.GetRange(b0, n), logits.Slice(b0 * v, n * v));
        }
    }
}

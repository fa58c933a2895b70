using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading.Channels;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;

namespace Rotor.Server.Scheduling;

/// <summary>Settings of a <see cref="GenerationScheduler"/>.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together at most (the rows of one batched step).</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>Positions of each sequence's key/value cache (prompt and output together).</summary>
    public int ContextLength { get; init; } = 2048;
    /// <summary>Requests that may wait for a free sequence slot; beyond it <see cref="GenerationScheduler.Submit"/> refuses.</summary>
    public int QueueLimit { get; init; } = 64;
    /// <summary>Prompt tokens prefilled in one step: a long prompt is run in pieces between decode steps so the running
    /// sequences keep streaming.</summary>
    public int PrefillChunk { get; init; } = 64;
    /// <summary>Longest a request may take from submission to its last token.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Keep what a finished sequence's slot holds: a request whose prompt begins with those tokens (a chat's
    /// earlier turns, a shared system prompt) takes that slot and runs only the rest of its prompt.</summary>
    public bool PromptCache { get; init; } = true;

    /// <summary>Checks the ranges.</summary>
    /// <exception cref="RotorException">A value is out of range (the message names it).</exception>
    public void Validate()
    {
        if (MaxBatch <= 0) throw new RotorException($"--max-batch {MaxBatch} must be positive");
        if (ContextLength <= 1) throw new RotorException($"--ctx {ContextLength} must be at least 2");
        if (QueueLimit < 0) throw new RotorException($"--queue {QueueLimit} must be 0 or more");
        if (PrefillChunk <= 0) throw new RotorException($"prefill chunk {PrefillChunk} must be positive");
        if (RequestTimeout <= TimeSpan.Zero) throw new RotorException($"request timeout {RequestTimeout} must be positive");
    }
}

/// <summary>Sees the logits a sequence's next token is chosen from, on the decode thread, before it is chosen.</summary>
/// <param name="logits">The sequence's row of logits (V values), valid during the call only.</param>
public delegate void LogitsObserver(ReadOnlySpan<float> logits);

/// <summary>One generation asked of the scheduler: the whole prompt as ids and how to generate.</summary>
/// <param name="PromptIds">The prompt (at least one token, shorter than the context).</param>
/// <param name="Options">Token budget, sampling and stop texts, as for <see cref="TextGenerator"/>.</param>
/// <param name="CancellationToken">Cancels the request (a client that disconnects): its slot is freed at the next step.</param>
public sealed record GenerationRequest(IReadOnlyList<int> PromptIds, GenerationOptions Options, CancellationToken CancellationToken = default)
{
    /// <summary>Also give the prompt's own log-probabilities (each prompt token after the first under the tokens before
    /// it, with <see cref="GenerationOptions.Logprobs"/> alternatives, which must be set): in
    /// <see cref="GenerationOutcome.PromptLogprobs"/>. The prompt then runs whole (no prompt cache).</summary>
    public bool PromptLogprobs { get; init; }

    /// <summary>Called with the logits of every token this request chooses, once a token, before the choice (the
    /// model rule's closed-book measurement reads them). Runs on the decode thread, possibly beside other rows'
    /// sampling: it must be quick and touch only its own state. An exception from it fails this request only.</summary>
    public LogitsObserver? OnLogits { get; init; }
}

/// <summary>How a scheduled generation ended.</summary>
public enum GenerationEnd
{
    /// <summary>An end token or a stop text.</summary>
    Stop,
    /// <summary>The token budget.</summary>
    Length,
    /// <summary>The context is full.</summary>
    ContextFull,
    /// <summary>Cancelled by the caller (or its client went away).</summary>
    Cancelled,
    /// <summary>The request ran past <see cref="SchedulerOptions.RequestTimeout"/>.</summary>
    TimedOut,
    /// <summary>The server shut down before it finished.</summary>
    Shutdown,
    /// <summary>The model failed on this sequence (see <see cref="GenerationOutcome.Error"/>).</summary>
    Failed,
}

/// <summary>What a scheduled generation did.</summary>
/// <param name="End">Why it ended.</param>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="Ids">Generated ids (end tokens excluded, as <see cref="TextGenerator"/> does).</param>
/// <param name="Text">The whole output text (a stop text and what follows cut).</param>
/// <param name="TimeToFirstToken">From submission to the first token sampled.</param>
/// <param name="Duration">From submission to the end.</param>
/// <param name="Error">The failure's message when <paramref name="End"/> is <see cref="GenerationEnd.Failed"/>.</param>
/// <param name="CachedPromptTokens">Prompt tokens whose keys and values a slot already held (not run again; see
/// <see cref="SchedulerOptions.PromptCache"/>).</param>
/// <param name="Logprobs">Each of <paramref name="Ids"/>' log-probabilities where the request asked for them
/// (<see cref="GenerationOptions.Logprobs"/>), else null.</param>
/// <param name="PromptLogprobs">The log-probabilities of the prompt's tokens after the first (one fewer than the prompt)
/// where <see cref="GenerationRequest.PromptLogprobs"/> asked for them, else null.</param>
public sealed record GenerationOutcome(GenerationEnd End, int PromptTokens, IReadOnlyList<int> Ids, string Text,
    TimeSpan? TimeToFirstToken, TimeSpan Duration, string? Error = null, int CachedPromptTokens = 0, IReadOnlyList<TokenLogprobs>? Logprobs = null,
    IReadOnlyList<TokenLogprobs>? PromptLogprobs = null);

/// <summary>A submitted generation: its tokens as they come (text held back as <see cref="TextGenerator"/> holds it)
/// and its outcome. The token channel completes just before <see cref="Completion"/>.</summary>
public sealed class GenerationStream
{
    internal GenerationStream(ChannelReader<GeneratedToken> tokens, Task<GenerationOutcome> completion) { Tokens = tokens; Completion = completion; }

    /// <summary>Generated tokens with the text each completes (an item of id -1 carries only held-back text).</summary>
    public ChannelReader<GeneratedToken> Tokens { get; }
    /// <summary>The outcome, set when the sequence leaves the batch.</summary>
    public Task<GenerationOutcome> Completion { get; }

    private IReadOnlyList<TokenLogprobs>? _promptLogprobs;

    /// <summary>The prompt's scores where <see cref="GenerationRequest.PromptLogprobs"/> asked for them: set once the
    /// prompt has run, before its first token is written to <see cref="Tokens"/> (null until then).</summary>
    public IReadOnlyList<TokenLogprobs>? PromptLogprobs { get => Volatile.Read(ref _promptLogprobs); internal set => Volatile.Write(ref _promptLogprobs, value); }
}

/// <summary>The queue is full: the request was not accepted (HTTP 429).</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>The scheduler is shutting down: the request was not accepted (HTTP 503).</summary>
public sealed class ShuttingDownException(string message) : Exception(message);

/// <summary>Counters a scheduler reports to whoever watches it (metrics).</summary>
public interface ISchedulerObserver
{
    /// <summary>A step ran: <paramref name="decoded"/> sequences got a token from one batched product,
    /// <paramref name="prefilled"/> prompt tokens were run, in <paramref name="elapsed"/>.</summary>
    void Step(int decoded, int prefilled, TimeSpan elapsed);
    /// <summary>A generation ended.</summary>
    void Finished(GenerationOutcome outcome);
}

/// <summary>
/// Owns a model and decodes every request on one thread with continuous batching. Requests wait in a bounded FIFO
/// queue; a free slot takes the oldest: the free slot whose kept tokens share the longest prefix with its prompt, which it
/// then does not run again (<see cref="SchedulerOptions.PromptCache"/>). Each step prefills up to one chunk of prompt tokens (oldest sequence first),
/// then runs one step of the model's <see cref="SequencePool"/> over every sequence that has a token to decode (one
/// product a projection) and samples each row with that sequence's own <see cref="Sampler"/>; on the GPU, where every
/// row's options allow it and no row's logits are observed, the pool chooses the tokens there and only the ids come
/// back (<see cref="SequencePool.StepSample"/>). A sequence leaves the batch the step it ends (stop, budget, context,
/// cancellation, timeout) and its slot (its key/value cache) goes back to the pool.
/// The per-sequence logic (end tokens, stop texts with held-back text, budget, context) is <see cref="TextGenerator"/>'s,
/// so a request decodes the same tokens here as alone there.
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly LanguageModel _model;
    private readonly SchedulerOptions _o;
    private readonly SequencePool _seqs;
    private readonly LinkedList<Sequence> _queue = new();
    private readonly List<Sequence> _active = [];
    private readonly List<int> _free = [];   // free slots of _seqs
    private readonly List<int>[] _kept;   // a free slot's tokens still in its cache (the prompt cache), in order
    private readonly long[] _lastUsed;   // when a slot was last freed (0: never used: on the CPU its cache is not yet made)
    private long _clock;
    private readonly object _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly float[] _logits;
    private readonly int[] _batchTokens;
    private readonly Action<int> _advanceRow;   // samples row b of a decode step (made once: no delegate a step)
    private readonly ParallelOptions _parallel;   // the rows' sampling (made once: no options a step)
    private readonly int[] _chunk;   // (PrefillChunk) prompt tokens of one prefill call
    private readonly int[] _batchSlots;
    private readonly int[] _batchNext;
    private readonly SamplingOptions[] _batchSampling;
    private readonly ulong[] _batchSeeds;
    private readonly List<Sequence> _batchSeqs = [];
    private readonly List<Sequence> _reading = [];
    private readonly ISchedulerObserver? _observer;
    private float[]? _allLogits;   // (PrefillChunk, V) logits of a prefill chunk whose prompt is scored
    private readonly StepTrace? _trace;   // ROTOR_STEP_TRACE: phase shares of decode steps, on stderr
    private volatile bool _accepting = true;
    private volatile bool _cancelAll;
    private volatile bool _exit;

    /// <summary>A scheduler for <paramref name="model"/>; its thread starts at once.</summary>
    public GenerationScheduler(LanguageModel model, SchedulerOptions? options = null, ISchedulerObserver? observer = null)
        : this(model, options, observer, null)
    {
    }

    /// <summary>A scheduler over <paramref name="pool"/> (of at least MaxBatch slots, which it then owns), or the
    /// model's own pool where null (tests give one that chooses tokens itself, as the GPU's does).</summary>
    internal GenerationScheduler(LanguageModel model, SchedulerOptions? options, ISchedulerObserver? observer, SequencePool? pool)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _o = options ?? new SchedulerOptions();
        _o.Validate();
        _observer = observer;
        _seqs = pool ?? model.CreateSequencePool(_o.MaxBatch, _o.ContextLength, Math.Max(_o.MaxBatch, _o.PrefillChunk));
        if (_seqs.Slots < _o.MaxBatch || _seqs.ContextLength < _o.ContextLength)
            throw new ArgumentException($"the pool holds {_seqs.Slots} sequences of {_seqs.ContextLength} positions; the scheduler needs {_o.MaxBatch} of {_o.ContextLength}", nameof(pool));
        for (int slot = 0; slot < _o.MaxBatch; slot++) _free.Add(slot);
        _kept = [.. Enumerable.Range(0, _o.MaxBatch).Select(_ => new List<int>())];
        _lastUsed = new long[_o.MaxBatch];
        _logits = new float[(long)_o.MaxBatch * model.Config.VocabSize];
        _batchTokens = new int[_o.MaxBatch];
        _batchSlots = new int[_o.MaxBatch];
        _batchNext = new int[_o.MaxBatch];
        _batchSampling = new SamplingOptions[_o.MaxBatch];
        _batchSeeds = new ulong[_o.MaxBatch];
        _advanceRow = b => Advance(_batchSeqs[b], _logits.AsSpan(b * _model.Config.VocabSize, _model.Config.VocabSize));
        _chunk = new int[_o.PrefillChunk];
        _parallel = Rotor.Threading.ThreadCount.Options();
        _trace = StepTrace.Requested ? new StepTrace() : null;
        _thread = new Thread(Loop) { IsBackground = true, Name = "rotor-decode" };
        _thread.Start();
    }

    /// <summary>The model.</summary>
    public LanguageModel Model => _model;
    /// <summary>The settings.</summary>
    public SchedulerOptions Options => _o;
    /// <summary>Requests waiting for a slot.</summary>
    public int QueueLength { get { lock (_lock) return _queue.Count; } }
    /// <summary>Sequences in the batch (prefilling or decoding).</summary>
    public int ActiveCount { get { lock (_lock) return _active.Count; } }
    /// <summary>Key/value caches allocated so far (at most <see cref="SchedulerOptions.MaxBatch"/>; reused): on the CPU
    /// one a slot on its first use, on the GPU all at once.</summary>
    public int CachesAllocated => _seqs.SlotsAllocated;
    /// <summary>Whether the sequences are decoded on the GPU.</summary>
    public bool OnGpu => _seqs.OnGpu;
    /// <summary>Whether new requests are accepted.</summary>
    public bool Accepting => _accepting;

    /// <summary>Queues <paramref name="request"/>.</summary>
    /// <exception cref="RotorException">The prompt is empty, does not fit the context, or the options are invalid.</exception>
    /// <exception cref="QueueFullException">The queue holds <see cref="SchedulerOptions.QueueLimit"/> requests already.</exception>
    /// <exception cref="ShuttingDownException">The scheduler no longer accepts requests.</exception>
    public GenerationStream Submit(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.PromptIds.Count == 0) throw new RotorException("the prompt is empty: give at least one token");
        if (request.PromptIds.Count >= _o.ContextLength)
            throw new RotorException($"the prompt has {request.PromptIds.Count} tokens and the context {_o.ContextLength} positions: no room to generate");
        foreach (int t in request.PromptIds)
            if ((uint)t >= (uint)_model.Config.VocabSize) throw new RotorException($"token id {t} is outside the vocabulary (0..{_model.Config.VocabSize - 1})");
        request.Options.Validate();
        if (request.PromptLogprobs && request.Options.Logprobs is null)
            throw new RotorException("prompt log-probabilities need GenerationOptions.Logprobs (the alternatives a token)");
        var seq = new Sequence(request, _model.Tokenizer, Stopwatch.GetTimestamp() + (long)(_o.RequestTimeout.TotalSeconds * Stopwatch.Frequency));
        // Cancellation wakes the loop so a waiting or running request leaves without waiting for a step.
        seq.Registration = request.CancellationToken.Register(static s => { try { ((SemaphoreSlim)s!).Release(); } catch (ObjectDisposedException) { } }, _wake);
        lock (_lock)
        {
            if (!_accepting) { seq.Registration.Dispose(); throw new ShuttingDownException("the server is shutting down"); }
            // A free slot admits at once; only requests that must wait count against the queue.
            if (_active.Count + _queue.Count >= _o.MaxBatch + _o.QueueLimit)
            {
                seq.Registration.Dispose();
                throw new QueueFullException($"the queue is full ({_o.QueueLimit} waiting, {_o.MaxBatch} decoding): retry later");
            }
            _queue.AddLast(seq);
        }
        _wake.Release();
        return seq.Stream;
    }

    /// <summary>Stops accepting requests, lets the running and queued ones finish for up to <paramref name="grace"/>,
    /// then ends what is left (<see cref="GenerationEnd.Shutdown"/>) and stops the thread.</summary>
    public async Task ShutdownAsync(TimeSpan grace)
    {
        _accepting = false;
        _wake.Release();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < grace)
        {
            lock (_lock) if (_active.Count == 0 && _queue.Count == 0) break;
            await Task.Delay(20).ConfigureAwait(false);
        }
        _cancelAll = true;
        _wake.Release();
        while (true)
        {
            lock (_lock) if (_active.Count == 0 && _queue.Count == 0) break;
            await Task.Delay(10).ConfigureAwait(false);
        }
        _exit = true;
        _wake.Release();
        await Task.Run(() => _thread.Join()).ConfigureAwait(false);
        _seqs.Dispose();
    }

    /// <summary>Ends every request and stops the thread (no grace).</summary>
    public void Dispose()
    {
        if (_exit) return;
        ShutdownAsync(TimeSpan.Zero).GetAwaiter().GetResult();
        _wake.Dispose();
    }

    private void Loop()
    {
        while (!_exit)
        {
            bool busy;
            try { busy = StepOnce(); }
            catch (Exception e)
            {
                // A failure outside one sequence's work (should not happen): fail what runs, keep serving.
                lock (_lock) foreach (var s in _active.ToArray()) Finish(s, GenerationEnd.Failed, e.Message);
                busy = true;
            }
            if (!busy) _wake.Wait(250);
        }
        lock (_lock)
        {
            foreach (var s in _active.ToArray()) Finish(s, GenerationEnd.Shutdown);
            foreach (var s in _queue.ToArray()) { _queue.Remove(s); Complete(s, GenerationEnd.Shutdown, null); }
        }
        if (_trace is not null) foreach (string line in _trace.TakeAll()) Console.Error.WriteLine(line);
    }

    /// <summary>One scheduling step; false when there was nothing to do.</summary>
    private bool StepOnce()
    {
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            // Requests that ended while waiting leave the queue without taking a slot.
            for (var node = _queue.First; node is not null;)
            {
                var next = node.Next;
                var s = node.Value;
                GenerationEnd? end = _cancelAll ? GenerationEnd.Shutdown : s.Request.CancellationToken.IsCancellationRequested ? GenerationEnd.Cancelled
                    : now > s.Deadline ? GenerationEnd.TimedOut : null;
                if (end is { } e) { _queue.Remove(node); Complete(s, e, null); }
                node = next;
            }
            for (int i = _active.Count - 1; i >= 0; i--)   // backwards: Finish removes
            {
                var s = _active[i];
                if (_cancelAll) Finish(s, GenerationEnd.Shutdown);
                else if (s.Request.CancellationToken.IsCancellationRequested) Finish(s, GenerationEnd.Cancelled);
                else if (now > s.Deadline) Finish(s, GenerationEnd.TimedOut);
            }
            while (_active.Count < _o.MaxBatch && _queue.First is { } first)
            {
                _queue.RemoveFirst();
                var s = first.Value;
                TakeSlot(s);
                _active.Add(s);
            }
            if (_active.Count == 0) return false;
        }

        var sw = Stopwatch.StartNew();
        long tPrefill = Stopwatch.GetTimestamp(), scheduling = tPrefill - now;
        // Prefill: up to PrefillChunk prompt tokens a step, oldest sequence first (several short prompts share a step;
        // a long one is split), so prompts never stall the decoding sequences for more than one chunk.
        int prefilled = 0;
        _reading.Clear();
        foreach (var s in _active) if (s.Prefilled < s.Request.PromptIds.Count) _reading.Add(s);
        foreach (var reading in _reading)
        {
            int budget = _o.PrefillChunk - prefilled;
            if (budget <= 0) break;
            var prompt = reading.Request.PromptIds;
            Lend(reading);
            int n = Math.Min(budget, prompt.Count - reading.Prefilled);
            Span<int> chunk = _chunk.AsSpan(0, n);
            for (int i = 0; i < n; i++) chunk[i] = prompt[reading.Prefilled + i];
            try
            {
                var logits = reading.Request.PromptLogprobs ? PrefillScored(reading, chunk) : _seqs.Prefill(reading.Slot, chunk);
                reading.Prefilled += n;
                prefilled += n;
                // The decoder's last-token logits go to row 0 of the batch's logits (free until the decode step
                // below), so every row is sampled in place: one copy a request, none a token.
                if (reading.Prefilled == prompt.Count)
                {
                    if (reading.Request.PromptLogprobs) reading.Stream.PromptLogprobs = reading.PromptLogprobList.ToArray();
                    Span<float> row = _logits.AsSpan(0, logits.Length);
                    logits.CopyTo(row);
                    Advance(reading, row);
                }
            }
            catch (RotorException e) { lock (_lock) Finish(reading, GenerationEnd.Failed, e.Message); }
        }

        // Decode: every sequence with a token pending, in one batched step.
        long tDecode = Stopwatch.GetTimestamp(), prefillTicks = tDecode - tPrefill;
        _batchSeqs.Clear();
        bool onPool = true;   // whether the pool chooses every row's token this step
        foreach (var s in _active)
            if (s.Pending >= 0)
            {
                int b = _batchSeqs.Count;
                _batchTokens[b] = s.Pending; _batchSlots[b] = s.Slot; _batchSeqs.Add(s);
                _batchSampling[b] = s.Request.Options.Sampling; _batchSeeds[b] = s.Seed;
                onPool &= s.Request.OnLogits is null && s.Request.Options.Logprobs is null && _seqs.CanSample(s.Request.Options.Sampling);
            }
        int decoded = _batchSeqs.Count;
        if (decoded > 0)
        {
            int v = _model.Config.VocabSize;
            long tSample = 0;
            if (_trace is not null)
            {
                _trace.BeginStep(decoded);
                _trace.Add(StepPhase.Prefill, prefillTicks);
                tSample = Stopwatch.GetTimestamp();
                _trace.Add(StepPhase.Scheduling, scheduling + tSample - tDecode);
                _seqs.Trace = _trace;
            }
            try
            {
                var tokens = _batchTokens.AsSpan(0, decoded);
                var slots = _batchSlots.AsSpan(0, decoded);
                if (onPool) _seqs.StepSample(tokens, slots, _batchSampling.AsSpan(0, decoded), _batchSeeds.AsSpan(0, decoded), _batchNext);
                else _seqs.Step(tokens, slots, _logits);
                if (_trace is not null) { _seqs.Trace = null; tSample = Stopwatch.GetTimestamp(); }
                foreach (var s in _batchSeqs) s.Pending = -1;
                if (onPool) for (int b = 0; b < decoded; b++) Advance(_batchSeqs[b], _batchNext[b]);
                // Each row is sampled by its own sequence's sampler (a top-k pass over the vocabulary can cost more
                // than a small model's step), so rows run in parallel; what a sequence draws depends on its row alone.
                else if (decoded == 1) Advance(_batchSeqs[0], _logits.AsSpan(0, v));
                else Parallel.For(0, decoded, _parallel, _advanceRow);
            }
            catch (RotorException e) { lock (_lock) foreach (var s in _batchSeqs) if (_active.Contains(s)) Finish(s, GenerationEnd.Failed, e.Message); }
            finally { _seqs.Trace = null; }
            if (_trace is not null)
            {
                _trace.Add(StepPhase.Sampling, Stopwatch.GetTimestamp() - tSample);
                if (_trace.TakeReport() is { } line) Console.Error.WriteLine(line);
            }
        }
        _observer?.Step(decoded, prefilled, sw.Elapsed);
        return true;
    }

    /// <summary>Before <paramref name="s"/> runs more of its prompt: where another sequence in the batch already holds
    /// more of it (the same system prompt or passages, a request that arrived with it and was prefilled first, oldest
    /// first), those positions' keys and values are copied from its slot instead of run.</summary>
    private void Lend(Sequence s)
    {
        if (!_o.PromptCache || s.Request.PromptLogprobs || !_seqs.CanCopyPrefix || s.Slot < 0) return;
        var prompt = s.Request.PromptIds;
        int donor = -1, shared = s.Prefilled;
        foreach (var other in _active)
        {
            if (other == s || other.Slot < 0) continue;
            int n = Math.Min(CommonPrefix(other.History, _seqs.Length(other.Slot), prompt), prompt.Count - 1);
            if (n > shared) { shared = n; donor = other.Slot; }
        }
        if (donor < 0) return;
        _seqs.CopyPrefix(donor, s.Slot, shared);
        s.Cached += shared - s.Prefilled;
        s.Prefilled = shared;
    }

    /// <summary>Prefills <paramref name="chunk"/> of <paramref name="s"/>'s prompt with every position's logits and
    /// scores each next prompt token under them; returns the last row.</summary>
    private ReadOnlySpan<float> PrefillScored(Sequence s, ReadOnlySpan<int> chunk)
    {
        int v = _model.Config.VocabSize, n = chunk.Length, top = s.Request.Options.Logprobs ?? 0;
        // Made on the first such request: PrefillChunk rows of the vocabulary.
        _allLogits ??= new float[(long)_o.PrefillChunk * v];
        var last = _seqs.Prefill(s.Slot, chunk, _allLogits);
        var prompt = s.Request.PromptIds;
        for (int i = 0; i < n; i++)
        {
            int p = s.Prefilled + i;   // row i's logits choose the token at p + 1
            if (p + 1 < prompt.Count) s.PromptLogprobList.Add(TokenLogprobs.Compute(_allLogits.AsSpan(i * v, v), prompt[p + 1], top));
        }
        return last;
    }

    /// <summary>Gives <paramref name="s"/> the free slot whose kept tokens share the longest prefix with its prompt (of
    /// equals, one used before over one never used, whose CPU cache would be made; then the least recently used) and
    /// keeps that prefix, at most all but the prompt's last token, whose logits choose the first token. Caller holds _lock.</summary>
    private void TakeSlot(Sequence s)
    {
        var prompt = s.Request.PromptIds;
        int best = -1, bestCommon = -1;
        for (int i = 0; i < _free.Count; i++)
        {
            int slot = _free[i];
            int common = _o.PromptCache && !s.Request.PromptLogprobs ? CommonPrefix(_kept[slot], prompt) : 0;
            bool better = best < 0 || common > bestCommon;
            if (!better && common == bestCommon)
            {
                long used = _lastUsed[slot], bestUsed = _lastUsed[_free[best]];
                better = bestUsed == 0 ? used != 0 : used != 0 && used < bestUsed;
            }
            if (better) { best = i; bestCommon = common; }
        }
        int chosen = _free[best];
        _free.RemoveAt(best);
        int keep = Math.Min(bestCommon, prompt.Count - 1);
        _seqs.Truncate(chosen, keep);
        _kept[chosen].Clear();
        s.Slot = chosen;
        s.Prefilled = s.Cached = keep;
    }

    private static int CommonPrefix(List<int> kept, IReadOnlyList<int> prompt) => CommonPrefix(kept, kept.Count, prompt);

    /// <summary>The prefix the first <paramref name="count"/> of <paramref name="ids"/> share with <paramref name="prompt"/>.</summary>
    private static int CommonPrefix(List<int> ids, int count, IReadOnlyList<int> prompt)
    {
        int n = Math.Min(Math.Min(count, ids.Count), prompt.Count), i = 0;
        while (i < n && ids[i] == prompt[i]) i++;
        return i;
    }

    /// <summary>The per-token logic of <see cref="TextGenerator"/>: sample from <paramref name="logits"/>, stop on end
    /// tokens and stop texts, hand out the text that can no longer become a stop text, stop at the budget or a full
    /// context; else the token is pending for the next batched step.</summary>
    private void Advance(Sequence s, Span<float> logits)
    {
        // A failure in one sequence's sampling or text (an id the tokenizer lacks) ends that sequence only.
        try { if (Choose(s, logits) is int next and >= 0) Accept(s, next); }
        catch (Exception e) when (e is RotorException or ArgumentException or IndexOutOfRangeException or InvalidOperationException)
        {
            lock (_lock) Finish(s, GenerationEnd.Failed, e.Message);
        }
    }

    /// <summary>The same for a token the pool chose (on the GPU).</summary>
    private void Advance(Sequence s, int next)
    {
        try { Accept(s, next); }
        catch (Exception e) when (e is RotorException or ArgumentException or IndexOutOfRangeException or InvalidOperationException)
        {
            lock (_lock) Finish(s, GenerationEnd.Failed, e.Message);
        }
    }

    /// <summary>The next token from <paramref name="logits"/>, or -1 where the sequence ended instead.</summary>
    private int Choose(Sequence s, Span<float> logits)
    {
        if (s.Ids.Count >= s.Request.Options.MaxTokens) { lock (_lock) Finish(s, GenerationEnd.Length); return -1; }
        if (s.Request.OnLogits is { } observe)
        {
            try { observe(logits); }
            catch (Exception e) { lock (_lock) Finish(s, GenerationEnd.Failed, "the logits observer failed: " + e.Message); return -1; }
        }
        if (s.Request.Options.Logprobs is int top)
        {
            // The log-probabilities are the model's: the row is sampled as it is (a penalty works on a copy).
            int chosen = s.Sampler.Sample(logits, CollectionsMarshal.AsSpan(s.History));
            s.Logprobs = TokenLogprobs.Compute(logits, chosen, top);
            return chosen;
        }
        // The row is scratch once observed: the repetition penalty is applied to it in place (no copy of V values).
        return s.Sampler.SampleInPlace(logits, CollectionsMarshal.AsSpan(s.History));
    }

    private void Accept(Sequence s, int next)
    {
        var o = s.Request.Options;
        if (s.Ids.Count >= o.MaxTokens) { lock (_lock) Finish(s, GenerationEnd.Length); return; }
        s.FirstToken ??= Stopwatch.GetElapsedTime(s.Started);
        if (o.StopOnEndTokens && s.Tokenizer is not null && s.Tokenizer.StopIds.Contains(next)) { lock (_lock) Finish(s, GenerationEnd.Stop); return; }
        s.Ids.Add(next); s.History.Add(next);
        if (s.Logprobs is { } lp) s.LogprobList.Add(lp);
        if (s.TextStream is not null) s.Text.Append(s.TextStream.Append(next));
        int cut = -1;
        if (o.Stop.Count > 0)
        {
            // Text handed out holds no stop text, so a new one ends after Emitted: only the tail from
            // Emitted - (longest stop) is searched, which keeps a token's cost independent of the output's length.
            int from = Math.Max(0, s.Emitted - s.HoldBack - 1);
            string tail = s.Text.ToString(from, s.Text.Length - from);
            foreach (string stop in o.Stop)
            {
                int at = tail.IndexOf(stop, Math.Max(0, s.Emitted - stop.Length - from), StringComparison.Ordinal);
                if (at >= 0 && (cut < 0 || at + from < cut)) cut = at + from;
            }
        }
        if (cut >= 0)
        {
            s.Text.Length = Math.Max(cut, s.Emitted);
            s.Writer.TryWrite(new GeneratedToken(next, s.Text.ToString(s.Emitted, s.Text.Length - s.Emitted)) { Logprobs = s.Logprobs });
            s.Emitted = s.Text.Length;
            s.CutByText = true;
            lock (_lock) Finish(s, GenerationEnd.Stop);
            return;
        }
        int safe = Math.Max(s.Emitted, s.Text.Length - s.HoldBack);
        s.Writer.TryWrite(new GeneratedToken(next, s.Text.ToString(s.Emitted, safe - s.Emitted)) { Logprobs = s.Logprobs });
        s.Emitted = safe;
        if (s.Ids.Count == o.MaxTokens) { lock (_lock) Finish(s, GenerationEnd.Length); return; }
        if (_seqs.Length(s.Slot) >= _o.ContextLength) { lock (_lock) Finish(s, GenerationEnd.ContextFull); return; }
        s.Pending = next;
    }

    /// <summary>Takes an active sequence out of the batch, hands out its held-back text, returns its slot. Caller holds _lock.</summary>
    private void Finish(Sequence s, GenerationEnd end, string? error = null)
    {
        if (!_active.Remove(s)) return;
        if (s.Slot >= 0)
        {
            // The slot keeps what its cache holds (the prompt and the tokens run after it: History's first Length
            // ids) for a later prompt that begins the same way; after a failure nothing is kept (nor where the
            // slot would hold more than the sequence ran, which would be a bookkeeping fault, not a cache).
            int slot = s.Slot, held = _seqs.Length(slot);
            var kept = _kept[slot];
            kept.Clear();
            if (_o.PromptCache && end != GenerationEnd.Failed && held <= s.History.Count) for (int i = 0; i < held; i++) kept.Add(s.History[i]);
            else _seqs.Reset(slot);
            _lastUsed[slot] = ++_clock;
            _free.Add(slot);
            s.Slot = -1;
        }
        s.Pending = -1;
        if (end is (GenerationEnd.Stop or GenerationEnd.Length or GenerationEnd.ContextFull) && !s.CutByText)
        {
            if (s.TextStream is not null) s.Text.Append(s.TextStream.Flush());
            if (s.Emitted < s.Text.Length) s.Writer.TryWrite(new GeneratedToken(-1, s.Text.ToString(s.Emitted, s.Text.Length - s.Emitted)));
            s.Emitted = s.Text.Length;
        }
        Complete(s, end, error);
    }

    private void Complete(Sequence s, GenerationEnd end, string? error)
    {
        s.Registration.Dispose();
        var outcome = new GenerationOutcome(end, s.Request.PromptIds.Count, s.Ids.ToArray(), s.Text.ToString(0, s.Emitted),
            s.FirstToken, Stopwatch.GetElapsedTime(s.Started), error, s.Cached, s.Request.Options.Logprobs is null ? null : s.LogprobList.ToArray(),
            s.Request.PromptLogprobs ? s.PromptLogprobList.ToArray() : null);
        // Counted before the caller can see the outcome, so metrics never lag an answered request.
        _observer?.Finished(outcome);
        s.Writer.TryComplete();
        s.Done.TrySetResult(outcome);
    }

    private sealed class Sequence
    {
        public Sequence(GenerationRequest request, LmTokenizer? tokenizer, long deadline)
        {
            Request = request;
            Tokenizer = tokenizer;
            Deadline = deadline;
            Started = Stopwatch.GetTimestamp();
            Sampler = new Sampler(request.Options.Sampling);
            // The GPU's draws: the request's seed where it gives one (the same tokens again), else a random one.
            Seed = request.Options.Sampling.Seed is int seed ? (ulong)(uint)seed : (ulong)Random.Shared.NextInt64();
            History = new List<int>(request.PromptIds);
            if (tokenizer is not null) { TextStream = new TokenTextStream(tokenizer); TextStream.Prime(request.PromptIds[^1]); }
            HoldBack = request.Options.Stop.Count == 0 ? 0 : request.Options.Stop.Max(x => x.Length) - 1;
            var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            Writer = channel.Writer;
            Stream = new GenerationStream(channel.Reader, Done.Task);
        }

        public readonly GenerationRequest Request;
        public readonly LmTokenizer? Tokenizer;
        public readonly long Deadline, Started;
        public readonly Sampler Sampler;
        public readonly ulong Seed;
        public readonly List<int> History;
        public readonly List<int> Ids = [];
        public readonly StringBuilder Text = new();
        public readonly TokenTextStream? TextStream;
        public readonly int HoldBack;
        public readonly ChannelWriter<GeneratedToken> Writer;
        public readonly TaskCompletionSource<GenerationOutcome> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly GenerationStream Stream;
        public CancellationTokenRegistration Registration;
        public int Slot = -1;
        public int Prefilled;
        public int Cached;   // prompt tokens the slot already held
        public TokenLogprobs? Logprobs;   // the last chosen token's, where the request asked for them
        public readonly List<TokenLogprobs> LogprobList = [];   // each of Ids'
        public readonly List<TokenLogprobs> PromptLogprobList = [];   // each prompt token's after the first
        public int Pending = -1;
        public int Emitted;
        public bool CutByText;
        public TimeSpan? FirstToken;
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Rotor.Lm;

/// <summary>
/// How the next token is chosen from the logits. Temperature 0 is greedy (the lowest id among equal maxima).
/// Otherwise, in this order (llama.cpp's): repetition penalty over the last <see cref="RepeatLastN"/> tokens, top-k,
/// temperature, top-p, min-p, then a draw from what is left. A <see cref="Seed"/> makes draws reproducible.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; 0 is greedy.</summary>
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep the k most likely tokens (0: all).</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p (1: all).</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drop tokens less likely than min-p times the most likely one (0: none).</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>Divides positive logits (multiplies negative ones) of recent tokens (1: off).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>How many recent tokens the repetition penalty looks at.</summary>
    public int RepeatLastN { get; init; } = 64;
    /// <summary>Seed of the random draws; null draws a seed.</summary>
    public int? Seed { get; init; }

    /// <summary>Greedy decoding.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Checks the ranges; <paramref name="where"/> names the source of the values.</summary>
    /// <exception cref="RotorException">A value is out of range.</exception>
    public void Validate(string where = "sampling")
    {
        if (!(Temperature >= 0) || !float.IsFinite(Temperature)) throw new RotorException($"{where}: temperature {Temperature} must be 0 or more");
        if (TopK < 0) throw new RotorException($"{where}: top-k {TopK} must be 0 or more");
        if (!(TopP > 0 && TopP <= 1)) throw new RotorException($"{where}: top-p {TopP} must be in (0, 1]");
        if (!(MinP >= 0 && MinP < 1)) throw new RotorException($"{where}: min-p {MinP} must be in [0, 1)");
        if (!(RepetitionPenalty > 0) || !float.IsFinite(RepetitionPenalty)) throw new RotorException($"{where}: repetition penalty {RepetitionPenalty} must be positive");
        if (RepeatLastN < 0) throw new RotorException($"{where}: repeat-last-n {RepeatLastN} must be 0 or more");
    }
}

/// <summary>Chooses tokens from logits per <see cref="SamplingOptions"/>; holds its random state and buffers. The logits
/// are read where they lie: a copy of the vocabulary is made only for the repetition penalty (unless
/// <see cref="SampleInPlace"/> may change them) and for a full sort (top-k 0); buffers grow once, never per token.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private readonly Random _random;
    private float[] _work = [];
    private int[] _ids = [];
    private float[] _p = [];
    private int[] _recent = [];
    private readonly PriorityQueue<int, (float, int)> _heap = new();

    /// <summary>A sampler with <paramref name="options"/>.</summary>
    public Sampler(SamplingOptions options)
    {
        _o = options ?? throw new ArgumentNullException(nameof(options));
        _o.Validate();
        _random = new Random(_o.Seed ?? Random.Shared.Next());
    }

    /// <summary>The options in use.</summary>
    public SamplingOptions Options => _o;

    /// <summary>The next token given <paramref name="logits"/> and the tokens so far (<paramref name="history"/>, for the
    /// repetition penalty).</summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history = default)
    {
        int n = logits.Length;
        if (n == 0) throw new ArgumentException("no logits", nameof(logits));
        if (!Penalizes(history)) return Choose(logits);
        if (_work.Length < n) _work = new float[n];
        Span<float> l = _work.AsSpan(0, n);
        logits.CopyTo(l);
        Penalize(l, history);
        return Choose(l);
    }

    /// <summary>The token <see cref="Sample"/> would choose, applying the repetition penalty to
    /// <paramref name="logits"/> itself (those values are changed) instead of to a copy: for callers whose logits are
    /// scratch once sampled (a batched server's rows).</summary>
    public int SampleInPlace(Span<float> logits, ReadOnlySpan<int> history = default)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits", nameof(logits));
        if (Penalizes(history)) Penalize(logits, history);
        return Choose(logits);
    }

    private bool Penalizes(ReadOnlySpan<int> history) => _o.RepetitionPenalty != 1f && _o.RepeatLastN > 0 && !history.IsEmpty;

    /// <summary>Divides the positive logits (multiplies the negative ones) of the distinct tokens among the last
    /// <see cref="SamplingOptions.RepeatLastN"/> of <paramref name="history"/>: each once, however often it occurred.</summary>
    private void Penalize(Span<float> l, ReadOnlySpan<int> history)
    {
        ReadOnlySpan<int> recent = history.Length > _o.RepeatLastN ? history[^_o.RepeatLastN..] : history;
        if (_recent.Length < recent.Length) _recent = new int[Math.Max(recent.Length, Math.Min(_o.RepeatLastN, 4096))];
        Span<int> distinct = _recent.AsSpan(0, recent.Length);
        recent.CopyTo(distinct);
        distinct.Sort();
        for (int i = 0; i < distinct.Length; i++)
        {
            int t = distinct[i];
            if ((i > 0 && t == distinct[i - 1]) || (uint)t >= (uint)l.Length) continue;
            l[t] = l[t] > 0 ? l[t] / _o.RepetitionPenalty : l[t] * _o.RepetitionPenalty;
        }
    }

    /// <summary>Greedy, or top-k, temperature, top-p, min-p and a draw, over <paramref name="l"/> (penalized already).</summary>
    private int Choose(ReadOnlySpan<float> l)
    {
        int n = l.Length;
        if (_o.Temperature == 0) return ArgMax(l);

        // Candidates sorted by logit, descending (ties: lower id first); top-k selects with a heap of k.
        int k = _o.TopK > 0 ? Math.Min(_o.TopK, n) : n;
        if (_ids.Length < k) _ids = new int[k];
        Span<int> ids = _ids.AsSpan(0, k);
        if (k < n)
        {
            _heap.Clear();
            // Once the heap is full, a logit below its least one cannot enter: one float comparison rejects most of the
            // vocabulary (equal logits, NaNs and the rest take the full comparison, so the result is unchanged).
            float floor = float.NegativeInfinity;
            for (int i = 0; i < n; i++)
            {
                float li = l[i];
                if (li < floor) continue;
                if (_heap.Count < k) _heap.Enqueue(i, (li, -i));
                else if (_heap.TryPeek(out _, out var least) && (li, -i).CompareTo(least) > 0) _heap.EnqueueDequeue(i, (li, -i));
                else continue;
                if (_heap.Count == k && _heap.TryPeek(out _, out var now)) floor = now.Item1;
            }
            for (int i = k - 1; i >= 0; i--) ids[i] = _heap.Dequeue();
        }
        else
        {
            // A full sort reads the values through an array (the comparison cannot hold a span).
            if (_work.Length < n) _work = new float[n];
            float[] work = _work;
            if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(l), ref work[0])) l.CopyTo(work);
            for (int i = 0; i < n; i++) ids[i] = i;
            ids.Sort((a, b) => work[b].CompareTo(work[a]) is var c && c != 0 ? c : a.CompareTo(b));
        }

        // Softmax with temperature over the candidates.
        float max = l[ids[0]];
        if (_p.Length < k) _p = new float[k];
        Span<float> p = _p.AsSpan(0, k);
        double sum = 0;
        for (int i = 0; i < k; i++) { p[i] = MathF.Exp((l[ids[i]] - max) / _o.Temperature); sum += p[i]; }
        for (int i = 0; i < k; i++) p[i] = (float)(p[i] / sum);

        // Top-p: the smallest prefix reaching TopP.
        int keep = k;
        if (_o.TopP < 1f)
        {
            double c = 0;
            for (int i = 0; i < k; i++) { c += p[i]; if (c >= _o.TopP) { keep = i + 1; break; } }
        }
        // Min-p: relative to the most likely.
        if (_o.MinP > 0)
        {
            float floor = _o.MinP * p[0];
            int m = 1;
            while (m < keep && p[m] >= floor) m++;
            keep = m;
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[i];
        double r = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= p[i];
            if (r < 0) return ids[i];
        }
        return ids[keep - 1];
    }

    /// <summary>The index of the largest value (the first among equals).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}

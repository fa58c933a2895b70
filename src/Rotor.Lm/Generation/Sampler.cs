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

/// <summary>Chooses tokens from logits per <see cref="SamplingOptions"/>; holds its random state and buffers.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private readonly Random _random;
    private float[] _work = [];
    private int[] _ids = [];
    private float[] _p = [];
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
        if (_work.Length < n) { _work = new float[n]; _ids = new int[n]; }
        Span<float> l = _work.AsSpan(0, n);
        logits.CopyTo(l);
        if (_o.RepetitionPenalty != 1f && _o.RepeatLastN > 0)
        {
            ReadOnlySpan<int> recent = history.Length > _o.RepeatLastN ? history[^_o.RepeatLastN..] : history;
            // Each distinct recent token is penalized once, however often it occurred.
            foreach (int t in recent)
                if ((uint)t < (uint)n && l[t] == logits[t])
                    l[t] = logits[t] > 0 ? logits[t] / _o.RepetitionPenalty : logits[t] * _o.RepetitionPenalty;
        }
        if (_o.Temperature == 0) return ArgMax(l);

        // Candidates sorted by logit, descending (ties: lower id first); top-k selects with a heap of k.
        int k = _o.TopK > 0 ? Math.Min(_o.TopK, n) : n;
        Span<int> ids = _ids.AsSpan(0, k);
        float[] work = _work;
        if (k < n)
        {
            _heap.Clear();
            for (int i = 0; i < n; i++)
            {
                if (_heap.Count < k) _heap.Enqueue(i, (l[i], -i));
                else if (_heap.TryPeek(out _, out var least) && (l[i], -i).CompareTo(least) > 0) _heap.EnqueueDequeue(i, (l[i], -i));
            }
            for (int i = k - 1; i >= 0; i--) ids[i] = _heap.Dequeue();
        }
        else
        {
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

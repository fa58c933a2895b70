using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Rotor.Lm;

/// <summary>The parts a decode step's time is split into by <see cref="StepTrace"/>.</summary>
public enum StepPhase
{
    /// <summary>Argument checks of the batched step.</summary>
    Checks,
    /// <summary>Embedding rows.</summary>
    Embedding,
    /// <summary>RMS norms inside the layers (attention, sub-norms, FFN).</summary>
    Norms,
    /// <summary>Int8 quantization of the ternary layers' inputs.</summary>
    Quantize,
    /// <summary>The q, k and v projections.</summary>
    Qkv,
    /// <summary>Rotary embedding of q and k.</summary>
    Rope,
    /// <summary>Storing k and v in the caches and the attention over them.</summary>
    Attention,
    /// <summary>The output projection.</summary>
    Wo,
    /// <summary>The gate and up projections.</summary>
    GateUp,
    /// <summary>The FFN activation, its product with up, and the residual adds.</summary>
    Elementwise,
    /// <summary>The down projection.</summary>
    Down,
    /// <summary>The final norm and the LM head product.</summary>
    Head,
    /// <summary>Choosing each row's token and its text (the scheduler's part).</summary>
    Sampling,
    /// <summary>Prompt tokens run in the same scheduler step.</summary>
    Prefill,
    /// <summary>The scheduler's own work: queue, cancellations, batch assembly, finished sequences.</summary>
    Scheduling,
}

/// <summary>
/// Accumulates where decode steps spend their time, per phase, keyed by the step's rows (sequences decoded together),
/// and formats each row count's shares. Enabled for a server with <c>ROTOR_STEP_TRACE=1</c> (see
/// <c>docs/SERVER.md</c>); a <see cref="Decoder"/> fills it while its <see cref="Decoder.Trace"/> is set. Reading the
/// clock costs tens of nanoseconds a phase, so a step of many layers pays well under a percent. Not thread-safe: one
/// decode thread.
/// </summary>
public sealed class StepTrace
{
    private static readonly int s_phases = Enum.GetValues<StepPhase>().Length;
    private readonly Dictionary<int, Bucket> _buckets = [];
    private Bucket? _current;

    /// <summary>Whether <c>ROTOR_STEP_TRACE</c> asks for a trace (set and not "0").</summary>
    public static bool Requested => Environment.GetEnvironmentVariable("ROTOR_STEP_TRACE") is { Length: > 0 } v && v != "0";

    /// <summary>Steps a row count gathers before <see cref="TakeReport"/> reports it.</summary>
    public int ReportEvery { get; init; } = 32;

    /// <summary>Starts a step of <paramref name="rows"/> rows: the phases added until the next call count for it.</summary>
    public void BeginStep(int rows)
    {
        if (!_buckets.TryGetValue(rows, out _current)) _buckets[rows] = _current = new Bucket(s_phases);
        _current.Steps++;
    }

    /// <summary>Adds <paramref name="ticks"/> (<see cref="Stopwatch"/> ticks) to <paramref name="phase"/> of the current step.</summary>
    public void Add(StepPhase phase, long ticks)
    {
        if (_current is { } b) b.Ticks[(int)phase] += ticks;
    }

    /// <summary>The report of the row count of the current step once it has gathered <see cref="ReportEvery"/> steps
    /// (and starts it again), else null.</summary>
    public string? TakeReport()
    {
        foreach (var (rows, b) in _buckets)
            if (ReferenceEquals(b, _current) && b.Steps >= ReportEvery) { string r = Format(rows, b); b.Clear(); return r; }
        return null;
    }

    /// <summary>The reports of every row count with steps not yet reported (largest first), and starts them again.</summary>
    public IEnumerable<string> TakeAll()
    {
        var list = new List<string>();
        foreach (var (rows, b) in _buckets.OrderByDescending(kv => kv.Key))
            if (b.Steps > 0) { list.Add(Format(rows, b)); b.Clear(); }
        return list;
    }

    /// <summary>One line: rows, steps, mean step in ms, and each phase's share of the step, largest first.</summary>
    private static string Format(int rows, Bucket b)
    {
        long total = 0;
        foreach (long t in b.Ticks) total += t;
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"step trace: {rows} rows, {b.Steps} steps, {total * 1e3 / Stopwatch.Frequency / b.Steps:F1} ms a step:");
        foreach (int p in Enumerable.Range(0, s_phases).OrderByDescending(p => b.Ticks[p]))
            if (b.Ticks[p] > 0) sb.Append(inv, $" {((StepPhase)p).ToString().ToLowerInvariant()} {100.0 * b.Ticks[p] / Math.Max(total, 1):F1}%");
        return sb.ToString();
    }

    private sealed class Bucket(int phases)
    {
        public readonly long[] Ticks = new long[phases];
        public int Steps;
        public void Clear() { Array.Clear(Ticks); Steps = 0; }
    }
}

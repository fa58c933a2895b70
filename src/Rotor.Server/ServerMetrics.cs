using System.Diagnostics;
using Prometheus;
using Rotor.Server.Scheduling;

namespace Rotor.Server;

/// <summary>
/// The server's metrics in a registry of its own (several servers may live in one process), exported in the Prometheus
/// text format at GET /metrics: requests by endpoint and status, queue length, active sequences, generated tokens
/// (rate() of the counter is tokens/s; a gauge also gives the rate since the previous scrape), and summaries with
/// p50/p90/p99 of the time to first token, the per-token latency and the request duration.
/// </summary>
public sealed class ServerMetrics : ISchedulerObserver
{
    private readonly Counter _requests, _generated, _prefilled, _cached, _steps, _ends;
    private readonly long[] _endCounts = new long[Enum.GetValues<GenerationEnd>().Length];
    private int _largestBatch;
    private readonly Summary _ttft, _perToken, _duration, _batch;
    private readonly Gauge _queue, _active, _tokensPerSecond;
    private long _lastTokens = 0, _lastTicks = Stopwatch.GetTimestamp();
    private long _tokens, _cachedTokens;

    /// <summary>Empty metrics in a registry of their own; <see cref="Scheduler"/> is set once the scheduler exists.</summary>
    public ServerMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        var q = new SummaryConfiguration
        {
            Objectives = [new QuantileEpsilonPair(0.5, 0.01), new QuantileEpsilonPair(0.9, 0.01), new QuantileEpsilonPair(0.99, 0.001)],
            MaxAge = TimeSpan.FromMinutes(5),
        };
        _requests = f.CreateCounter("rotor_http_requests_total", "HTTP requests by endpoint and status code.", new CounterConfiguration { LabelNames = ["endpoint", "status"] });
        _generated = f.CreateCounter("rotor_generated_tokens_total", "Tokens generated.");
        _prefilled = f.CreateCounter("rotor_prompt_tokens_total", "Prompt tokens prefilled.");
        _cached = f.CreateCounter("rotor_prompt_tokens_cached_total", "Prompt tokens not run: a sequence slot already held their keys and values from an earlier request.");
        _ends = f.CreateCounter("rotor_generations_total", "Generations by how they ended (stop, length, contextfull, cancelled, timedout, shutdown, failed).", new CounterConfiguration { LabelNames = ["end"] });
        _steps = f.CreateCounter("rotor_decode_steps_total", "Scheduler steps that decoded at least one sequence.");
        _ttft = f.CreateSummary("rotor_time_to_first_token_seconds", "From submission to the first generated token.", q);
        _perToken = f.CreateSummary("rotor_time_per_output_token_seconds", "Mean time between output tokens of a request, after the first.", q);
        _duration = f.CreateSummary("rotor_request_duration_seconds", "From submission to the last token.", q);
        _batch = f.CreateSummary("rotor_batch_size", "Sequences decoded by one batched step.", q);
        _queue = f.CreateGauge("rotor_queue_length", "Requests waiting for a sequence slot.");
        _active = f.CreateGauge("rotor_active_sequences", "Sequences in the running batch.");
        _tokensPerSecond = f.CreateGauge("rotor_generated_tokens_per_second", "Generated tokens a second since the previous scrape.");
        Registry.AddBeforeCollectCallback(() =>
        {
            if (Scheduler is { } s) { _queue.Set(s.QueueLength); _active.Set(s.ActiveCount); }
            long now = Stopwatch.GetTimestamp(), tokens = Interlocked.Read(ref _tokens);
            double seconds = (now - _lastTicks) / (double)Stopwatch.Frequency;
            if (seconds > 0) _tokensPerSecond.Set((tokens - _lastTokens) / seconds);
            _lastTicks = now; _lastTokens = tokens;
        });
    }

    /// <summary>The registry /metrics exports.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>The scheduler whose queue and batch are reported.</summary>
    public GenerationScheduler? Scheduler { get; set; }

    /// <summary>Generations that ended with <paramref name="end"/> so far.</summary>
    public long Ended(GenerationEnd end) => Interlocked.Read(ref _endCounts[(int)end]);

    /// <summary>Prompt tokens taken from a slot's kept keys and values so far (not run).</summary>
    public long CachedPromptTokens => Interlocked.Read(ref _cachedTokens);

    /// <summary>The most sequences one batched step has decoded so far.</summary>
    public int LargestBatch => Volatile.Read(ref _largestBatch);

    /// <summary>Counts a finished HTTP request.</summary>
    public void Request(string endpoint, int status) => _requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();

    /// <inheritdoc/>
    public void Step(int decoded, int prefilled, TimeSpan elapsed)
    {
        if (prefilled > 0) _prefilled.Inc(prefilled);
        if (decoded > 0) { _steps.Inc(); _batch.Observe(decoded); }
        if (decoded > _largestBatch) Volatile.Write(ref _largestBatch, decoded);
    }

    /// <inheritdoc/>
    public void Finished(GenerationOutcome outcome)
    {
        int n = outcome.Ids.Count;
        _ends.WithLabels(outcome.End.ToString().ToLowerInvariant()).Inc();
        Interlocked.Increment(ref _endCounts[(int)outcome.End]);
        _generated.Inc(n);
        if (outcome.CachedPromptTokens > 0) { _cached.Inc(outcome.CachedPromptTokens); Interlocked.Add(ref _cachedTokens, outcome.CachedPromptTokens); }
        Interlocked.Add(ref _tokens, n);
        if (outcome.TimeToFirstToken is { } t)
        {
            _ttft.Observe(t.TotalSeconds);
            if (n > 1) _perToken.Observe((outcome.Duration - t).TotalSeconds / (n - 1));
        }
        _duration.Observe(outcome.Duration.TotalSeconds);
    }
}

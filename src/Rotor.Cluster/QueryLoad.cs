using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Rotor.Rag.Search;

namespace Rotor.Cluster;

/// <summary>What a query load measured.</summary>
/// <param name="Queries">Queries answered.</param>
/// <param name="Failed">Queries that threw.</param>
/// <param name="Seconds">Wall time.</param>
/// <param name="Clients">Concurrent clients.</param>
/// <param name="P50Ms">Median latency.</param>
/// <param name="P99Ms">99th percentile latency.</param>
public sealed record QueryLoadReport(int Queries, int Failed, double Seconds, int Clients, double P50Ms, double P99Ms)
{
    /// <summary>Queries answered a second.</summary>
    public double QueriesPerSecond => Queries / Math.Max(Seconds, 1e-9);

    /// <summary>One line for people.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Queries:N0} queries ({Failed} failed) in {Seconds:F1} s with {Clients} clients: {QueriesPerSecond:F2} queries/s, latency p50 {P50Ms:F1} ms, p99 {P99Ms:F1} ms");
}

/// <summary>Runs questions against any <see cref="IPassageRetriever"/> (the cluster's front door, or one index for
/// comparison) from several clients for a while: what <c>rotor cluster search --queries</c> and the benchmark script measure.</summary>
public static class QueryLoad
{
    /// <summary>Each client takes the next question (cycling) until <paramref name="seconds"/> have passed, or until
    /// every question was asked once when <paramref name="seconds"/> is 0. First every client asks one question, not
    /// timed nor counted: the first query of a cluster activates grains, opens shard files and runs the models for the
    /// first time (seconds), which is not the load being measured.</summary>
    /// <exception cref="RotorException">No questions, no clients, or a warm-up question failed (its message).</exception>
    public static async Task<QueryLoadReport> RunAsync(IPassageRetriever retriever, IReadOnlyList<string> questions, RetrievalOptions options,
        double seconds, int clients, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(retriever);
        ArgumentNullException.ThrowIfNull(questions);
        if (questions.Count == 0) throw new RotorException("no questions to ask");
        if (clients < 1) throw new RotorException($"clients must be positive, not {clients}");
        try
        {
            await Task.WhenAll(Enumerable.Range(0, clients).Select(c => retriever.SearchAsync(questions[c % questions.Count], options, cancellationToken))).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new RotorException($"the warm-up question failed, nothing measured: {e.Message}", e);
        }
        var latencies = new ConcurrentBag<double>();
        int next = -1, failed = 0;
        var clock = Stopwatch.StartNew();
        async Task Client()
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                int i = Interlocked.Increment(ref next);
                if (seconds <= 0 ? i >= questions.Count : clock.Elapsed.TotalSeconds >= seconds) return;
                var t = Stopwatch.StartNew();
                try { await retriever.SearchAsync(questions[i % questions.Count], options, cancellationToken).ConfigureAwait(false); latencies.Add(t.Elapsed.TotalMilliseconds); }
                catch (Exception e) when (e is not OperationCanceledException) { Interlocked.Increment(ref failed); }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(Client, cancellationToken))).ConfigureAwait(false);
        double elapsed = clock.Elapsed.TotalSeconds;
        var sorted = latencies.Order().ToArray();
        double At(double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
        return new QueryLoadReport(sorted.Length, failed, elapsed, clients, At(0.5), At(0.99));
    }

    /// <summary>Questions from a file: JSON lines with a "text" field (BEIR queries), or plain lines.</summary>
    public static IReadOnlyList<string> ReadQuestions(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: questions file not found");
        var list = new List<string>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.Trim().Length == 0) continue;
            if (line.TrimStart().StartsWith('{'))
            {
                try
                {
                    var text = System.Text.Json.Nodes.JsonNode.Parse(line)?["text"]?.GetValue<string>();
                    list.Add(text ?? throw new RotorException($"{path}: a JSON line without a \"text\" string: {line[..Math.Min(80, line.Length)]}"));
                }
                catch (System.Text.Json.JsonException e) { throw new RotorException($"{path}: invalid JSON line: {e.Message}", e); }
            }
            else list.Add(line.Trim());
        }
        return list;
    }
}

using System.Diagnostics;

namespace Rotor.Cli.Bench;

/// <summary>Median wall time of repeated runs: at least <c>minReps</c> runs and about <c>budgetMs</c> of work,
/// after one warm-up run.</summary>
internal static class Timer
{
    public static double MedianMs(Action run, int minReps = 5, double budgetMs = 300, int maxReps = 2000) =>
        Measure(run, minReps, budgetMs, maxReps).Median;

    /// <summary>Median and minimum of the runs (the minimum is the least disturbed by other processes).</summary>
    /// <remarks><paramref name="between"/>, when given, runs untimed after every timed run (a paired measurement).</remarks>
    public static (double Median, double Min) Measure(Action run, int minReps = 5, double budgetMs = 300, int maxReps = 2000, Action? between = null)
    {
        run();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < minReps || (total.Elapsed.TotalMilliseconds < budgetMs && times.Count < maxReps))
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            between?.Invoke();
        }
        times.Sort();
        return (times[times.Count / 2], times[0]);
    }
}

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

    /// <summary>Two runs timed in alternation (a b, b a, a b, ...), so that both see the same moments of a noisy
    /// machine: medians and minimums of each. <paramref name="between"/> runs untimed after every pair.</summary>
    public static (double MedianA, double MinA, double MedianB, double MinB) MeasurePair(Action a, Action b, int minReps = 5, double budgetMs = 300, int maxReps = 2000, Action? between = null)
    {
        a(); b();
        var ta = new List<double>();
        var tb = new List<double>();
        var total = Stopwatch.StartNew();
        while (ta.Count < minReps || (total.Elapsed.TotalMilliseconds < 2 * budgetMs && ta.Count < maxReps))
        {
            bool aFirst = (ta.Count & 1) == 0;
            for (int side = 0; side < 2; side++)
            {
                bool isA = (side == 0) == aFirst;
                long t0 = Stopwatch.GetTimestamp();
                (isA ? a : b)();
                (isA ? ta : tb).Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            between?.Invoke();
        }
        ta.Sort(); tb.Sort();
        return (ta[ta.Count / 2], ta[0], tb[tb.Count / 2], tb[0]);
    }
}

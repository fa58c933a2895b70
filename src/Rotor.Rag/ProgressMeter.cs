using System.Diagnostics;

namespace Rotor.Rag;

/// <summary>Progress of long work as one line a few seconds apart: done/total, rate a second and time left.</summary>
public sealed class ProgressMeter
{
    private readonly string _label;
    private readonly long _total;
    private readonly TextWriter _out;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TimeSpan _every;
    private TimeSpan _last;

    /// <summary>Creates a meter for <paramref name="total"/> items, writing to <paramref name="output"/> (stderr by default).</summary>
    public ProgressMeter(string label, long total, TextWriter? output = null, TimeSpan? every = null)
    {
        _label = label;
        _total = total;
        _out = output ?? Console.Error;
        _every = every ?? TimeSpan.FromSeconds(3);
    }

    /// <summary>Seconds since the meter started.</summary>
    public double ElapsedSeconds => _clock.Elapsed.TotalSeconds;

    /// <summary>Reports <paramref name="done"/> items; writes a line when enough time has passed or the work is done.</summary>
    public void Report(long done)
    {
        var now = _clock.Elapsed;
        if (done < _total && now - _last < _every) return;
        _last = now;
        _out.WriteLine(Line(done));
    }

    /// <summary>The progress line for <paramref name="done"/> items.</summary>
    public string Line(long done)
    {
        double secs = Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        double rate = done / secs;
        string eta = rate > 0 && done < _total ? TimeSpan.FromSeconds((_total - done) / rate).ToString(@"h\:mm\:ss") : "0:00:00";
        return $"{_label}: {done:N0}/{_total:N0} ({100.0 * done / Math.Max(1, _total):F1}%), {rate:F1}/s, elapsed {TimeSpan.FromSeconds(secs):h\\:mm\\:ss}, ETA {eta}";
    }
}

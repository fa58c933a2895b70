using System.Diagnostics;

namespace Rotor.Lm.Loading;

/// <summary>One step of a model load and its wall time (<see cref="LanguageModel.LoadSteps"/>).</summary>
/// <param name="Name">What the step does ("map and read headers", "layers", "embedding", ...).</param>
/// <param name="Time">Its wall time.</param>
public readonly record struct LoadStep(string Name, TimeSpan Time);

/// <summary>Times the steps of a load: each <see cref="Mark"/> closes the step that began at the previous mark.</summary>
internal sealed class LoadClock
{
    private readonly Stopwatch _sw = Stopwatch.StartNew();
    private TimeSpan _last;
    private readonly List<LoadStep> _steps = [];

    /// <summary>Ends the current step under <paramref name="name"/> (steps of one name add up).</summary>
    public void Mark(string name)
    {
        var now = _sw.Elapsed;
        int i = _steps.FindIndex(s => s.Name == name);
        if (i >= 0) _steps[i] = _steps[i] with { Time = _steps[i].Time + (now - _last) };
        else _steps.Add(new LoadStep(name, now - _last));
        _last = now;
    }

    /// <summary>Wall time since the clock started.</summary>
    public TimeSpan Elapsed => _sw.Elapsed;

    /// <summary>The steps so far, in order.</summary>
    public IReadOnlyList<LoadStep> Steps => _steps.ToArray();
}

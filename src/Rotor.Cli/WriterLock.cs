using System.CommandLine;

namespace Rotor.Cli;

/// <summary>The <c>--lock-wait</c> option of every command that updates a file or folder in place, and the lock it takes
/// (<see cref="FileLock"/>): a second writer waits for the first, then works on its result.</summary>
internal static class WriterLock
{
    /// <summary>A new <c>--lock-wait SECONDS</c> option.</summary>
    public static Option<int> Option() => new Option<int>("--lock-wait")
    {
        Description = "Seconds to wait while another process writes the same target, then fail",
        DefaultValueFactory = _ => 600,
    }.InRange(0, 86_400);

    /// <summary>Takes the writer lock of <paramref name="target"/>, saying on stderr when it has to wait, then removes
    /// the temporary files that killed writers of it left behind.</summary>
    public static FileLock Take(string target, int seconds)
    {
        var held = FileLock.Acquire(target, TimeSpan.FromSeconds(seconds), why => Console.Error.WriteLine($"waiting: {why}"));
        if (AtomicFile.RemoveStale(target) is > 0 and var n) Console.Error.WriteLine($"removed {n} temporary file(s) of an interrupted write of {target}");
        return held;
    }
}

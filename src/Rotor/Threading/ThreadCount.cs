namespace Rotor.Threading;

/// <summary>
/// How many threads Rotor computes with, one rule for the whole process: the value <see cref="Set"/> (the command
/// line's <c>--threads N</c>), else the <c>ROTOR_THREADS</c> environment variable, else every processor. It is an upper
/// bound that every parallel part takes its default from: the kernels' worker pools (<see cref="Kernels.CpuBackend"/>),
/// index scans and graph builds, encoding, embedding (ONNX Runtime's intra-op threads), model loading. A part may use
/// fewer where more would be slower (a scan of a small index, the embedding of one short question); none uses more.
/// </summary>
public static class ThreadCount
{
    /// <summary>The largest count accepted.</summary>
    public const int Max = 1024;

    private static int s_set;

    /// <summary>The count in force: <see cref="Set"/>'s value, else <see cref="FromEnvironment"/>.</summary>
    /// <exception cref="RotorException"><c>ROTOR_THREADS</c> is set and not a count in 1..<see cref="Max"/>.</exception>
    public static int Default
    {
        get
        {
            int s = Volatile.Read(ref s_set);
            return s > 0 ? s : FromEnvironment();
        }
    }

    /// <summary>Where <see cref="Default"/> comes from: "--threads", "ROTOR_THREADS" or "processors".</summary>
    public static string Source => Volatile.Read(ref s_set) > 0 ? "--threads"
        : string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("ROTOR_THREADS")) ? "processors" : "ROTOR_THREADS";

    /// <summary>Sets the count for the rest of the process (the command line does, before any work); it takes precedence
    /// over <c>ROTOR_THREADS</c>. Pools made before keep their size.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is not in 1..<see cref="Max"/>.</exception>
    public static void Set(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(threads, Max);
        Volatile.Write(ref s_set, threads);
    }

    /// <summary><c>ROTOR_THREADS</c> when set, else <see cref="Environment.ProcessorCount"/>.</summary>
    /// <exception cref="RotorException">The variable is set and not a count in 1..<see cref="Max"/>.</exception>
    public static int FromEnvironment()
    {
        string? v = Environment.GetEnvironmentVariable("ROTOR_THREADS");
        if (string.IsNullOrWhiteSpace(v)) return Environment.ProcessorCount;
        if (!int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int t) || t <= 0 || t > Max)
            throw new RotorException($"ROTOR_THREADS={v} is not a number of threads in 1..{Max}");
        return t;
    }

    /// <summary>Options for <see cref="Parallel"/> loops bounded by <see cref="Default"/>.</summary>
    public static ParallelOptions Options(CancellationToken cancellationToken = default)
        => new() { MaxDegreeOfParallelism = Default, CancellationToken = cancellationToken };
}

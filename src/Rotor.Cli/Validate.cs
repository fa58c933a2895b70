using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Rotor.Cli;

/// <summary>
/// The command line's option rules, declared once beside each option and checked by the parser before any command
/// runs: a value out of range or an output path that cannot be written is a parse error, which <see cref="Program"/>
/// prints as one line <c>rotor: --OPTION: why</c> and exit code 2. The rule text is also kept for
/// <see cref="RuleOf"/>, from which docs/OPTIONS.md is generated, so ranges are written once, here, in code.
/// <code>
/// var top = new Option&lt;int&gt;("--top") { DefaultValueFactory = _ =&gt; 5 }.InRange(1, 10_000);
/// var json = new Option&lt;string?&gt;("--json").OutputFile();
/// </code>
/// </summary>
public static class Validate
{
    private static readonly ConditionalWeakTable<Symbol, string> Rules = new();

    /// <summary>The rule declared for an option or argument (e.g. "in 1..10000", "positive", "a writable file path"), or null.</summary>
    public static string? RuleOf(Symbol symbol) => Rules.TryGetValue(symbol, out var r) ? r : null;

    private static void AddRule(Symbol symbol, string rule)
    {
        string joined = Rules.TryGetValue(symbol, out var old) ? $"{old}; {rule}" : rule;
        Rules.AddOrUpdate(symbol, joined);
    }

    private static string Show<T>(T value) where T : INumber<T> => value.ToString(null, CultureInfo.InvariantCulture);

    /// <summary>The value must lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<T> InRange<T>(this Option<T> option, T min, T max) where T : struct, INumber<T>
    {
        string rule = RangeText(min, max);
        AddRule(option, rule);
        option.Validators.Add(r => { if (Given(r, out T v)) CheckRange(r, option.Name, v, min, max, rule); });
        return option;
    }

    /// <summary>The value, when given, must lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<T?> InRange<T>(this Option<T?> option, T min, T max) where T : struct, INumber<T>
    {
        string rule = RangeText(min, max);
        AddRule(option, rule);
        option.Validators.Add(r => { if (Given(r, out T? v) && v is T x) CheckRange(r, option.Name, x, min, max, rule); });
        return option;
    }

    /// <summary>The value must be 1 or more.</summary>
    public static Option<T> Positive<T>(this Option<T> option) where T : struct, INumber<T> => option.InRange(T.One, Max<T>());

    /// <summary>The value, when given, must be 1 or more.</summary>
    public static Option<T?> Positive<T>(this Option<T?> option) where T : struct, INumber<T> => option.InRange(T.One, Max<T>());

    /// <summary>The value must be 0 or more.</summary>
    public static Option<T> NonNegative<T>(this Option<T> option) where T : struct, INumber<T> => option.InRange(T.Zero, Max<T>());

    private static T Max<T>() where T : struct, INumber<T> =>
        typeof(T) == typeof(float) || typeof(T) == typeof(double) ? T.CreateSaturating(double.MaxValue) : T.CreateSaturating(long.MaxValue);

    private static string RangeText<T>(T min, T max) where T : struct, INumber<T> =>
        max == Max<T>() ? (min == T.One && !IsFloat<T>() ? "positive" : min == T.Zero ? "0 or more" : $"at least {Show(min)}") : $"in {Show(min)}..{Show(max)}";

    private static bool IsFloat<T>() => typeof(T) == typeof(float) || typeof(T) == typeof(double);

    private static void CheckRange<T>(OptionResult r, string name, T v, T min, T max, string rule) where T : struct, INumber<T>
    {
        // NaN fails both comparisons, so it is refused too.
        if (!(v >= min && v <= max)) r.AddError($"{name} is {v.ToString(null, CultureInfo.InvariantCulture)}, must be {rule}");
    }

    // The parsed value of an option the user gave; false when it is the default or did not parse (already an error).
    private static bool Given<T>(OptionResult r, out T value)
    {
        value = default!;
        if (r.Implicit || r.Errors.Any()) return false;
        try { value = r.GetValueOrDefault<T>(); return true; }
        catch (InvalidOperationException) { return false; }
    }

    private static readonly ConditionalWeakTable<Symbol, string> ThreadOptions = new();

    /// <summary>Description of <see cref="Threads"/>.</summary>
    public const string ThreadsDescription = "Threads for all the work (kernels, index scans and graph builds, encoding, embedding); default ROTOR_THREADS, else every processor";

    /// <summary>
    /// The <c>--threads N</c> (<c>-t N</c>) option of every command that computes, one rule for all: N in 1..1024 caps
    /// every parallel part of the command (<see cref="Rotor.Threading.ThreadCount"/>); without it <c>ROTOR_THREADS</c>
    /// does, else the processor count. <see cref="Program"/> applies it (<see cref="ApplyThreads"/>) before the command
    /// runs, so a command needs only declare it; parts that are faster with fewer threads (a scan of a small index, the
    /// embedding of one question) may use fewer, none uses more.
    /// </summary>
    public static Option<int?> Threads()
    {
        var option = new Option<int?>("--threads", "-t") { Description = ThreadsDescription }.InRange(1, Rotor.Threading.ThreadCount.Max);
        ThreadOptions.Add(option, "threads");
        return option;
    }

    /// <summary>Whether <paramref name="symbol"/> was made by <see cref="Threads"/>.</summary>
    public static bool IsThreads(Symbol symbol) => ThreadOptions.TryGetValue(symbol, out _);

    /// <summary>Sets the process's thread count from the parsed command's <see cref="Threads"/> option when given, then
    /// returns the count in force (which checks <c>ROTOR_THREADS</c>: a bad value is an error before any work).</summary>
    /// <exception cref="RotorException"><c>ROTOR_THREADS</c> is not a count in 1..1024.</exception>
    public static int ApplyThreads(ParseResult parsed)
    {
        ArgumentNullException.ThrowIfNull(parsed);
        foreach (var o in parsed.CommandResult.Command.Options)
            if (IsThreads(o) && parsed.GetValue((Option<int?>)o) is int t) Rotor.Threading.ThreadCount.Set(t);
        return Rotor.Threading.ThreadCount.Default;
    }

    /// <summary>The <c>--device cpu|cuda</c> option of the commands that embed passages: where the embedding model runs
    /// (ONNX Runtime's CUDA provider, or the CPU with the reason printed where that cannot be had).</summary>
    public static Option<string> EmbeddingDevice() =>
        new Option<string>("--device") { Description = "where the embedding model runs: cpu, or cuda (ONNX Runtime's CUDA provider; falls back to the CPU, saying why, where it cannot be had)", DefaultValueFactory = _ => "cpu" }
            .OneOf("cpu", "cuda");

    /// <summary>The <see cref="Rotor.Rag.Embeddings.EmbeddingDevice"/> of an <see cref="EmbeddingDevice()"/> value.</summary>
    public static Rotor.Rag.Embeddings.EmbeddingDevice ToEmbeddingDevice(string? value) =>
        string.Equals(value, "cuda", StringComparison.OrdinalIgnoreCase) ? Rotor.Rag.Embeddings.EmbeddingDevice.Cuda : Rotor.Rag.Embeddings.EmbeddingDevice.Cpu;

    /// <summary>The line a command prints about where its embedder runs ("embedding on CUDA", or the reason it runs on
    /// the CPU although CUDA was asked for); null when the CPU was asked for.</summary>
    public static string? EmbeddingDeviceLine(Rotor.Rag.Embeddings.SentenceEmbedder embedder, string command)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        if (embedder.Options.Device == Rotor.Rag.Embeddings.EmbeddingDevice.Cpu) return null;
        return embedder.DeviceNote is null
            ? $"{command}: embedding on the GPU (ONNX Runtime CUDA provider, device {embedder.Options.CudaDeviceId})"
            : $"{command} --device cuda: {embedder.DeviceNote}; embedding on the CPU";
    }

    /// <summary>The value must be one of <paramref name="allowed"/> (ordinal, case-insensitive).</summary>
    public static Option<string> OneOf(this Option<string> option, params string[] allowed)
    {
        AddRule(option, string.Join(", ", allowed));
        option.Validators.Add(r =>
        {
            if (Given(r, out string? v) && v is not null && !allowed.Contains(v, StringComparer.OrdinalIgnoreCase))
                r.AddError($"{option.Name}: '{v}' is not one of {string.Join(", ", allowed)}");
        });
        return option;
    }

    /// <summary>The value must not be empty or only white space.</summary>
    public static Argument<string?> NotBlank(this Argument<string?> argument)
    {
        AddRule(argument, "not empty");
        argument.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && string.IsNullOrWhiteSpace(r.Tokens[0].Value)) r.AddError($"{argument.Name}: empty");
        });
        return argument;
    }

    /// <summary>The path, when given, must be a file Rotor can write: not a folder, under a folder that exists (or can be
    /// made) and is writable. Checked before the command's work starts, not after it.</summary>
    public static Option<T> OutputFile<T>(this Option<T> option)
    {
        AddRule(option, "a writable file path");
        option.Validators.Add(r =>
        {
            if (!Given(r, out T v) || PathOf(v) is not { } p) return;
            if (OutputFileProblem(p) is { } why) r.AddError($"{option.Name}: {why}");
        });
        return option;
    }

    /// <summary>The path must be a folder Rotor can create or write into: not a file, under a writable folder.</summary>
    public static Option<T> OutputFolder<T>(this Option<T> option)
    {
        AddRule(option, "a writable folder path");
        option.Validators.Add(r =>
        {
            if (!Given(r, out T v) || PathOf(v) is not { } p) return;
            if (OutputFolderProblem(p) is { } why) r.AddError($"{option.Name}: {why}");
        });
        return option;
    }

    private static string? PathOf<T>(T value) => value switch
    {
        string s => s,
        FileSystemInfo f => f.FullName,
        _ => null,
    };

    /// <summary>Why <paramref name="path"/> cannot be written as a file, or null when it can.</summary>
    public static string? OutputFileProblem(string path)
    {
        if (path.Length == 0) return "empty path";
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return $"{path}: {e.Message}"; }
        if (Directory.Exists(full)) return $"{path} is a folder, not a file";
        return FolderProblem(path, Path.GetDirectoryName(full));
    }

    /// <summary>Why <paramref name="path"/> cannot be made or written as a folder, or null when it can.</summary>
    public static string? OutputFolderProblem(string path)
    {
        if (path.Length == 0) return "empty path";
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return $"{path}: {e.Message}"; }
        if (File.Exists(full)) return $"{path} is a file, not a folder";
        return FolderProblem(path, Directory.Exists(full) ? full : Path.GetDirectoryName(full));
    }

    // The nearest existing folder at or above dir must be a folder (not a file) in which a file can be created.
    private static string? FolderProblem(string path, string? dir)
    {
        while (!string.IsNullOrEmpty(dir) && !Directory.Exists(dir))
        {
            if (File.Exists(dir)) return $"{path}: {dir} is a file, not a folder";
            dir = Path.GetDirectoryName(dir);
        }
        if (string.IsNullOrEmpty(dir)) return $"{path}: no existing folder above it";
        string probe = Path.Combine(dir, $".rotor-write-probe.{Environment.ProcessId}.{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{path}: cannot write in {dir} ({e.Message})";
        }
    }
}

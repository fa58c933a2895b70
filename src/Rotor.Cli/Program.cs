using System.CommandLine;
using Rotor.Cli.Commands;

namespace Rotor.Cli;

/// <summary>The <c>rotor</c> command: one file a command group under Commands/, registered here.</summary>
/// <remarks>
/// Error policy (docs/ERRORS.md): bad input of any kind (an option out of range or that does not parse, a missing,
/// unreadable, corrupt or unwritable file, an unsupported machine) prints one line <c>rotor: what and why</c> and exits
/// with 2; options are checked by the parser (<see cref="Validate"/>) before any work. Any other exception is a bug in
/// Rotor: one line naming it, a hint to rerun with <c>--verbose</c> (which prints the stack trace) and to report it,
/// and exit code 70 (EX_SOFTWARE). An interrupted command exits with 130.
/// </remarks>
public static class Program
{
    /// <summary>Exit code of bad input: a bad option, a missing or corrupt file, an unsupported machine.</summary>
    public const int BadInput = 2;
    /// <summary>Exit code of an unexpected exception, a bug in Rotor (EX_SOFTWARE of sysexits.h).</summary>
    public const int InternalError = 70;

    /// <summary>Prints the stack trace of an unexpected error; accepted by every command.</summary>
    internal static readonly Option<bool> Verbose = new("--verbose") { Description = "On an unexpected error, print its stack trace; print the thread count in force", Recursive = true };

    /// <summary>The command tree (also read by the tests that generate docs/OPTIONS.md).</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("Rotor: 2-bit ternary neural networks (BitNet b1.58 family) with retrieval, for .NET");
        root.Options.Add(Verbose);
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(IndexCommand.Create());
        root.Subcommands.Add(IngestCommand.Create());
        root.Subcommands.Add(SearchCommand.Create());
        root.Subcommands.Add(EvalCommand.Create(TrainCommands.CreateEval()));
        root.Subcommands.Add(CudaCommands.CreateSelftest());
        root.Subcommands.Add(CudaCommands.CreateBench());
        root.Subcommands.Add(TrainCommands.CreateTrain());
        root.Subcommands.Add(TrainCommands.CreatePredict());
        foreach (var c in LmCommands.All()) root.Subcommands.Add(c);
        root.Subcommands.Add(AskCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
#if !ROTOR_AOT
        root.Subcommands.Add(ClusterCommand.Create());
#endif
        return root;
    }

    /// <summary>Runs <c>rotor</c> with <paramref name="args"/>; returns the exit code.</summary>
    public static int Main(string[] args)
    {
        var root = BuildRoot();
        ParseResult parsed;
        try { parsed = root.Parse(args); }
        catch (Exception e) { return Report(e, args.Contains("--verbose"), Console.Error); }
        // Parse errors (unknown options, values that do not parse or break a rule of Validate) are bad input: one
        // line each, before any work. Help (-h) clears them and prints the help instead.
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"rotor: {e.Message}");
            Console.Error.WriteLine($"(see '{string.Join(' ', CommandPath(parsed))} --help')");
            return BadInput;
        }
        try
        {
            // Settings from the environment are input too: checked before the work, not when a kernel is first needed.
            // rotor info reports them instead, and help needs none. The thread count (--threads, else ROTOR_THREADS,
            // else every processor) is set for the whole process here, before any pool or loop is made.
            if (parsed.CommandResult.Command.Name != "info" && parsed.Action is not System.CommandLine.Help.HelpAction)
            {
                _ = Rotor.Kernels.KernelSelector.Current;
                int threads = Validate.ApplyThreads(parsed);
                if (parsed.GetValue(Verbose)) Console.Error.WriteLine($"rotor: threads {threads} (from {Rotor.Threading.ThreadCount.Source})");
            }
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Report(e, parsed.GetValue(Verbose), Console.Error);
        }
    }

    private static IEnumerable<string> CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var r = parsed.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Add(r.Command is RootCommand ? "rotor" : r.Command.Name);
        names.Reverse();
        return names;
    }

    /// <summary>Writes <paramref name="e"/> to <paramref name="error"/> by the error policy and returns the exit code:
    /// <see cref="BadInput"/> for bad input (one line), <see cref="InternalError"/> for a bug (one line and a hint), 130
    /// for an interruption. <paramref name="verbose"/> adds the stack trace.</summary>
    public static int Report(Exception e, bool verbose, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(e); ArgumentNullException.ThrowIfNull(error);
        if (e is OperationCanceledException) { error.WriteLine("rotor: interrupted"); return 130; }
        if (ErrorPolicy.Describe(e) is { } line)
        {
            error.WriteLine($"rotor: {line}");
            if (verbose) error.WriteLine(e);
            return BadInput;
        }
        error.WriteLine($"rotor: internal error: {e.GetType().FullName}: {OneLine(e.Message)}");
        if (verbose) error.WriteLine(e);
        else error.WriteLine("rotor: this is a bug in Rotor; run the command again with --verbose for the stack trace, and please report it");
        return InternalError;
    }

    internal static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}

using System.CommandLine;
using Rotor.Cli.Commands;

namespace Rotor.Cli;

/// <summary>The <c>rotor</c> command: one file a command group under Commands/, registered here.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Rotor: 2-bit ternary neural networks (BitNet b1.58 family) with retrieval, for .NET");
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
        try
        {
            // Rotor's own errors print one line (no stack trace) and exit 2.
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (RotorException e)
        {
            Console.Error.WriteLine($"rotor: {e.Message}");
            return 2;
        }
    }
}

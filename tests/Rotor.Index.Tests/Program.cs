namespace Rotor.Index.Tests;

/// <summary>
/// The entry point of the test assembly when it is run as a program (<c>dotnet Rotor.Index.Tests.dll save-loop PATH</c>):
/// the killed-save test starts it as a child process to kill. Under <c>dotnet test</c> the runner never calls it.
/// </summary>
public static class Program
{
    /// <summary>Dispatches to a child role; exit code 2 when there is none.</summary>
    public static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == SaveLoop.Command) return SaveLoop.Run(args[1]);
        Console.Error.WriteLine($"Rotor.Index.Tests: run with 'dotnet test', or '{SaveLoop.Command} PATH' (the killed-save test's child)");
        return 2;
    }
}

namespace Rotor.Cli.Commands;

/// <summary>
/// Runs a command action so that bad input ends with one line naming the problem (<c>rotor: ...</c>, exit code 2)
/// instead of System.CommandLine's default handler, which prints the stack trace of any exception.
/// </summary>
internal static class RagCommandErrors
{
    internal static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (RotorException e)
        {
            Console.Error.WriteLine($"rotor: {e.Message}");
            return 2;
        }
    }
}

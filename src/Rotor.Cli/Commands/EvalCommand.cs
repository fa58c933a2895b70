using System.CommandLine;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor eval</c>, a group of measurements on real data: <c>model</c> (a trained classifier's accuracy),
/// <c>retrieval</c>, <c>quality</c>, <c>latency</c> (<see cref="EvalRetrievalCommand"/>) and <c>embedding</c>
/// (<see cref="EvalEmbeddingCommand"/>) and <c>confidence</c> (<see cref="AskCommand.CreateEvalConfidence"/>). The group takes no argument of its own, so that each subcommand's usage reads
/// <c>rotor eval NAME [options]</c>.
/// </summary>
internal static class EvalCommand
{
    /// <param name="model">The model evaluation (MODEL --data DIR), registered as <c>eval model</c>.</param>
    internal static Command Create(Command model)
    {
        var eval = new Command("eval", "Measure on real data: a trained model's accuracy, retrieval quality, index codes, search latency, embedding throughput");
        eval.Subcommands.Add(model);
        eval.Subcommands.Add(EvalRetrievalCommand.Retrieval());
        eval.Subcommands.Add(EvalRetrievalCommand.Quality());
        eval.Subcommands.Add(EvalRetrievalCommand.Latency());
        eval.Subcommands.Add(EvalEmbeddingCommand.Create());
        eval.Subcommands.Add(AskCommand.CreateEvalConfidence());
        return eval;
    }
}

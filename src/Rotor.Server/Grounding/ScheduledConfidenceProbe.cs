using System.Diagnostics;
using Rotor.Lm;
using Rotor.Rag.Answers;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Grounding;

/// <summary>
/// The model rule's closed-book measurement (<see cref="ClosedBookConfidence"/>'s definition) run by a
/// <see cref="GenerationScheduler"/>: the closed-book prompt is submitted as a greedy request of K tokens whose logits,
/// row by row, feed a <see cref="ConfidenceAccumulator"/> on the decode thread before each token is chosen. So the
/// measurement joins the batch like any request, and the invariant holds that only the scheduler's decode thread runs
/// the model. It takes a slot and counts against the queue like a request (429 when the queue is full). Safe to call
/// concurrently: each call has its own accumulator, written by the decode thread only and read after the request ends.
/// </summary>
/// <param name="scheduler">The scheduler that decodes everything.</param>
/// <param name="builder">The prompt builder of the model's chat format (the closed-book prompt).</param>
/// <param name="tokens">Answer tokens measured (K, positive).</param>
public sealed class ScheduledConfidenceProbe(GenerationScheduler scheduler, GroundedPromptBuilder builder, int tokens) : IConfidenceProbe
{
    private readonly GenerationScheduler _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
    private readonly GroundedPromptBuilder _builder = builder ?? throw new ArgumentNullException(nameof(builder));

    /// <inheritdoc/>
    public int Tokens { get; } = tokens > 0 ? tokens : throw new RotorException($"confidence tokens {tokens} must be positive");

    /// <inheritdoc/>
    public async Task<ConfidenceMeasurement> MeasureAsync(string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(question);
        if (string.IsNullOrWhiteSpace(question)) throw new RotorException("the question is empty");
        var sw = Stopwatch.StartNew();
        var ids = _builder.Measure(_builder.ClosedBook(question)).Ids!;
        int context = _scheduler.Options.ContextLength;
        if (ids.Count + Tokens > context)
            throw new RotorException($"the closed-book prompt takes {ids.Count} tokens; with {Tokens} to measure it does not fit the context of {context}");
        var acc = new ConfidenceAccumulator();
        var options = new GenerationOptions { MaxTokens = Tokens, Sampling = SamplingOptions.Greedy };
        var stream = _scheduler.Submit(new GenerationRequest(ids, options, cancellationToken) { OnLogits = logits => acc.Add(logits) });
        var outcome = await stream.Completion.ConfigureAwait(false);
        switch (outcome.End)
        {
            case GenerationEnd.Cancelled: throw new OperationCanceledException("the confidence measurement was cancelled", cancellationToken);
            case GenerationEnd.TimedOut or GenerationEnd.Shutdown or GenerationEnd.Failed:
                var (status, e) = RotorServer.FailureOf(outcome);
                throw new ApiException(status, "the closed-book confidence measurement failed: " + e.Message, e.Type, null, e.Code);
        }
        // The ending token, when the model ends its answer first, is a measured step but not part of the text.
        var text = _scheduler.Model.Tokenizer is { } tok ? tok.Decode(outcome.Ids) : "";
        return acc.Result(text, sw.Elapsed.TotalMilliseconds);
    }
}

using System.Diagnostics;
using System.Globalization;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Pipeline;

namespace Rotor.Rag.Answers;

/// <summary>How sure a model is of its closed-book answer: the greedy answer's first tokens and, over them, the mean
/// probability of the chosen token and the mean entropy of the next-token distribution.</summary>
/// <param name="MeanMaxProbability">Mean over the measured steps of the largest next-token probability (0..1): the confidence.</param>
/// <param name="MeanEntropy">Mean over the measured steps of the next-token entropy, in nats (0 = certain; ln(vocab) = uniform).</param>
/// <param name="Steps">Steps measured: the first K tokens, fewer when the model ends its answer first (the ending token counts).</param>
/// <param name="Text">The closed-book answer's first tokens as text (not shown to the user; for reports).</param>
/// <param name="Milliseconds">Time the measurement took.</param>
public sealed record ConfidenceMeasurement(double MeanMaxProbability, double MeanEntropy, int Steps, string Text, double Milliseconds)
{
    /// <summary>"confidence 0.423 (mean top probability of 8 closed-book tokens; entropy 2.31 nats)".</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"confidence {MeanMaxProbability:F3} (mean top probability of {Steps} closed-book token{(Steps == 1 ? "" : "s")}; entropy {MeanEntropy:F2} nats)");
}

/// <summary>Measures a model's closed-book confidence on a question: <see cref="ClosedBookConfidence"/> on a session of
/// its own, or a server that decodes the same closed-book prompt among its batched requests (so that the model runs on
/// one thread only). A <see cref="GroundedAnswerer"/> given a probe calls it from concurrent
/// <see cref="GroundedAnswerer.PrepareAsync"/> calls, so such a probe must be safe to call concurrently.</summary>
public interface IConfidenceProbe
{
    /// <summary>Answer tokens measured (K).</summary>
    int Tokens { get; }

    /// <summary>Measures the model's confidence on <paramref name="question"/>: the greedy closed-book answer's first
    /// <see cref="Tokens"/> tokens (fewer when it ends first), as <see cref="ClosedBookConfidence"/> defines it.</summary>
    /// <exception cref="RotorException">The question is empty, or its prompt and K tokens do not fit the context.</exception>
    Task<ConfidenceMeasurement> MeasureAsync(string question, CancellationToken cancellationToken = default);
}

/// <summary>
/// The statistics of a closed-book measurement, step by step: each step's logits give the most likely token (the one
/// greedy decoding takes), its probability and the entropy of softmax(logits); the measurement is their means over
/// the steps. One pass over the logits, no scratch buffer. Shared by <see cref="ClosedBookConfidence"/> and callers
/// that decode by other means (a server's batched scheduler), so both compute the same numbers.
/// </summary>
public sealed class ConfidenceAccumulator
{
    private double _sumP, _sumH;

    /// <summary>Steps added.</summary>
    public int Steps { get; private set; }

    /// <summary>Adds one step: <c>p = max softmax(logits)</c>, <c>H = -sum softmax log softmax</c> (nats); returns the
    /// argmax (the lowest id among equal maxima, as <see cref="Sampler.ArgMax"/>).</summary>
    /// <exception cref="ArgumentException">The logits are empty.</exception>
    public int Add(ReadOnlySpan<float> logits)
    {
        var (best, p, h) = Stats(logits);
        _sumP += p; _sumH += h; Steps++;
        return best;
    }

    /// <summary>The measurement of the steps added, with the closed-book <paramref name="text"/> and the time taken.</summary>
    /// <exception cref="InvalidOperationException">No step was added.</exception>
    public ConfidenceMeasurement Result(string text, double milliseconds)
    {
        if (Steps == 0) throw new InvalidOperationException("no step was measured");
        return new ConfidenceMeasurement(_sumP / Steps, _sumH / Steps, Steps, text, milliseconds);
    }

    /// <summary>The argmax, its probability and the entropy (nats) of softmax(<paramref name="logits"/>). With
    /// <c>e_i = exp(l_i - max)</c> and <c>z = sum e_i</c>: <c>p_max = 1 / z</c> and
    /// <c>H = ln z - sum e_i (l_i - max) / z</c> (the same as <c>-sum p_i ln p_i</c>, in one pass).</summary>
    internal static (int Best, double P, double Entropy) Stats(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits", nameof(logits));
        int best = Sampler.ArgMax(logits);
        float max = logits[best];
        double z = 0, s = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float d = logits[i] - max;
            double e = MathF.Exp(d);
            if (e > 0) { z += e; s += e * d; }   // e = 0 (d = -inf, a masked token) adds nothing, not 0 * -inf
        }
        return (best, 1 / z, Math.Max(0, Math.Log(z) - s / z));
    }
}

/// <summary>
/// The model's own confidence, measured closed-book: the question alone is put to the model in its chat format
/// ("Answer the question briefly."), the first <see cref="Tokens"/> tokens of its answer are decoded greedily, and the
/// confidence is the mean, over those steps, of the probability of the most likely next token (the one taken). A model
/// that knows the answer puts most of the probability on its tokens; an unsure one spreads it. The entropy is reported
/// beside it (<see cref="ConfidenceAccumulator"/>). Implements <see cref="IModelConfidence"/>, so an
/// <see cref="AdaptivePolicy"/> can use it, and <see cref="IConfidenceProbe"/>. Not thread-safe (one session).
/// </summary>
public sealed class ClosedBookConfidence : IModelConfidence, IConfidenceProbe
{
    private readonly LanguageModel _model;
    private readonly GroundedPromptBuilder _builder;
    private InferenceSession? _session;

    /// <summary>A measurer for <paramref name="model"/> (which must have a tokenizer).</summary>
    /// <param name="model">The model.</param>
    /// <param name="tokens">Answer tokens measured (K, positive).</param>
    /// <param name="format">Chat format (null: the model's).</param>
    /// <param name="session">A session to run on (null: one of its own, 256 positions, made at the first measurement);
    /// it is reset by each measurement.</param>
    /// <exception cref="RotorException">The model has no tokenizer, or <paramref name="tokens"/> is not positive.</exception>
    public ClosedBookConfidence(LanguageModel model, int tokens = 8, ChatFormat? format = null, InferenceSession? session = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (tokens <= 0) throw new RotorException($"confidence tokens {tokens} must be positive");
        Tokens = tokens;
        _builder = new GroundedPromptBuilder(ChatTemplate.For(model.RequireTokenizer(), format));
        _session = session;
    }

    /// <summary>Answer tokens measured (K).</summary>
    public int Tokens { get; }

    /// <summary>Measures the model's confidence on <paramref name="question"/>.</summary>
    /// <exception cref="RotorException">The question is empty, or its prompt and K tokens do not fit the session's context.</exception>
    public ConfidenceMeasurement Measure(string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(question);
        if (string.IsNullOrWhiteSpace(question)) throw new RotorException("the question is empty");
        var sw = Stopwatch.StartNew();
        var tok = _model.RequireTokenizer();
        var session = _session ??= _model.CreateSession(Math.Min(_model.Config.ContextLength, 256));
        var (_, ids) = _builder.Measure(_builder.ClosedBook(question));
        if (ids!.Count + Tokens > session.ContextLength)
            throw new RotorException($"the closed-book prompt takes {ids.Count} tokens; with {Tokens} to measure it does not fit the context of {session.ContextLength}");
        ReadOnlySpan<float> logits = session.Continue(ids);
        var acc = new ConfidenceAccumulator();
        var answer = new List<int>();
        while (acc.Steps < Tokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int best = acc.Add(logits);
            if (tok.StopIds.Contains(best)) break;
            answer.Add(best);
            if (acc.Steps == Tokens) break;
            logits = session.Append([best]);
        }
        return acc.Result(tok.Decode(answer), sw.Elapsed.TotalMilliseconds);
    }

    /// <summary><see cref="Measure"/> (synchronously; not thread-safe: callers serialize, as <see cref="GroundedAnswerer"/> does).</summary>
    public Task<ConfidenceMeasurement> MeasureAsync(string question, CancellationToken cancellationToken = default)
        => Task.FromResult(Measure(question, cancellationToken));

    /// <inheritdoc/>
    public double? ConfidenceWithoutContext(string question) => Measure(question).MeanMaxProbability;
}

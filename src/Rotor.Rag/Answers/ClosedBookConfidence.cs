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

/// <summary>
/// The model's own confidence, measured closed-book: the question alone is put to the model in its chat format
/// ("Answer the question briefly."), the first <see cref="Tokens"/> tokens of its answer are decoded greedily, and the
/// confidence is the mean, over those steps, of the probability of the most likely next token (the one taken). A model
/// that knows the answer puts most of the probability on its tokens; an unsure one spreads it. The entropy is reported
/// beside it. Implements <see cref="IModelConfidence"/>, so an <see cref="AdaptivePolicy"/> can use it. Not thread-safe
/// (one session).
/// </summary>
public sealed class ClosedBookConfidence : IModelConfidence
{
    private readonly LanguageModel _model;
    private readonly GroundedPromptBuilder _builder;
    private readonly InferenceSession _session;

    /// <summary>A measurer for <paramref name="model"/> (which must have a tokenizer).</summary>
    /// <param name="model">The model.</param>
    /// <param name="tokens">Answer tokens measured (K, positive).</param>
    /// <param name="format">Chat format (null: the model's).</param>
    /// <param name="session">A session to run on (null: one of its own, 256 positions); it is reset by each measurement.</param>
    /// <exception cref="RotorException">The model has no tokenizer, or <paramref name="tokens"/> is not positive.</exception>
    public ClosedBookConfidence(LanguageModel model, int tokens = 8, ChatFormat? format = null, InferenceSession? session = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (tokens <= 0) throw new RotorException($"confidence tokens {tokens} must be positive");
        Tokens = tokens;
        _builder = new GroundedPromptBuilder(ChatTemplate.For(model.RequireTokenizer(), format));
        _session = session ?? model.CreateSession(Math.Min(model.Config.ContextLength, 256));
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
        var (_, ids) = _builder.Measure(_builder.ClosedBook(question));
        if (ids!.Count + Tokens > _session.ContextLength)
            throw new RotorException($"the closed-book prompt takes {ids.Count} tokens; with {Tokens} to measure it does not fit the context of {_session.ContextLength}");
        ReadOnlySpan<float> logits = _session.Continue(ids);
        var probs = new float[logits.Length];
        double sumP = 0, sumH = 0;
        int steps = 0;
        var answer = new List<int>();
        while (steps < Tokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (best, p, h) = Stats(logits, probs);
            sumP += p; sumH += h; steps++;
            if (tok.StopIds.Contains(best) || steps == Tokens) { if (!tok.StopIds.Contains(best)) answer.Add(best); break; }
            answer.Add(best);
            logits = _session.Append([best]);
        }
        return new ConfidenceMeasurement(sumP / steps, sumH / steps, steps, tok.Decode(answer), sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>The argmax, its probability and the entropy (nats) of softmax(<paramref name="logits"/>);
    /// <paramref name="probs"/> is scratch of the same length.</summary>
    internal static (int Best, double P, double Entropy) Stats(ReadOnlySpan<float> logits, Span<float> probs)
    {
        int best = Sampler.ArgMax(logits);
        float max = logits[best];
        double z = 0;
        for (int i = 0; i < logits.Length; i++) { float e = MathF.Exp(logits[i] - max); probs[i] = e; z += e; }
        double h = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double p = probs[i] / z;
            if (p > 0) h -= p * Math.Log(p);
        }
        return (best, 1 / z, h);
    }

    /// <inheritdoc/>
    public double? ConfidenceWithoutContext(string question) => Measure(question).MeanMaxProbability;
}

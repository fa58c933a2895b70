using System.Diagnostics;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm;

/// <summary>Options of one generation.</summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>How tokens are chosen.</summary>
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Texts that end the generation when they appear (not included in the output).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Also stop on the tokenizer's end-of-text and end-of-turn ids (default true).</summary>
    public bool StopOnEndTokens { get; init; } = true;
    /// <summary>Give each generated token's log-probability and this many most likely alternatives (0..20;
    /// <see cref="GeneratedToken.Logprobs"/>), or null for none. Tokens are then chosen from logits on the CPU.</summary>
    public int? Logprobs { get; init; }

    /// <summary>Checks the ranges.</summary>
    /// <exception cref="RotorException">A value is out of range (the message names it).</exception>
    public void Validate()
    {
        if (MaxTokens < 0) throw new RotorException($"max tokens {MaxTokens} must be 0 or more");
        if (Logprobs is < 0 or > TokenLogprobs.MaxTop) throw new RotorException($"logprobs {Logprobs} must be in 0..{TokenLogprobs.MaxTop}");
        Sampling.Validate();
    }
}

/// <summary>Why a generation ended.</summary>
public enum FinishReason
{
    /// <summary>An end token or a stop text.</summary>
    Stop = 0,
    /// <summary><see cref="GenerationOptions.MaxTokens"/> reached.</summary>
    Length = 1,
    /// <summary>The context is full.</summary>
    ContextFull = 2,
}

/// <summary>One generated token: its id and the text it completes (may be empty while a character or a possible stop
/// text is held back).</summary>
public readonly record struct GeneratedToken(int Id, string Text)
{
    /// <summary>The model's log-probabilities at this token where <see cref="GenerationOptions.Logprobs"/> asked for
    /// them, else null (and null on an item that only carries held-back text).</summary>
    public TokenLogprobs? Logprobs { get; init; }
}

/// <summary>What a generation did: the prompt and generated ids, the text, why it ended and its timings.</summary>
public sealed record GenerationResult(IReadOnlyList<int> PromptIds, IReadOnlyList<int> Ids, string Text, FinishReason Finish,
    TimeSpan PromptTime, TimeSpan GenerationTime, int CachedPromptTokens = 0)
{
    /// <summary>Prompt tokens run a second (those the session already held, <see cref="CachedPromptTokens"/>, not counted).</summary>
    public double PromptTokensPerSecond => (PromptIds.Count - CachedPromptTokens) / Math.Max(PromptTime.TotalSeconds, 1e-9);
    /// <summary>Generated tokens a second (the first token's decode included, its prefill not).</summary>
    public double TokensPerSecond => Ids.Count / Math.Max(GenerationTime.TotalSeconds, 1e-9);
}

/// <summary>
/// Generates text from a prompt on an <see cref="InferenceSession"/>: prefill of the prompt in batches, then one token
/// at a time, streamed as text; stops on end tokens, stop texts, the token budget, the context's end or cancellation.
/// On a GPU session whose sampling options the GPU takes (<see cref="InferenceSession.ChoosesOnDevice"/>) every token
/// after the first is chosen there and only its id comes back.
/// </summary>
public sealed class TextGenerator
{
    private readonly InferenceSession _session;

    /// <summary>A generator on <paramref name="session"/> (which keeps what came before: a chat continues it).</summary>
    public TextGenerator(InferenceSession session) => _session = session ?? throw new ArgumentNullException(nameof(session));

    /// <summary>The session.</summary>
    public InferenceSession Session => _session;

    /// <summary>The result of the last completed <see cref="Generate"/> enumeration.</summary>
    public GenerationResult? LastResult { get; private set; }

    /// <summary>Streams the tokens generated after <paramref name="promptIds"/>, the whole sequence so far: the
    /// session keeps the longest prefix it already holds (a chat's earlier turns) and runs the rest. Each item carries
    /// the text its token completes; an item with id -1 carries only text held back until the end.
    /// <see cref="LastResult"/> is set when the enumeration ends.</summary>
    /// <exception cref="RotorException">The prompt is empty or does not fit the context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (the session keeps what was decoded).</exception>
    public IEnumerable<GeneratedToken> Generate(IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds); ArgumentNullException.ThrowIfNull(options);
        if (promptIds.Count == 0) throw new RotorException("the prompt is empty: give at least one token");
        options.Validate();
        if (promptIds.Count >= _session.ContextLength)
            throw new RotorException($"the prompt has {promptIds.Count} tokens and the context {_session.ContextLength} positions: no room to generate; shorten the prompt or raise the context length");
        return Run(promptIds, options, cancellationToken);
    }

    private IEnumerable<GeneratedToken> Run(IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken ct)
    {
        LmTokenizer? tok = _session.Model.Tokenizer;
        var sampler = new Sampler(options.Sampling);
        var history = new List<int>(promptIds);
        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        var stream = tok is null ? null : new TokenTextStream(tok);
        stream?.Prime(promptIds[^1]);
        int emitted = 0;   // chars of text already handed out
        int holdBack = options.Stop.Count == 0 ? 0 : options.Stop.Max(s => s.Length) - 1;

        var sw = Stopwatch.StartNew();
        int cached = _session.KeptPrefix(promptIds);
        // One logits buffer and one id buffer for the whole generation: a token allocates nothing.
        float[] logits = _session.Continue(promptIds).ToArray();
        int[] one = new int[1];
        // On the GPU, where the options allow, each next token is chosen there (one id back instead of V logits); the
        // first comes from the prompt's logits here. The draws differ from the CPU sampler's (seed and position).
        bool onDevice = options.Logprobs is null && _session.ChoosesOnDevice(options.Sampling);
        ulong seed = options.Sampling.Seed is int given ? (ulong)(uint)given : (ulong)Random.Shared.NextInt64();
        TimeSpan promptTime = sw.Elapsed;
        sw.Restart();
        FinishReason finish = FinishReason.Length;
        bool cutByText = false;
        int chosen = -1;   // the next token where the GPU chose it
        while (ids.Count < options.MaxTokens)
        {
            ct.ThrowIfCancellationRequested();
            int next = chosen >= 0 ? chosen : sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            // Sample leaves the logits as the model gave them (a penalty works on a copy).
            var lp = options.Logprobs is int top ? TokenLogprobs.Compute(logits, next, top) : null;
            if (options.StopOnEndTokens && tok is not null && tok.StopIds.Contains(next)) { finish = FinishReason.Stop; break; }
            ids.Add(next); history.Add(next);
            if (stream is not null) text.Append(stream.Append(next));
            int cut = -1;
            foreach (string s in options.Stop)
            {
                int at = text.ToString().IndexOf(s, Math.Max(0, emitted - s.Length), StringComparison.Ordinal);
                if (at >= 0 && (cut < 0 || at < cut)) cut = at;
            }
            if (cut >= 0)
            {
                // A stop text ends the output where it begins.
                text.Length = Math.Max(cut, emitted);
                yield return new GeneratedToken(next, text.ToString(emitted, text.Length - emitted)) { Logprobs = lp };
                emitted = text.Length;
                finish = FinishReason.Stop; cutByText = true;
                break;
            }
            // Hand out all but a tail that could still become a stop text.
            int safe = Math.Max(emitted, text.Length - holdBack);
            yield return new GeneratedToken(next, text.ToString(emitted, safe - emitted)) { Logprobs = lp };
            emitted = safe;
            if (ids.Count == options.MaxTokens) break;
            if (_session.Position >= _session.ContextLength) { finish = FinishReason.ContextFull; break; }
            if (onDevice) { chosen = _session.AppendChoose(next, options.Sampling, seed); continue; }
            one[0] = next;
            _session.Append(one).CopyTo(logits);
        }
        if (!cutByText)
        {
            if (stream is not null) text.Append(stream.Flush());
            if (emitted < text.Length) yield return new GeneratedToken(-1, text.ToString(emitted, text.Length - emitted));
        }
        LastResult = new GenerationResult(promptIds.ToArray(), ids, text.ToString(), finish, promptTime, sw.Elapsed, cached);
    }

    /// <summary>Generates to the end and returns the whole result.</summary>
    public GenerationResult Complete(IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        foreach (var _ in Generate(promptIds, options, cancellationToken)) { }
        return LastResult!;
    }
}

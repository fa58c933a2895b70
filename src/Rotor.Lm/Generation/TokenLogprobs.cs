namespace Rotor.Lm;

/// <summary>A token and the natural log of its probability.</summary>
/// <param name="Id">Token id.</param>
/// <param name="Logprob">log p, of the model's distribution (the softmax of the raw logits: before temperature,
/// truncation or a repetition penalty).</param>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>The model's log-probabilities at one generated token: the chosen token's and the most likely ones'.</summary>
public sealed class TokenLogprobs
{
    /// <summary>Most alternatives <see cref="Compute"/> gives (OpenAI's top_logprobs limit).</summary>
    public const int MaxTop = 20;

    private TokenLogprobs(TokenLogprob chosen, TokenLogprob[] top) { Chosen = chosen; Top = top; }

    /// <summary>The chosen token.</summary>
    public TokenLogprob Chosen { get; }
    /// <summary>The most likely tokens, most likely first (ties: the lower id first).</summary>
    public IReadOnlyList<TokenLogprob> Top { get; }

    /// <summary>The log-softmax of <paramref name="logits"/> at <paramref name="chosen"/> and its
    /// <paramref name="top"/> largest entries (accumulated in double).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="top"/> is outside 0..<see cref="MaxTop"/> or
    /// <paramref name="chosen"/> outside the logits.</exception>
    public static TokenLogprobs Compute(ReadOnlySpan<float> logits, int chosen, int top)
    {
        if ((uint)top > MaxTop) throw new ArgumentOutOfRangeException(nameof(top), top, $"must be in 0..{MaxTop}");
        if ((uint)chosen >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(chosen), chosen, $"must be in 0..{logits.Length - 1}");
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        double lse = max + Math.Log(sum);
        top = Math.Min(top, logits.Length);
        // The top entries by insertion into a short sorted array: one pass, a compare per logit below the k-th.
        var best = new TokenLogprob[top];
        int filled = 0;
        for (int i = 0; i < logits.Length && top > 0; i++)
        {
            float l = logits[i];
            if (filled == top && l <= best[top - 1].Logprob) continue;
            int at = filled == top ? top - 1 : filled++;
            while (at > 0 && best[at - 1].Logprob < l) { best[at] = best[at - 1]; at--; }
            best[at] = new TokenLogprob(i, l);
        }
        for (int i = 0; i < top; i++) best[i] = best[i] with { Logprob = (float)(best[i].Logprob - lse) };
        return new TokenLogprobs(new TokenLogprob(chosen, (float)(logits[chosen] - lse)), best);
    }
}

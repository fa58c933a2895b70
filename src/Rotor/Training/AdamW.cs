using System.Runtime.Intrinsics;

using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter), as PyTorch's <c>torch.optim.AdamW</c>: for each value, at step t (from 1),
/// <code>
/// p -= lr * wd * p                      (decoupled weight decay; parameters with Decay only)
/// m  = b1 * m + (1 - b1) * g
/// v  = b2 * v + (1 - b2) * g^2
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
/// </code>
/// </summary>
public sealed class AdamW
{
    private readonly Parameter[] _params;
    private readonly (int Param, int Start, int Length)[] _chunks;   // work items of about 32K values
    private readonly UpdateJob _job;
    private readonly TrainContext? _context;

    /// <summary>An optimizer over <paramref name="parameters"/> with zeroed moments.</summary>
    /// <remarks>With a <paramref name="context"/>, updates are spread over its threads (the result is the same).</remarks>
    public AdamW(IReadOnlyList<Parameter> parameters, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f, float weightDecay = 0.01f, TrainContext? context = null)
    {
        _params = parameters.ToArray();
        _context = context;
        var chunks = new List<(int, int, int)>();
        for (int p = 0; p < _params.Length; p++)
            for (int s = 0; s < _params[p].Value.Length; s += 32768) chunks.Add((p, s, Math.Min(32768, _params[p].Value.Length - s)));
        _chunks = chunks.ToArray();
        _job = new UpdateJob(this);
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new RotorException($"AdamW betas ({beta1}, {beta2}) must be in [0, 1)");
        if (!(eps > 0) || !(weightDecay >= 0)) throw new RotorException($"AdamW eps {eps} must be positive and weight decay {weightDecay} non-negative");
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        M = _params.Select(p => new float[p.Value.Length]).ToArray();
        V = _params.Select(p => new float[p.Value.Length]).ToArray();
    }

    /// <summary>First-moment decay.</summary>
    public float Beta1 { get; }
    /// <summary>Second-moment decay.</summary>
    public float Beta2 { get; }
    /// <summary>Added to the root of the second moment.</summary>
    public float Eps { get; }
    /// <summary>Decoupled weight decay.</summary>
    public float WeightDecay { get; }
    /// <summary>Steps taken.</summary>
    public long Step { get; set; }
    /// <summary>First moments, one array a parameter.</summary>
    public float[][] M { get; }
    /// <summary>Second moments, one array a parameter.</summary>
    public float[][] V { get; }
    /// <summary>The parameters.</summary>
    public IReadOnlyList<Parameter> Parameters => _params;

    /// <summary>Applies one update with learning rate <paramref name="lr"/> from the parameters' gradients.</summary>
    public void Update(float lr)
    {
        Step++;
        _job.Lr = lr;
        _job.Bc1 = 1f - MathF.Pow(Beta1, Step);
        _job.Bc2 = 1f - MathF.Pow(Beta2, Step);
        if (_context is not null && _context.Threads > 1 && _chunks.Length > 1) _context.Pool.Run(_job, _chunks.Length);
        else for (int c = 0; c < _chunks.Length; c++) _job.Execute(c);
    }

    private sealed class UpdateJob(AdamW opt) : Threading.IParallelWork
    {
        public float Lr, Bc1, Bc2;

        public void Execute(int task)
        {
            var (pi, start, length) = opt._chunks[task];
            Parameter p = opt._params[pi];
            float beta1 = opt.Beta1, beta2 = opt.Beta2, eps = opt.Eps;
            float stepSize = Lr / Bc1, invSqrtBc2 = 1f / MathF.Sqrt(Bc2);
            float decay = p.Decay ? 1f - Lr * opt.WeightDecay : 1f;
            Span<float> w = p.Value.AsSpan(start, length), g = p.Grad.AsSpan(start, length), m = opt.M[pi].AsSpan(start, length), v = opt.V[pi].AsSpan(start, length);
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> b1 = Vector256.Create(beta1), b1c = Vector256.Create(1 - beta1), b2 = Vector256.Create(beta2), b2c = Vector256.Create(1 - beta2);
                Vector256<float> vd = Vector256.Create(decay), vs = Vector256.Create(stepSize), vib = Vector256.Create(invSqrtBc2), ve = Vector256.Create(eps);
                for (; i + 8 <= w.Length; i += 8)
                {
                    Vector256<float> gi = Vector256.Create(g.Slice(i, 8));
                    Vector256<float> mi = b1 * Vector256.Create(m.Slice(i, 8)) + b1c * gi;
                    Vector256<float> vi = b2 * Vector256.Create(v.Slice(i, 8)) + b2c * (gi * gi);
                    Vector256<float> wi = Vector256.Create(w.Slice(i, 8)) * vd;
                    wi -= vs * mi / (Vector256.Sqrt(vi) * vib + ve);
                    mi.CopyTo(m.Slice(i, 8)); vi.CopyTo(v.Slice(i, 8)); wi.CopyTo(w.Slice(i, 8));
                }
            }
            for (; i < w.Length; i++)
            {
                float gi = g[i];
                float mi = beta1 * m[i] + (1 - beta1) * gi;
                float vi = beta2 * v[i] + (1 - beta2) * (gi * gi);
                float wi = w[i] * decay;
                wi -= stepSize * mi / (MathF.Sqrt(vi) * invSqrtBc2 + eps);
                m[i] = mi; v[i] = vi; w[i] = wi;
            }
        }
    }
}

/// <summary>Learning rate: linear warm-up from base/warmup to base over <c>warmup</c> steps, then cosine decay to
/// <c>base * minFactor</c> at the last step.</summary>
/// <param name="BaseLr">Peak learning rate.</param>
/// <param name="WarmupSteps">Steps of linear warm-up.</param>
/// <param name="TotalSteps">Steps in the whole run.</param>
/// <param name="MinFactor">Final rate as a share of the peak.</param>
public readonly record struct LrSchedule(float BaseLr, long WarmupSteps, long TotalSteps, float MinFactor = 0f)
{
    /// <summary>The rate of step <paramref name="step"/> (from 0).</summary>
    public float At(long step)
    {
        if (step < WarmupSteps) return BaseLr * (step + 1) / WarmupSteps;
        long span = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        double min = BaseLr * MinFactor;
        return (float)(min + (BaseLr - min) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}

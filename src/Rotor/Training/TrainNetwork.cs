using System.Numerics.Tensors;

using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// Layers trained together: keeps every layer's input and output for a batch of up to <see cref="Capacity"/> rows,
/// the gradient of the loss with respect to the logits, and two ping-pong gradient buffers, all allocated once.
/// Forward, <see cref="Loss(ReadOnlySpan{byte}, int, float)"/> (softmax cross-entropy) and <see cref="Backward(int)"/> then allocate nothing.
/// </summary>
public sealed class TrainNetwork : IDisposable
{
    private readonly TrainLayer[] _layers;
    private readonly float[][] _acts;     // _acts[i] (B, layer i input); _acts[n] (B, Classes) logits
    private readonly float[] _g0, _g1;    // (B, widest layer) gradients
    private readonly float[] _dlogits;    // (B, Classes)
    private readonly bool _ownsContext;

    /// <summary>Builds a network over <paramref name="layers"/> for batches of up to <paramref name="capacity"/> rows.</summary>
    public TrainNetwork(IReadOnlyList<TrainLayer> layers, int capacity, TrainContext? context = null)
    {
        if (layers is null || layers.Count == 0) throw new ArgumentException("a network needs at least one layer", nameof(layers));
        for (int i = 1; i < layers.Count; i++)
            if (layers[i].InputSize != layers[i - 1].OutputSize)
                throw new RotorException($"layer {i} ({layers[i].Name}) takes {layers[i].InputSize} values, layer {i - 1} ({layers[i - 1].Name}) gives {layers[i - 1].OutputSize}");
        Check.Positive(capacity, nameof(capacity));
        _layers = layers.ToArray();
        _ownsContext = context is null;
        Context = context ?? new TrainContext(Kernels.CpuBackend.DefaultThreads());
        Capacity = capacity;
        _acts = new float[_layers.Length + 1][];
        _acts[0] = new float[(long)capacity * _layers[0].InputSize];
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].Bind(Context, capacity);
            _acts[i + 1] = new float[(long)capacity * _layers[i].OutputSize];
        }
        int widest = _layers.Max(l => Math.Max(l.InputSize, l.OutputSize));
        _g0 = new float[(long)capacity * widest]; _g1 = new float[(long)capacity * widest];
        _dlogits = new float[(long)capacity * Classes];
        var names = new List<Parameter>();
        for (int i = 0; i < _layers.Length; i++)
            foreach (Parameter p in _layers[i].Parameters)
            {
                if (!p.Name.StartsWith("layers.", StringComparison.Ordinal)) p.Name = $"layers.{i}.{p.Name}";
                names.Add(p);
            }
        Parameters = names;
    }

    /// <summary>The layers.</summary>
    public IReadOnlyList<TrainLayer> Layers => _layers;
    /// <summary>Every parameter, named <c>layers.{i}.{name}</c>.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>The threads and product.</summary>
    public TrainContext Context { get; }
    /// <summary>Largest batch.</summary>
    public int Capacity { get; }
    /// <summary>Values an input row.</summary>
    public int InputSize => _layers[0].InputSize;
    /// <summary>Logits a row.</summary>
    public int Classes => _layers[^1].OutputSize;
    /// <summary>The architecture.</summary>
    public IReadOnlyList<LayerSpec> Specs => _layers.Select(l => l.Spec).ToArray();
    /// <summary>Number of trainable values.</summary>
    public long ParameterCount => Parameters.Sum(p => (long)p.Value.Length);

    /// <summary>The input buffer (Capacity, InputSize): fill its first batch rows, then call <see cref="Forward(int, bool, ulong)"/>.</summary>
    public Span<float> Input => _acts[0];

    /// <summary>Runs the batch held in <see cref="Input"/>; returns the logits (B, Classes), valid until the next call.</summary>
    public ReadOnlySpan<float> Forward(int batch, bool training, ulong stepSeed = 0)
    {
        if (batch <= 0 || batch > Capacity) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be in 1..{Capacity}");
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].StepSeed = DropoutLayer.Mix(stepSeed * 1000003UL + (ulong)i);
            _layers[i].Forward(_acts[i], _acts[i + 1], batch, training);
        }
        return _acts[^1].AsSpan(0, batch * Classes);
    }

    /// <summary>Copies <paramref name="x"/> (B, InputSize) to the input and runs it.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> x, int batch, bool training, ulong stepSeed = 0)
    {
        if (x.Length != (long)batch * InputSize) throw new ArgumentException($"input has {x.Length} values, expected batch {batch} x {InputSize}");
        x.CopyTo(_acts[0]);
        return Forward(batch, training, stepSeed);
    }

    /// <summary>Mean softmax cross-entropy of the last forward pass against <paramref name="labels"/>, the number of rows
    /// whose largest logit is the label, and dLoss/dlogits = (softmax - onehot) / B kept for <see cref="Backward(int)"/>.</summary>
    /// <remarks>With <paramref name="smoothing"/> e the target is (1 - e) one-hot + e / classes.</remarks>
    public (double Loss, int Correct) Loss(ReadOnlySpan<byte> labels, int batch, float smoothing = 0f)
    {
        if (labels.Length < batch) throw new ArgumentException($"{labels.Length} labels for a batch of {batch}");
        int n = Classes;
        double loss = 0;
        int correct = 0;
        float invB = 1f / batch;
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> z = _acts[^1].AsSpan(b * n, n);
            Span<float> g = _dlogits.AsSpan(b * n, n);
            int label = labels[b];
            if (label >= n) throw new RotorException($"label {label} of batch row {b} is not below the {n} classes");
            if (TensorPrimitives.IndexOfMax(z) == label) correct++;
            float max = TensorPrimitives.Max(z);
            TensorPrimitives.Subtract(z, max, g);
            TensorPrimitives.Exp(g, g);
            float sum = TensorPrimitives.Sum(g);
            double logSum = Math.Log(sum);
            loss += (1 - smoothing) * (logSum - (z[label] - max));
            if (smoothing > 0)
            {
                // - sum_j (e / n) log p_j = e * (logSum - mean_j (z_j - max))
                loss += smoothing * (logSum - (TensorPrimitives.Sum(z) / n - max));
                TensorPrimitives.Multiply(g, invB / sum, g);
                TensorPrimitives.Subtract(g, smoothing * invB / n, g);
                g[label] -= (1 - smoothing) * invB;
            }
            else
            {
                TensorPrimitives.Multiply(g, invB / sum, g);
                g[label] -= invB;
            }
        }
        return (loss / batch, correct);
    }

    /// <summary>
    /// Knowledge distillation: <c>(1 - a) CE(labels, smoothing) + a T^2 KL(softmax(t / T) || softmax(z / T))</c> per row,
    /// averaged over the batch, with <c>t</c> = <paramref name="teacherLogits"/> (B, Classes) and <c>z</c> the logits of the
    /// last forward pass (Hinton et al. 2015; the T^2 keeps the soft term's gradient on the scale of the hard one).
    /// Keeps dLoss/dlogits = (1 - a) (softmax(z) - target) / B + a T (softmax(z / T) - softmax(t / T)) / B.
    /// </summary>
    public (double Loss, int Correct) Loss(ReadOnlySpan<byte> labels, int batch, float smoothing, ReadOnlySpan<float> teacherLogits, float alpha, float temperature)
    {
        int n = Classes;
        if (teacherLogits.Length < batch * n) throw new ArgumentException($"{teacherLogits.Length} teacher logits for a batch of {batch} x {n} classes", nameof(teacherLogits));
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "expected a share in [0, 1]");
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "expected a positive temperature");
        var (hard, correct) = Loss(labels, batch, smoothing);
        TensorPrimitives.Multiply(_dlogits.AsSpan(0, batch * n), 1 - alpha, _dlogits.AsSpan(0, batch * n));
        Span<float> ps = stackalloc float[n], pt = stackalloc float[n];
        float invT = 1f / temperature, coef = alpha * temperature / batch;
        double soft = 0;
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> z = _acts[^1].AsSpan(b * n, n), t = teacherLogits.Slice(b * n, n);
            double lse_s = LogSoftmax(z, invT, ps), lse_t = LogSoftmax(t, invT, pt);
            // KL(pt || ps) = sum pt (log pt - log ps); ps/pt hold the shifted, scaled logits, then the probabilities.
            double kl = 0;
            for (int j = 0; j < n; j++)
            {
                double lpt = pt[j] - lse_t, lps = ps[j] - lse_s, q = Math.Exp(lpt);
                kl += q * (lpt - lps);
                _dlogits[b * n + j] += coef * (float)(Math.Exp(lps) - q);
            }
            soft += kl;
        }
        return ((1 - alpha) * hard + alpha * temperature * temperature * soft / batch, correct);
    }

    // Writes (x - max) / T into dst and returns log(sum exp(dst)).
    private static double LogSoftmax(ReadOnlySpan<float> x, float invT, Span<float> dst)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, dst);
        TensorPrimitives.Multiply(dst, invT, dst);
        double sum = 0;
        foreach (float v in dst) sum += Math.Exp(v);
        return Math.Log(sum);
    }

    /// <summary>Back-propagates the gradient kept by <see cref="Loss(ReadOnlySpan{byte}, int, float)"/>; fills every parameter's gradient.</summary>
    public void Backward(int batch) => Backward(_dlogits.AsSpan(0, batch * Classes), batch);

    /// <summary>Back-propagates dLoss/dlogits = <paramref name="dlogits"/> (B, Classes).</summary>
    public void Backward(ReadOnlySpan<float> dlogits, int batch)
    {
        Span<float> dy = _g0.AsSpan(0, batch * Classes);
        dlogits[..(batch * Classes)].CopyTo(dy);
        bool inG0 = true;
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            TrainLayer l = _layers[i];
            Span<float> dx = i == 0 ? Span<float>.Empty : (inG0 ? _g1 : _g0).AsSpan(0, batch * l.InputSize);
            l.Backward(_acts[i].AsSpan(0, batch * l.InputSize), _acts[i + 1].AsSpan(0, batch * l.OutputSize), (inG0 ? _g0 : _g1).AsSpan(0, batch * l.OutputSize), dx, batch);
            inG0 = !inG0;
        }
    }

    /// <summary>Stops the worker threads if the network made its own context.</summary>
    public void Dispose()
    {
        if (_ownsContext) Context.Dispose();
    }
}

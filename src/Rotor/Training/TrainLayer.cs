using Rotor.Kernels;
using Rotor.Nn;
using Rotor.Threading;

namespace Rotor.Training;

// Legend for every layer file: B = batch, In/Out = features a row, H/W = image height/width, C = channels,
// O = output channels, k = kernel size. Images are NHWC: x[b, y, x, c] at ((b * H + y) * W + x) * C + c.

/// <summary>A trainable tensor: its value, the gradient of the last backward pass, and whether weight decay applies.</summary>
public sealed class Parameter
{
    /// <summary>Creates a zeroed parameter of <paramref name="shape"/>.</summary>
    public Parameter(string name, int[] shape, bool decay)
    {
        Name = name; Shape = shape; Decay = decay;
        long n = shape.Aggregate(1L, (a, d) => a * d);
        Value = new float[n]; Grad = new float[n];
    }

    /// <summary>Name within its layer ("weight", "bias", "gain"), made unique by the network ("layers.0.weight").</summary>
    public string Name { get; internal set; }
    /// <summary>Sizes, outermost first.</summary>
    public int[] Shape { get; }
    /// <summary>The latent full-precision values.</summary>
    public float[] Value { get; }
    /// <summary>dLoss/dValue of the last backward pass (overwritten by each pass).</summary>
    public float[] Grad { get; }
    /// <summary>Whether AdamW's decoupled weight decay applies (weights yes; biases and gains no).</summary>
    public bool Decay { get; }
}

/// <summary>Shared machinery of one network's training: the worker threads and the matrix product.</summary>
public sealed class TrainContext : IDisposable
{
    internal WorkerPool Pool { get; }
    internal Sgemm Gemm { get; }

    /// <summary>A context with <paramref name="threads"/> threads (the caller included).</summary>
    public TrainContext(int threads)
    {
        Check.Positive(threads, nameof(threads));
        Pool = new WorkerPool(threads);
        Gemm = new Sgemm(Pool);
    }

    /// <summary>Threads a product runs on.</summary>
    public int Threads => Pool.Threads;

    /// <summary>Stops the worker threads.</summary>
    public void Dispose() => Pool.Dispose();
}

/// <summary>
/// A layer with a forward and a backward pass over a batch of rows (B, In) -> (B, Out). The network keeps every
/// layer's input and output for the backward pass; the layer keeps whatever else it needs (quantized weights, masks),
/// in buffers sized once by <see cref="Bind"/>.
/// </summary>
public abstract class TrainLayer
{
    /// <summary>Features a row in.</summary>
    public abstract int InputSize { get; }
    /// <summary>Features a row out.</summary>
    public abstract int OutputSize { get; }
    /// <summary>Short description.</summary>
    public abstract string Name { get; }
    /// <summary>The architecture of this layer.</summary>
    public abstract LayerSpec Spec { get; }
    /// <summary>Trainable parameters (none by default).</summary>
    public virtual IReadOnlyList<Parameter> Parameters => [];

    /// <summary>The context the layer runs in, set by <see cref="Bind"/>.</summary>
    protected internal TrainContext? Context { get; private set; }
    /// <summary>Largest batch the buffers hold.</summary>
    protected int Capacity { get; private set; }

    /// <summary>Sets the context and sizes the buffers for batches of up to <paramref name="capacity"/> rows.</summary>
    public void Bind(TrainContext context, int capacity)
    {
        Context = context ?? throw new ArgumentNullException(nameof(context));
        Check.Positive(capacity, nameof(capacity));
        if (capacity > Capacity) { Capacity = capacity; Allocate(capacity); }
    }

    /// <summary>Allocates the layer's own buffers for <paramref name="capacity"/> rows.</summary>
    protected virtual void Allocate(int capacity) { }

    /// <summary>Seed of the current step for layers that draw random numbers (dropout); set by the network.</summary>
    public ulong StepSeed { get; set; }

    /// <summary>y (B, Out) = layer(x (B, In)); <paramref name="training"/> turns on dropout.</summary>
    public abstract void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training);

    /// <summary>Given the forward pass's x and y and dLoss/dy, writes dLoss/dx into <paramref name="dx"/> (skipped when
    /// it is empty: the first layer) and the parameters' gradients.</summary>
    public abstract void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch);

    /// <summary>Throws unless the layer is bound to a context and <paramref name="batch"/> fits.</summary>
    protected TrainContext Ready(int batch)
    {
        TrainContext c = Context ?? throw new InvalidOperationException($"{Name}: call Bind before Forward");
        if (batch <= 0 || batch > Capacity) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{Name}: batch must be in 1..{Capacity}");
        return c;
    }

    /// <summary>Builds a layer from its architecture.</summary>
    /// <exception cref="RotorException">Unknown type or bad arguments.</exception>
    public static TrainLayer FromSpec(LayerSpec s) => s.Type switch
    {
        "linear" => new TernaryLinearLayer(s.Int("in"), s.Int("out"), s.Int("bias") != 0, s.Int("ternary") != 0, s.Int("act_bits")),
        "relu" => new ReluLayer(s.Int("size")),
        "rmsnorm" => new RmsNormLayer(s.Int("size"), (float)s.Real("eps")),
        "dropout" => new DropoutLayer(s.Int("size"), (float)s.Real("p")),
        "conv2d" => new TernaryConv2dLayer(s.Int("c"), s.Int("h"), s.Int("w"), s.Int("o"), s.Int("k"), s.Int("pad"), s.Int("ternary") != 0, s.Int("act_bits")),
        "maxpool2d" => new MaxPool2dLayer(s.Int("c"), s.Int("h"), s.Int("w"), s.Int("k")),
        _ => throw new RotorException($"unknown layer type '{s.Type}' (known: linear, relu, rmsnorm, dropout, conv2d, maxpool2d)"),
    };
}

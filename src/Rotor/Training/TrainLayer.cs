using System.Globalization;
using System.Text;
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

/// <summary>The architecture of one layer: a type name and its integer or real arguments, stored in checkpoints and
/// deployable models as JSON (<c>{"type": "linear", "in": 784, ...}</c>).</summary>
/// <param name="Type">linear, relu, rmsnorm, dropout, conv2d, maxpool2d.</param>
/// <param name="Args">Arguments by name.</param>
public sealed record LayerSpec(string Type, IReadOnlyDictionary<string, double> Args)
{
    /// <summary>The integer argument <paramref name="key"/>.</summary>
    /// <exception cref="RotorException">Missing or not an integer.</exception>
    public int Int(string key)
    {
        if (!Args.TryGetValue(key, out double v)) throw new RotorException($"layer {Type}: missing argument '{key}'");
        if (v != Math.Floor(v) || v < int.MinValue || v > int.MaxValue) throw new RotorException($"layer {Type}: argument '{key}' = {v} is not an integer");
        return (int)v;
    }

    /// <summary>The real argument <paramref name="key"/>.</summary>
    public double Real(string key) =>
        Args.TryGetValue(key, out double v) ? v : throw new RotorException($"layer {Type}: missing argument '{key}'");

    /// <summary>A spec from alternating names and values.</summary>
    public static LayerSpec Of(string type, params (string Key, double Value)[] args) =>
        new(type, args.ToDictionary(a => a.Key, a => a.Value));

    /// <summary>The specs as a JSON array.</summary>
    public static string ToJson(IEnumerable<LayerSpec> specs)
    {
        var sb = new StringBuilder("[");
        bool first = true;
        foreach (var s in specs)
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append("{\"type\": \"").Append(s.Type).Append('"');
            foreach (var kv in s.Args.OrderBy(k => k.Key, StringComparer.Ordinal))
                sb.Append(", \"").Append(kv.Key).Append("\": ").Append(kv.Value.ToString("R", CultureInfo.InvariantCulture));
            sb.Append('}');
        }
        return sb.Append(']').ToString();
    }

    /// <summary>Parses a JSON array written by <see cref="ToJson"/>; <paramref name="where"/> names the source in errors.</summary>
    public static List<LayerSpec> ParseJson(string json, string where)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Array) throw new RotorException($"{where}: architecture is not a JSON array");
            var list = new List<LayerSpec>();
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                string? type = null;
                var args = new Dictionary<string, double>();
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name == "type") type = p.Value.GetString();
                    else if (p.Value.ValueKind == System.Text.Json.JsonValueKind.Number) args[p.Name] = p.Value.GetDouble();
                    else throw new RotorException($"{where}: layer {list.Count}: argument '{p.Name}' is not a number");
                }
                list.Add(new LayerSpec(type ?? throw new RotorException($"{where}: layer {list.Count} has no type"), args));
            }
            return list;
        }
        catch (System.Text.Json.JsonException e) { throw new RotorException($"{where}: architecture is not valid JSON: {e.Message}", e); }
        catch (InvalidOperationException e) { throw new RotorException($"{where}: architecture has a field of the wrong kind: {e.Message}", e); }
    }
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
        "linear" => new TernaryDense(s.Int("in"), s.Int("out"), s.Int("bias") != 0, s.Int("ternary") != 0, s.Int("act_bits")),
        "relu" => new ReluLayer(s.Int("size")),
        "rmsnorm" => new RmsNormLayer(s.Int("size"), (float)s.Real("eps")),
        "dropout" => new DropoutLayer(s.Int("size"), (float)s.Real("p")),
        "conv2d" => new TernaryConv2d(s.Int("c"), s.Int("h"), s.Int("w"), s.Int("o"), s.Int("k"), s.Int("pad"), s.Int("ternary") != 0, s.Int("act_bits")),
        "maxpool2d" => new MaxPool2dLayer(s.Int("c"), s.Int("h"), s.Int("w"), s.Int("k")),
        _ => throw new RotorException($"unknown layer type '{s.Type}' (known: linear, relu, rmsnorm, dropout, conv2d, maxpool2d)"),
    };
}

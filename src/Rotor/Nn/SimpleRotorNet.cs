namespace Rotor.Nn;

/// <summary>
/// The original design's network: input -> [TernaryLinear -> ReLU] x hiddenLayers -> TernaryLinear -> Softmax,
/// every linear layer ternary (absmean) with int8 activations.
/// </summary>
public sealed class SimpleRotorNet : Sequential
{
    /// <summary>Builds the network with random weights, deterministic for a seed.</summary>
    public SimpleRotorNet(int input, int hidden, int output, int hiddenLayers = 1, int seed = 42, Kernels.ITernaryBackend? backend = null)
        : base(Build(input, hidden, output, hiddenLayers, seed, backend))
    {
        Input = input; Hidden = hidden; Output = output; HiddenLayers = hiddenLayers;
    }

    private static ILayer[] Build(int input, int hidden, int output, int hiddenLayers, int seed, Kernels.ITernaryBackend? backend)
    {
        Check.Positive(input, nameof(input)); Check.Positive(hidden, nameof(hidden)); Check.Positive(output, nameof(output)); Check.Positive(hiddenLayers, nameof(hiddenLayers));
        var layers = new List<ILayer>();
        int width = input;
        for (int h = 0; h < hiddenLayers; h++)
        {
            layers.Add(TernaryLinear.Random(hidden, width, seed + h, bias: true, backend: backend));
            layers.Add(new ReLU(hidden));
            width = hidden;
        }
        layers.Add(TernaryLinear.Random(output, width, seed + hiddenLayers, bias: true, backend: backend));
        layers.Add(new Softmax(output));
        return layers.ToArray();
    }

    /// <summary>Input features.</summary>
    public int Input { get; }
    /// <summary>Hidden width.</summary>
    public int Hidden { get; }
    /// <summary>Classes.</summary>
    public int Output { get; }
    /// <summary>Hidden layers.</summary>
    public int HiddenLayers { get; }
    /// <inheritdoc/>
    public override string Name => $"SimpleRotorNet({Input}, {Hidden}x{HiddenLayers}, {Output})";

    /// <summary>The most probable class of each row.</summary>
    public int[] Predict(ReadOnlySpan<float> x, int batch)
    {
        var p = new int[batch];
        Predict(x, batch, p);
        return p;
    }

    /// <summary>The most probable class of each row into <paramref name="classes"/>.</summary>
    public void Predict(ReadOnlySpan<float> x, int batch, Span<int> classes)
    {
        Check.AtLeast(classes.Length, batch, nameof(classes));
        ReadOnlySpan<float> probs = Forward(x, batch);
        for (int b = 0; b < batch; b++)
            classes[b] = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probs.Slice(b * Output, Output));
    }

    /// <summary>Bytes the ternary layers take, and what the same weights take in float32 and float16.</summary>
    public (long Ternary, long Float32, long Float16) Memory()
    {
        var s = Stats();
        long weights = s.Sum(l => l.Weights);
        long biases = Layers.OfType<TernaryLinear>().Sum(l => (long)l.Bias.Length);
        return (s.Sum(l => l.Bytes), (weights + biases) * 4, (weights + biases) * 2);
    }
}

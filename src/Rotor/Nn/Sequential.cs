namespace Rotor.Nn;

/// <summary>Layers applied in order. Two ping-pong buffers of (capacity, widest layer) are kept and grown only when a
/// larger batch comes, so Forward allocates nothing in steady state.</summary>
public class Sequential : ILayer
{
    private readonly ILayer[] _layers;
    private float[] _a = [], _b = [];
    private int _capacity;

    /// <summary>Composes <paramref name="layers"/>; each layer's input size must equal the previous output size.</summary>
    public Sequential(params ILayer[] layers)
    {
        if (layers is null || layers.Length == 0) throw new ArgumentException("a Sequential needs at least one layer", nameof(layers));
        for (int i = 1; i < layers.Length; i++)
            if (layers[i].InputSize != layers[i - 1].OutputSize)
                throw new ArgumentException($"layer {i} ({layers[i].Name}) takes {layers[i].InputSize} features, layer {i - 1} ({layers[i - 1].Name}) gives {layers[i - 1].OutputSize}");
        _layers = layers;
    }

    /// <summary>The layers.</summary>
    public IReadOnlyList<ILayer> Layers => _layers;
    /// <inheritdoc/>
    public int InputSize => _layers[0].InputSize;
    /// <inheritdoc/>
    public int OutputSize => _layers[^1].OutputSize;
    /// <inheritdoc/>
    public virtual string Name => $"Sequential({string.Join(", ", _layers.Select(l => l.Name))})";

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        LayerChecks.Batch(this, x, y, batch);
        Forward(x, batch).CopyTo(y);
    }

    /// <summary>Runs the batch and returns a view of the output (B, Out), valid until the next call.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> x, int batch)
    {
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be positive");
        if (x.Length != (long)batch * InputSize) throw new ArgumentException($"{Name}: input has {x.Length} values, expected batch {batch} x {InputSize}");
        if (batch > _capacity)
        {
            int width = _layers.Max(l => l.OutputSize);
            _a = new float[(long)batch * width]; _b = new float[(long)batch * width];
            _capacity = batch;
        }
        ReadOnlySpan<float> cur = x;
        bool useA = true;
        foreach (ILayer l in _layers)
        {
            Span<float> dst = (useA ? _a : _b).AsSpan(0, batch * l.OutputSize);
            l.Forward(cur, dst, batch);
            cur = dst; useA = !useA;
        }
        return cur;
    }

    /// <summary>Statistics of every ternary layer.</summary>
    public IReadOnlyList<LayerStats> Stats() => _layers.OfType<TernaryLinear>().Select(l => l.Stats()).ToArray();
}

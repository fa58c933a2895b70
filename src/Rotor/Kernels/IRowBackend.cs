namespace Rotor.Kernels;

/// <summary>The activation of a gated feed-forward layer, <c>act(gate) * up</c>.</summary>
public enum GateActivation
{
    /// <summary><c>relu(g)^2</c> (BitNet b1.58).</summary>
    Relu2,
    /// <summary><c>g * sigmoid(g)</c> (Llama).</summary>
    Silu,
}

/// <summary>Row-wise steps of a batch of activation rows (norms, the gated activation, the int8 quantization) that a device spreads over its
/// threads. Each row is computed exactly as on one thread, so results do not depend on the thread count.</summary>
public interface IRowBackend
{
    /// <summary><c>y[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight</c> for the n rows of <paramref name="width"/>
    /// values; y may be x.</summary>
    void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, int n, int width, float eps);

    /// <summary><c>gate[j] = act(gate[j]) * up[j]</c> over the first <paramref name="count"/> values.</summary>
    void GatedActivation(Span<float> gate, ReadOnlySpan<float> up, int count, GateActivation act);

    /// <summary>The rows of <paramref name="x"/> quantized into <paramref name="q"/>, exactly as
    /// <see cref="QuantizedActivations.Quantize"/> does them (absmax int8 a row), the rows spread over
    /// the threads.</summary>
    /// <exception cref="RotorException">x holds a NaN or infinite value (the message names the first).</exception>
    void Quantize(ReadOnlySpan<float> x, QuantizedActivations q);
}

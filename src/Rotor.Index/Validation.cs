using System.Numerics.Tensors;

namespace Rotor.Index;

internal static class Validation
{
    /// <summary>Throws if any value is NaN or infinite, naming the first such index.</summary>
    public static void Finite(ReadOnlySpan<float> values, string name)
    {
        if (values.IsEmpty || float.IsFinite(TensorPrimitives.MaxMagnitude(values))) return;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new RotorException($"{name}[{i}] is {values[i]}: NaN and infinite values are not accepted");
    }
}

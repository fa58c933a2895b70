namespace Rotor;

/// <summary>Thrown when Rotor is given input that it cannot use: a bad shape, an invalid trit code, a non-finite
/// weight, a truncated or corrupt file. The message names what was wrong, with the expected and actual value.</summary>
public class RotorException : Exception
{
    /// <summary>Creates the exception with a message that names what was wrong.</summary>
    public RotorException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public RotorException(string message, Exception inner) : base(message, inner) { }

    /// <summary>Throws a <see cref="RotorException"/> naming <paramref name="name"/> and the first index when any of
    /// <paramref name="values"/> is NaN or infinite (one vectorized pass when all are finite).</summary>
    public static void ThrowIfNotFinite(ReadOnlySpan<float> values, string name) => Check.Finite(values, name);
}

/// <summary>Thrown when a packed ternary buffer holds the invalid code 11 (both bits set).</summary>
public sealed class InvalidTritException : RotorException
{
    /// <summary>Index of the first invalid trit.</summary>
    public long Position { get; }

    /// <summary>Creates the exception for the trit at <paramref name="position"/>.</summary>
    public InvalidTritException(long position, string? where = null)
        : base($"invalid trit code 0b11 at trit {position}{(where is null ? "" : " in " + where)} (valid codes: 00 = 0, 01 = +1, 10 = -1)")
        => Position = position;
}

/// <summary>Argument checks shared by every public entry point; each throws with the name, expected and actual value.</summary>
internal static class Check
{
    public static void Positive(long value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive, got {value}");
    }

    public static void NonNegative(long value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be non-negative, got {value}");
    }

    public static void Length(int actual, long expected, string name)
    {
        if (actual != expected) throw new ArgumentException($"{name} has length {actual}, expected {expected}", name);
    }

    public static void AtLeast(int actual, long expected, string name)
    {
        if (actual < expected) throw new ArgumentException($"{name} is too short: length {actual}, need at least {expected}", name);
    }

    public static void Shape(string what, string expected, string actual)
    {
        if (expected != actual) throw new ArgumentException($"shape mismatch for {what}: expected {expected}, got {actual}");
    }

    /// <summary>Throws if any value is NaN or infinite, naming the first such index.</summary>
    public static void Finite(ReadOnlySpan<float> values, string name)
    {
        if (values.IsEmpty) return;
        // MaxMagnitude propagates NaN and returns Inf when present: one vectorized pass in the common case.
        float m = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(values);
        if (float.IsFinite(m)) return;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new RotorException($"{name}[{i}] is {values[i]}: NaN and infinite values are not accepted");
    }
}

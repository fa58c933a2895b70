using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Rotor.Index;

/// <summary>
/// The byte layout of one vector's code and how a float vector becomes one. W = ceil(D / 64).
/// <code>
/// Float32  D floats                                        4 D bytes
/// Int8     D sbytes in [-127, 127], x ~ scale * q          D bytes      scale = max|x| / 127
/// Ternary  W words of the non-zero mask, then W of signs    16 W bytes   scale = mean |x| over kept (TWN)
///          (sign bit set = -1, only where the mask bit is set)
/// Binary   W words, bit j set where x[j] &gt; 0              8 W bytes    scale = mean |x|
/// </code>
/// Bits past D are zero. The per-vector scale is stored beside the code (see <see cref="CodeStore"/>), so that the
/// approximate dot product of two vectors is <c>scale_a * scale_b * raw(a, b)</c>, raw being the integer score of
/// the codes (<see cref="ScanKernels"/>).
/// </summary>
internal sealed class CodeLayout
{
    public CodeLayout(CodeKind kind, int dimensions)
    {
        Kind = kind; Dimensions = dimensions; Words = (dimensions + 63) / 64;
        Bytes = kind switch
        {
            CodeKind.Float32 => 4 * dimensions,
            CodeKind.Int8 => dimensions,
            CodeKind.Ternary => 16 * Words,
            CodeKind.Binary => 8 * Words,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown code kind"),
        };
    }

    public CodeKind Kind { get; }
    public int Dimensions { get; }
    /// <summary>64-bit words a bit plane.</summary>
    public int Words { get; }
    /// <summary>Bytes of one code.</summary>
    public int Bytes { get; }

    /// <summary>Encodes <paramref name="v"/> (already normalized for cosine) into <paramref name="code"/>
    /// (<see cref="Bytes"/> long, overwritten) and returns the scale.</summary>
    public float Encode(ReadOnlySpan<float> v, Span<byte> code)
    {
        code.Clear();
        switch (Kind)
        {
            case CodeKind.Float32:
                MemoryMarshal.AsBytes(v).CopyTo(code);
                return 1f;
            case CodeKind.Int8:
            {
                float amax = TensorPrimitives.MaxMagnitude(v);
                if (amax == 0) return 0f;
                float scale = amax / 127f, inv = 127f / amax;
                var q = MemoryMarshal.Cast<byte, sbyte>(code);
                for (int j = 0; j < v.Length; j++) q[j] = (sbyte)Math.Clamp(MathF.Round(v[j] * inv), -127f, 127f);
                return scale;
            }
            case CodeKind.Ternary:
            {
                Span<sbyte> trits = v.Length <= 4096 ? stackalloc sbyte[v.Length] : new sbyte[v.Length];
                float scale = TernaryQuantizer.Threshold(v, trits);
                var words = MemoryMarshal.Cast<byte, ulong>(code);
                for (int j = 0; j < trits.Length; j++)
                {
                    if (trits[j] != 0) words[j >> 6] |= 1UL << (j & 63);
                    if (trits[j] < 0) words[Words + (j >> 6)] |= 1UL << (j & 63);
                }
                return scale;
            }
            case CodeKind.Binary:
            {
                var words = MemoryMarshal.Cast<byte, ulong>(code);
                for (int j = 0; j < v.Length; j++)
                    if (v[j] > 0) words[j >> 6] |= 1UL << (j & 63);
                return TensorPrimitives.SumOfMagnitudes(v) / v.Length;
            }
            default: throw new InvalidOperationException();
        }
    }

    /// <summary>The vector a code stands for: <c>scale * code</c> (exact for Float32).</summary>
    public void Decode(ReadOnlySpan<byte> code, float scale, Span<float> v)
    {
        switch (Kind)
        {
            case CodeKind.Float32: MemoryMarshal.Cast<byte, float>(code)[..Dimensions].CopyTo(v); break;
            case CodeKind.Int8:
            {
                var q = MemoryMarshal.Cast<byte, sbyte>(code);
                for (int j = 0; j < Dimensions; j++) v[j] = scale * q[j];
                break;
            }
            case CodeKind.Ternary:
            {
                var w = MemoryMarshal.Cast<byte, ulong>(code);
                for (int j = 0; j < Dimensions; j++)
                {
                    int nonZero = (int)(w[j >> 6] >> (j & 63) & 1), negative = (int)(w[Words + (j >> 6)] >> (j & 63) & 1);
                    v[j] = scale * nonZero * (1 - 2 * negative);
                }
                break;
            }
            case CodeKind.Binary:
            {
                var w = MemoryMarshal.Cast<byte, ulong>(code);
                for (int j = 0; j < Dimensions; j++) v[j] = (w[j >> 6] >> (j & 63) & 1) != 0 ? scale : -scale;
                break;
            }
        }
    }

    /// <summary>Reference raw score of two codes, on decoded values: the oracle of <see cref="ScanKernels"/>.</summary>
    public float RawReference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        switch (Kind)
        {
            case CodeKind.Float32:
            {
                var x = MemoryMarshal.Cast<byte, float>(a); var y = MemoryMarshal.Cast<byte, float>(b);
                double s = 0;
                for (int j = 0; j < Dimensions; j++) s += (double)x[j] * y[j];
                return (float)s;
            }
            case CodeKind.Int8:
            {
                var x = MemoryMarshal.Cast<byte, sbyte>(a); var y = MemoryMarshal.Cast<byte, sbyte>(b);
                int s = 0;
                for (int j = 0; j < Dimensions; j++) s += x[j] * y[j];
                return s;
            }
            default:
            {
                Span<float> x = new float[Dimensions], y = new float[Dimensions];
                Decode(a, 1f, x); Decode(b, 1f, y);
                int s = 0;
                for (int j = 0; j < Dimensions; j++) s += (int)x[j] * (int)y[j];
                return s;
            }
        }
    }
}

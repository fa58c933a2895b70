using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>
/// A batch of activation rows (m x k) quantized to int8 by per-row absmax, laid out for the ternary kernels:
/// each row padded with zeros to <see cref="PaddedCols"/> (a multiple of 256) in a 64-byte aligned buffer.
/// <c>x[i, j] ~ Scales[i] * Data[i, j]</c> with <c>Scales[i] = max_j |x[i, j]| / 127</c> and
/// <c>Data[i, j] = clamp(round(x[i, j] / Scales[i]), -127, 127)</c> (round half to even); <see cref="Sums"/>[i] is the
/// sum of row i's int8 values, which the kernels need for their w + 1 codes. Allocate once, reuse for every call.
/// </summary>
public sealed unsafe class QuantizedActivations
{
    private readonly AlignedArray<sbyte> _data;
    private readonly float[] _scales;
    private readonly int[] _sums;

    /// <summary>Creates buffers for up to <paramref name="capacityRows"/> rows of <paramref name="cols"/> values.</summary>
    public QuantizedActivations(int capacityRows, int cols)
    {
        Check.Positive(capacityRows, nameof(capacityRows)); Check.Positive(cols, nameof(cols));
        Capacity = capacityRows; Cols = cols;
        PaddedCols = (cols + TernaryMatrix.BlockCols - 1) / TernaryMatrix.BlockCols * TernaryMatrix.BlockCols;
        _data = new AlignedArray<sbyte>((long)capacityRows * PaddedCols);
        _scales = new float[capacityRows];
        _sums = new int[capacityRows];
    }

    /// <summary>Rows the buffers hold at most.</summary>
    public int Capacity { get; }
    /// <summary>Rows currently quantized.</summary>
    public int Count { get; private set; }
    /// <summary>Values a row.</summary>
    public int Cols { get; }
    /// <summary>Cols rounded up to a multiple of 256.</summary>
    public int PaddedCols { get; }
    /// <summary>Per-row scales.</summary>
    public ReadOnlySpan<float> Scales => _scales.AsSpan(0, Count);
    /// <summary>Per-row sums of the int8 values.</summary>
    public ReadOnlySpan<int> Sums => _sums.AsSpan(0, Count);
    /// <summary>The int8 values, Count rows of PaddedCols.</summary>
    public ReadOnlySpan<sbyte> Data => _data.Span[..(Count * PaddedCols)];
    internal sbyte* DataPointer => _data.Pointer;
    internal float[] ScaleArray => _scales;
    internal int[] SumArray => _sums;

    /// <summary>Quantizes <paramref name="x"/> (m rows of <see cref="Cols"/>) into these buffers.</summary>
    /// <exception cref="ArgumentException">x is not a whole number of rows, or more rows than the capacity.</exception>
    /// <exception cref="RotorException">x holds NaN or infinity.</exception>
    public void Quantize(ReadOnlySpan<float> x)
    {
        int m = RowsOf(x);
        if (!QuantizeRows(x, 0, m)) Check.Finite(x, nameof(x));
        Count = m;
    }

    /// <summary>The rows of x, checked against the row length and the capacity.</summary>
    internal int RowsOf(ReadOnlySpan<float> x)
    {
        if (x.Length % Cols != 0) throw new ArgumentException($"x has {x.Length} values, not a multiple of the row length {Cols}", nameof(x));
        int m = x.Length / Cols;
        if (m > Capacity) throw new ArgumentException($"x has {m} rows, the buffers hold at most {Capacity}", nameof(x));
        if (m == 0) throw new ArgumentException("x is empty", nameof(x));
        return m;
    }

    /// <summary>Quantizes rows [r0, r1) of x (rows of different calls are independent, so threads may take
    /// disjoint ranges); false when a row holds a NaN or infinite value (its scale is then not finite), which the
    /// caller reports with <see cref="Check.Finite"/>. Count is the caller's to set.</summary>
    internal bool QuantizeRows(ReadOnlySpan<float> x, int r0, int r1)
    {
        Span<sbyte> all = _data.Span;
        bool finite = true;
        for (int i = r0; i < r1; i++)
        {
            Span<sbyte> row = all.Slice(i * PaddedCols, PaddedCols);
            (_scales[i], _sums[i]) = QuantizeRow(x.Slice(i * Cols, Cols), row);
            finite &= float.IsFinite(_scales[i]);
        }
        return finite;
    }

    /// <summary>Sets the rows quantized by <see cref="QuantizeRows"/>.</summary>
    internal void SetCount(int m) => Count = m;

    /// <summary>Sets already-quantized rows (for tests and integer pipelines): <c>Data[i, j] = q[i * Cols + j]</c>.</summary>
    public void SetQuantized(ReadOnlySpan<sbyte> q, ReadOnlySpan<float> scales)
    {
        if (q.Length % Cols != 0 || q.Length / Cols != scales.Length)
            throw new ArgumentException($"q has {q.Length} values and scales {scales.Length}: expected scales.Length * {Cols} values");
        int m = scales.Length;
        if (m > Capacity || m == 0) throw new ArgumentException($"{m} rows, the buffers hold 1 to {Capacity}");
        Count = m;
        Span<sbyte> all = _data.Span;
        for (int i = 0; i < m; i++)
        {
            Span<sbyte> row = all.Slice(i * PaddedCols, PaddedCols);
            row.Clear();
            int sum = 0;
            for (int j = 0; j < Cols; j++)
            {
                sbyte v = q[i * Cols + j];
                if (v == sbyte.MinValue) throw new ArgumentException($"q[{i * Cols + j}] = -128: activations are in [-127, 127]");
                row[j] = v; sum += v;
            }
            _sums[i] = sum;
            _scales[i] = scales[i];
        }
    }

    /// <summary>absmax-quantizes one row into <paramref name="q"/> (its padding is zeroed); returns its scale and int8 sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (float Scale, int Sum) QuantizeRow(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float amax = TensorPrimitives.MaxMagnitude(x);
        amax = MathF.Abs(amax);
        q.Slice(x.Length).Clear();
        if (amax == 0f) { q[..x.Length].Clear(); return (0f, 0); }
        float inv = 127f / amax;
        int sum = 0, j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> vinv = Vector256.Create(inv);
            Vector256<int> vsum = Vector256<int>.Zero;
            for (; j + 16 <= x.Length; j += 16)
            {
                Vector256<int> a = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(j, 8)) * vinv));
                Vector256<int> b = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(j + 8, 8)) * vinv));
                a = Vector256.Clamp(a, Vector256.Create(-127), Vector256.Create(127));
                b = Vector256.Clamp(b, Vector256.Create(-127), Vector256.Create(127));
                vsum += a + b;
                Vector256<short> s = Vector256.Narrow(a, b);
                Vector128<sbyte> n = Vector128.Narrow(s.GetLower(), s.GetUpper());
                n.CopyTo(q.Slice(j, 16));
            }
            sum = Vector256.Sum(vsum);
        }
        for (; j < x.Length; j++)
        {
            int v = (int)Math.Clamp(MathF.Round(x[j] * inv), -127f, 127f);
            q[j] = (sbyte)v; sum += v;
        }
        return (amax / 127f, sum);
    }
}

using System.Runtime.Intrinsics;

namespace Rotor;

public sealed partial class TernaryMatrix
{
    /// <summary>
    /// Builds a matrix from rows already in the compute layout <see cref="TernaryFormat.I2_256"/> (see the class
    /// remarks): <paramref name="fill"/> writes row r's <see cref="RowBytes"/> bytes into the span it is given, codes
    /// w + 1 in 0..2; the span starts as code 1 everywhere (w = 0), so bytes it leaves alone are zero weights. Every byte is checked for the invalid code 3 afterwards. This is how
    /// loaders convert other 2-bit layouts (GGUF TQ2_0, I2_S) a row at a time without a trit array.
    /// </summary>
    /// <exception cref="RotorException">A row holds code 3 (the message names <paramref name="where"/> and the row).</exception>
    public static TernaryMatrix FromPackedRows(int rows, int cols, ReadOnlySpan<float> scales, RowFiller fill, string where = "tensor")
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols));
        ArgumentNullException.ThrowIfNull(fill);
        if (scales.Length != 1 && scales.Length != rows)
            throw new ArgumentException($"scales has length {scales.Length}, expected 1 (per tensor) or {rows} (per row)", nameof(scales));
        Check.Finite(scales, nameof(scales));
        var m = new TernaryMatrix(rows, cols, scales.Length == 1 ? ScaleMode.PerTensor : ScaleMode.PerRow);
        scales.CopyTo(m._scales);
        for (int r = 0; r < rows; r++)
        {
            Span<byte> row = m._data!.Span.Slice(r * m.RowBytes, m.RowBytes);
            row.Fill(0x55);   // code 1 (w = 0) in every pair, padding included: a filler need not write the padding
            fill(r, row);
            if (HasCode3(row)) throw new RotorException($"{where}: row {r} holds the invalid 2-bit code 3");
        }
        return m;
    }

    /// <summary>Writes the packed bytes of one row (see <see cref="FromPackedRows"/>).</summary>
    public delegate void RowFiller(int row, Span<byte> packedRow);

    /// <summary>Whether any 2-bit field of <paramref name="b"/> is 3 (both bits set).</summary>
    // Jitted fully optimized on its first call: a load checks hundreds of thousands of rows within a fraction of a
    // second, mostly before tiered compilation would replace the unoptimized first code, in which every vector
    // operation is a call.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe bool HasCode3(ReadOnlySpan<byte> b)
    {
        // A load checks every weight of a model once: four vectors a step, one test at the end.
        int i = 0;
        fixed (byte* p = b)
        {
            if (Vector256.IsHardwareAccelerated && b.Length >= 128)
            {
                Vector256<byte> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 128 <= b.Length; i += 128)
                {
                    var v0 = Vector256.Load(p + i); var v1 = Vector256.Load(p + i + 32);
                    var v2 = Vector256.Load(p + i + 64); var v3 = Vector256.Load(p + i + 96);
                    a0 |= v0 & Vector256.ShiftRightLogical(v0, 1); a1 |= v1 & Vector256.ShiftRightLogical(v1, 1);
                    a2 |= v2 & Vector256.ShiftRightLogical(v2, 1); a3 |= v3 & Vector256.ShiftRightLogical(v3, 1);
                }
                if (((a0 | a1 | a2 | a3) & Vector256.Create((byte)0x55)) != Vector256<byte>.Zero) return true;
            }
            if (Vector128.IsHardwareAccelerated)
            {
                var acc = Vector128<byte>.Zero;
                for (; i + 16 <= b.Length; i += 16)
                {
                    var v = Vector128.Load(p + i);
                    acc |= v & Vector128.ShiftRightLogical(v, 1);
                }
                if ((acc & Vector128.Create((byte)0x55)) != Vector128<byte>.Zero) return true;
            }
        }
        for (; i < b.Length; i++) if ((b[i] & (b[i] >> 1) & 0x55) != 0) return true;
        return false;
    }
}

using System.Buffers.Binary;

namespace Rotor.Lm.Gguf;

/// <summary>
/// Reads GGUF tensors as floats or as Rotor ternary matrices. A tensor of ggml shape <c>[ne0, ne1, ...]</c> is
/// <c>rows = ne1 * ne2 * ...</c> rows of <c>ne0</c> weights, row-major. Errors name the file and the tensor.
/// </summary>
public static class GgufTensors
{
    /// <summary>Every weight of <paramref name="t"/> as f32, row-major <c>[rows, rowLen]</c>
    /// (<c>dst[r * rowLen + c] = scale * q</c>, as ggml's <c>to_float</c>).</summary>
    /// <param name="f">The file.</param>
    /// <param name="t">One of its tensors.</param>
    /// <param name="layout">For I2_S: which bitnet.cpp build wrote the file (the file does not say).</param>
    /// <exception cref="RotorException">The type cannot be decoded, the tensor is too large for one array, or its data
    /// is invalid.</exception>
    public static float[] ReadFloats(GgufFile f, GgufTensorInfo t, I2SLayout layout = I2SLayout.X86)
    {
        ArgumentNullException.ThrowIfNull(f); ArgumentNullException.ThrowIfNull(t);
        long n = t.Elements;
        if (n > Array.MaxLength) throw Error(f, t, $"{n} weights do not fit one array");
        var dst = new float[n];
        Decode(f, t, 0, dst, layout);
        return dst;
    }

    /// <summary>Row <paramref name="row"/> of <paramref name="t"/> as f32 into the first <c>Dims[0]</c> floats of
    /// <paramref name="dst"/> (an embedding lookup).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The row is outside the tensor.</exception>
    /// <exception cref="ArgumentException"><paramref name="dst"/> is shorter than a row.</exception>
    /// <exception cref="RotorException">The type cannot be decoded or the data is invalid.</exception>
    public static void ReadRow(GgufFile f, GgufTensorInfo t, long row, Span<float> dst, I2SLayout layout = I2SLayout.X86)
    {
        ArgumentNullException.ThrowIfNull(f); ArgumentNullException.ThrowIfNull(t);
        if (row < 0 || row >= t.Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"{t.Name} has {t.Rows} rows");
        if (dst.Length < t.RowLength) throw new ArgumentException($"dst holds {dst.Length} floats, a row of {t.Name} has {t.RowLength}", nameof(dst));
        Decode(f, t, row * t.RowLength, dst.Slice(0, (int)t.RowLength), layout);
    }

    /// <summary>Decodes weights <paramref name="start"/>.. (a row boundary) of <paramref name="t"/> into dst.</summary>
    private static void Decode(GgufFile f, GgufTensorInfo t, long start, Span<float> dst, I2SLayout layout)
    {
        GgmlTypeTraits tr = t.Traits;
        ReadOnlySpan<byte> data = f.GetData(t);
        if (t.Type == GgmlType.I2_S)
        {
            var trits = new sbyte[dst.Length];
            float s = I2STrits(f, t, data, start, trits, layout);
            for (int i = 0; i < dst.Length; i++) dst[i] = trits[i] * s;
            return;
        }
        if (tr.ToFloat is null) throw Error(f, t, $"Rotor cannot decode {tr.Name} weights");
        long at = tr.RowSize(start);
        const int Chunk = 1 << 20; // decode in pieces so spans stay int-sized and every piece is whole blocks
        int chunk = Chunk / tr.BlockSize * tr.BlockSize;
        for (int i = 0; i < dst.Length; i += chunk)
        {
            int k = Math.Min(chunk, dst.Length - i);
            long from = at + tr.RowSize(i);
            tr.ToFloat(data.Slice((int)from, (int)tr.RowSize(k)), dst.Slice(i, k));
        }
    }

    /// <summary>Trits of I2_S weights <paramref name="start"/>..+dst.Length and the tensor's scale. Blocks run over the
    /// flattened tensor, so a row need not start at a block.</summary>
    private static float I2STrits(GgufFile f, GgufTensorInfo t, ReadOnlySpan<byte> data, long start, Span<sbyte> dst, I2SLayout layout)
    {
        long n = t.Elements;
        int qk = GgmlQuants.I2SBlock(layout);
        if (n % qk != 0) throw Error(f, t, $"{n} weights are not whole I2_S blocks of {qk} in the {layout} layout");
        float scale = BinaryPrimitives.ReadSingleLittleEndian(data.Slice((int)(n / 4)));
        if (!float.IsFinite(scale)) throw Error(f, t, $"the I2_S scale at byte {t.Offset + n / 4} is {scale}");
        long first = start / qk * qk, end = (start + dst.Length + qk - 1) / qk * qk;
        Span<sbyte> all = first == start && end == start + dst.Length ? dst : new sbyte[end - first];
        int bad = GgmlQuants.TritsI2S(data.Slice((int)(first / 4), (int)((end - first) / 4)), all, layout);
        if (bad >= 0) throw Error(f, t, $"I2_S weight {first + bad} has the invalid code 3 (corrupt data?)");
        if (all != dst) all.Slice((int)(start - first), dst.Length).CopyTo(dst);
        return scale;
    }

    /// <summary>
    /// <paramref name="t"/> as a ternary matrix (rows = <c>Dims[1..]</c>, cols = <c>Dims[0]</c>):
    /// <list type="bullet">
    /// <item>TQ1_0, TQ2_0: the stored trits, with one scale for the tensor when every block that holds a nonzero trit
    /// has the same f16 scale, else one a row when each row's blocks agree; all-zero blocks agree with any.</item>
    /// <item>I2_S: the stored trits and the tensor's scale.</item>
    /// <item>Any other type whose values are exactly {-s, 0, +s} (what BitNet converters store): those trits, scale s.</item>
    /// <item>Any other type: Hugging Face's online BitLinear rule, <c>inv = 1 / max(mean|W|, 1e-5)</c>,
    /// <c>trit = clamp(round_half_even(W * inv), -1, 1)</c>, scale <c>1 / inv</c> (so trit * scale is what
    /// transformers computes).</item>
    /// </list>
    /// </summary>
    /// <exception cref="RotorException">Block scales differ within a row, the data is invalid, the type cannot be
    /// decoded, or the shape does not fit a matrix.</exception>
    public static TernaryMatrix ReadTernary(GgufFile f, GgufTensorInfo t, I2SLayout layout = I2SLayout.X86)
        => ReadTernary(f, t, layout, null, 1f);

    /// <summary>Whether <see cref="ReadTernary(GgufFile, GgufTensorInfo, I2SLayout, Loading.FileMapping?, float)"/> can keep
    /// <paramref name="t"/> where the file holds it (a view in <see cref="TernaryLayout.I2S"/>): x86 I2_S weights in
    /// rows of whole 256-weight blocks.</summary>
    public static bool CanMapTernary(GgufTensorInfo t, I2SLayout layout = I2SLayout.X86)
        => t.Type == GgmlType.I2_S && layout == I2SLayout.X86 && t.RowLength % 256 == 0 && t.Rows is > 0 and <= int.MaxValue && t.RowLength <= int.MaxValue;

    /// <summary><see cref="ReadTernary(GgufFile, GgufTensorInfo, I2SLayout)"/>, with the scales multiplied by
    /// <paramref name="scale"/>; where <see cref="CanMapTernary"/> allows and <paramref name="mapping"/> (a read-only
    /// mapping of the whole file) is given, the matrix is a view of the file's bytes instead of a copy.</summary>
    internal static TernaryMatrix ReadTernary(GgufFile f, GgufTensorInfo t, I2SLayout layout, Loading.FileMapping? mapping, float scale)
    {
        var m = ReadTernaryCore(f, t, layout, mapping, scale);
        if (scale == 1f || m.IsView) return m;
        var scales = m.Scales.ToArray();
        for (int i = 0; i < scales.Length; i++) scales[i] *= scale;
        return TernaryMatrix.FromTrits(m.ToTrits(), m.Rows, m.Cols, scales);
    }

    private static TernaryMatrix ReadTernaryCore(GgufFile f, GgufTensorInfo t, I2SLayout layout, Loading.FileMapping? mapping, float extraScale)
    {
        ArgumentNullException.ThrowIfNull(f); ArgumentNullException.ThrowIfNull(t);
        long rowsL = t.Rows, colsL = t.RowLength;
        if (rowsL == 0 || colsL == 0) throw Error(f, t, "an empty tensor is not a matrix");
        if (rowsL * colsL > Array.MaxLength || rowsL > int.MaxValue || colsL > int.MaxValue)
            throw Error(f, t, $"{rowsL} x {colsL} is too large for one ternary matrix");
        int rows = (int)rowsL, cols = (int)colsL;
        string where = $"{f.Path}: tensor {t.Name}";
        // Whole 256-weight rows of TQ2_0 and x86 I2_S convert a block at a time, without trits in between.
        if (t.Type == GgmlType.TQ2_0)
            return PackedTernary.FromTQ2_0(f.GetData(t), rows, cols, TQScales(f, t, rows, cols), where + ": TQ2_0 weights");
        if (t.Type == GgmlType.I2_S && layout == I2SLayout.X86 && cols % 256 == 0)
        {
            ReadOnlySpan<byte> data = f.GetData(t);
            float scale = BinaryPrimitives.ReadSingleLittleEndian(data.Slice((int)(rowsL * colsL / 4)));
            if (!float.IsFinite(scale)) throw Error(f, t, $"the I2_S scale is {scale}");
            // The codes used where the file holds them: the kernels reorder the activations instead (TernaryLayout.I2S).
            if (mapping is { } map && float.IsFinite(scale * extraScale))
                return TernaryMatrix.FromMemory(map.Handle, map.Address + (nint)t.Offset, rows, cols, TernaryLayout.I2S, [scale * extraScale], where + ": I2_S weights");
            return PackedTernary.FromI2S(data, rows, cols, scale, where + ": I2_S weights");
        }
        var trits = new sbyte[rowsL * colsL];
        float[] scales;
        switch (t.Type)
        {
            case GgmlType.TQ1_0:
            case GgmlType.TQ2_0:
                scales = TQTrits(f, t, trits, rows, cols);
                break;
            case GgmlType.I2_S:
                scales = [I2STrits(f, t, f.GetData(t), 0, trits, layout)];
                break;
            default:
                float[] w = ReadFloats(f, t);
                int bad = Array.FindIndex(w, v => !float.IsFinite(v));
                if (bad >= 0) throw Error(f, t, $"weight {bad} is {w[bad]}");
                scales = [FloatsToTrits(w, trits)];
                break;
        }
        return TernaryMatrix.FromTrits(trits, rows, cols, scales);
    }

    /// <summary>The scales of a TQ2_0 tensor by the rule of <see cref="ReadTernary(GgufFile, GgufTensorInfo, I2SLayout)"/>, from the blocks' scales alone.</summary>
    private static float[] TQScales(GgufFile f, GgufTensorInfo t, int rows, int cols)
    {
        ReadOnlySpan<byte> data = f.GetData(t);
        int blocksPerRow = cols / GgmlQuants.QK_K;
        var d = new ushort[(long)rows * blocksPerRow];
        var live = new bool[d.Length];
        for (long b = 0; b < d.Length; b++) (d[b], live[b]) = PackedTernary.TQ2_0Block(data, b);
        return AgreedScales(f, t, d, live, rows, blocksPerRow);
    }

    private static float[] TQTrits(GgufFile f, GgufTensorInfo t, sbyte[] trits, int rows, int cols)
    {
        GgmlTypeTraits tr = t.Traits;
        ReadOnlySpan<byte> data = f.GetData(t);
        int blocksPerRow = cols / GgmlQuants.QK_K, scaleAt = tr.BlockBytes - 2;
        var d = new ushort[(long)rows * blocksPerRow];   // f16 bits of each block's scale
        var live = new bool[d.Length];                   // whether the block holds a nonzero trit
        for (long b = 0; b < d.Length; b++)
        {
            ReadOnlySpan<byte> blk = data.Slice((int)(b * tr.BlockBytes), tr.BlockBytes);
            Span<sbyte> dst = trits.AsSpan((int)(b * GgmlQuants.QK_K), GgmlQuants.QK_K);
            if (t.Type == GgmlType.TQ1_0) GgmlQuants.TritsTQ1_0(blk, dst); else GgmlQuants.TritsTQ2_0(blk, dst);
            d[b] = BinaryPrimitives.ReadUInt16LittleEndian(blk.Slice(scaleAt));
            live[b] = dst.ContainsAnyExcept((sbyte)0);
        }
        return AgreedScales(f, t, d, live, rows, blocksPerRow);
    }

    /// <summary>One scale for the tensor when every live block agrees, else one a row when each row's live blocks
    /// agree; all-zero blocks agree with any.</summary>
    private static float[] AgreedScales(GgufFile f, GgufTensorInfo t, ushort[] d, bool[] live, int rows, int blocksPerRow)
    {
        int first = Array.IndexOf(live, true);
        if (first < 0) return [0f];
        bool same = true;
        for (long b = first; b < d.Length && same; b++) same = !live[b] || d[b] == d[first];
        if (same) return [(float)BitConverter.UInt16BitsToHalf(d[first])];
        // Else one a row.
        var scales = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            int rowFirst = -1;
            for (int k = 0; k < blocksPerRow; k++)
            {
                long b = (long)r * blocksPerRow + k;
                if (!live[b]) continue;
                if (rowFirst < 0) rowFirst = k;
                else if (d[b] != d[(long)r * blocksPerRow + rowFirst])
                    throw Error(f, t, $"row {r}: block scales differ ({Half(d[(long)r * blocksPerRow + rowFirst])} in block {rowFirst}, {Half(d[b])} in block {k}); Rotor's ternary matrices take one scale a tensor or a row");
            }
            scales[r] = rowFirst < 0 ? 0f : Half(d[(long)r * blocksPerRow + rowFirst]);
        }
        return scales;
    }

    private static float Half(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Trits of float weights: exact when every nonzero |w| is one value s, else HF's online absmean rule.
    /// Returns the scale.</summary>
    internal static float FloatsToTrits(ReadOnlySpan<float> w, Span<sbyte> trits)
    {
        float s = 0;
        bool exact = true;
        foreach (float v in w)
        {
            if (v == 0) continue;
            float a = MathF.Abs(v);
            if (s == 0) s = a;
            else if (a != s) { exact = false; break; }
        }
        if (exact && float.IsFinite(s))
        {
            for (int i = 0; i < w.Length; i++) trits[i] = (sbyte)Math.Sign(w[i]);
            return s;
        }
        double sum = 0;
        foreach (float v in w) sum += Math.Abs(v);
        float mean = MathF.Max((float)(sum / w.Length), 1e-5f);
        float inv = 1f / mean;
        for (int i = 0; i < w.Length; i++) trits[i] = (sbyte)Math.Clamp(MathF.Round(w[i] * inv, MidpointRounding.ToEven), -1f, 1f);
        return 1f / inv;
    }

    private static RotorException Error(GgufFile f, GgufTensorInfo t, string what) => new($"{f.Path}: tensor {t.Name}: {what}");
}

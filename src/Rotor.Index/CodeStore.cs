using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Rotor.Index;

/// <summary>
/// The vectors of an index, one slot each, in slot order:
/// <code>
/// codes   (slots, layout.Bytes)   native or memory-mapped
/// scales  (slots) float           code scale (1 for Float32)
/// norms   (slots) float           ||v||^2 of the stored float vector (after normalization for cosine)
/// full    (slots, D) float        kept float vectors (absent for Float32 codes or when not kept)
/// </code>
/// Not thread-safe for writes; <see cref="VectorIndex"/> serializes writers and lets readers in between.
/// <para>Every pointer or span into codes or full vectors comes from an accessor below, which first has the bytes it
/// covers checked against their checksums when the section is mapped and checked lazily (<see cref="SectionCheck"/>).</para>
/// </summary>
internal sealed unsafe class CodeStore : IDisposable
{
    public CodeStore(CodeLayout layout, bool keepFull)
    {
        Layout = layout;
        Codes = new NativeBuffer();
        Full = keepFull && layout.Kind != CodeKind.Float32 ? new NativeBuffer() : null;
    }

    public CodeLayout Layout { get; }
    public NativeBuffer Codes { get; private set; }
    public NativeBuffer? Full { get; private set; }
    public float[] Scales { get; private set; } = new float[16];
    public float[] Norms { get; private set; } = new float[16];
    public int Count { get; private set; }
    public bool HasFull => Full is not null || Layout.Kind == CodeKind.Float32;

    /// <summary>The code of a slot (checked before it is handed out).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public byte* Code(int slot)
    {
        long at = (long)slot * Layout.Bytes;
        Codes.Ensure(at, Layout.Bytes);
        return Codes.Pointer + at;
    }

    /// <summary>The codes of slots [first, first + count), one after another (checked before they are handed out).</summary>
    public byte* CodeRun(int first, int count)
    {
        long at = (long)first * Layout.Bytes;
        Codes.Ensure(at, (long)count * Layout.Bytes);
        return Codes.Pointer + at;
    }

    /// <summary>Checks every mapped byte not checked yet (before a save or a full copy); <paramref name="progress"/>
    /// gets the bytes done of <see cref="MappedChecked"/>'s total.</summary>
    public void CheckAll(Action<long>? progress = null)
    {
        long before = 0;
        if (Codes.Check is { } c) { c.EnsureAll(progress); before = c.Length; }
        if (Full?.Check is { } f) f.EnsureAll(progress is null ? null : done => progress(before + done));
    }

    /// <summary>Bytes of the lazily checked sections that have been checked, and their total.</summary>
    public (long Checked, long Total) MappedChecked =>
        ((Codes.Check?.BytesChecked ?? 0) + (Full?.Check?.BytesChecked ?? 0), (Codes.Check?.Length ?? 0) + (Full?.Check?.Length ?? 0));

    /// <summary>The stored float vector of a slot (full precision), or null when only the code is kept.</summary>
    public ReadOnlySpan<float> FullVector(int slot)
    {
        int d = Layout.Dimensions;
        if (Layout.Kind == CodeKind.Float32) return new ReadOnlySpan<float>(Code(slot), d);
        if (Full is null) return default;
        long at = (long)slot * d * 4;
        Full.Ensure(at, d * 4L);
        return new ReadOnlySpan<float>(Full.Pointer + at, d);
    }

    /// <summary>The first float of a slot's kept vector (the code for Float32); only when <see cref="HasFull"/>.</summary>
    public float* FullPointer(int slot)
    {
        if (Layout.Kind == CodeKind.Float32) return (float*)Code(slot);
        long at = (long)slot * Layout.Dimensions * 4;
        Full!.Ensure(at, Layout.Dimensions * 4L);
        return (float*)(Full.Pointer + at);
    }

    /// <summary>The vector of a slot: full precision when kept, else decoded from the code.</summary>
    public float[] Vector(int slot)
    {
        var v = new float[Layout.Dimensions];
        if (HasFull) FullVector(slot).CopyTo(v);
        else Layout.Decode(new ReadOnlySpan<byte>(Code(slot), Layout.Bytes), Scales[slot], v);
        return v;
    }

    /// <summary>Makes room for <paramref name="slots"/> slots.</summary>
    public void Reserve(int slots)
    {
        Codes.Reserve((long)slots * Layout.Bytes);
        Full?.Reserve((long)slots * Layout.Dimensions * 4);
        if (slots > Scales.Length)
        {
            int cap = Math.Max(slots, Scales.Length * 2);
            var s = Scales; Array.Resize(ref s, cap); Scales = s;
            var n = Norms; Array.Resize(ref n, cap); Norms = n;
        }
    }

    /// <summary>Appends a (prepared: normalized for cosine) vector; returns its slot.</summary>
    public int Append(ReadOnlySpan<float> v)
    {
        int slot = Count;
        Reserve(slot + 1);
        Set(slot, v);
        Count = slot + 1;
        Codes.SetLength((long)Count * Layout.Bytes);
        Full?.SetLength((long)Count * Layout.Dimensions * 4);
        return slot;
    }

    /// <summary>Appends <paramref name="count"/> vectors (row-major in <paramref name="rows"/>, not modified), encoding in parallel.</summary>
    public int AppendMany(float[] rows, int count)
    {
        int d = Layout.Dimensions, first = Count;
        Reserve(first + count);
        Count = first + count;
        Codes.SetLength((long)Count * Layout.Bytes);
        Full?.SetLength((long)Count * d * 4);
        Parallel.For(0, (count + 255) / 256, Rotor.Threading.ThreadCount.Options(), b =>
        {
            int end = Math.Min(count, (b + 1) * 256);
            for (int i = b * 256; i < end; i++) Set(first + i, rows.AsSpan(i * d, d));
        });
        return first;
    }

    private void Set(int slot, ReadOnlySpan<float> v)
    {
        var code = new Span<byte>(Code(slot), Layout.Bytes);
        Scales[slot] = Layout.Encode(v, code);
        Norms[slot] = TensorPrimitives.Dot(v, v);
        if (Full is not null) v.CopyTo(new Span<float>(Full.Pointer + (long)slot * Layout.Dimensions * 4, Layout.Dimensions));
    }

    /// <summary>Replaces the buffers (after loading or compaction).</summary>
    public void Replace(NativeBuffer codes, NativeBuffer? full, float[] scales, float[] norms, int count)
    {
        Codes.Dispose(); Full?.Dispose();
        Codes = codes; Full = full; Scales = scales; Norms = norms; Count = count;
    }

    public void Dispose()
    {
        Codes.Dispose();
        Full?.Dispose();
    }
}

/// <summary>A query prepared for one index: its float form and its code.</summary>
internal sealed class PreparedQuery
{
    public PreparedQuery(CodeLayout layout, Metric metric, ReadOnlySpan<float> query, bool int8Query = false)
    {
        Vector = query.ToArray();
        if (metric == Metric.Cosine)
        {
            float n = TensorPrimitives.Norm(Vector);
            if (n > 0) TensorPrimitives.Divide(Vector, n, Vector);
        }
        Norm2 = TensorPrimitives.Dot(Vector, Vector);
        Code = new byte[layout.Bytes + 64];
        Scale = layout.Encode(Vector, Code.AsSpan(0, layout.Bytes));
        if (int8Query && layout.Kind == CodeKind.Ternary)
        {
            Int8 = new sbyte[layout.Dimensions];
            Int8Scale = new CodeLayout(CodeKind.Int8, layout.Dimensions).Encode(Vector, MemoryMarshal.AsBytes(Int8.AsSpan()));
            Planes = new sbyte[64 * layout.Words];
            ScanKernels.TransposeQuery(Int8, layout.Words, Planes);
        }
    }

    /// <summary>For asymmetric ternary scoring (<see cref="SearchOptions.Int8Query"/>): the query as int8 (absmax / 127),
    /// its scale, and its bit-transposed form for the kernels (<see cref="ScanKernels.TransposeQuery"/>); else null.</summary>
    public sbyte[]? Int8 { get; }
    /// <inheritdoc cref="Int8"/>
    public float Int8Scale { get; }
    /// <inheritdoc cref="Int8"/>
    public sbyte[]? Planes { get; }

    /// <summary>The query as searched (unit length for cosine).</summary>
    public float[] Vector { get; }
    /// <summary>||q||^2.</summary>
    public float Norm2 { get; }
    /// <summary>The query code (padded so that kernels may read a little past its end).</summary>
    public byte[] Code { get; }
    /// <summary>The query code scale.</summary>
    public float Scale { get; }
}

using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Rotor.Index;

/// <summary>
/// Bytes outside the managed heap: either owned (64-byte aligned native memory that grows by doubling) or a read-only
/// window of a memory-mapped index file. A mapped buffer is copied into owned memory the first time it is written
/// (<see cref="EnsureWritable"/>), so that loading a large index costs address space, not heap.
/// </summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    private byte* _ptr;
    private long _capacity;
    private MappedFile? _map;

    /// <summary>An owned, empty buffer.</summary>
    public NativeBuffer() { }

    /// <summary>A read-only view of <paramref name="length"/> bytes at <paramref name="offset"/> of a mapped file.</summary>
    public NativeBuffer(MappedFile map, long offset, long length)
    {
        _map = map.AddRef();
        _ptr = map.Pointer + offset;
        _capacity = length;
        Length = length;
    }

    /// <summary>Bytes in use.</summary>
    public long Length { get; private set; }
    /// <summary>Whether the bytes are read from a mapped file.</summary>
    public bool IsMapped => _map is not null;
    /// <summary>For a mapped buffer whose checksums are verified on first use: its checker (null once the bytes are
    /// owned, or when verification is off).</summary>
    public SectionCheck? Check { get; private set; }

    /// <summary>Attaches the lazy checker of a mapped buffer.</summary>
    public void SetCheck(SectionCheck check)
    {
        if (_map is null) throw new InvalidOperationException("only a mapped buffer is checked lazily");
        Check = check;
    }

    /// <summary>Checks <paramref name="length"/> bytes at <paramref name="offset"/> against their checksums unless done
    /// before (<see cref="SectionCheck.Ensure"/>); nothing for owned memory.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public void Ensure(long offset, long length) => Check?.Ensure(offset, length);
    /// <summary>The first byte. Valid until the next <see cref="Reserve"/> or <see cref="EnsureWritable"/>.</summary>
    public byte* Pointer => _ptr;

    /// <summary>The bytes in use.</summary>
    public ReadOnlySpan<byte> Span => Length == 0 ? default : new ReadOnlySpan<byte>(_ptr, checked((int)Math.Min(Length, int.MaxValue)));

    /// <summary>Makes room for <paramref name="length"/> bytes (grows by doubling), copying a mapped buffer into owned memory.</summary>
    public void Reserve(long length)
    {
        EnsureWritable();
        if (length <= _capacity) return;
        long cap = Math.Max(length, Math.Max(4096, _capacity * 2));
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)cap, 64);
        if (Length > 0) Buffer.MemoryCopy(_ptr, p, cap, Length);
        NativeMemory.Clear(p + Length, (nuint)(cap - Length));
        if (_ptr != null) NativeMemory.AlignedFree(_ptr);
        _ptr = p; _capacity = cap;
    }

    /// <summary>Sets the length (after <see cref="Reserve"/>).</summary>
    public void SetLength(long length)
    {
        if (length > _capacity) throw new InvalidOperationException($"length {length} exceeds capacity {_capacity}");
        Length = length;
    }

    /// <summary>Copies a mapped buffer into owned memory so that it can be written.</summary>
    public void EnsureWritable()
    {
        if (_map is null) return;
        // The copy is what later saves write with fresh checksums: damaged bytes must fail here, not be laundered.
        Check?.EnsureAll();
        Check = null;
        long cap = Math.Max(Length, 4096);
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)cap, 64);
        Buffer.MemoryCopy(_ptr, p, cap, Length);
        NativeMemory.Clear(p + Length, (nuint)(cap - Length));
        _map.Release(); _map = null;
        _ptr = p; _capacity = cap;
    }

    /// <summary>Frees the memory or releases the mapping.</summary>
    public void Dispose()
    {
        Check = null;
        if (_map is not null) { _map.Release(); _map = null; }
        else if (_ptr != null) NativeMemory.AlignedFree(_ptr);
        _ptr = null; _capacity = 0; Length = 0;
    }
}

/// <summary>A read-only memory-mapped file with a reference count: the mapping lives while a buffer uses it.</summary>
internal sealed unsafe class MappedFile
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private int _refs = 1;

    public MappedFile(string path, long length)
    {
        _file = MemoryMappedFile.CreateFromFile(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete),
            null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        Pointer = p + _view.PointerOffset;
        Length = length;
    }

    public byte* Pointer { get; }
    public long Length { get; }

    public MappedFile AddRef() { Interlocked.Increment(ref _refs); return this; }

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) != 0) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

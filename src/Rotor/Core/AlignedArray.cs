using System.Runtime.CompilerServices;

namespace Rotor;

/// <summary>A zeroed array on the pinned object heap whose first element is 64-byte aligned, so that SIMD loads of
/// aligned rows never cross a cache line. Pinned for its lifetime: its address can be handed to kernels.</summary>
internal sealed unsafe class AlignedArray<T> where T : unmanaged
{
    public const int Alignment = 64;
    private readonly T[] _array;
    private readonly int _offset;

    public AlignedArray(long length)
    {
        Check.NonNegative(length, nameof(length));
        int pad = (Alignment + sizeof(T) - 1) / sizeof(T);
        if (length + pad > Array.MaxLength) throw new RotorException($"buffer of {length} elements is too large");
        _array = GC.AllocateArray<T>((int)length + pad, pinned: true);
        nint addr = (nint)Unsafe.AsPointer(ref _array[0]);
        _offset = (int)(((Alignment - addr % Alignment) % Alignment) / sizeof(T));
        Length = (int)length;
    }

    public int Length { get; }
    public Span<T> Span => _array.AsSpan(_offset, Length);
    public T* Pointer => (T*)Unsafe.AsPointer(ref _array[_offset]);
}

using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Rotor.Lm.Loading;

/// <summary>A read-only mapping of a whole model file: the handle that keeps it mapped and the address of byte 0.</summary>
internal readonly record struct FileMapping(SafeHandle Handle, nint Address);

/// <summary>
/// Read-only memory mappings of one byte range of a model file, for weights that are used as the file stores them
/// (<see cref="DenseMatrix.FromMemory"/>): only the pages read become resident, as clean file pages the kernel can drop
/// and read again, shared with the page cache and with other processes that map the file.
/// </summary>
internal static unsafe partial class FileView
{
    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="path"/> from <paramref name="offset"/>: the
    /// mapping's handle (it stays mapped until the handle is closed; the file itself is closed here) and the address of
    /// byte <paramref name="offset"/>.</summary>
    /// <exception cref="RotorException">The file cannot be opened or mapped.</exception>
    public static (SafeHandle Handle, nint Address) Map(string path, long offset, long length)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            using var map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            var view = map.CreateViewAccessor(offset, length, MemoryMappedFileAccess.Read);
            // The view's handle owns the mapping (closing it unmaps); the accessor and the file are not needed past here.
            var handle = view.SafeMemoryMappedViewHandle;
            return (handle, handle.DangerousGetHandle() + (nint)view.PointerOffset);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot map bytes {offset}..{offset + length}: {e.Message}", e);
        }
    }

    /// <summary>Drops this process's page-table entries for the pages of <paramref name="length"/> bytes at
    /// <paramref name="address"/> in a read-only file mapping (Linux <c>MADV_DONTNEED</c>): after a pass over a view
    /// (the LM head converted from the embedding) the file pages stop counting as this process's resident memory; the
    /// page cache keeps them and a later read maps them again. Advice only: elsewhere, or on failure, nothing changes.</summary>
    public static void DropPages(nint address, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = address / page * page, end = address + length;
        _ = madvise((void*)start, (nuint)(end - start), MadvDontNeed);
    }

    /// <summary><see cref="DropPages(nint, long)"/> over the rows of a view.</summary>
    public static void DropPages(DenseMatrix view)
    {
        if (view.IsView) DropPages((nint)view.DataPointer, view.DataBytes);
    }

    /// <summary><see cref="DropPages(nint, long)"/> over the rows of a ternary view.</summary>
    public static void DropPages(TernaryMatrix view)
    {
        if (view.IsView) DropPages((nint)view.DataPointer, (long)view.Rows * view.RowBytes);
    }

    private const int MadvDontNeed = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);
}

using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Rotor;

/// <summary>
/// A cross-process writer lock on a file or folder that Rotor updates in place (an index file, a retrieval index folder,
/// a training run's outputs): an exclusive lock on the file <c>PATH.lock</c> beside it, held from before the target is
/// read until after it is saved, so that a second writer waits for the first and then sees its result instead of
/// overwriting it. Readers take no lock (saves are atomic renames, see <see cref="AtomicFile"/>).
/// </summary>
/// <remarks>
/// On Linux and macOS .NET takes <c>flock(LOCK_EX)</c> for <see cref="FileShare.None"/>, on Windows a share-mode lock;
/// either is released by the operating system when the process dies, so a killed writer leaves no stale lock. The
/// <c>.lock</c> file itself stays: deleting it on release would let a third process lock a new file while a second still
/// holds the unlinked one. The holder writes its process id into the lock file, so that a writer that has to wait or
/// give up can say which process holds it (on Linux and macOS; Windows' share-mode lock lets nobody read it).
/// </remarks>
public sealed partial class FileLock : IDisposable
{
    private readonly FileStream _stream;

    private FileLock(FileStream stream, string path) { _stream = stream; LockPath = path; }

    /// <summary>The lock file.</summary>
    public string LockPath { get; }

    /// <summary>The lock file of <paramref name="target"/>.</summary>
    public static string LockPathOf(string target) => Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar) + ".lock";

    /// <summary>Takes the writer lock of <paramref name="target"/>, waiting up to <paramref name="wait"/> for another
    /// process (or another lock in this one) to release it; <paramref name="waiting"/> is called once if it must wait.</summary>
    /// <exception cref="RotorException">Still held by another writer after <paramref name="wait"/>, or the lock file
    /// cannot be created (the message names it).</exception>
    public static FileLock Acquire(string target, TimeSpan wait, Action<string>? waiting = null)
    {
        string path = LockPathOf(target);
        string? dir = Path.GetDirectoryName(path);
        try { if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot create the lock file of {target}: {e.Message}", e);
        }
        var clock = Stopwatch.StartNew();
        bool told = false;
        while (true)
        {
            try
            {
                var fs = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1);
                try
                {
                    fs.SetLength(0);
                    fs.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
                    fs.Flush();
                }
                catch (IOException) { } // the id is a courtesy to other writers; the lock is held either way
                return new FileLock(fs, path);
            }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException && IsSharingViolation(e))
            {
                string who = HolderOf(path) is int pid && pid != 0 ? $"process {pid}" : "it";
                if (clock.Elapsed >= wait)
                    throw new RotorException($"{target} is being written by another process ({who} holds {path}); waited {clock.Elapsed.TotalSeconds:F0} s. Try again when it has finished.");
                if (!told) { waiting?.Invoke($"{target} is being written by another process ({who} holds {path}); waiting up to {wait.TotalSeconds:F0} s"); told = true; }
                Thread.Sleep(50);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new RotorException($"{path}: cannot create the lock file of {target}: {e.Message}", e);
            }
        }
    }

    // A held lock is an IOException with EWOULDBLOCK (Unix) or ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION (Windows).
    private static bool IsSharingViolation(IOException e)
    {
        if (OperatingSystem.IsWindows()) return (e.HResult & 0xFFFF) is 32 or 33;
        return e.HResult == 11 || e.HResult == 35 || e.Message.Contains("being used by another process", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The process id written in the lock file <paramref name="lockPath"/> by its holder, or null where it
    /// cannot be read (Windows, or no id written yet).</summary>
    public static int? HolderOf(string lockPath)
    {
        if (OperatingSystem.IsWindows()) return null;
        try
        {
            // .NET takes a shared flock for every open, which the holder's exclusive one refuses: libc's open takes none.
            int fd = Open(lockPath, 0 /* O_RDONLY */);
            if (fd < 0) return null;
            try
            {
                Span<byte> buf = stackalloc byte[16];
                nint n;
                unsafe { fixed (byte* p = buf) n = Read(fd, p, buf.Length); }
                if (n <= 0) return null;
                return int.TryParse(buf[..(int)n].TrimEnd((byte)'\n'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid) ? pid : null;
            }
            finally { _ = Close(fd); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "read")]
    private static unsafe partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>Releases the lock.</summary>
    public void Dispose() => _stream.Dispose();
}

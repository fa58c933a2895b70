namespace Rotor;

/// <summary>Writes files atomically: to a temporary file beside the target, flushed to disk, then renamed over it.
/// A crash or kill during the write leaves the previous file intact, and its temporary file is deleted by the next
/// write of the same target (<see cref="RemoveStale"/>).</summary>
public static class AtomicFile
{
    /// <summary>Writes the file through <paramref name="write"/> atomically.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path); ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        RemoveStale(full);
        string tmp = TempPathOf(full);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>A new temporary name for a write of <paramref name="target"/>, beside it: <c>TARGET.PID.GUID.rotor.tmp</c>.
    /// Writers that build a file or folder by other means name their temporaries with it, so that
    /// <see cref="RemoveStale"/> finds them when their process dies.</summary>
    public static string TempPathOf(string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        return $"{Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar)}.{Environment.ProcessId}.{Guid.NewGuid():N}.rotor.tmp";
    }

    /// <summary>Deletes the temporary files and folders (named by <see cref="TempPathOf"/>) that writes of
    /// <paramref name="target"/> (a file or folder, and every entry directly in a folder) left behind when their process
    /// died before the rename: those whose process id is no longer running. A live writer's temporaries are never
    /// touched. Returns how many were deleted.</summary>
    public static int RemoveStale(string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        string full = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar);
        var candidates = new List<string>();
        try
        {
            if (Path.GetDirectoryName(full) is { Length: > 0 } parent && Directory.Exists(parent))
                candidates.AddRange(Directory.EnumerateFileSystemEntries(parent, Path.GetFileName(full) + ".*.rotor.tmp"));
            if (Directory.Exists(full)) candidates.AddRange(Directory.EnumerateFileSystemEntries(full, "*.rotor.tmp"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        int removed = 0;
        foreach (string f in candidates)
        {
            // NAME.PID.GUID.rotor.tmp
            string[] parts = Path.GetFileName(f).Split('.');
            if (parts.Length < 5 || !int.TryParse(parts[^4], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == Environment.ProcessId || IsRunning(pid)) continue;
            try
            {
                if (Directory.Exists(f)) Directory.Delete(f, recursive: true); else File.Delete(f);
                removed++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    private static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
        catch (System.ComponentModel.Win32Exception) { return true; } // exists, not ours to inspect
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) atomically.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true); w.Write(text); });

    /// <summary>Writes <paramref name="bytes"/> atomically.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        byte[] copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }
}

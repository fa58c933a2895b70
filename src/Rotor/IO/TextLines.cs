using System.IO.Compression;
using System.Text;

namespace Rotor;

/// <summary>
/// Lines of a UTF-8 text file (plain or gzip, found by its magic bytes), read strictly: bytes that are not UTF-8, a
/// truncated or corrupt gzip stream and I/O errors become a <see cref="RotorException"/> naming the file and the line,
/// never replacement characters or another exception type. Every line-oriented reader of Rotor reads through this.
/// </summary>
public static class TextLines
{
    /// <summary>Strict UTF-8 without a byte-order mark: invalid bytes throw.</summary>
    public static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>Opens <paramref name="path"/> as text, gunzipping it when it is gzip (magic bytes 1f 8b). Decoding
    /// errors of this reader surface where the buffer is decoded, not at their line: <see cref="Read"/> names the line.</summary>
    /// <exception cref="RotorException">The file is missing or cannot be opened.</exception>
    public static StreamReader Open(string path) => new(OpenStream(path), StrictUtf8, detectEncodingFromByteOrderMarks: true, 1 << 16);

    /// <summary>The bytes of <paramref name="path"/>, gunzipped when it is gzip.</summary>
    /// <exception cref="RotorException">The file is missing or cannot be opened.</exception>
    public static Stream OpenStream(string path)
    {
        FileStream file;
        try { file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException(e is FileNotFoundException or DirectoryNotFoundException ? $"{path}: file not found" : $"{path}: cannot open: {e.Message}", e);
        }
        try
        {
            int b0 = file.ReadByte(), b1 = file.ReadByte();
            file.Position = 0;
            return b0 == 0x1f && b1 == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The lines of <paramref name="path"/> with their numbers (from 1), streamed. Lines end at '\n' (a '\r'
    /// before it is dropped); a UTF-8 byte-order mark at the start is skipped.</summary>
    /// <exception cref="RotorException">Missing, unreadable, not UTF-8 (the line is named), or a corrupt gzip stream.</exception>
    public static IEnumerable<(int Number, string Text)> Read(string path)
    {
        using var stream = OpenStream(path);
        var line = new MemoryStream();
        byte[] buf = new byte[1 << 16];
        int n = 0;
        while (true)
        {
            int read;
            try { read = stream.Read(buf, 0, buf.Length); }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                throw new RotorException($"{path}: after line {n}: cannot read: {e.Message}", e);
            }
            if (read == 0) break;
            int start = 0;
            while (true)
            {
                int nl = buf.AsSpan(start, read - start).IndexOf((byte)'\n');
                if (nl < 0) { line.Write(buf, start, read - start); break; }
                line.Write(buf, start, nl);
                start += nl + 1;
                yield return (++n, Decode(line, path, n));
                line.SetLength(0);
            }
        }
        if (line.Length > 0) yield return (++n, Decode(line, path, n));
    }

    private static string Decode(MemoryStream line, string path, int n)
    {
        ReadOnlySpan<byte> bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
        if (n == 1 && bytes.StartsWith("\uFEFF"u8)) bytes = bytes[3..];
        if (!bytes.IsEmpty && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException e)
        {
            throw new RotorException($"{path}: line {n}: not valid UTF-8 text: {e.Message}", e);
        }
    }
}

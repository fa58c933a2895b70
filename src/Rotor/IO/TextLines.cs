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

    /// <summary>Opens <paramref name="path"/> as text, gunzipping it when it is gzip (magic bytes 1f 8b).</summary>
    /// <exception cref="RotorException">The file is missing or cannot be opened.</exception>
    public static StreamReader Open(string path)
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
            Stream s = b0 == 0x1f && b1 == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
            return new StreamReader(s, StrictUtf8, detectEncodingFromByteOrderMarks: true, 1 << 16);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The lines of <paramref name="path"/> with their numbers (from 1), streamed.</summary>
    /// <exception cref="RotorException">Missing, unreadable, not UTF-8, or a corrupt gzip stream (the message names the
    /// file and the line).</exception>
    public static IEnumerable<(int Number, string Text)> Read(string path)
    {
        using var reader = Open(path);
        int n = 0;
        while (true)
        {
            string? line;
            try { line = reader.ReadLine(); }
            catch (Exception e) when (e is DecoderFallbackException)
            {
                throw new RotorException($"{path}: line {n + 1}: not valid UTF-8 text: {e.Message}", e);
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                throw new RotorException($"{path}: after line {n}: cannot read: {e.Message}", e);
            }
            if (line is null) yield break;
            yield return (++n, line);
        }
    }
}

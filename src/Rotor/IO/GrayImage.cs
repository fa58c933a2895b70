using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Rotor.IO;

/// <summary>
/// A grey image of bytes (0 = black, 255 = white), read from a PGM (P2 or P5, maxval up to 255 or 65535) or a PNG
/// (8-bit grey, grey+alpha, RGB or RGBA, not interlaced; colour is converted to luma 0.299 R + 0.587 G + 0.114 B).
/// </summary>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
/// <param name="Pixels">Height x Width bytes, row-major.</param>
public sealed record GrayImage(int Width, int Height, byte[] Pixels)
{
    /// <summary>The most pixels an image may have (64 Mi): a larger size in a header is refused before anything is
    /// allocated, so a damaged header cannot ask for gigabytes.</summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>Reads a .pgm or .png file (by its signature, not its name).</summary>
    /// <exception cref="RotorException">Unreadable, truncated, damaged or unsupported file; the message names it.</exception>
    public static GrayImage Read(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: image file not found");
        byte[] b;
        try { b = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new RotorException($"{path}: cannot read the image: {e.Message}", e); }
        return Decode(b, path);
    }

    /// <summary>Decodes the bytes of a .pgm or .png file; <paramref name="name"/> names it in errors.</summary>
    /// <exception cref="RotorException">Truncated, damaged or unsupported image.</exception>
    public static GrayImage Decode(byte[] b, string name)
    {
        ArgumentNullException.ThrowIfNull(b);
        if (b.Length >= 8 && b[0] == 0x89 && b[1] == (byte)'P' && b[2] == (byte)'N' && b[3] == (byte)'G') return ReadPng(b, name);
        if (b.Length >= 2 && b[0] == (byte)'P' && (b[1] == (byte)'5' || b[1] == (byte)'2')) return ReadPgm(b, name);
        throw new RotorException($"{name}: not a PNG or PGM image (unknown signature)");
    }

    // PGM (netpbm): "P5" or "P2", whitespace-separated decimal width, height and maxval (with # comments), one whitespace
    // byte, then the samples: binary big-endian (1 byte each for maxval < 256, else 2) or decimal text. PGM has no
    // checksum: a damaged sample is a different image, only damaged structure can be caught.
    private static GrayImage ReadPgm(byte[] b, string path)
    {
        static bool Space(byte c) => c is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0B or 0x0C;
        if (b.Length < 3 || !(Space(b[2]) || b[2] == '#')) throw new RotorException($"{path}: malformed PGM: no whitespace after the magic number");
        int pos = 2;
        int Next(string what, int max)
        {
            while (pos < b.Length)
            {
                if (b[pos] == '#') { while (pos < b.Length && b[pos] != '\n') pos++; }
                else if (Space(b[pos])) pos++;
                else break;
            }
            int start = pos;
            long v = 0;
            while (pos < b.Length && b[pos] >= '0' && b[pos] <= '9')
            {
                v = v * 10 + (b[pos++] - '0');
                if (v > max) throw new RotorException($"{path}: PGM {what} at byte {start} is over {max}");
            }
            if (start == pos) throw new RotorException($"{path}: truncated or malformed PGM: {what} expected at byte {start}");
            return (int)v;
        }
        bool binary = b[1] == '5';
        int w = Next("width", int.MaxValue), h = Next("height", int.MaxValue), max = Next("maxval", 65535);
        if (w <= 0 || h <= 0 || max <= 0) throw new RotorException($"{path}: PGM size {w}x{h} or maxval {max} is invalid");
        long count = (long)w * h;
        if (count > MaxPixels) throw new RotorException($"{path}: PGM size {w}x{h} is over the {MaxPixels} pixels supported");
        if (pos >= b.Length || !Space(b[pos])) throw new RotorException($"{path}: malformed PGM: maxval is not followed by a whitespace byte (at byte {pos})");
        int bpp = max > 255 ? 2 : 1;
        // Each sample takes bpp bytes in binary, and at least a digit and a separator in text (the last one a digit).
        long need = binary ? count * bpp : 2 * count - 1;
        if (b.Length - pos - 1 < need) throw new RotorException($"{path}: truncated PGM: {w}x{h} needs {need} bytes of pixels, {b.Length - pos - 1} remain");
        var px = new byte[count];
        if (binary)
        {
            pos++; // the single whitespace after maxval
            for (int i = 0; i < px.Length; i++)
            {
                int v = bpp == 1 ? b[pos + i] : BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(pos + 2 * i));
                if (v > max) throw new RotorException($"{path}: PGM pixel {i} is {v}, over the maxval {max}");
                px[i] = Scale(v, max);
            }
        }
        else
            for (int i = 0; i < px.Length; i++) px[i] = Scale(Next("pixel", max), max);
        return new GrayImage(w, h, px);
    }

    private static byte Scale(int v, int max) => (byte)((v * 255 + max / 2) / max);

    // PNG (ISO/IEC 15948): signature, then chunks (length, type, data, CRC-32 of type and data) from IHDR to IEND. Every
    // chunk's CRC is checked and the zlib stream is read to its end so that its Adler-32 is checked too: a damaged file
    // fails instead of decoding to other pixels. Ancillary chunks (type starting in lower case) are skipped; an unknown
    // critical one is refused, as the standard asks.
    private static GrayImage ReadPng(byte[] b, string path)
    {
        ReadOnlySpan<byte> sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (!b.AsSpan(0, 8).SequenceEqual(sig)) throw new RotorException($"{path}: bad PNG signature");
        int pos = 8, w = 0, h = 0, color = -1;
        using var idat = new MemoryStream();
        bool end = false, idatDone = false;
        while (!end)
        {
            if (b.Length - pos < 12) throw new RotorException($"{path}: truncated PNG: chunk header at byte {pos} is incomplete");
            int len = BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(pos));
            ReadOnlySpan<byte> typeBytes = b.AsSpan(pos + 4, 4);
            foreach (byte c in typeBytes)
                if (!char.IsAsciiLetter((char)c)) throw new RotorException($"{path}: damaged PNG: chunk at byte {pos} has type bytes {Convert.ToHexString(typeBytes)}, not four letters");
            string type = Encoding.ASCII.GetString(typeBytes);
            if (len < 0 || (long)pos + 12 + len > b.Length) throw new RotorException($"{path}: truncated PNG: chunk {type} at byte {pos} of {len} bytes runs past the end");
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos + 8 + len));
            if (System.IO.Hashing.Crc32.HashToUInt32(b.AsSpan(pos + 4, 4 + len)) != crc)
                throw new RotorException($"{path}: damaged PNG: CRC mismatch in chunk {type} at byte {pos}");
            ReadOnlySpan<byte> data = b.AsSpan(pos + 8, len);
            if (pos == 8 && type != "IHDR") throw new RotorException($"{path}: PNG starts with chunk {type}, expected IHDR");
            switch (type)
            {
                case "IHDR":
                    if (pos != 8) throw new RotorException($"{path}: PNG has a second IHDR chunk at byte {pos}");
                    if (len != 13) throw new RotorException($"{path}: PNG IHDR has {len} bytes, expected 13");
                    w = BinaryPrimitives.ReadInt32BigEndian(data); h = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    int depth = data[8]; color = data[9];
                    if (data[10] != 0 || data[11] != 0) throw new RotorException($"{path}: PNG compression method {data[10]} or filter method {data[11]} is unknown");
                    if (data[12] != 0) throw new RotorException($"{path}: interlaced PNG is not supported");
                    if (depth != 8 || color is not (0 or 2 or 4 or 6)) throw new RotorException($"{path}: PNG of bit depth {depth}, colour type {color} is not supported (8-bit grey, grey+alpha, RGB or RGBA)");
                    if (w <= 0 || h <= 0 || (long)w * h > MaxPixels) throw new RotorException($"{path}: PNG size {w}x{h} is not supported (at most {MaxPixels} pixels)");
                    break;
                case "IDAT":
                    if (idatDone) throw new RotorException($"{path}: PNG image data chunks are not consecutive (IDAT at byte {pos})");
                    idat.Write(data);
                    break;
                case "IEND": end = true; break;
                default:
                    if (char.IsAsciiLetterUpper(type[0])) throw new RotorException($"{path}: PNG has critical chunk {type}, which is not supported");
                    break;
            }
            if (type != "IDAT" && idat.Length > 0) idatDone = true;
            pos += 12 + len;
        }
        // The zlib stream ends in the Adler-32 of what it holds; the decoder does not say when the stream is cut short.
        if (idat.Length < 6) throw new RotorException($"{path}: PNG has no image data (IDAT), or too little for a zlib stream");
        uint adler = BinaryPrimitives.ReadUInt32BigEndian(idat.GetBuffer().AsSpan((int)idat.Length - 4, 4));
        int channels = color switch { 0 => 1, 2 => 3, 4 => 2, _ => 4 };
        int stride = w * channels;
        var raw = new byte[(long)(stride + 1) * h];
        try
        {
            idat.Position = 0;
            using var z = new ZLibStream(idat, CompressionMode.Decompress);
            int got = 0, n;
            while (got < raw.Length && (n = z.Read(raw, got, raw.Length - got)) > 0) got += n;
            if (got < raw.Length) throw new RotorException($"{path}: truncated PNG image data: {got} of {raw.Length} bytes");
            if (z.Read(new byte[1]) != 0) throw new RotorException($"{path}: PNG image data is longer than {w}x{h} pixels");
        }
        catch (InvalidDataException e) { throw new RotorException($"{path}: corrupt PNG image data: {e.Message}", e); }
        if (Adler32(raw) != adler)
            throw new RotorException($"{path}: corrupt PNG image data: the zlib checksum (Adler-32) does not match");
        var img = new byte[(long)stride * h];
        var zero = new byte[stride];
        for (int y = 0; y < h; y++)
        {
            int filter = raw[(long)y * (stride + 1)];
            if (filter > 4) throw new RotorException($"{path}: PNG row {y} has unknown filter {filter}");
            Span<byte> cur = img.AsSpan(y * stride, stride);
            ReadOnlySpan<byte> src = raw.AsSpan(y * (stride + 1) + 1, stride);
            ReadOnlySpan<byte> prev = y > 0 ? img.AsSpan((y - 1) * stride, stride) : zero;
            for (int i = 0; i < stride; i++)
            {
                int a = i >= channels ? cur[i - channels] : 0, up = prev[i], c = i >= channels ? prev[i - channels] : 0;
                int pred = filter switch { 0 => 0, 1 => a, 2 => up, 3 => (a + up) >> 1, _ => Paeth(a, up, c) };
                cur[i] = (byte)(src[i] + pred);
            }
        }
        var px = new byte[(long)w * h];
        for (int i = 0; i < px.Length; i++)
        {
            int o = i * channels;
            px[i] = channels <= 2 ? img[o] : (byte)((img[o] * 299 + img[o + 1] * 587 + img[o + 2] * 114 + 500) / 1000);
        }
        return new GrayImage(w, h, px);
    }

    // RFC 1950: s1 = 1 + sum of bytes, s2 = sum of the s1s, both mod 65521; 5552 bytes keep s2 under 2^32 between reductions.
    private static uint Adler32(ReadOnlySpan<byte> data)
    {
        uint s1 = 1, s2 = 0;
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, 5552);
            foreach (byte x in data[..n]) { s1 += x; s2 += s1; }
            s1 %= 65521; s2 %= 65521;
            data = data[n..];
        }
        return s2 << 16 | s1;
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    /// <summary>Writes this image as a binary PGM (P5), atomically.</summary>
    public void WritePgm(string path)
    {
        byte[] header = Encoding.ASCII.GetBytes($"P5\n{Width} {Height}\n255\n");
        AtomicFile.Write(path, s => { s.Write(header); s.Write(Pixels); });
    }
}

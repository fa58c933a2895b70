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
    /// <summary>Reads a .pgm or .png file (by its signature, not its name).</summary>
    /// <exception cref="RotorException">Unreadable, truncated or unsupported file; the message names it.</exception>
    public static GrayImage Read(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: image file not found");
        byte[] b = File.ReadAllBytes(path);
        if (b.Length >= 8 && b[0] == 0x89 && b[1] == (byte)'P' && b[2] == (byte)'N' && b[3] == (byte)'G') return ReadPng(b, path);
        if (b.Length >= 2 && b[0] == (byte)'P' && (b[1] == (byte)'5' || b[1] == (byte)'2')) return ReadPgm(b, path);
        throw new RotorException($"{path}: not a PNG or PGM image (unknown signature)");
    }

    private static GrayImage ReadPgm(byte[] b, string path)
    {
        int pos = 2;
        int Next()
        {
            while (pos < b.Length)
            {
                if (b[pos] == '#') { while (pos < b.Length && b[pos] != '\n') pos++; }
                else if (char.IsWhiteSpace((char)b[pos])) pos++;
                else break;
            }
            int start = pos;
            while (pos < b.Length && b[pos] >= '0' && b[pos] <= '9') pos++;
            if (start == pos) throw new RotorException($"{path}: truncated or malformed PGM header at byte {start}");
            return int.Parse(Encoding.ASCII.GetString(b, start, pos - start), System.Globalization.CultureInfo.InvariantCulture);
        }
        bool binary = b[1] == '5';
        int w = Next(), h = Next(), max = Next();
        if (w <= 0 || h <= 0 || max <= 0 || max > 65535) throw new RotorException($"{path}: PGM size {w}x{h} or maxval {max} is invalid");
        var px = new byte[(long)w * h];
        if (binary)
        {
            pos++; // the single whitespace after maxval
            int bpp = max > 255 ? 2 : 1;
            if (b.Length - pos < px.Length * bpp) throw new RotorException($"{path}: truncated PGM: {w}x{h} needs {px.Length * bpp} bytes of pixels, {b.Length - pos} remain");
            for (int i = 0; i < px.Length; i++)
            {
                int v = bpp == 1 ? b[pos + i] : BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(pos + 2 * i));
                px[i] = (byte)Math.Min(255, (v * 255 + max / 2) / max);
            }
        }
        else
            for (int i = 0; i < px.Length; i++) px[i] = (byte)Math.Min(255, (Next() * 255 + max / 2) / max);
        return new GrayImage(w, h, px);
    }

    private static GrayImage ReadPng(byte[] b, string path)
    {
        ReadOnlySpan<byte> sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (!b.AsSpan(0, 8).SequenceEqual(sig)) throw new RotorException($"{path}: bad PNG signature");
        int pos = 8, w = 0, h = 0, depth = 0, color = -1;
        using var idat = new MemoryStream();
        bool end = false;
        while (!end)
        {
            if (b.Length - pos < 12) throw new RotorException($"{path}: truncated PNG: chunk header at byte {pos} is incomplete");
            int len = BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(pos));
            string type = Encoding.ASCII.GetString(b, pos + 4, 4);
            if (len < 0 || (long)pos + 12 + len > b.Length) throw new RotorException($"{path}: truncated PNG: chunk {type} of {len} bytes runs past the end");
            ReadOnlySpan<byte> data = b.AsSpan(pos + 8, len);
            switch (type)
            {
                case "IHDR":
                    if (len != 13) throw new RotorException($"{path}: PNG IHDR has {len} bytes, expected 13");
                    w = BinaryPrimitives.ReadInt32BigEndian(data); h = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    depth = data[8]; color = data[9];
                    if (data[12] != 0) throw new RotorException($"{path}: interlaced PNG is not supported");
                    if (depth != 8 || color is not (0 or 2 or 4 or 6)) throw new RotorException($"{path}: PNG of bit depth {depth}, colour type {color} is not supported (8-bit grey, grey+alpha, RGB or RGBA)");
                    if (w <= 0 || h <= 0 || (long)w * h > 1 << 26) throw new RotorException($"{path}: PNG size {w}x{h} is not supported");
                    break;
                case "IDAT": idat.Write(data); break;
                case "IEND": end = true; break;
            }
            pos += 12 + len;
        }
        if (w == 0) throw new RotorException($"{path}: PNG has no IHDR chunk");
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
        }
        catch (InvalidDataException e) { throw new RotorException($"{path}: corrupt PNG image data: {e.Message}", e); }
        var img = new byte[(long)stride * h];
        for (int y = 0; y < h; y++)
        {
            int filter = raw[(long)y * (stride + 1)];
            Span<byte> cur = img.AsSpan(y * stride, stride);
            ReadOnlySpan<byte> src = raw.AsSpan(y * (stride + 1) + 1, stride);
            ReadOnlySpan<byte> prev = y > 0 ? img.AsSpan((y - 1) * stride, stride) : new byte[stride];
            for (int i = 0; i < stride; i++)
            {
                int a = i >= channels ? cur[i - channels] : 0, up = prev[i], c = i >= channels ? prev[i - channels] : 0;
                int pred = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => up,
                    3 => (a + up) >> 1,
                    4 => Paeth(a, up, c),
                    _ => throw new RotorException($"{path}: PNG row {y} has unknown filter {filter}"),
                };
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

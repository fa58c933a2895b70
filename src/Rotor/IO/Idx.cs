using System.Buffers.Binary;
using System.IO.Compression;

namespace Rotor.IO;

/// <summary>
/// An IDX file (the format of MNIST and Fashion-MNIST): a 4-byte magic <c>00 00 TT DD</c> (TT the element type,
/// DD the number of dimensions), DD big-endian uint32 sizes, then the elements, row-major. Only unsigned bytes
/// (TT = 0x08) are read: the type of every MNIST-style file. A file may be gzip-compressed (detected by its first bytes).
/// </summary>
/// <param name="Dims">The sizes, outermost first (for images: count, rows, cols).</param>
/// <param name="Data">The elements, row-major; length = product of <paramref name="Dims"/>.</param>
public sealed record IdxFile(int[] Dims, byte[] Data)
{
    /// <summary>The element type code of unsigned bytes.</summary>
    public const byte UnsignedByte = 0x08;
    private const long MaxElements = 1L << 31;

    /// <summary>Reads and validates <paramref name="path"/> (plain or gzip).</summary>
    /// <exception cref="RotorException">The file is missing, truncated, has a bad magic, an unsupported type, a zero
    /// dimension, or bytes past the end; the message names the file and what is wrong.</exception>
    public static IdxFile Read(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: IDX file not found");
        byte[] raw;
        try { raw = File.ReadAllBytes(path); }
        catch (IOException e) { throw new RotorException($"{path}: cannot read the IDX file: {e.Message}", e); }
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
                using var ms = new MemoryStream();
                gz.CopyTo(ms);
                raw = ms.ToArray();
            }
            catch (InvalidDataException e) { throw new RotorException($"{path}: corrupt gzip stream: {e.Message}", e); }
            catch (EndOfStreamException e) { throw new RotorException($"{path}: truncated gzip stream: {e.Message}", e); }
        }
        return Parse(raw, path);
    }

    /// <summary>Parses the bytes of an uncompressed IDX file; <paramref name="name"/> names it in errors.</summary>
    public static IdxFile Parse(ReadOnlySpan<byte> raw, string name)
    {
        if (raw.Length < 4) throw new RotorException($"{name}: truncated IDX file: {raw.Length} bytes, the magic number alone takes 4");
        if (raw[0] != 0 || raw[1] != 0)
            throw new RotorException($"{name}: bad IDX magic 0x{raw[0]:x2}{raw[1]:x2}{raw[2]:x2}{raw[3]:x2}: the first two bytes must be zero (not an IDX file?)");
        byte type = raw[2];
        int nd = raw[3];
        if (type != UnsignedByte)
            throw new RotorException($"{name}: IDX element type 0x{type:x2} is not supported (only 0x08, unsigned byte, as in MNIST)");
        if (nd < 1 || nd > 4) throw new RotorException($"{name}: IDX header declares {nd} dimensions, expected 1 to 4");
        int headerBytes = 4 + 4 * nd;
        if (raw.Length < headerBytes) throw new RotorException($"{name}: truncated IDX header: {raw.Length} bytes, {nd} dimensions need {headerBytes}");
        var dims = new int[nd];
        long count = 1;
        for (int d = 0; d < nd; d++)
        {
            uint v = BinaryPrimitives.ReadUInt32BigEndian(raw.Slice(4 + 4 * d));
            if (v == 0 || v > int.MaxValue) throw new RotorException($"{name}: IDX dimension {d} is {v}, expected 1 to {int.MaxValue}");
            dims[d] = (int)v;
            count *= v;
            if (count > MaxElements) throw new RotorException($"{name}: IDX dimensions {string.Join("x", dims[..(d + 1)])} hold more than {MaxElements} elements");
        }
        long payload = raw.Length - headerBytes;
        if (payload < count)
            throw new RotorException($"{name}: truncated IDX file: dimensions {string.Join("x", dims)} need {count} data bytes, the file has {payload}");
        if (payload > count)
            throw new RotorException($"{name}: IDX file has {payload - count} bytes past the {count} its dimensions {string.Join("x", dims)} declare");
        return new IdxFile(dims, raw.Slice(headerBytes).ToArray());
    }

    /// <summary>The bytes of this file in IDX form (uncompressed).</summary>
    public byte[] ToBytes()
    {
        long count = Dims.Aggregate(1L, (a, d) => a * d);
        if (count != Data.Length) throw new RotorException($"IDX data has {Data.Length} bytes, dimensions {string.Join("x", Dims)} need {count}");
        var b = new byte[4 + 4 * Dims.Length + Data.Length];
        b[2] = UnsignedByte; b[3] = (byte)Dims.Length;
        for (int d = 0; d < Dims.Length; d++) BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4 + 4 * d), (uint)Dims[d]);
        Data.CopyTo(b, 4 + 4 * Dims.Length);
        return b;
    }

    /// <summary>Writes this file to <paramref name="path"/> atomically, gzip-compressed when the name ends in .gz.</summary>
    public void Write(string path)
    {
        byte[] bytes = ToBytes();
        AtomicFile.Write(path, s =>
        {
            if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            {
                using var gz = new GZipStream(s, CompressionLevel.SmallestSize, leaveOpen: true);
                gz.Write(bytes);
            }
            else s.Write(bytes);
        });
    }
}

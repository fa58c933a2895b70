using System.IO.Compression;
using Rotor.IO;

namespace Rotor.Tests.Training;

public class IdxTests
{
    private static byte[] Header(byte type, params uint[] dims)
    {
        var b = new byte[4 + 4 * dims.Length];
        b[2] = type; b[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        return b;
    }

    [Fact]
    public void RoundTripsPlainAndGzip()
    {
        var f = new IdxFile([3, 2, 2], Enumerable.Range(0, 12).Select(i => (byte)(i * 20)).ToArray());
        foreach (string ext in new[] { ".idx", ".idx.gz" })
        {
            string path = TrainingData.TempFile(ext);
            try
            {
                f.Write(path);
                IdxFile g = IdxFile.Read(path);
                Assert.Equal(f.Dims, g.Dims);
                Assert.Equal(f.Data, g.Data);
                if (ext.EndsWith(".gz")) Assert.Equal(0x1f, File.ReadAllBytes(path)[0]);
            }
            finally { File.Delete(path); }
        }
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("extra")]
    [InlineData("magic")]
    [InlineData("type")]
    [InlineData("zero")]
    [InlineData("dims")]
    [InlineData("short")]
    public void RejectsMalformedFilesNamingTheProblem(string kind)
    {
        byte[] bytes = kind switch
        {
            "truncated" => [.. Header(8, 2, 3), 1, 2, 3, 4, 5],
            "extra" => [.. Header(8, 2), 1, 2, 3],
            "magic" => [1, 0, 8, 1, 0, 0, 0, 1, 7],
            "type" => [.. Header(0x0D, 1), 0, 0, 0, 0],
            "zero" => Header(8, 0),
            "dims" => [0, 0, 8, 3, 0, 0, 0, 2],
            _ => [0, 0],
        };
        var e = Assert.Throws<RotorException>(() => IdxFile.Parse(bytes, "test.idx"));
        Assert.Contains("test.idx", e.Message);
        string expected = kind switch
        {
            "truncated" => "truncated", "extra" => "past", "magic" => "magic", "type" => "0x0d", "zero" => "dimension 0 is 0",
            "dims" => "truncated IDX header", _ => "truncated",
        };
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void RejectsTruncatedGzipAndMissingFiles()
    {
        string path = TrainingData.TempFile("bad.gz");
        try
        {
            using (var ms = new MemoryStream())
            {
                using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(new IdxFile([1000], new byte[1000]).ToBytes());
                File.WriteAllBytes(path, ms.ToArray()[..(int)(ms.Length / 2)]);
            }
            var e = Assert.Throws<RotorException>(() => IdxFile.Read(path));
            Assert.Contains(path, e.Message);
        }
        finally { File.Delete(path); }
        Assert.Contains("not found", Assert.Throws<RotorException>(() => IdxFile.Read("/nonexistent/x.idx")).Message);
    }

    [Fact]
    public void DatasetChecksImagesAgainstLabels()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-idx-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            new IdxFile([3, 2, 2], new byte[12]).Write(Path.Combine(dir, "train-images-idx3-ubyte"));
            new IdxFile([4], new byte[4]).Write(Path.Combine(dir, "train-labels-idx1-ubyte.gz"));
            var e = Assert.Throws<RotorException>(() => ImageDataset.LoadSplit(dir, train: true));
            Assert.Contains("3 images", e.Message);
            Assert.Contains("4 labels", e.Message);
            new IdxFile([3], [0, 11, 2]).Write(Path.Combine(dir, "train-labels-idx1-ubyte.gz"));
            Assert.Contains("label 1 is 11", Assert.Throws<RotorException>(() => ImageDataset.LoadSplit(dir, train: true)).Message);
            Assert.Contains("t10k-images", Assert.Throws<RotorException>(() => ImageDataset.LoadSplit(dir, train: false)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CommittedMnistSubsetLoads()
    {
        var (train, test) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        Assert.Equal(8000, train.Count);
        Assert.Equal(2000, test.Count);
        Assert.Equal(28, train.Rows);
        var counts = new int[10];
        foreach (byte l in train.Labels) counts[l]++;
        Assert.All(counts, c => Assert.InRange(c, 600, 1000));   // every digit present
    }

    [FashionFact]
    public void FashionMnistFromTheDebianPackageLoads()
    {
        var (train, test) = ImageDataset.LoadFolder(TrainingData.FashionDir);
        Assert.Equal(60000, train.Count);
        Assert.Equal(10000, test.Count);
        Assert.Equal(28 * 28, train.ImageSize);
    }
}

public class GrayImageTests
{
    [Fact]
    public void ReadsPgmAndPng()
    {
        var px = Enumerable.Range(0, 12).Select(i => (byte)(i * 21)).ToArray();
        string pgm = TrainingData.TempFile("a.pgm"), png = TrainingData.TempFile("a.png");
        try
        {
            new GrayImage(4, 3, px).WritePgm(pgm);
            Assert.Equal(px, GrayImage.Read(pgm).Pixels);
            // A PNG written by hand: 8-bit grey, rows filtered with Sub (1), Up (2) and Paeth (4).
            File.WriteAllBytes(png, Png(4, 3, px));
            var img = GrayImage.Read(png);
            Assert.Equal((4, 3), (img.Width, img.Height));
            Assert.Equal(px, img.Pixels);
            File.WriteAllBytes(png, Png(4, 3, px)[..40]);
            Assert.Contains("truncated", Assert.Throws<RotorException>(() => GrayImage.Read(png)).Message);
        }
        finally { File.Delete(pgm); File.Delete(png); }
    }

    /// <summary>PNGs written by Pillow (tests/Rotor.Tests/Data/images/make.py: grey, grey+alpha, RGB, RGBA of odd size,
    /// a text chunk and image data split over six chunks) decode to the grey image Pillow makes of them (its PGM beside
    /// each), within 1 for colour (Pillow rounds luma in 16-bit fixed point, Rotor in thousandths).</summary>
    [Theory]
    [InlineData("grey", 0)]
    [InlineData("grey-alpha", 0)]
    [InlineData("grey-text", 0)]
    [InlineData("rgb", 1)]
    [InlineData("rgba-odd", 1)]
    public void PngMatchesPillow(string name, int tolerance)
    {
        string dir = TrainingData.Dir("images");
        var png = GrayImage.Read(Path.Combine(dir, name + ".png"));
        var pgm = GrayImage.Read(Path.Combine(dir, name + ".pgm"));
        Assert.Equal((pgm.Width, pgm.Height), (png.Width, png.Height));
        int worst = 0;
        for (int i = 0; i < pgm.Pixels.Length; i++) worst = Math.Max(worst, Math.Abs(png.Pixels[i] - pgm.Pixels[i]));
        Assert.True(worst <= tolerance, $"{name}: max difference {worst}");
    }

    /// <summary>A 16-bit PGM by Pillow (samples v * 257) scales back to v; a text (P2) PGM reads as its binary twin.</summary>
    [Fact]
    public void SixteenBitAndTextPgm()
    {
        string dir = TrainingData.Dir("images");
        var grey = GrayImage.Read(Path.Combine(dir, "grey.pgm"));
        Assert.Equal(grey.Pixels, GrayImage.Read(Path.Combine(dir, "grey16.pgm")).Pixels);
        string text = $"P2\n# a comment\n{grey.Width} {grey.Height}\n255\n" + string.Join('\n', grey.Pixels.Chunk(grey.Width).Select(r => string.Join(' ', r))) + "\n";
        Assert.Equal(grey.Pixels, GrayImage.Decode(System.Text.Encoding.ASCII.GetBytes(text), "text.pgm").Pixels);
    }

    /// <summary>Headers that once escaped as other exceptions or asked for gigabytes: a width of more digits than an
    /// int holds, a size over <see cref="GrayImage.MaxPixels"/> in a few bytes, a sample over maxval, a PNG chunk whose
    /// CRC does not match (it used to decode to other pixels), image data cut inside its zlib checksum.</summary>
    [Fact]
    public void DamagedHeadersAreRefusedWithARotorError()
    {
        byte[] Ascii(string s) => System.Text.Encoding.Latin1.GetBytes(s);
        foreach (var (bytes, says) in new (byte[], string)[]
        {
            (Ascii("P5\n99999999999 1\n255\n\0"), "width"),
            (Ascii("P5\n65536 65536\n255\n\0"), "pixels supported"),
            (Ascii("P2\n2 1\n100\n5 101\n"), "over 100"),
            (Ascii("P5\n1 1\n100\n\u00ff"), "over the maxval"),
            (Ascii("P5\n2 2\n255\n\0\0"), "truncated"),
            (Ascii("P52 2 255\n\0\0\0\0"), "whitespace"),
        })
            Assert.Contains(says, Assert.Throws<RotorException>(() => GrayImage.Decode(bytes, "x.pgm")).Message);

        var px = Enumerable.Range(0, 12).Select(i => (byte)(i * 21)).ToArray();
        byte[] good = Png(4, 3, px);
        byte[] flipped = (byte[])good.Clone();
        flipped[8 + 8 + 13 + 4 + 8 + 3] ^= 1; // a byte of the image data
        Assert.Contains("CRC", Assert.Throws<RotorException>(() => GrayImage.Decode(flipped, "x.png")).Message);
        // IDAT without its last byte (part of the Adler-32), with a fixed CRC: the pixels are all there, the check is not.
        int idat = 8 + 25, len = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(good.AsSpan(idat));
        byte[] data = good.AsSpan(idat + 8, len - 1).ToArray();
        byte[] cut = [.. good.AsSpan(0, idat), .. PngChunk("IDAT", data), .. good.AsSpan(idat + 12 + len)];
        Assert.IsType<RotorException>(Record.Exception(() => GrayImage.Decode(cut, "x.png")));
    }

    private static byte[] PngChunk(string type, byte[] data)
    {
        var o = new byte[12 + data.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(o, data.Length);
        System.Text.Encoding.ASCII.GetBytes(type).CopyTo(o, 4);
        data.CopyTo(o, 8);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8 + data.Length), System.IO.Hashing.Crc32.HashToUInt32(o.AsSpan(4, 4 + data.Length)));
        return o;
    }

    private static byte[] Png(int w, int h, byte[] px)
    {
        var raw = new List<byte>();
        byte[] filters = [1, 2, 4];
        for (int y = 0; y < h; y++)
        {
            int f = filters[y % 3];
            raw.Add((byte)f);
            for (int x = 0; x < w; x++)
            {
                int a = x > 0 ? px[y * w + x - 1] : 0, b = y > 0 ? px[(y - 1) * w + x] : 0, c = x > 0 && y > 0 ? px[(y - 1) * w + x - 1] : 0;
                int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                int pred = f switch { 1 => a, 2 => b, _ => pa <= pb && pa <= pc ? a : pb <= pc ? b : c };
                raw.Add((byte)(px[y * w + x] - pred));
            }
        }
        using var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw.ToArray());
        var o = new List<byte> { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A };
        void Chunk(string type, byte[] data)
        {
            var len = new byte[4]; System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
            byte[] typed = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
            var crc = new byte[4]; System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(crc, System.IO.Hashing.Crc32.HashToUInt32(typed));
            o.AddRange(len); o.AddRange(typed); o.AddRange(crc);
        }
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, w); System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8; ihdr[9] = 0;
        Chunk("IHDR", ihdr); Chunk("IDAT", z.ToArray()); Chunk("IEND", []);
        return o.ToArray();
    }
}

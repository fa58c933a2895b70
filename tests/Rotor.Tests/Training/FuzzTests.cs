using Rotor.IO;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

/// <summary>
/// Damaged files of every format the core reads (safetensors, training checkpoints, deployable models, IDX plain and
/// gzip, a PGM image; the image fixtures are in <see cref="ImageFuzzTests"/>): bytes flipped, overwritten, cut or inserted at random offsets, a fixed seed a format. Each load
/// either succeeds or fails with a <see cref="RotorException"/>; never another exception type, a hang or a crash.
/// </summary>
public class FuzzTests
{
    private const int Cases = 300;

    private static byte[] Mutate(byte[] good, Random rng) => Rotor.Testing.FileMutator.Mutate(good, rng);

    private static void Fuzz(string good, int seed, Action<string> load)
    {
        load(good); // the good file loads
        byte[] bytes = File.ReadAllBytes(good);
        var rng = new Random(seed);
        string name = Path.GetFileName(good);
        for (int c = 0; c < Cases; c++)
        {
            string path = TrainingData.TempFile($"{c}-{name}");
            File.WriteAllBytes(path, Mutate(bytes, rng));
            try { load(path); }
            catch (RotorException) { }
            catch (Exception e) { Assert.Fail($"{name}, seed {seed}, case {c}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}"); }
            finally { File.Delete(path); }
        }
    }

    [Fact]
    public void DamagedModelFilesLoadOrFailWithARotorError()
    {
        string ckpt = TrainingData.TempFile("m.ckpt.safetensors"), model = TrainingData.TempFile("m.safetensors"), raw = TrainingData.TempFile("t.safetensors");
        try
        {
            var config = new TrainConfig { Model = "mlp", Hidden = 8, Epochs = 1, BatchSize = 4, Lr = 1e-3f };
            using (var trainer = new Trainer(config, 4, 4, 1, 3, 1))
            {
                Checkpoint.Save(trainer, ckpt, model);
                DeployedModelWriter.Export(trainer.Network, trainer.ImageShape, model);
            }
            SafeTensors.Write(raw, [SafeTensor.FromFloats("a", [1f, 2f, 3f, 4f], 2, 2), SafeTensor.FromFloats("b", [5f], 1)], new Dictionary<string, string> { ["k"] = "v" });
            Fuzz(raw, 31, p =>
            {
                var f = SafeTensors.Read(p);
                foreach (string n in f.Names) _ = f.Get(n).ToFloats($"{p}: ");
                _ = f.Metadata.Count;
            });
            Fuzz(ckpt, 32, p => { using var t = Checkpoint.Load(p, 1); });
            Fuzz(model, 33, p => _ = DeployedModel.Load(p).Classes);
        }
        finally { foreach (string f in new[] { ckpt, model, raw }) File.Delete(f); }
    }

    [Fact]
    public void DamagedDataFilesLoadOrFailWithARotorError()
    {
        string idx = TrainingData.TempFile("i.idx"), pgm = TrainingData.TempFile("p.pgm");
        try
        {
            // An IDX file of 3 images of 2x3 bytes: magic 0x00000803, then the dimensions, big-endian.
            File.WriteAllBytes(idx, [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, .. Enumerable.Range(0, 18).Select(i => (byte)(i * 13))]);
            Fuzz(idx, 41, p => _ = IdxFile.Read(p).Data.Length);
            Fuzz(Path.Combine(TrainingData.MnistNpm, "t10k-labels-idx1-ubyte.gz"), 42, p => _ = IdxFile.Read(p).Data.Length);
            new GrayImage(3, 2, [0, 50, 100, 150, 200, 250]).WritePgm(pgm);
            Fuzz(pgm, 43, p => _ = GrayImage.Read(p).Pixels.Length);
        }
        finally { File.Delete(idx); File.Delete(pgm); }
    }
}

/// <summary>
/// Damaged images (PNG and PGM, the formats <c>rotor predict</c> reads): the Pillow-written fixtures of
/// tests/Rotor.Tests/Data/images and their PGM twins mutated with the shared mutator, a fixed seed a file. Each decode
/// either fails with a <see cref="RotorException"/> or succeeds; a PNG that decodes gives the same pixels as the
/// undamaged file (every chunk has a CRC, the image data an Adler-32), a PGM (no checksum) gives an image of the size
/// its header states.
/// </summary>
public class ImageFuzzTests
{
    /// <summary>Cases a file: 9 files, 5,400 cases.</summary>
    public const int Cases = 600;

    [Theory]
    [InlineData("grey.png", 51)]
    [InlineData("grey-alpha.png", 52)]
    [InlineData("rgb.png", 53)]
    [InlineData("rgba-odd.png", 54)]
    [InlineData("grey-text.png", 55)]
    [InlineData("grey.pgm", 56)]
    [InlineData("grey16.pgm", 57)]
    [InlineData("rgba-odd.pgm", 58)]
    [InlineData("grey.txt.pgm", 59)]
    public void DamagedImagesDecodeToTheSamePixelsOrFailWithARotorError(string name, int seed)
    {
        byte[] good;
        if (name == "grey.txt.pgm")
        {
            // The text (P2) form, made from the binary one.
            var g = GrayImage.Read(Path.Combine(TrainingData.Dir("images"), "grey.pgm"));
            good = System.Text.Encoding.ASCII.GetBytes($"P2\n# grey\n{g.Width} {g.Height}\n255\n" + string.Join('\n', g.Pixels.Chunk(g.Width).Select(r => string.Join(' ', r))) + "\n");
        }
        else good = File.ReadAllBytes(Path.Combine(TrainingData.Dir("images"), name));
        GrayImage expected = GrayImage.Decode(good, name);
        bool png = name.EndsWith(".png", StringComparison.Ordinal);
        var rng = new Random(seed);
        int loaded = 0;
        for (int c = 0; c < Cases; c++)
        {
            byte[] bad = Rotor.Testing.FileMutator.Mutate(good, rng);
            GrayImage img;
            try { img = GrayImage.Decode(bad, name); loaded++; }
            catch (RotorException) { continue; }
            catch (Exception e) { Assert.Fail($"{name}, seed {seed}, case {c}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}"); return; }
            Assert.True(img.Pixels.Length == (long)img.Width * img.Height, $"{name}, seed {seed}, case {c}: {img.Width}x{img.Height} with {img.Pixels.Length} pixels");
            if (png)
                Assert.True((img.Width, img.Height) == (expected.Width, expected.Height) && img.Pixels.AsSpan().SequenceEqual(expected.Pixels),
                    $"{name}, seed {seed}, case {c}: a damaged PNG decoded to other pixels");
        }
        Assert.True(loaded < Cases, $"{name}: every damaged file loaded; the mutator or the test is broken");
    }
}

/// <summary>The metadata and shapes Rotor relies on are covered by <c>rotor.header_sha256</c>: an edit that keeps the
/// JSON valid and the data intact (act bits 8 to 4, a shape swapped) is caught; files without the key still load.</summary>
public class HeaderChecksumTests
{
    [Fact]
    public void AnEditedHeaderIsRefusedAndFilesWithoutTheKeyLoad()
    {
        string path = TrainingData.TempFile("h.safetensors");
        try
        {
            SafeTensors.Write(path, [SafeTensor.FromFloats("w", new float[6], 2, 3)], new Dictionary<string, string> { ["rotor.act_bits"] = "8" });
            byte[] good = File.ReadAllBytes(path);
            Assert.Equal("8", SafeTensors.Read(path).Metadata["rotor.act_bits"]);
            foreach (var (from, to) in new[] { ("\"rotor.act_bits\":\"8\"", "\"rotor.act_bits\":\"4\""), ("[2,3]", "[3,2]") })
            {
                string text = System.Text.Encoding.Latin1.GetString(good);
                Assert.Contains(from, text);
                File.WriteAllBytes(path, System.Text.Encoding.Latin1.GetBytes(text.Replace(from, to, StringComparison.Ordinal)));
                Assert.Contains("rotor.header_sha256", Assert.Throws<RotorException>(() => SafeTensors.Read(path)).Message);
            }
            // Without the key (an older Rotor file, another tool's file) the header is read unchecked.
            string old = System.Text.Encoding.Latin1.GetString(good);
            int at = old.IndexOf("\"rotor.header_sha256\"", StringComparison.Ordinal);
            int end = old.IndexOf('"', old.IndexOf(':', at) + 2) + 1;
            string edited = old[..at] + old[(end + 1)..]; // drop the entry and its comma
            byte[] bytes = System.Text.Encoding.Latin1.GetBytes(edited);
            ulong hlen = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(good) - (ulong)(good.Length - bytes.Length);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes, hlen);
            File.WriteAllBytes(path, bytes);
            Assert.False(SafeTensors.Read(path).Metadata.ContainsKey("rotor.header_sha256"));
        }
        finally { File.Delete(path); }
    }
}

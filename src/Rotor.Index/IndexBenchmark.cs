using System.Diagnostics;

namespace Rotor.Index;

/// <summary>
/// The figures of docs/BENCHMARKS-index.md on clustered synthetic vectors (<see cref="SyntheticVectors"/>): for each
/// code, bytes a vector, build time, single-thread and all-thread exact scan latency, recall@10 against the exact
/// float32 ranking (with and without rescoring); then an HNSW graph over ternary codes: build time, graph bytes,
/// queries a second and recall@10 for a few efSearch values.
/// </summary>
public static class IndexBenchmark
{
    /// <summary>Benchmark settings.</summary>
    /// <param name="Count">Vectors in the flat indexes.</param>
    /// <param name="Dimensions">Vector length.</param>
    /// <param name="Queries">Queries for recall (latency uses fewer for float32).</param>
    /// <param name="HnswCount">Vectors in the HNSW index (0: same as Count).</param>
    /// <param name="Clusters">Clusters of the synthetic data.</param>
    /// <param name="Seed">Data seed.</param>
    public sealed record Settings(int Count = 1_000_000, int Dimensions = 384, int Queries = 200, int HnswCount = 0, int Clusters = 1000, int Seed = 1);

    /// <summary>Runs the benchmark, writing progress and the table to <paramref name="output"/>.</summary>
    public static void Run(Settings s, TextWriter output)
    {
        int n = s.Count, d = s.Dimensions, nq = s.Queries, k = 10;
        output.WriteLine($"# rotor index bench: {n:N0} clustered synthetic vectors ({s.Clusters} clusters), {d} dims, {nq} queries, k = {k}");
        output.WriteLine($"# {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, avx2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}, avx512bw {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}");
        var sw = Stopwatch.StartNew();
        float[] all = SyntheticVectors.Clustered(n + nq, d, s.Clusters, s.Seed);
        var data = new ReadOnlyMemory<float>(all, 0, n * d);
        var queries = new float[nq][];
        for (int q = 0; q < nq; q++) queries[q] = all.AsSpan((n + q) * d, d).ToArray();
        output.WriteLine($"# data generated in {sw.Elapsed.TotalSeconds:F1} s");

        var rows = new List<string[]>();
        string[][]? groundTruth = null;
        double floatScanMs = 0;
        foreach (var kind in new[] { CodeKind.Float32, CodeKind.Int8, CodeKind.Ternary, CodeKind.Binary })
        {
            using var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = kind, KeepFullPrecision = kind != CodeKind.Float32 });
            long before = GC.GetTotalMemory(true);
            sw.Restart();
            AddAll(index, data, n, d, output);
            double build = sw.Elapsed.TotalSeconds;
            var st = index.Stats;
            int latencyQueries = kind == CodeKind.Float32 ? Math.Min(nq, 20) : Math.Min(nq, 100);
            var (ms1, min1) = Latency(index, queries, latencyQueries, k, 1);
            var (msAll, _) = Latency(index, queries, latencyQueries, k, 0);
            var results = queries.Select(q => index.Search(q, k, new SearchOptions { IncludeFields = false }).Select(h => h.Key).ToArray()).ToArray();
            if (kind == CodeKind.Float32) { groundTruth = results; floatScanMs = ms1; }
            double recall = Recall(results, groundTruth!, k);
            string rescored = "-";
            if (kind != CodeKind.Float32)
            {
                var rr = queries.Select(q => index.Search(q, k, new SearchOptions { IncludeFields = false, RescoreFactor = 4 }).Select(h => h.Key).ToArray()).ToArray();
                rescored = $"{Recall(rr, groundTruth!, k):F3}";
            }
            rows.Add([$"flat {kind}", $"{st.CodeBytesPerVector}", $"{build:F1} s", $"{ms1:F2}", $"{msAll:F2}", $"{floatScanMs / ms1:F1}x", $"{recall:F3}", rescored]);
            output.WriteLine($"# {kind}: built in {build:F1} s, scan median {ms1:F2} ms (min {min1:F2}) on 1 thread, {msAll:F2} ms on {Environment.ProcessorCount} threads, recall {recall:F3}, rescored x4 {rescored}; load average {LoadAverage()}");
        }
        output.WriteLine();
        output.WriteLine("| index | bytes/vector (code) | build | scan ms/query, 1 thread | scan ms/query, all threads | speed vs float32 (1 thread) | recall@10 vs float32 exact | recall@10, rescored x4 |");
        output.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows) output.WriteLine("| " + string.Join(" | ", r) + " |");
        output.WriteLine();

        int nh = s.HnswCount > 0 ? Math.Min(s.HnswCount, n) : n;
        var hnswSettings = new HnswSettings(M: 16, EfConstruction: 100, EfSearch: 64);
        using (var h = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Structure = IndexStructure.Hnsw, Hnsw = hnswSettings }))
        {
            long mem0 = GC.GetTotalMemory(true);
            sw.Restart();
            AddAll(h, data[..(nh * d)], nh, d, output);
            double build = sw.Elapsed.TotalSeconds;
            long managed = GC.GetTotalMemory(true) - mem0;
            var st = h.Stats;
            // Ground truths on the same nh vectors: exact ternary (the graph's own metric) and exact float32.
            string[][] exactTernary = queries.Select(q => h.Search(q, k, new SearchOptions { Exact = true, IncludeFields = false }).Select(x => x.Key).ToArray()).ToArray();
            string[][] exactFloat;
            if (nh == n) exactFloat = groundTruth!;
            else
            {
                using var f = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Float32 });
                AddAll(f, data[..(nh * d)], nh, d, output);
                exactFloat = queries.Select(q => f.Search(q, k, new SearchOptions { IncludeFields = false }).Select(x => x.Key).ToArray()).ToArray();
            }
            output.WriteLine($"HNSW over ternary codes: {nh:N0} vectors, M = {hnswSettings.M}, efConstruction = {hnswSettings.EfConstruction}; built in {build:F1} s " +
                             $"({nh / build:F0} vectors/s, {Environment.ProcessorCount} threads); codes {st.CodeBytes / (double)nh:F0} B/vector, graph {st.GraphBytes / (double)nh:F0} B/vector, " +
                             $"managed heap growth {managed / (double)nh:F0} B/vector (keys, key map, scales, graph); kept float32 vectors {st.FullPrecisionBytes / (double)nh:F0} B/vector (on disk, mapped, once saved); load average {LoadAverage()}");
            output.WriteLine();
            output.WriteLine($"Queries/s on one thread, load average {LoadAverage()}:");
            output.WriteLine();
            output.WriteLine("| efSearch | rescore | queries/s (1 thread) | recall@10 vs exact ternary | recall@10 vs exact float32 |");
            output.WriteLine("|---|---|---|---|---|");
            foreach (int ef in new[] { 32, 64, 128, 256 })
                foreach (int rf in new[] { 0, 4 })
                {
                    var opt = new SearchOptions { EfSearch = ef, RescoreFactor = rf, IncludeFields = false };
                    var res = new string[nq][];
                    for (int q = 0; q < Math.Min(nq, 20); q++) h.Search(queries[q], k, opt); // warm-up
                    sw.Restart();
                    for (int q = 0; q < nq; q++) res[q] = h.Search(queries[q], k, opt).Select(x => x.Key).ToArray();
                    double qps = nq / sw.Elapsed.TotalSeconds;
                    output.WriteLine($"| {ef} | {(rf > 1 ? $"x{rf}" : "no")} | {qps:F0} | {Recall(res, exactTernary, k):F3} | {Recall(res, exactFloat, k):F3} |");
                }
        }
    }

    private static void AddAll(VectorIndex index, ReadOnlyMemory<float> data, int n, int d, TextWriter output)
    {
        const int batch = 50_000;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i += batch)
        {
            int m = Math.Min(batch, n - i);
            var recs = new IndexRecord[m];
            for (int j = 0; j < m; j++) recs[j] = new IndexRecord((i + j).ToString(System.Globalization.CultureInfo.InvariantCulture), data.Slice((i + j) * d, d));
            index.Add(recs);
            double done = i + m, rate = done / sw.Elapsed.TotalSeconds;
            if (n > batch) output.WriteLine($"#   {index.Options.Code} {index.Options.Structure}: {done:N0}/{n:N0} added, {rate:F0} vectors/s, ETA {(n - done) / rate:F0} s");
        }
    }

    /// <summary>Median and minimum milliseconds a query (the machine is shared: the median resists other load).</summary>
    private static (double Median, double Min) Latency(VectorIndex index, float[][] queries, int count, int k, int threads)
    {
        var opt = new SearchOptions { Threads = threads, IncludeFields = false, Exact = true };
        index.Search(queries[0], k, opt);
        var times = new double[count];
        var sw = new Stopwatch();
        for (int q = 0; q < count; q++)
        {
            sw.Restart();
            index.Search(queries[q], k, opt);
            times[q] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return (times[count / 2], times[0]);
    }

    private static string LoadAverage()
    {
        try { return File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a"; }
        catch (IOException) { return "n/a"; }
    }

    /// <summary>Mean share of the reference top-k found in the result top-k.</summary>
    public static double Recall(string[][] results, string[][] reference, int k)
    {
        double sum = 0;
        for (int q = 0; q < results.Length; q++)
        {
            var truth = reference[q].Take(k).ToHashSet(StringComparer.Ordinal);
            sum += truth.Count == 0 ? 1 : results[q].Take(k).Count(truth.Contains) / (double)truth.Count;
        }
        return sum / results.Length;
    }
}

using Rotor.Threading;
using System.Diagnostics;

namespace Rotor.Index.Benchmarking;

/// <summary>
/// The figures of docs/BENCHMARKS-index.md on clustered synthetic vectors (<see cref="SyntheticVectors"/>): for each
/// code, bytes a vector, build time, single-thread and all-thread exact scan latency, recall@10 against the exact
/// float32 ranking (with and without rescoring), the ternary codes with an int8 query too; float32 and ternary scans
/// side by side (alternating query by query) and the kernels alone; then an HNSW graph over ternary codes: build time,
/// graph bytes, queries a second, per-query latency and recall@10 for a few efSearch values, ternary or int8 query,
/// with and without rescoring; and where the time of rescoring goes.
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
        VectorIndex? floatIndex = null, ternaryIndex = null;
        foreach (var kind in new[] { CodeKind.Float32, CodeKind.Int8, CodeKind.Ternary, CodeKind.Binary })
        {
            // The float32 and ternary indexes stay for the side-by-side scan comparison below.
            using var owned = kind is CodeKind.Float32 or CodeKind.Ternary ? null : new Holder();
            var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = kind, KeepFullPrecision = kind != CodeKind.Float32 });
            long before = GC.GetTotalMemory(true);
            sw.Restart();
            AddAll(index, data, n, d, output);
            double build = sw.Elapsed.TotalSeconds;
            var st = index.Stats;
            int latencyQueries = kind == CodeKind.Float32 ? Math.Min(nq, 20) : Math.Min(nq, 100);
            var (ms1, min1) = Latency(index, queries, latencyQueries, k, 1);
            var (msAll, _) = Latency(index, queries, latencyQueries, k, ThreadCount.Default);
            var results = queries.Select(q => index.Search(q, k, new SearchOptions { IncludeFields = false }).Select(h => h.Key).ToArray()).ToArray();
            if (owned is not null) owned.Index = index;
            else if (kind == CodeKind.Float32) floatIndex = index;
            else ternaryIndex = index;
            if (kind == CodeKind.Float32) { groundTruth = results; floatScanMs = ms1; }
            double recall = Recall(results, groundTruth!, k);
            string rescored = "-";
            if (kind != CodeKind.Float32)
            {
                var rr = queries.Select(q => index.Search(q, k, new SearchOptions { IncludeFields = false, RescoreFactor = 4 }).Select(h => h.Key).ToArray()).ToArray();
                rescored = $"{Recall(rr, groundTruth!, k):F3}";
            }
            rows.Add([$"flat {kind}", $"{st.CodeBytesPerVector}", $"{build:F1} s", $"{ms1:F2}", $"{msAll:F2}", $"{floatScanMs / ms1:F1}x", $"{recall:F3}", rescored]);
            output.WriteLine($"# {kind}: built in {build:F1} s, scan median {ms1:F2} ms (min {min1:F2}) on 1 thread, {msAll:F2} ms on {ThreadCount.Default} threads, recall {recall:F3}, rescored x4 {rescored}; load average {LoadAverage()}");
        }
        {
            // The same ternary codes scored against the query kept as int8 (asymmetric).
            var t = ternaryIndex!;
            var (ms1, min1) = Latency(t, queries, Math.Min(nq, 100), k, 1, int8Query: true);
            var (msAll, _) = Latency(t, queries, Math.Min(nq, 100), k, ThreadCount.Default, int8Query: true);
            var opt = new SearchOptions { IncludeFields = false, Int8Query = true };
            double recall = Recall(queries.Select(q => t.Search(q, k, opt).Select(h => h.Key).ToArray()).ToArray(), groundTruth!, k);
            double rescored = Recall(queries.Select(q => t.Search(q, k, opt with { RescoreFactor = 4 }).Select(h => h.Key).ToArray()).ToArray(), groundTruth!, k);
            rows.Insert(3, [$"flat Ternary, int8 query", $"{t.Stats.CodeBytesPerVector}", "(same index)", $"{ms1:F2}", $"{msAll:F2}", $"{floatScanMs / ms1:F1}x", $"{recall:F3}", $"{rescored:F3}"]);
            output.WriteLine($"# Ternary, int8 query: scan median {ms1:F2} ms (min {min1:F2}) on 1 thread, {msAll:F2} ms on {ThreadCount.Default} threads, recall {recall:F3}, rescored x4 {rescored:F3}; load average {LoadAverage()}");
        }
        output.WriteLine();
        output.WriteLine("| index | bytes/vector (code) | build | scan ms/query, 1 thread | scan ms/query, all threads | speed vs float32 (1 thread) | recall@10 vs float32 exact | recall@10, rescored x4 |");
        output.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows) output.WriteLine("| " + string.Join(" | ", r) + " |");
        output.WriteLine();
        CompareScans(floatIndex!, ternaryIndex!, queries, Math.Min(nq, 40), k, output);
        floatIndex!.Dispose(); ternaryIndex!.Dispose();

        int nh = s.HnswCount > 0 ? Math.Min(s.HnswCount, n) : n;
        var hnswSettings = new HnswSettings(M: 32, EfConstruction: 100, EfSearch: 64);
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
            string[][] exactInt8 = queries.Select(q => h.Search(q, k, new SearchOptions { Exact = true, IncludeFields = false, Int8Query = true }).Select(x => x.Key).ToArray()).ToArray();
            string[][] exactFloat;
            if (nh == n) exactFloat = groundTruth!;
            else
            {
                using var f = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Float32 });
                AddAll(f, data[..(nh * d)], nh, d, output);
                exactFloat = queries.Select(q => f.Search(q, k, new SearchOptions { IncludeFields = false }).Select(x => x.Key).ToArray()).ToArray();
            }
            output.WriteLine($"HNSW over ternary codes: {nh:N0} vectors, M = {hnswSettings.M}, efConstruction = {hnswSettings.EfConstruction}; built in {build:F1} s " +
                             $"({nh / build:F0} vectors/s, {ThreadCount.Default} threads); codes {st.CodeBytes / (double)nh:F0} B/vector, graph {st.GraphBytes / (double)nh:F0} B/vector, " +
                             $"managed heap growth {managed / (double)nh:F0} B/vector (keys, key map, scales, graph); kept float32 vectors {st.FullPrecisionBytes / (double)nh:F0} B/vector (on disk, mapped, once saved); load average {LoadAverage()}");
            output.WriteLine();
            output.WriteLine($"Queries/s on one thread, load average {LoadAverage()}:");
            output.WriteLine();
            output.WriteLine("| query | efSearch | rescore | queries/s (1 thread) | us/query: median (min) | recall@10 vs exact scan, same scoring | recall@10 vs exact float32 |");
            output.WriteLine("|---|---|---|---|---|---|---|");
            foreach (bool int8Query in new[] { false, true })
            foreach (int ef in new[] { 32, 64, 128, 256 })
                foreach (int rf in new[] { 0, 4 })
                {
                    var opt = new SearchOptions { EfSearch = ef, RescoreFactor = rf, IncludeFields = false, Int8Query = int8Query };
                    var res = new string[nq][];
                    for (int q = 0; q < Math.Min(nq, 20); q++) h.Search(queries[q], k, opt); // warm-up
                    var us = new double[nq];
                    var total = Stopwatch.StartNew();
                    for (int q = 0; q < nq; q++)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        var hits = h.Search(queries[q], k, opt);
                        us[q] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                        res[q] = hits.Select(x => x.Key).ToArray();
                    }
                    double qps = nq / total.Elapsed.TotalSeconds;
                    Array.Sort(us);
                    output.WriteLine($"| {(int8Query ? "int8" : "ternary")} | {ef} | {(rf > 1 ? $"x{rf}" : "no")} | {qps:F0} | {us[nq / 2]:F0} ({us[0]:F0}) | {Recall(res, int8Query ? exactInt8 : exactTernary, k):F3} | {Recall(res, exactFloat, k):F3} |");
                }
            output.WriteLine();
            RescoreCost(h, queries, k, output);
        }
    }

    private sealed class Holder : IDisposable
    {
        public VectorIndex? Index;
        public void Dispose() => Index?.Dispose();
    }

    /// <summary>Exact scans of the same queries on one thread, float32 and ternary alternating query by query, so that
    /// both see the same machine load: medians, minimums and the median of the per-query speed ratios.</summary>
    private static void CompareScans(VectorIndex f, VectorIndex t, float[][] queries, int count, int k, TextWriter output)
    {
        var opt = new SearchOptions { Threads = 1, IncludeFields = false, Exact = true };
        var asym = opt with { Int8Query = true };
        f.Search(queries[0], k, opt); t.Search(queries[0], k, opt); t.Search(queries[0], k, asym);
        var tf = new double[count]; var tt = new double[count]; var ta = new double[count]; var ratio = new double[count];
        for (int q = 0; q < count; q++)
        {
            long t0 = Stopwatch.GetTimestamp();
            f.Search(queries[q], k, opt);
            tf[q] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            t0 = Stopwatch.GetTimestamp();
            t.Search(queries[q], k, opt);
            tt[q] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            t0 = Stopwatch.GetTimestamp();
            t.Search(queries[q], k, asym);
            ta[q] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            ratio[q] = tf[q] / tt[q];
        }
        Array.Sort(tf); Array.Sort(tt); Array.Sort(ta); Array.Sort(ratio);
        string kernels = KernelsAlone(f, t, queries[0]);
        output.WriteLine($"Exact scan side by side ({count} queries, 1 thread; float32, ternary and ternary with int8 query alternating; load average {LoadAverage()}):");
        output.WriteLine($"  float32 median {tf[count / 2]:F2} ms (min {tf[0]:F2}); ternary median {tt[count / 2]:F2} ms (min {tt[0]:F2}), " +
                         $"ratio of medians {tf[count / 2] / tt[count / 2]:F1}x, of minimums {tf[0] / tt[0]:F1}x, median of per-query ratios {ratio[count / 2]:F1}x; " +
                         $"ternary with int8 query median {ta[count / 2]:F2} ms (min {ta[0]:F2}), {tf[count / 2] / ta[count / 2]:F1}x float32");
        output.WriteLine($"  {kernels}");
        output.WriteLine();
    }

    /// <summary>The scoring kernels alone over every code of the two indexes (no heap, no keys), minimum of 7 passes
    /// each, passes alternating: ternary unrolled, ternary with a loop over words, ternary asymmetric, float32.</summary>
    private static unsafe string KernelsAlone(VectorIndex f, VectorIndex t, float[] query)
    {
        const int chunk = 1024, passes = 7;
        int n = t.Store.Count, words = t.Layout.Words, d = f.Layout.Dimensions;
        var qt = new PreparedQuery(t.Layout, t.Options.Metric, query, int8Query: true);
        var qf = new PreparedQuery(f.Layout, f.Options.Metric, query);
        float* dest = stackalloc float[chunk];
        var best = new double[4];
        Array.Fill(best, double.MaxValue);
        fixed (byte* qc = qt.Code, qfc = qf.Code) fixed (sbyte* planes = qt.Planes)
            for (int pass = 0; pass < passes; pass++)
                for (int kind = 0; kind < 4; kind++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    for (int s = 0; s < n; s += chunk)
                    {
                        int m = Math.Min(chunk, n - s);
                        switch (kind)
                        {
                            case 0: ScanKernels.Ternary((ulong*)qc, (ulong*)t.Store.Code(s), words, m, dest); break;
                            case 1: ScanKernels.TernaryGeneric((ulong*)qc, (ulong*)t.Store.Code(s), words, m, dest); break;
                            case 2: ScanKernels.TernaryAsym(planes, (ulong*)t.Store.Code(s), words, m, dest); break;
                            default: ScanKernels.Float32((float*)qfc, (float*)f.Store.Code(s), d, m, dest); break;
                        }
                    }
                    best[kind] = Math.Min(best[kind], Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
        return $"kernels alone over {n:N0} codes (minimum of {passes} alternating passes): ternary unrolled {best[0]:F2} ms, ternary with a loop over words {best[1]:F2} ms, " +
               $"ternary int8 query {best[2]:F2} ms, float32 {best[3]:F2} ms ({best[3] / best[0]:F1}x the unrolled ternary); load average {LoadAverage()}";
    }

    /// <summary>Where the time of rescoring goes: search with and without rescoring alternating query by query; the
    /// rescoring of 4k candidates alone with and without prefetching; and the same on the index saved and reopened
    /// memory-mapped, first touch (page faults) and again.</summary>
    private static void RescoreCost(VectorIndex h, float[][] queries, int k, TextWriter output)
    {
        int nq = queries.Length, want = 4 * k;
        var plain = new SearchOptions { EfSearch = 64, IncludeFields = false };
        var rescored = plain with { RescoreFactor = 4 };
        var cands = queries.Select(q => h.Search(q, want, plain with { EfSearch = Math.Max(64, want) }).Select(x => int.Parse(x.Key, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
        var a = new double[nq]; var b = new double[nq];
        for (int q = 0; q < nq; q++)
            for (int pass = 0; pass < 2; pass++)
            {
                // The second search of a query finds the graph nodes in cache: alternate which one goes first.
                bool withRescore = (pass == 0) == (q % 2 == 1);
                long t0 = Stopwatch.GetTimestamp();
                h.Search(queries[q], k, withRescore ? rescored : plain);
                (withRescore ? b : a)[q] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            }
        Array.Sort(a); Array.Sort(b);
        output.WriteLine($"Rescoring cost at efSearch 64 (alternating, {nq} queries, load average {LoadAverage()}): search {a[nq / 2]:F0} us median ({a[0]:F0} min), " +
                         $"search + rescore x4 {b[nq / 2]:F0} us ({b[0]:F0})");
        output.WriteLine($"  rescoring {want} candidates alone, in memory: {RescoreOnly(h, queries, cands, k)}");
        string file = Path.Combine(Path.GetTempPath(), $"rotor-bench-{Environment.ProcessId}.rix");
        try
        {
            var sw = Stopwatch.StartNew();
            h.Save(file);
            using var m = VectorIndex.Open(file, memoryMap: true, verifyChecksums: false);
            output.WriteLine($"  saved and reopened memory-mapped in {sw.Elapsed.TotalSeconds:F1} s; rescoring alone, first touch then again:");
            output.WriteLine($"    first {RescoreOnly(m, queries, cands, k, warm: false)}");
            output.WriteLine($"    again {RescoreOnly(m, queries, cands, k)}");
        }
        finally { File.Delete(file); }
    }

    private static string RescoreOnly(VectorIndex h, float[][] queries, int[][] cands, int k, bool warm = true)
    {
        var with = new List<double>(); var without = new List<double>();
        if (warm) for (int q = 0; q < queries.Length; q++) h.RescoreForBenchmark(queries[q], cands[q], k, prefetch: false);
        for (int q = 0; q < queries.Length; q++)
        {
            // Warm: both ways, in alternating order. First touch: one way per query (even queries with prefetch).
            for (int pass = 0; pass < (warm ? 2 : 1); pass++)
            {
                bool pf = (pass == 0) == (q % 2 == 0);
                long t0 = Stopwatch.GetTimestamp();
                h.RescoreForBenchmark(queries[q], cands[q], k, pf);
                (pf ? with : without).Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            }
        }
        with.Sort(); without.Sort();
        return $"with prefetch {with[with.Count / 2]:F1} us median ({with[0]:F1} min), without {without[without.Count / 2]:F1} us ({without[0]:F1}); load average {LoadAverage()}";
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
    private static (double Median, double Min) Latency(VectorIndex index, float[][] queries, int count, int k, int threads, bool int8Query = false)
    {
        var opt = new SearchOptions { Threads = threads, IncludeFields = false, Exact = true, Int8Query = int8Query };
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

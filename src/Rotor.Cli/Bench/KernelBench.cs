using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Cli.Bench;

/// <summary>The figures of <c>rotor bench</c>: the original prototype's table, ternary GEMV/GEMM on the BitNet b1.58 2B4T
/// shapes (hot and cold, 1 and all threads) and the memory bandwidth limit, measured in one run.</summary>
/// <remarks>With <c>against</c>, every product is also run on that kernel path, in alternation with the path in use
/// (<see cref="Timer.MeasurePair"/>), and the ratio is printed: the way to compare two paths on a noisy machine.</remarks>
internal sealed class KernelBench(TextWriter log, int maxThreads, bool quick, KernelPath? against = null)
{
    public readonly List<BenchResult> Results = [];

    // bitnet.cpp I2_S and llama.cpp TQ2_0 on this kind of machine (2 cores of AMD EPYC Zen 4), microseconds:
    // (out, in, m) -> I2_S 1 thread, I2_S 2 threads, TQ2_0 1 thread, TQ2_0 2 threads.
    private static readonly Dictionary<(int N, int K, int M), double[]> s_reference = new()
    {
        [(2560, 2560, 1)] = [81, 54, 115, 62],
        [(6912, 2560, 1)] = [217, 116, 312, 169],
        [(2560, 6912, 1)] = [197, 119, 298, 165],
        [(4096, 4096, 1)] = [205, 134, 284, 156],
        [(2560, 2560, 128)] = [6400, 3500, 14600, 7800],
        [(6912, 2560, 128)] = [16900, 9700, 39800, 20100],
        [(4096, 4096, 128)] = [16700, 8500, 38500, 19300],
    };

    public static readonly (int N, int K)[] Shapes = [(2560, 2560), (6912, 2560), (2560, 6912), (4096, 4096), (16384, 4096)];

    private void Add(BenchResult r) => Results.Add(r);

    /// <summary>The prototype's four figures (NumPy) against Rotor on one thread.</summary>
    public void Prototype()
    {
        log.WriteLine("== The original prototype (NumPy) against Rotor, 1 thread ==");
        log.WriteLine($"{"operation",-44} {"prototype",12} {"rotor",12} {"speed-up",10}");
        using var one = new CpuBackend(1);

        var values = new sbyte[1_000_000];
        var rng = new Random(1);
        for (int i = 0; i < values.Length; i++) values[i] = (sbyte)(rng.Next(3) - 1);
        var packed = new byte[Trits.PackedBytes(values.Length)];
        var back = new sbyte[values.Length];
        double encMs = Timer.MedianMs(() => { Trits.Pack(values, packed); Trits.Unpack(packed, back); });
        Row("encode+decode 1M values", 8.59, encMs);

        var w1 = TernaryMatrix.FromTrits(values, 1, values.Length, [1f]);
        var x1 = new float[values.Length];
        for (int i = 0; i < x1.Length; i++) x1[i] = (float)(rng.NextDouble() * 2 - 1);
        var q1 = new QuantizedActivations(1, values.Length);
        var y1 = new float[1];
        double dotMs = Timer.MedianMs(() => one.MatMul(w1, x1, y1, q1));
        Row("dot product 1M elements (int8 activations)", 12.79, dotMs);

        var w2 = TernaryLinear.Random(2048, 2048, 3);
        var x2 = new float[2048];
        for (int i = 0; i < x2.Length; i++) x2[i] = (float)(rng.NextDouble() * 2 - 1);
        var q2 = new QuantizedActivations(1, 2048);
        var y2 = new float[2048];
        double mvMs = Timer.MedianMs(() => one.MatMul(w2.Weights, x2, y2, q2));
        Row("matrix-vector 2048x2048", 180.36, mvMs);

        var net = new Sequential(
            TernaryLinear.Random(2048, 2048, 10, bias: true, backend: one), new ReLU(2048),
            TernaryLinear.Random(2048, 2048, 11, bias: true, backend: one), new ReLU(2048),
            TernaryLinear.Random(2048, 2048, 12, bias: true, backend: one), new ReLU(2048),
            TernaryLinear.Random(2048, 2048, 13, bias: true, backend: one));
        var xb = new float[32 * 2048];
        for (int i = 0; i < xb.Length; i++) xb[i] = (float)(rng.NextDouble() * 2 - 1);
        double netMs = Timer.MedianMs(() => net.Forward(xb, 32));
        Row("network forward batch 32 (4x2048 layers)", 731.77, netMs);
        log.WriteLine("(network: 4 TernaryLinear 2048x2048 layers with bias and ReLU between; the prototype's size is unknown)");
        log.WriteLine();

        void Row(string name, double seed, double ms)
        {
            log.WriteLine($"{name,-44} {seed,9:F2} ms {ms,9:F4} ms {seed / ms,9:F0}x");
            Add(new BenchResult { Name = "prototype " + name, MedianMs = ms, SeedMs = seed, Threads = 1 });
        }
    }

    /// <summary>Memory read bandwidth, 1 thread and all threads.</summary>
    public (double One, double All) Bandwidth()
    {
        double one = MemoryBandwidth.ReadGbps(1);
        double all = maxThreads > 1 ? MemoryBandwidth.ReadGbps(maxThreads) : one;
        log.WriteLine($"== Memory read bandwidth: {one:F1} GB/s with 1 thread, {all:F1} GB/s with {maxThreads} ==");
        if (maxThreads > 1)
        {
            double scaling = ComputeScaling.Measure(maxThreads);
            log.WriteLine($"== Compute scaling, 1 -> {maxThreads} threads: {scaling:F2}x ({maxThreads}.00 = {maxThreads} full cores; near 1 = shared physical core or a busy neighbour) ==");
            Add(new BenchResult { Name = $"compute scaling t={maxThreads}", MedianMs = 0, Threads = maxThreads, Scaling = scaling });
        }
        log.WriteLine();
        Add(new BenchResult { Name = "memory read bandwidth t=1", MedianMs = 0, WeightGbps = one, Threads = 1 });
        Add(new BenchResult { Name = $"memory read bandwidth t={maxThreads}", MedianMs = 0, WeightGbps = all, Threads = maxThreads });
        return (one, all);
    }

    /// <summary>GEMV (m = 1) and GEMM (m = 8..512) with float activations quantized to int8 inside each call.</summary>
    public void Gemm(IReadOnlyList<(int N, int K)> shapes, IReadOnlyList<int> ms)
    {
        log.WriteLine("== Ternary x int8 products, y = x W^T, activations quantized inside each call; medians ==");
        log.WriteLine("(cold GEMV: roofline = weight GB/s over the memory bandwidth sampled between its own runs, \"limit\" GB/s)");
        string againstHead = against is { } ap ? $"  {"vs " + ap,12}" : "";
        log.WriteLine($"{"shape (out x in)",-16} {"m",4} {"thr",3} {"cache",5} {"median",11} {"min",11} {"GFLOPS",8} {"W GB/s",7} {"roofline",8} {"limit",6}   {"vs I2_S",8} {"vs TQ2_0",8}{againstHead}");
        var samplers = new MemoryBandwidth.Sampler?[maxThreads + 1];
        int[] threadCounts = maxThreads > 1 ? [1, maxThreads] : [1];
        const long ColdBytes = 256L << 20;
        foreach (var (n, k) in shapes)
        {
            var rng = new Random(n ^ k);
            var trits = new sbyte[(long)n * k];
            for (long i = 0; i < trits.LongLength; i++) trits[i] = (sbyte)(rng.Next(3) - 1);
            var hot = TernaryMatrix.FromTrits(trits, n, k, [0.02f]);
            int copies = (int)Math.Min(1000, ColdBytes / ((long)n * hot.RowBytes) + 1);
            var cold = new TernaryMatrix[copies];
            cold[0] = hot;
            for (int c = 1; c < copies; c++) cold[c] = TernaryMatrix.Decode(TernaryFormat.I2_256, hot.Data, n, k, [0.02f]);
            foreach (int m in ms)
            {
                var x = new float[(long)m * k];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                var q = new QuantizedActivations(m, k);
                var y = new float[(long)m * n];
                foreach (int t in threadCounts)
                {
                    using var be = new CpuBackend(t);
                    // the other path on the same worker threads: two pools' idle workers would spin against each other
                    using var other = against is { } otherPath ? be.SharingWorkers(otherPath) : null;
                    foreach (string cache in new[] { "hot", "cold" })
                    {
                        if (cache == "cold" && quick && m > 1) continue;
                        int next = 0, nextOther = copies / 2;
                        bool paired = cache == "cold" && m == 1;
                        var sampler = paired ? (samplers[t] ??= new MemoryBandwidth.Sampler(t)) : null;
                        Action run = cache == "hot" ? () => be.MatMul(hot, x, y, q) : () => { be.MatMul(cold[next], x, y, q); next = (next + 1) % copies; };
                        int minReps = cache == "hot" ? 5 : paired ? 64 : Math.Min(copies, 50), maxReps = paired ? 800 : 2000;
                        double budget = quick ? 100 : 300;
                        double ms0, min0;
                        double? otherMs = null;
                        if (other is null)
                            (ms0, min0) = Timer.Measure(run, minReps, budget, maxReps, sampler is null ? null : sampler.SampleEvery8);
                        else
                        {
                            // the other path reads its own copies, half the rotation away
                            Action runOther = cache == "hot" ? () => other.MatMul(hot, x, y, q) : () => { other.MatMul(cold[nextOther], x, y, q); nextOther = (nextOther + 1) % copies; };
                            (ms0, min0, double mo, _) = Timer.MeasurePair(run, runOther, minReps, budget, maxReps, sampler is null ? null : sampler.SampleEvery8);
                            otherMs = mo;
                        }
                        double flops = 2.0 * m * n * k;
                        double wbytes = (long)n * k / 4.0;
                        double gbps = wbytes / (ms0 / 1000) / 1e9;
                        // A cold GEMV's share of the memory limit: against the bandwidth sampled between its own runs.
                        double? limit = sampler?.TakeMedianGbps();
                        double? roof = limit is { } l ? gbps / l : null;
                        double? refUs = s_reference.TryGetValue((n, k, m), out var r) ? (t == 1 ? r[0] : r[1]) : null;
                        double? tqUs = r is not null ? (t == 1 ? r[2] : r[3]) : null;
                        string vsI2 = refUs is { } a ? $"{a / (ms0 * 1000),7:F2}x" : "";
                        string vsTq = tqUs is { } b ? $"{b / (ms0 * 1000),7:F2}x" : "";
                        string vsOther = otherMs is { } om ? $"  {om / ms0,11:F2}x" : "";
                        log.WriteLine($"{n + "x" + k,-16} {m,4} {t,3} {cache,5} {Fmt(ms0),11} {Fmt(min0),11} {flops / (ms0 / 1000) / 1e9,8:F1} {gbps,7:F1} {(roof is { } f ? f.ToString("P0") : ""),8} {(limit is { } lg ? lg.ToString("F1") : ""),6}   {vsI2,8} {vsTq,8}{vsOther}");
                        Add(new BenchResult
                        {
                            Name = $"{(m == 1 ? "gemv" : "gemm")} {n}x{k} m={m} t={t} {cache}", MedianMs = ms0, MinMs = min0,
                            Gflops = flops / (ms0 / 1000) / 1e9, WeightGbps = gbps, RooflineFraction = roof, LimitGbps = limit, Threads = t, Cache = cache,
                            ReferenceUs = refUs, Reference = refUs is null ? null : "bitnet.cpp I2_S",
                            KernelPath = be.Path.ToString(), AgainstPath = against?.ToString(), AgainstMedianMs = otherMs,
                        });
                    }
                }
            }
        }
        log.WriteLine("(vs I2_S / vs TQ2_0: the reference's time over Rotor's, same thread count; >1 means Rotor is faster)");
        if (against is { } path) log.WriteLine($"(vs {path}: that path's median over this one's, timed in alternation in the same loop; >1 means {KernelSelector.Current} is faster)");
        log.WriteLine();
    }

    private static string Fmt(double ms) => ms < 1 ? $"{ms * 1000:F1} us" : $"{ms:F2} ms";
}

using System.Diagnostics;
using Rotor.Cuda;

namespace Rotor.Lm.Cuda;

/// <summary>One figure of <see cref="CudaLmBenchmark"/>: prompt processing (<c>pp</c>) of one sequence, or generation
/// (<c>tg</c>) of <paramref name="Batch"/> sequences at once.</summary>
/// <param name="Test">"pp512", "tg128", ...</param>
/// <param name="Batch">Sequences decoded together.</param>
/// <param name="TokensPerSecond">Median over the repetitions: tokens of every sequence together a second.</param>
/// <param name="MsPerStep">Median milliseconds a step (the whole prompt for pp; one token of every sequence for tg).</param>
public sealed record CudaLmBenchRow(string Test, int Batch, double TokensPerSecond, double MsPerStep);

/// <summary>The GPU figures of <c>rotor bench-lm --device cuda</c>: pp of one sequence, tg at several batch sizes
/// (greedy, the token chosen on the device, each step one CUDA graph), and the bandwidth bound of a decode step (the
/// bytes it reads over a device-to-device copy's bandwidth, measured in the same run).</summary>
public static class CudaLmBenchmark
{
    /// <summary>Runs the benchmark; <paramref name="log"/> gets one line a figure.</summary>
    public static (double CopyGbps, long StepBytes, List<CudaLmBenchRow> Rows) Run(CudaModel model, int prompt, int gen, IReadOnlyList<int> batches, int reps, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(batches);
        var c = model.Config;
        var rows = new List<CudaLmBenchRow>();
        var rnd = new Random(1);
        double gbps;
        unsafe
        {
            double g;
            Native.Check(Native.rotor_cuda_bench_copy((nuint)(1UL << 30), 20, &g, model.Stream.Pointer), "measuring copy bandwidth");
            gbps = g;
        }
        long stepBytes = model.StepWeightBytes;
        if (prompt > 0)
        {
            using var dec = new CudaDecoder(model, 1, prompt + 1, Math.Min(prompt, 512));
            int[] ids = Enumerable.Range(0, prompt).Select(_ => rnd.Next(c.VocabSize)).ToArray();
            var ms = new List<double>();
            for (int i = 0; i <= reps; i++)
            {
                var sw = Stopwatch.StartNew();
                dec.Forward(ids, 0, 0);   // downloads the last logits: the time includes the whole prefill
                if (i > 0) ms.Add(sw.Elapsed.TotalMilliseconds);
            }
            double m = Median(ms);
            rows.Add(new($"pp{prompt}", 1, prompt / (m / 1000), m));
            log?.Invoke(Line(rows[^1], gbps, stepBytes));
        }
        if (gen > 0)
        {
            var greedy = SamplingOptions.Greedy;
            foreach (int b in batches)
            {
                int ctx = gen + 4;
                using var dec = new CudaDecoder(model, b, ctx, Math.Max(b, 1));
                int[] slots = Enumerable.Range(0, b).ToArray(), pos = new int[b], tokens = new int[b], next = new int[b];
                var ms = new List<double>();
                for (int i = 0; i <= reps; i++)
                {
                    for (int s = 0; s < b; s++) { tokens[s] = rnd.Next(c.VocabSize); pos[s] = 0; }
                    // Two steps before the clock: the first of a batch size runs the kernels directly, the second records the graph.
                    for (int k = 0; k < 2; k++) { dec.DecodeSample(tokens, slots, pos, greedy, 1, next); Step(); }
                    var sw = Stopwatch.StartNew();
                    for (int k = 0; k < gen; k++) { dec.DecodeSample(tokens, slots, pos, greedy, 1, next); Step(); }
                    if (i > 0) ms.Add(sw.Elapsed.TotalMilliseconds / gen);
                }
                double m = Median(ms);
                rows.Add(new($"tg{gen}", b, b / (m / 1000), m));
                log?.Invoke(Line(rows[^1], gbps, stepBytes));

                void Step()
                {
                    for (int s = 0; s < b; s++) { tokens[s] = next[s]; pos[s]++; }
                }
            }
        }
        return (gbps, stepBytes, rows);
    }

    /// <summary>One line: the figure, and for generation its share of the bandwidth bound of a step.</summary>
    public static string Line(CudaLmBenchRow r, double copyGbps, long stepBytes)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string s = string.Create(inv, $"{r.Test,-8} batch {r.Batch,3}  {r.TokensPerSecond,10:F1} tokens/s  {r.MsPerStep,8:F3} ms a step");
        if (r.Test.StartsWith("tg", StringComparison.Ordinal))
        {
            double boundMs = stepBytes / (copyGbps * 1e9) * 1000;
            s += string.Create(inv, $"  bound {boundMs:F3} ms a step ({stepBytes / 1048576.0:F0} MiB at {copyGbps:F0} GB/s): {boundMs / r.MsPerStep:P0}");
        }
        return s;
    }

    private static double Median(List<double> v)
    {
        var s = v.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}

using System.CommandLine;
using System.Globalization;
using Rotor.Cuda;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor selftest --device cuda|cpu</c>: every GPU kernel (or every CPU kernel path) against the CPU reference;
/// <c>rotor bench-cuda</c>: the GPU products on the BitNet shapes, copy bandwidth and a whole network as a CUDA graph.
/// Registered in Program.cs with <c>root.Subcommands.Add(CudaCommands.CreateSelftest())</c> and
/// <c>root.Subcommands.Add(CudaCommands.CreateBench())</c>; <see cref="InfoLine"/> is the line for <c>rotor info</c>.
/// </summary>
internal static class CudaCommands
{
    /// <summary>"cuda         NVIDIA H100 ... " or "cuda         not used: reason".</summary>
    public static string InfoLine() => $"cuda         {CudaBackend.Availability}";

    public static Command CreateSelftest()
    {
        var device = new Option<string>("--device") { Description = "cuda: every GPU kernel against the CPU reference; cpu: every CPU kernel path against the reference", DefaultValueFactory = _ => "cuda" };
        device.AcceptOnlyFromAmong("cuda", "cpu");
        var quick = new Option<bool>("--quick") { Description = "a subset of the shapes" };
        var cmd = new Command("selftest", "Compare the kernels of a device with the CPU reference on random data, odd shapes and tails; exit 1 on any mismatch");
        cmd.Options.Add(device);
        var stories = new Option<string?>("--stories") { Description = "with --device cuda: the llama2.c stories260K checkpoint, whose greedy continuation on the GPU must equal the CPU's (default: shared/data/lm/stories260K.bin or ../shared/data/lm/stories260K.bin where found)" };
        cmd.Options.Add(stories);
        var lmOnly = new Option<bool>("--lm-only") { Description = "with --device cuda: only the language-model kernels and decoder" };
        cmd.Options.Add(lmOnly);
        var fixtures = new Option<string?>("--fixtures") { Description = "with --device cuda: a folder of GGUF models (the language model's test fixtures, made by llama.cpp's and bitnet.cpp's tools), each of whose logits and greedy continuation on the GPU must equal the CPU's (default: tests/Rotor.Lm.Tests/Data/gguf where found)" };
        cmd.Options.Add(fixtures);
        cmd.Options.Add(quick);
        cmd.Options.Add(Validate.Threads());
        cmd.SetAction(r =>
        {
            if (r.GetValue(fixtures) is { } f && !Directory.Exists(f)) throw new RotorException($"--fixtures {f}: no such folder");
            return Selftest(r.GetValue(device)!, r.GetValue(quick), r.GetValue(stories), r.GetValue(lmOnly), r.GetValue(fixtures));
        });
        return cmd;
    }

    private static int Selftest(string device, bool quick, string? stories = null, bool lmOnly = false, string? fixtures = null)
    {
        List<CheckResult> results;
        const string header = "result check                                    shape                              detail                          values    bad  max |diff|";
        if (device == "cpu")
        {
            Console.WriteLine(header);
            Console.Error.WriteLine($"selftest: CPU kernel paths {string.Join(", ", Kernels.KernelSelector.Supported)} against the reference");
            results = CudaSelfTest.RunCpu(quick, Print);
        }
        else
        {
            CudaAvailability a = CudaBackend.Availability;
            if (!a.IsAvailable)
            {
                Console.Error.WriteLine($"rotor: the CUDA backend is {a}");
                return 2;
            }
            Console.Error.WriteLine($"selftest: {a}");
            using CudaBackend gpu = CudaBackend.Create();
            Console.WriteLine(header);
            results = lmOnly ? [] : CudaSelfTest.RunGpu(gpu, quick, Print);
            stories ??= new[] { "shared/data/lm/stories260K.bin", "../shared/data/lm/stories260K.bin" }.FirstOrDefault(File.Exists);
            fixtures ??= new[] { "tests/Rotor.Lm.Tests/Data/gguf", "../tests/Rotor.Lm.Tests/Data/gguf" }.FirstOrDefault(Directory.Exists);
            results.AddRange(Rotor.Lm.Cuda.CudaLmSelfTest.Run(stories, Print, fixtures));
        }
        int failed = results.Count(r => !r.Passed);
        Console.WriteLine($"selftest {device}: {results.Count - failed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static void Print(CheckResult r) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(r.Passed ? "ok" : "FAIL"),-6} {r.Kernel,-40} {r.Shape,-34} {r.Detail,-28} {r.Compared,9} {r.Mismatches,6} {r.MaxDiff,11:G4}{(r.Exact ? "" : " (bound)")}"));

    public static Command CreateBench()
    {
        var json = new Option<string?>("--json") { Description = "also write the results as JSON (input of bench/cuda/cublas_ref.py)" }.OutputFile();
        var quick = new Option<bool>("--quick") { Description = "two shapes and m = 1, 32, 2048 only" };
        var allPaths = new Option<bool>("--all-paths") { Description = "also time each forced kernel (gemv, every tile) next to auto" };
        var shape = new Option<string?>("--shape") { Description = "only this weight shape, NxK (such as 16384x4096)" };
        var m = new Option<int?>("--m") { Description = "only this number of activation rows" };
        var noNet = new Option<bool>("--no-network") { Description = "skip the network benchmark" };
        var cmd = new Command("bench-cuda", "Time the GPU products (2560x2560 ... 16384x4096, m = 1 ... 2048), copy bandwidth and a 4-layer 2048-wide network as one CUDA graph");
        cmd.Options.Add(json);
        cmd.Options.Add(quick);
        cmd.Options.Add(allPaths);
        cmd.Options.Add(shape);
        cmd.Options.Add(m);
        cmd.Options.Add(noNet);
        cmd.Options.Add(Validate.Threads());
        cmd.SetAction(r => Bench(r.GetValue(json), r.GetValue(quick), r.GetValue(allPaths), r.GetValue(shape), r.GetValue(m), r.GetValue(noNet)));
        return cmd;
    }

    internal static int Bench(string? json, bool quick, bool allPaths, string? shape, int? onlyM, bool noNetwork)
    {
        CudaAvailability a = CudaBackend.Availability;
        if (!a.IsAvailable)
        {
            Console.Error.WriteLine($"rotor: the CUDA backend is {a}");
            return 2;
        }
        var inv = CultureInfo.InvariantCulture;
        using CudaBackend gpu = CudaBackend.Create();
        Console.WriteLine($"gpu: {a}");
        double copy = CudaBenchmark.CopyGBps(gpu);
        Console.WriteLine(string.Create(inv, $"device-to-device copy, 1 GiB: {copy:F0} GB/s (bytes read + written)"));
        Console.WriteLine($"{"n x k",-12} {"m",5} {"kernel",-20} {"us",10} {"weight GB/s",12} {"% copy",7} {"TOPS",8}");
        var shapes = quick ? [CudaBenchmark.Shapes[0], CudaBenchmark.Shapes[^1]] : CudaBenchmark.Shapes;
        int[] ms = quick ? [1, 32, 2048] : CudaBenchmark.Ms;
        if (shape is not null)
        {
            string[] p = shape.Split('x');
            if (p.Length != 2 || !int.TryParse(p[0], out int sn) || !int.TryParse(p[1], out int sk) || sn <= 0 || sk <= 0)
                throw new RotorException($"--shape {shape}: expected NxK with positive N and K, such as 16384x4096");
            shapes = [(sn, sk)];
        }
        if (onlyM is { } om)
        {
            if (om <= 0) throw new RotorException($"--m {om}: expected a positive number of rows");
            ms = [om];
        }
        var products = CudaBenchmark.Products(gpu, shapes, ms, allPaths, t =>
            Console.WriteLine(string.Create(inv, $"{$"{t.N}x{t.K}",-12} {t.M,5} {t.Path,-20} {t.Us,10:F2} {t.WeightGBps,12:F0} {100 * t.WeightGBps / copy,6:F0}% {t.Tops,8:F1}")));
        NetworkTiming? net = noNetwork ? null : CudaBenchmark.Network(gpu, 4, 32);
        if (net is not null) Console.WriteLine(string.Create(inv,
            $"network {net.Layers} x TernaryLinear {net.Width}->{net.Width} (+bias, ReLU), batch {net.Batch}, one CUDA graph of {net.Kernels} kernels: {net.DeviceUs:F1} us on device data ({net.NoPdlUs:F1} us without programmatic dependent launch), {net.CopiesUs:F1} us with the host copies in the graph, {net.HostUs:F1} us per Forward call on the host clock; rounds {string.Join(" / ", net.Rounds.Select(v => v.ToString("F1", inv)))} us"));
        if (json is not null)
        {
            AtomicFile.WriteAllText(json, CudaBenchmark.Json(a, copy, products, net));
            Console.WriteLine($"wrote {json}");
        }
        return 0;
    }
}

using System.CommandLine;
using System.Text.Json;
using Rotor.Cli.Bench;
using Rotor.Kernels;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor bench</c>: kernel and network benchmarks, side by side with the prototype, bitnet.cpp and the
/// memory limit, in one run.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var json = new Option<FileInfo?>("--json") { Description = "Also write the figures as JSON to this file" }.OutputFile();
        var quick = new Option<bool>("--quick") { Description = "Fewer repetitions, cold runs for GEMV only" };
        var threads = Validate.Threads();   // measured at 1 and at this count
        var shapes = new Option<string?>("--shapes") { Description = "Comma-separated NxK shapes (default: the BitNet 2B4T shapes, 4096x4096, 16384x4096)" };
        var ms = new Option<string>("--m") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1,8,32,128,512" };
        var skip = new Option<bool>("--no-prototype") { Description = "Skip the prototype table" };
        var device = new Option<string>("--device") { Description = "cpu, or cuda: the GPU benchmark of 'rotor bench-cuda' (with --json and --quick)", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda");
        var against = new Option<string?>("--against") { Description = $"Also time every product on this kernel path ({string.Join(", ", KernelPaths.All.Select(r => r.Name))}), in alternation with the path in use, and print the ratio" };
        var cmd = new Command("bench", "Benchmark the ternary kernels (GEMV/GEMM, hot and cold, 1 and all threads) against bitnet.cpp's figures and the memory limit");
        foreach (var o in new Option[] { json, quick, threads, shapes, ms, skip, device, against }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(device) == "cuda")
            {
                foreach (Option o in new Option[] { threads, shapes, ms, skip })
                    if (pr.GetResult(o) is { Implicit: false })
                        throw new RotorException($"rotor bench --device cuda: {o.Name} is a CPU option; 'rotor bench-cuda --help' lists the GPU benchmark's options");
                return CudaCommands.Bench(pr.GetValue(json)?.FullName, pr.GetValue(quick), allPaths: false, shape: null, onlyM: null, noNetwork: false);
            }
            KernelPath? againstPath = null;
            if (pr.GetValue(against) is { } a)
            {
                if (!Enum.TryParse(a, ignoreCase: true, out KernelPath p) || !Enum.IsDefined(p))
                    throw new RotorException($"--against {a}: not a kernel path ({string.Join(", ", KernelPaths.All.Select(r => r.Name))})");
                if (!KernelSelector.IsSupported(p)) throw new RotorException($"--against {a}: this machine does not support it (supported: {string.Join(", ", KernelSelector.Supported)})");
                againstPath = p;
            }
            int most = Rotor.Threading.ThreadCount.Default;
            var bench = new KernelBench(Console.Out, most, pr.GetValue(quick), againstPath);
            Console.WriteLine($"rotor bench: kernel path {KernelSelector.Current}{(againstPath is { } ag ? $" against {ag}" : "")}, up to {most} threads (from {Rotor.Threading.ThreadCount.Source}), {Environment.ProcessorCount} processors");
            Console.WriteLine();
            if (!pr.GetValue(skip)) bench.Prototype();
            bench.Bandwidth();
            var shapeList = pr.GetValue(shapes) is { } s ? ParseShapes(s) : KernelBench.Shapes;
            var mList = pr.GetValue(ms)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => int.TryParse(v, out int m) && m > 0 ? m : throw new RotorException($"--m: '{v}' is not a positive batch size")).ToArray();
            bench.Gemm(shapeList, mList);
            if (pr.GetValue(json) is { } f)
            {
                AtomicFile.WriteAllText(f.FullName, JsonSerializer.Serialize(bench.Results, BenchJson.Default.ListBenchResult));
                Console.WriteLine($"wrote {bench.Results.Count} results to {f.FullName}");
            }
            return 0;
        });
        return cmd;
    }

    private static (int N, int K)[] ParseShapes(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p =>
        {
            var parts = p.Split('x');
            if (parts.Length != 2 || !int.TryParse(parts[0], out int n) || !int.TryParse(parts[1], out int k) || n <= 0 || k <= 0)
                throw new RotorException($"--shapes: '{p}' is not a shape NxK such as 2560x2560");
            return (n, k);
        }).ToArray();
}

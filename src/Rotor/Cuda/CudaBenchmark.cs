using System.Text.Json;
using Rotor.Kernels;

namespace Rotor.Cuda;

/// <summary>One timed product.</summary>
/// <param name="N">Weight rows.</param>
/// <param name="K">Columns.</param>
/// <param name="M">Activation rows.</param>
/// <param name="Path">Kernel (auto, gemv, tiled...).</param>
/// <param name="Us">Median microseconds a product (CUDA events around a graph of repeated launches).</param>
/// <param name="WeightGBps">Packed weight bytes (n * k / 4) / time, in GB/s.</param>
/// <param name="Tops">2 * m * n * k / time, in tera-operations a second.</param>
public sealed record GemmTiming(int N, int K, int M, string Path, double Us, double WeightGBps, double Tops);

/// <summary>The network benchmark: its shape, kernels a pass, and median microseconds of a graph replay on device
/// data (the median of three rounds, each given in Rounds) and without programmatic dependent launch, with the host
/// copies in the graph, and of Forward on the host clock.</summary>
public sealed record NetworkTiming(int Layers, int Width, int Batch, int Kernels, double DeviceUs, double NoPdlUs, double CopiesUs, double HostUs,
    double[] Rounds);

/// <summary>The GPU benchmark behind <c>rotor bench-cuda</c>: products on the BitNet shapes, copy bandwidth, a whole
/// network as one CUDA graph.</summary>
public static unsafe class CudaBenchmark
{
    /// <summary>The weight shapes timed: those of BitNet b1.58 2B4T and two square ones.</summary>
    public static readonly (int N, int K)[] Shapes = [(2560, 2560), (6912, 2560), (2560, 6912), (4096, 4096), (16384, 4096)];
    /// <summary>The activation rows timed.</summary>
    public static readonly int[] Ms = [1, 8, 32, 128, 512, 2048];

    /// <summary>Median device-to-device copy bandwidth (bytes read + written) of a 1 GiB buffer, in GB/s.</summary>
    public static double CopyGBps(CudaBackend gpu)
    {
        double g;
        Native.Check(Native.rotor_cuda_bench_copy((nuint)(1UL << 30), 20, &g, gpu.Stream.Pointer), "copy benchmark");
        return g;
    }

    /// <summary>Times every shape and m; with <paramref name="allPaths"/> also each forced kernel.</summary>
    public static List<GemmTiming> Products(CudaBackend gpu, (int N, int K)[] shapes, int[] ms, bool allPaths, Action<GemmTiming>? progress = null)
    {
        var results = new List<GemmTiming>();
        foreach (var (n, k) in shapes)
        {
            var w = TernaryMatrix.FromTrits(CudaSelfTest.Trits(n * k, n + k), n, k, [0.5f]);
            lock (gpu.Gate)
            {
                DeviceMatrix d = gpu.Resident(w);
                int maxM = ms.Max();
                int padded = w.PaddedCols;
                using var xq = new DeviceBuffer((long)maxM * padded);
                using var sc = new DeviceBuffer(maxM * 4);
                using var su = new DeviceBuffer(maxM * 4);
                using var y = new DeviceBuffer((long)maxM * n * 4);
                // Random int8 activations: the product's speed does not depend on the values, but zeros would flatter.
                var q = new sbyte[(long)maxM * padded];
                new Random(k).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(q.AsSpan()));
                for (int i = 0; i < q.Length; i++) if (q[i] == -128) q[i] = 127;
                xq.Upload<sbyte>(q, gpu.Stream);
                sc.Upload<float>(Enumerable.Repeat(0.01f, maxM).ToArray(), gpu.Stream);
                su.Upload<int>(new int[maxM], gpu.Stream);
                foreach (int m in ms)
                {
                    // "auto": launched back to back with programmatic dependent launch where the GPU has it (each
                    // product streams weights while the previous one finishes, as the layers of a model do);
                    // "auto-nopdl": each launch waits for the previous one to end.
                    var paths = new List<(CudaPath Path, bool Pdl, string Name)> { (CudaPath.Auto, true, "auto"), (CudaPath.Auto, false, "auto-nopdl") };
                    if (allPaths)
                        foreach (CudaPath p in m <= 8 ? new[] { CudaPath.Gemv, CudaPath.GemvBulk, CudaPath.GemvSplitK, CudaPath.Tiled64x128 }.Where(CudaBackend.Supports) : m <= 64 ? new[] { CudaPath.Gemv, CudaPath.GemvSplitK, CudaPath.Tiled64x128, CudaPath.Wgmma128x64, CudaPath.Wgmma128x64SplitK }.Where(CudaBackend.Supports) : new[] { CudaPath.Tiled128x128, CudaPath.Tiled64x128 }.Concat(CudaBackend.WgmmaPaths.Where(CudaBackend.Supports)))
                            paths.Add((p, true, p.ToString().ToLowerInvariant()));
                    foreach (var (p, pdl, label) in paths)
                    {
                        string name = label;
                        GemmArgsNative a = CudaBackend.Args(d, xq.Pointer, padded, sc.Pointer, su.Pointer, m, 0, y.Pointer, n, CudaActivation.None);
                        bool on = SetPdl(pdl);
                        double us;
                        try { us = Time(gpu, a, p); }
                        finally { SetPdl(true); }
                        if (pdl && !on && name == "auto") name = "auto (no pdl on this gpu)";
                        double bytes = (double)n * k / 4;
                        var t = new GemmTiming(n, k, m, name, us, bytes / (us * 1e-6) / 1e9, 2.0 * m * n * k / (us * 1e-6) / 1e12);
                        results.Add(t); progress?.Invoke(t);
                    }
                }
                // "cold": for the GEMV sizes, launches rotating over enough copies of the weights to exceed the L2
                // cache three times, so that every weight byte comes from DRAM (with the same weights every launch,
                // part of them stays in L2 from one launch to the next).
                int[] coldMs = ms.Where(mm => mm <= 8).ToArray();
                if (coldMs.Length > 0)
                {
                    long bytes = (long)n * d.RowBytes;
                    int copies = ColdCopies(bytes);
                    using var many = new DeviceBuffer(copies * bytes);
                    for (int c = 0; c < copies; c++)
                        Native.Check(Native.rotor_cuda_memcpy_d2d(many.Pointer + (nint)(c * bytes), d.Data.Pointer, (nuint)bytes, gpu.Stream.Pointer), "copying weights");
                    gpu.Stream.Synchronize();
                    foreach (int m in coldMs)
                    {
                        var paths = new List<(CudaPath Path, bool Pdl, string Name)> { (CudaPath.Auto, true, "cold auto"), (CudaPath.Auto, false, "cold auto-nopdl") };
                        if (allPaths)
                            foreach (CudaPath p in new[] { CudaPath.Gemv, CudaPath.GemvBulk }.Where(CudaBackend.Supports))
                            {
                                paths.Add((p, true, "cold " + p.ToString().ToLowerInvariant()));
                                paths.Add((p, false, "cold " + p.ToString().ToLowerInvariant() + "-nopdl"));
                            }
                        var args = new GemmArgsNative[copies];
                        for (int c = 0; c < copies; c++)
                        {
                            args[c] = CudaBackend.Args(d, xq.Pointer, padded, sc.Pointer, su.Pointer, m, 0, y.Pointer, n, CudaActivation.None);
                            args[c].W = many.Pointer + (nint)(c * bytes);
                        }
                        foreach (var (p, pdl, name) in paths)
                        {
                            SetPdl(pdl);
                            double us;
                            try { us = Time(gpu, args, p); }
                            finally { SetPdl(true); }
                            double wb = (double)n * k / 4;
                            var t = new GemmTiming(n, k, m, name, us, wb / (us * 1e-6) / 1e9, 2.0 * m * n * k / (us * 1e-6) / 1e12);
                            results.Add(t); progress?.Invoke(t);
                        }
                    }
                }
            }
            gpu.Evict(w);
        }
        return results;
    }

    /// <summary>Turns programmatic dependent launch on or off for later launches; returns whether it is on.</summary>
    internal static bool SetPdl(bool on)
    {
        int rc = Native.rotor_cuda_set_pdl(on ? 1 : 0);
        if (rc < 0 || rc > 1) Native.Check(rc, "setting programmatic dependent launch");
        return rc == 1;
    }

    /// <summary>Copies of <paramref name="bytes"/> of weights that together exceed the device's L2 cache three times
    /// (at least 2), for the "cold" rows.</summary>
    internal static int ColdCopies(long bytes)
    {
        long l2;
        Native.Check(Native.rotor_cuda_l2_bytes(&l2), "reading the L2 size");
        return (int)Math.Max(2, 3 * l2 / bytes + 1);
    }

    private static double Time(CudaBackend gpu, GemmArgsNative a, CudaPath path) => Time(gpu, [a], path);

    // A first short run sizes the graph to about 2 ms of work (and a whole number of rounds over the products);
    // then the median of 15 replays. Launch i of the graph runs products[i % count].
    private static double Time(CudaBackend gpu, GemmArgsNative[] products, CudaPath path)
    {
        var us = new float[15];
        int count = products.Length;
        fixed (float* u = us)
        fixed (GemmArgsNative* a = products)
        {
            Native.Check(Native.rotor_cuda_bench_gemm_many(a, count, (int)path, Math.Max(2, count), 3, u, gpu.Stream.Pointer), "benchmark");
            double est = Math.Max(0.5, us.Take(3).Order().ElementAt(1));
            int inner = (int)Math.Clamp(2000 / est, 1, 500);
            if (count > 1) inner = Math.Max(count, inner / count * count);
            Native.Check(Native.rotor_cuda_bench_gemm_many(a, count, (int)path, inner, us.Length, u, gpu.Stream.Pointer), "benchmark");
        }
        Array.Sort(us);
        return us[us.Length / 2];
    }

    /// <summary>The network benchmark: <paramref name="layers"/> x TernaryLinear 2048->2048 (+bias, ReLU between),
    /// batch <paramref name="batch"/>, one CUDA graph. Returns (kernels, device-only replay us, the same without
    /// programmatic dependent launch, replay with host copies us, Forward on the host clock us).</summary>
    public static NetworkTiming Network(CudaBackend gpu, int layers, int batch)
    {
        var net = CudaSelfTest.Net2048(layers, CpuBackend.Default);
        double noPdl;
        SetPdl(false);
        try
        {
            using var g0 = new CudaNetwork(net, gpu, batch);
            noPdl = g0.TimeReplayUs(batch, copies: false, reps: 201);
        }
        finally { SetPdl(true); }
        using var g = new CudaNetwork(net, gpu, batch);
        // Three rounds of 201 replays each; the figure is the median of the rounds.
        var rounds = new double[3];
        for (int r = 0; r < 3; r++) rounds[r] = g.TimeReplayUs(batch, copies: false, reps: 201);
        double cp = g.TimeReplayUs(batch, copies: true, reps: 201);
        double host = g.TimeForwardUs(batch, 201);
        static double Median(double[] v) { var c = (double[])v.Clone(); Array.Sort(c); return c[c.Length / 2]; }
        return new NetworkTiming(layers, 2048, batch, g.KernelCount(batch), Median(rounds), noPdl, cp, host, rounds);
    }

    /// <summary>The results as JSON for bench/cuda/cublas_ref.py.</summary>
    public static string Json(CudaAvailability dev, double copyGBps, List<GemmTiming> products, NetworkTiming? net)
    {
        using var ms = new MemoryStream();
        using (var j = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            j.WriteStartObject();
            j.WriteString("gpu", dev.DeviceName);
            j.WriteNumber("copy_gbps", copyGBps);
            if (net is not null)
            {
                j.WriteStartObject("network");
                j.WriteNumber("layers", net.Layers); j.WriteNumber("width", net.Width); j.WriteNumber("batch", net.Batch); j.WriteNumber("kernels", net.Kernels);
                j.WriteNumber("device_us", net.DeviceUs); j.WriteNumber("device_no_pdl_us", net.NoPdlUs); j.WriteNumber("with_copies_us", net.CopiesUs); j.WriteNumber("host_forward_us", net.HostUs);
                j.WriteStartArray("device_us_rounds"); foreach (double v in net.Rounds) j.WriteNumberValue(v); j.WriteEndArray();
                j.WriteEndObject();
            }
            j.WriteStartArray("products");
            foreach (GemmTiming p in products)
            {
                j.WriteStartObject();
                j.WriteNumber("n", p.N); j.WriteNumber("k", p.K); j.WriteNumber("m", p.M); j.WriteString("path", p.Path);
                j.WriteNumber("us", p.Us); j.WriteNumber("gbps", p.WeightGBps); j.WriteNumber("tops", p.Tops);
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}

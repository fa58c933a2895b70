using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Cuda;

/// <summary>One comparison of a kernel with the CPU reference.</summary>
/// <param name="Kernel">What ran, such as "gemm tiled64x128".</param>
/// <param name="Shape">Its shape, such as "n=129 k=1000 m=65".</param>
/// <param name="Detail">Scale mode, bias, activation.</param>
/// <param name="Compared">Values compared.</param>
/// <param name="Mismatches">Values outside the bound (bitwise for exact checks).</param>
/// <param name="MaxDiff">Largest absolute difference.</param>
/// <param name="Exact">Whether equality was required bit for bit.</param>
public sealed record CheckResult(string Kernel, string Shape, string Detail, long Compared, long Mismatches, double MaxDiff, bool Exact)
{
    /// <summary>No value outside the bound.</summary>
    public bool Passed => Mismatches == 0;
}

/// <summary>
/// Every GPU kernel against the CPU reference (<see cref="ReferenceKernels"/>, <see cref="TernaryMatrix"/>'s own
/// packing, <see cref="QuantizedActivations.Quantize"/>, the CPU <see cref="Sequential"/>) on seeded random data with
/// odd shapes and tails; and, for <c>--device cpu</c>, every CPU kernel path against the reference. Integer results
/// (and the float epilogue built on them) must match bit for bit; float sums within a bound.
/// </summary>
public static unsafe class CudaSelfTest
{
    // (n, k) weight shapes: below, at and above the 16-row tile, the 256-column block and the tiled kernels' tiles;
    // 8500 rows give the GEMV a grid of 4 CTAs a multiprocessor or more on up to 132 multiprocessors (its early
    // launch of the next kernel); 17000 x 2300 the same with a half tile at the end and 9 K blocks (one warp with 3);
    // 8470 x 4096 and 200 x 8192: K a multiple of 16 blocks (the GEMV kernel for such K), on a grid of 4 CTAs a
    // multiprocessor or more with a half tile at the end, and on a small one with two steps a warp.
    private static readonly (int N, int K)[] s_shapes =
        [(1, 1), (15, 255), (16, 256), (17, 257), (100, 513), (129, 1000), (255, 2048), (300, 2600), (1000, 777), (40, 6500), (8500, 300), (17000, 2300),
         (8470, 4096), (200, 8192)];
    private static readonly int[] s_ms = [1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 65, 128, 129, 300];

    /// <summary>Runs every GPU check on <paramref name="gpu"/>; <paramref name="quick"/> takes a subset of shapes.</summary>
    public static List<CheckResult> RunGpu(CudaBackend gpu, bool quick = false, Action<CheckResult>? progress = null)
    {
        var results = new List<CheckResult>();
        void Add(CheckResult r) { results.Add(r); progress?.Invoke(r); }
        foreach (var r in PackChecks(gpu)) Add(r);
        foreach (var r in QuantizeChecks(gpu)) Add(r);
        int seed = 100;
        var shapes = quick ? s_shapes.Where((_, i) => i % 2 == 1).ToArray() : s_shapes;
        var ms = quick ? [1, 8, 9, 65, 129] : s_ms;
        foreach (var (n, k) in shapes)
            foreach (int m in ms)
            {
                if ((long)n * k * m > 400_000_000) continue;
                foreach (var r in GemmChecks(gpu, n, k, m, seed++)) Add(r);
            }
        foreach (var r in FloatChecks(gpu)) Add(r);
        foreach (var r in NetworkChecks(gpu)) Add(r);
        return results;
    }

    /// <summary>
    /// Every CPU kernel path other than the reference, against the reference: the products on the GPU checks' shapes
    /// (sizes 1, odd sizes, tails), the same split over 1 and 3 threads, the largest int16 partial sums, and each path's
    /// dot kernels on their own (ternary x int8 and int8 x int8 bit for bit, ternary x float within a bound). Each
    /// problem's reference is computed once and every path compared with it.
    /// </summary>
    public static List<CheckResult> RunCpu(bool quick = false, Action<CheckResult>? progress = null)
    {
        var results = new List<CheckResult>();
        void Add(CheckResult r) { results.Add(r); progress?.Invoke(r); }
        KernelPath[] paths = KernelSelector.Supported.Where(p => p != KernelPath.Reference).ToArray();
        var backends = paths.Select(p => new CpuBackend(null, p)).ToArray();
        try
        {
            int seed = 100;
            var shapes = quick ? s_shapes.Where((_, i) => i % 2 == 1).ToArray() : s_shapes;
            foreach (var (n, k) in shapes)
                foreach (int m in quick ? [1, 9, 65] : new[] { 1, 3, 8, 17, 65 })
                {
                    if ((long)n * k * m > 100_000_000) continue;
                    var (w, x, bias) = Problem(n, k, m, seed++);
                    float[] want = Reference(w, x, bias, CudaActivation.None);
                    var got = new float[m * n];
                    for (int p = 0; p < paths.Length; p++)
                    {
                        got.AsSpan().Fill(float.NaN);
                        backends[p].MatMul(w, x, got, bias);
                        Add(Compare($"cpu {Name(paths[p])}", $"n={n} k={k} m={m}", Detail(w, bias, CudaActivation.None), want, got));
                    }
                }
            foreach (var r in CpuThreadChecks(paths)) Add(r);
            foreach (var r in CpuExtremeChecks(backends, paths)) Add(r);
            foreach (var r in CpuDotChecks(paths)) Add(r);
        }
        finally
        {
            foreach (var b in backends) b.Dispose();
        }
        return results;
    }

    private static string Name(KernelPath p) => KernelPaths.Get(p).Name;

    /// <summary>Products split over 1, 2 and 3 worker threads however small (row ranges that end inside a path's
    /// row tiles), against the reference.</summary>
    private static IEnumerable<CheckResult> CpuThreadChecks(KernelPath[] paths)
    {
        long saved = TernaryGemm.ParallelThreshold;
        var results = new List<CheckResult>();
        TernaryGemm.ParallelThreshold = 0;
        try
        {
            int seed = 700;
            foreach (var (n, k, m) in new[] { (9, 300, 1), (37, 513, 2), (101, 777, 7), (13, 6909, 150) })
            {
                var (w, x, bias) = Problem(n, k, m, seed++);
                float[] want = Reference(w, x, bias, CudaActivation.None);
                var got = new float[m * n];
                foreach (KernelPath p in paths)
                    foreach (int threads in new[] { 1, 2, 3 })
                    {
                        using var be = new CpuBackend(threads, p);
                        got.AsSpan().Fill(float.NaN);
                        be.MatMul(w, x, got, bias);
                        results.Add(Compare($"cpu {Name(p)} {threads} threads", $"n={n} k={k} m={m}", Detail(w, bias, CudaActivation.None), want, got));
                    }
            }
        }
        finally { TernaryGemm.ParallelThreshold = saved; }
        return results;
    }

    /// <summary>All weights +1 (row 1 alternating -1) times all activations 127 (row 1 all -127), over 18 blocks
    /// less a tail: the largest partial sums, across every accumulator chunk; the result must also equal 127 * k.</summary>
    private static IEnumerable<CheckResult> CpuExtremeChecks(CpuBackend[] backends, KernelPath[] paths)
    {
        int n = 6, k = 18 * 256 - 5, m = 9;
        var wt = new sbyte[n * k];
        wt.AsSpan().Fill(1);
        for (int j = 0; j < k; j += 2) wt[k + j] = -1;
        var w = TernaryMatrix.FromTrits(wt, n, k, [1f]);
        var q = new sbyte[m * k];
        q.AsSpan().Fill(127);
        q.AsSpan(k, k).Fill(-127);
        var x = new QuantizedActivations(m, k);
        x.SetQuantized(q, Enumerable.Repeat(1f, m).ToArray());
        float[] want = Reference(w, x, [], CudaActivation.None);
        bool oracle = want[0] == 127f * k && want[n] == -127f * k;
        var got = new float[m * n];
        for (int p = 0; p < paths.Length; p++)
        {
            got.AsSpan().Fill(float.NaN);
            backends[p].MatMul(w, x, got, null);
            var r = Compare($"cpu {Name(paths[p])} extremes", $"n={n} k={k} m={m}", "w=+1, x=+-127", want, got);
            yield return oracle ? r : r with { Mismatches = r.Mismatches + 1, Detail = r.Detail + " (reference wrong)" };
        }
    }

    /// <summary>Each path's dot kernels called directly on single rows: ternary x int8 codes and int8 x int8 bit for
    /// bit, ternary x float within 1e-5 of the sum of magnitudes; random values, 1 block to 33, and the extremes.</summary>
    private static List<CheckResult> CpuDotChecks(KernelPath[] paths)
    {
        var results = new List<CheckResult>();
        int[] blockCounts = [1, 2, 3, 5, 17, 33];
        KernelPathInfo reference = KernelPaths.Get(KernelPath.Reference);
        foreach (KernelPath p in paths)
        {
            KernelPathInfo row = KernelPaths.Get(p);
            long codesBad = 0, int8Bad = 0, f32Bad = 0, codesN = 0, int8N = 0, f32N = 0;
            double codesMax = 0, int8Max = 0, f32Max = 0;
            int seed = 3000;
            foreach (int kb in blockCounts)
                for (int variant = 0; variant < 4; variant++)
                {
                    int cols = kb * 256;
                    // variant 0, 1: random; 2: every code 2 (w = +1) and x = 127; 3: every code 0 (w = -1) and x = -127.
                    byte[] codes = new byte[kb * 64];
                    sbyte[] x = Int8(cols, seed++), w8 = Int8(cols, seed++);
                    float[] xf = Floats(cols, seed++, 4f);
                    if (variant < 2) new Random(seed++).NextBytes(codes);
                    else
                    {
                        byte code = variant == 2 ? (byte)0b10_10_10_10 : (byte)0;
                        codes.AsSpan().Fill(code);
                        x.AsSpan().Fill(variant == 2 ? (sbyte)127 : (sbyte)-127);
                        w8.AsSpan().Fill(variant == 2 ? (sbyte)127 : (sbyte)-127);
                    }
                    // Code 3 is not a trit: the kernels may treat it as anything, so random bytes keep to 0..2.
                    for (int i = 0; i < codes.Length; i++)
                        for (int s = 0; s < 8; s += 2)
                            if (((codes[i] >> s) & 3) == 3) codes[i] &= (byte)~(1 << s);
                    fixed (byte* cp = codes) fixed (sbyte* xp = x) fixed (sbyte* wp = w8) fixed (float* fp = xf)
                    {
                        int a = reference.DotCodes(cp, xp, kb), b = row.DotCodes(cp, xp, kb);
                        codesN++; if (a != b) { codesBad++; codesMax = Math.Max(codesMax, Math.Abs((double)a - b)); }
                        a = reference.DotInt8(wp, xp, cols); b = row.DotInt8(wp, xp, cols);
                        int8N++; if (a != b) { int8Bad++; int8Max = Math.Max(int8Max, Math.Abs((double)a - b)); }
                        float fa = reference.DotF32(cp, fp, kb), fb = row.DotF32(cp, fp, kb);
                        double mag = 0;
                        for (int j = 0; j < cols; j++) mag += Math.Abs(xf[j]);
                        double d = Math.Abs((double)fa - fb);
                        f32N++; f32Max = Math.Max(f32Max, double.IsNaN(d) ? double.PositiveInfinity : d);
                        if (!(d <= 1e-5 * mag + 1e-6)) f32Bad++;
                    }
                }
            string shape = $"k=256..{blockCounts[^1] * 256}";
            results.Add(new CheckResult($"cpu {row.Name} dot codes", shape, "random, +1 x 127, -1 x -127", codesN, codesBad, codesMax, true));
            results.Add(new CheckResult($"cpu {row.Name} dot int8", shape, "random, 127 x 127, -127 x -127", int8N, int8Bad, int8Max, true));
            results.Add(new CheckResult($"cpu {row.Name} dot f32", shape, "random", f32N, f32Bad, f32Max, false));
        }
        return results;
    }

    private static sbyte[] Int8(int n, int seed)
    {
        var r = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = (sbyte)r.Next(-127, 128);
        return t;
    }

    // ---- formats ---------------------------------------------------------------------------------------------------

    internal static IEnumerable<CheckResult> PackChecks(CudaBackend gpu)
    {
        CudaStream s = gpu.Stream;
        (int R, int C)[] shapes = [(1, 1), (3, 255), (5, 256), (7, 257), (33, 1000), (64, 2049)];
        int seed = 1;
        foreach (var (rows, cols) in shapes)
        {
            sbyte[] trits = Trits(rows * cols, seed++);
            var w = TernaryMatrix.FromTrits(trits, rows, cols, [1f]);
            using var dt = new DeviceBuffer(trits.Length);
            using var dp = new DeviceBuffer((long)rows * w.RowBytes);
            using var dinv = new DeviceBuffer(sizeof(int));
            dt.Upload<sbyte>(trits, s);
            Native.Check(Native.rotor_cuda_memset(dinv.Pointer, 0, sizeof(int), s.Pointer), "memset");
            Native.Check(Native.rotor_cuda_pack_i2(dt.Pointer, rows, cols, dp.Pointer, w.RowBytes, dinv.Pointer, s.Pointer), "pack_i2");
            var packed = new byte[(long)rows * w.RowBytes];
            dp.Download<byte>(packed, s);
            var inv = new int[1];
            dinv.Download<int>(inv, s);
            yield return CompareBytes("pack i2_256", $"{rows}x{cols}", $"invalid={inv[0]}", w.Data, packed, extraMismatch: inv[0]);

            dp.Upload(w.Data, s);
            Native.Check(Native.rotor_cuda_unpack_i2(dp.Pointer, rows, cols, w.RowBytes, dt.Pointer, s.Pointer), "unpack_i2");
            var back = new sbyte[trits.Length];
            dt.Download<sbyte>(back, s);
            yield return CompareBytes("unpack i2_256", $"{rows}x{cols}", "", System.Runtime.InteropServices.MemoryMarshal.AsBytes<sbyte>(trits),
                System.Runtime.InteropServices.MemoryMarshal.AsBytes<sbyte>(back));
        }
        // Values outside {-1, 0, +1} are counted and stored as 0.
        {
            sbyte[] bad = [1, 2, -1, -3, 0];
            using var dt = new DeviceBuffer(bad.Length);
            using var dp = new DeviceBuffer(64);
            using var dinv = new DeviceBuffer(sizeof(int));
            dt.Upload<sbyte>(bad, s);
            Native.Check(Native.rotor_cuda_memset(dinv.Pointer, 0, sizeof(int), s.Pointer), "memset");
            Native.Check(Native.rotor_cuda_pack_i2(dt.Pointer, 1, bad.Length, dp.Pointer, 64, dinv.Pointer, s.Pointer), "pack_i2");
            var inv = new int[1];
            dinv.Download<int>(inv, s);
            yield return new CheckResult("pack i2_256 invalid", "1x5", $"counted {inv[0]} of 2", 1, inv[0] == 2 ? 0 : 1, Math.Abs(inv[0] - 2), true);
        }
    }

    // ---- activation quantization -----------------------------------------------------------------------------------

    internal static IEnumerable<CheckResult> QuantizeChecks(CudaBackend gpu)
    {
        CudaStream s = gpu.Stream;
        (int M, int C)[] shapes = [(1, 1), (3, 100), (8, 256), (17, 1000), (64, 2049), (5, 7000)];
        int seed = 7;
        foreach (var (m, cols) in shapes)
        {
            float[] x = Floats(m * cols, seed++, 3f);
            if (m >= 3)
            {
                x.AsSpan(cols, cols).Clear();                       // a row of zeros: scale 0
                Span<float> ties = x.AsSpan(2 * cols, cols);        // amax 127: inv = 1, halves round to even
                for (int j = 0; j < cols; j++) ties[j] = j == 0 ? 127f : (j % 7 - 3) + 0.5f;
            }
            var cpu = new QuantizedActivations(m, cols);
            cpu.Quantize(x);
            int padded = cpu.PaddedCols;
            using var dx = new DeviceBuffer((long)x.Length * 4);
            using var dq = new DeviceBuffer((long)m * padded);
            using var dsc = new DeviceBuffer(m * 4);
            using var dsu = new DeviceBuffer(m * 4);
            dx.Upload<float>(x, s);
            Native.Check(Native.rotor_cuda_memset(dq.Pointer, 0x7f, (nuint)((long)m * padded), s.Pointer), "memset");
            Native.Check(Native.rotor_cuda_quantize(dx.Pointer, m, cols, cols, dq.Pointer, padded, dsc.Pointer, dsu.Pointer, s.Pointer), "quantize");
            var q = new sbyte[(long)m * padded];
            var sc = new float[m];
            var su = new int[m];
            dq.Download<sbyte>(q, s); dsc.Download<float>(sc, s); dsu.Download<int>(su, s);
            yield return CompareBytes("quantize int8", $"m={m} cols={cols}", "padding zeroed",
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(cpu.Data), System.Runtime.InteropServices.MemoryMarshal.AsBytes<sbyte>(q));
            yield return Compare("quantize scale", $"m={m} cols={cols}", "", cpu.Scales.ToArray(), sc);
            long bad = 0; double md = 0;
            for (int i = 0; i < m; i++) if (cpu.Sums[i] != su[i]) { bad++; md = Math.Max(md, Math.Abs((long)cpu.Sums[i] - su[i])); }
            yield return new CheckResult("quantize sum", $"m={m} cols={cols}", "", m, bad, md, true);
        }
    }

    // ---- int8 products ---------------------------------------------------------------------------------------------

    internal static IEnumerable<CheckResult> GemmChecks(CudaBackend gpu, int n, int k, int m, int seed)
    {
        var (w, x, bias) = Problem(n, k, m, seed);
        var act = (CudaActivation)(seed % 3);
        float[] want = Reference(w, x, bias, act);
        string shape = $"n={n} k={k} m={m}", detail = Detail(w, bias, act);
        var got = new float[(long)m * n];
        // The split-K cluster GEMV takes up to 32 K blocks.
        CudaPath[] sk = w.Blocks <= 32 ? new[] { CudaPath.GemvSplitK }.Where(CudaBackend.Supports).ToArray() : [];
        CudaPath[] paths = m <= 8
            ? [CudaPath.Auto, CudaPath.Gemv, .. new[] { CudaPath.GemvBulk }.Where(CudaBackend.Supports), .. sk, CudaPath.Tiled128x128, CudaPath.Tiled64x128]
            : m <= 64
            ? [CudaPath.Auto, CudaPath.Gemv, .. sk, CudaPath.Tiled128x128, CudaPath.Tiled64x128]
            : [CudaPath.Auto, CudaPath.Tiled128x128, CudaPath.Tiled64x128];
        // The wgmma kernels on every m (auto takes them for m > 64 only), where the device has them.
        paths = [.. paths, .. CudaBackend.WgmmaPaths.Where(CudaBackend.Supports)];
        foreach (CudaPath p in paths)
        {
            got.AsSpan().Fill(float.NaN);
            gpu.MatMul(w, x, got, bias, p, act);
            yield return Compare($"gemm {Name(p)}", shape, detail, want, got);
        }
        // The float-input entry: quantized on the GPU, then the product; equal to CPU quantization + reference.
        if (m <= 129)
        {
            float[] xf = Floats(m * k, seed + 5000, 2f);
            var xq = new QuantizedActivations(m, k);
            xq.Quantize(xf);
            float[] want2 = Reference(w, xq, bias, act);
            got.AsSpan().Fill(float.NaN);
            gpu.MatMul(w, xf, got, new QuantizedActivations(m, k), bias, CudaPath.Auto, act);
            yield return Compare("quantize+gemm", shape, detail, want2, got);
        }
    }

    private static string Name(CudaPath p) => p switch
    {
        CudaPath.Auto => "auto",
        CudaPath.Gemv => "gemv",
        CudaPath.GemvBulk => "gemv bulk",
        CudaPath.GemvSplitK => "gemv splitk",
        CudaPath.Tiled128x128 => "tiled128x128",
        CudaPath.Tiled64x128 => "tiled64x128",
        _ => p.ToString().ToLowerInvariant(),
    };

    private static string Detail(TernaryMatrix w, float[] bias, CudaActivation act) =>
        $"{(w.ScaleMode == ScaleMode.PerRow ? "per-row" : "per-tensor")}{(bias.Length > 0 ? " bias" : "")}{(act == CudaActivation.None ? "" : " " + act.ToString().ToLowerInvariant())}";

    // ---- float products --------------------------------------------------------------------------------------------

    internal static IEnumerable<CheckResult> FloatChecks(CudaBackend gpu)
    {
        int seed = 900;
        foreach (var (n, k, m) in new[] { (1, 1, 1), (17, 257, 3), (100, 513, 5), (129, 1000, 9), (300, 2600, 2) })
        {
            var (w, _, bias) = Problem(n, k, 1, seed++);
            float[] x = Floats(m * k, seed++, 1.5f);
            var got = new float[m * n];
            gpu.MatMulFloat(w, x, got, bias);
            var (want, bound) = FloatReference(w, x, m, bias);
            long bad = 0; double md = 0;
            for (int i = 0; i < want.Length; i++)
            {
                double d = Math.Abs(want[i] - got[i]);
                if (!(d <= bound[i])) bad++;
                md = Math.Max(md, double.IsNaN(d) ? double.PositiveInfinity : d);
            }
            yield return new CheckResult("gemm f32", $"n={n} k={k} m={m}", Detail(w, bias, CudaActivation.None), want.Length, bad, md, false);
        }
    }

    // y by ReferenceKernels.DotF32, and a bound on float reordering: 1e-5 * sum |x| * |scale| per value.
    private static (float[] Want, float[] Bound) FloatReference(TernaryMatrix w, float[] x, int m, float[] bias)
    {
        int n = w.Rows, k = w.Cols;
        var want = new float[m * n];
        var bound = new float[m * n];
        var padded = new float[w.PaddedCols];
        fixed (byte* wp = w.Data) fixed (float* xp = padded)
            for (int i = 0; i < m; i++)
            {
                x.AsSpan(i * k, k).CopyTo(padded);
                float abs = 0;
                for (int j = 0; j < k; j++) abs += Math.Abs(x[i * k + j]);
                for (int r = 0; r < n; r++)
                {
                    float v = ReferenceKernels.DotF32(wp + (long)r * w.RowBytes, xp, w.Blocks) * w.ScaleOf(r);
                    if (bias.Length > 0) v += bias[r];
                    want[i * n + r] = v;
                    bound[i * n + r] = 1e-5f * abs * Math.Abs(w.ScaleOf(r)) + 1e-6f;
                }
            }
        return (want, bound);
    }

    // ---- whole networks as CUDA graphs -----------------------------------------------------------------------------

    internal static IEnumerable<CheckResult> NetworkChecks(CudaBackend gpu)
    {
        var cpu = CpuBackend.Default;
        var nets = new (string Name, Sequential Net, bool Exact)[]
        {
            ("linear-relu-linear-sign-linear", new Sequential(
                TernaryLinear.Random(257, 300, 1, bias: true, backend: cpu), new ReLU(257),
                TernaryLinear.Random(513, 257, 2, bias: false, backend: cpu), new Sign(513),
                new TernaryLinear(TernaryMatrix.Quantize(Floats(100 * 513, 3), 100, 513, mode: ScaleMode.PerRow), Floats(100, 4), backend: cpu)), true),
            ("relu-linear-relu (unfused)", new Sequential(new ReLU(300), TernaryLinear.Random(64, 300, 5, bias: true, backend: cpu), new ReLU(64)), true),
            ("4 x 2048 relu", Net2048(4, cpu), true),
            ("simple-rotor-net softmax", new SimpleRotorNet(784, 256, 10, 2, seed: 6, backend: cpu), false),
            ("float-mode layer", new Sequential(TernaryLinear.Random(70, 90, 8, bias: true, mode: ActivationMode.Float, backend: cpu), new ReLU(70)), false),
        };
        foreach (var (name, net, exact) in nets)
        {
            using var g = new CudaNetwork(net, gpu, 33);
            foreach (int batch in new[] { 1, 5, 32, 33 })
            {
                float[] x = Floats(batch * net.InputSize, batch * 31 + net.InputSize, 2f);
                float[] want = net.Forward(x, batch).ToArray();
                var got = new float[batch * net.OutputSize];
                g.Forward(x, got, batch);
                string shape = $"{net.InputSize}->{net.OutputSize} batch={batch}";
                string kernels = $"{g.KernelCount(batch)} kernels";
                if (exact) yield return Compare($"graph {name}", shape, kernels, want, got);
                else
                {
                    long bad = 0; double md = 0;
                    for (int i = 0; i < want.Length; i++)
                    {
                        double d = Math.Abs(want[i] - got[i]);
                        if (!(d <= 1e-4 * Math.Max(1, Math.Abs(want[i])))) bad++;
                        md = Math.Max(md, double.IsNaN(d) ? double.PositiveInfinity : d);
                    }
                    yield return new CheckResult($"graph {name}", shape, kernels, want.Length, bad, md, false);
                }
            }
        }
    }

    /// <summary>The benchmark's network: <paramref name="layers"/> TernaryLinear 2048->2048 with ReLU between.</summary>
    internal static Sequential Net2048(int layers, ITernaryBackend backend)
    {
        var l = new List<ILayer>();
        for (int i = 0; i < layers; i++)
        {
            l.Add(TernaryLinear.Random(2048, 2048, 40 + i, bias: true, backend: backend));
            if (i + 1 < layers) l.Add(new ReLU(2048));
        }
        return new Sequential(l.ToArray());
    }

    // ---- data and the oracle ---------------------------------------------------------------------------------------

    /// <summary>Random W (per-row scales for odd seeds), int8 x with random scales, bias for seeds divisible by 2.</summary>
    internal static (TernaryMatrix W, QuantizedActivations X, float[] Bias) Problem(int n, int k, int m, int seed)
    {
        var rng = new Random(seed);
        float[] scales = seed % 2 == 1 ? Floats(n, seed + 1, 0.5f).Select(v => 0.01f + Math.Abs(v)).ToArray() : [0.37f];
        var w = TernaryMatrix.FromTrits(Trits(n * k, seed), n, k, scales);
        var x = new QuantizedActivations(m, k);
        var q = new sbyte[(long)m * k];
        for (int i = 0; i < q.Length; i++) q[i] = (sbyte)rng.Next(-127, 128);
        x.SetQuantized(q, Floats(m, seed + 2, 0.1f).Select(v => 0.001f + Math.Abs(v)).ToArray());
        float[] bias = seed % 2 == 0 ? Floats(n, seed + 3) : [];
        return (w, x, bias);
    }

    /// <summary>y by <see cref="ReferenceKernels.Gemm"/> (GemmArgs.Store epilogue), then the activation.</summary>
    internal static float[] Reference(TernaryMatrix w, QuantizedActivations x, float[] bias, CudaActivation act)
    {
        int m = x.Count, n = w.Rows;
        var y = new float[(long)m * n];
        fixed (float* xs = x.ScaleArray) fixed (int* xsum = x.SumArray) fixed (float* ws = w.ScaleArray)
        fixed (float* b = bias) fixed (float* yp = y)
        {
            var a = new GemmArgs
            {
                W = w.DataPointer, RowBytes = w.RowBytes, KBlocks = w.Blocks, N = n,
                X = x.DataPointer, XStride = x.PaddedCols, M = m, XScale = xs, XSum = xsum,
                WScale = ws, WScaleStride = w.ScaleMode == ScaleMode.PerRow ? 1 : 0,
                Bias = bias.Length == 0 ? null : b, Y = yp, YStride = n,
            };
            int chunk = Math.Max(1, (n + 4 * Environment.ProcessorCount - 1) / (4 * Environment.ProcessorCount));
            Parallel.For(0, (n + chunk - 1) / chunk, Threading.ThreadCount.Options(), c => ReferenceKernels.Gemm(a, c * chunk, Math.Min(n, (c + 1) * chunk)));
        }
        GC.KeepAlive(w); GC.KeepAlive(x);
        for (int i = 0; i < y.Length; i++)
            y[i] = act switch
            {
                CudaActivation.ReLU => Math.Max(y[i], 0f),
                CudaActivation.Sign => MathF.Sign(y[i]),
                _ => y[i],
            };
        return y;
    }

    private static CheckResult Compare(string kernel, string shape, string detail, ReadOnlySpan<float> want, ReadOnlySpan<float> got)
    {
        long bad = 0; double md = 0;
        for (int i = 0; i < want.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(want[i]) != BitConverter.SingleToInt32Bits(got[i]) && !(want[i] == 0 && got[i] == 0)) bad++;
            double d = Math.Abs((double)want[i] - got[i]);
            md = Math.Max(md, double.IsNaN(d) ? double.PositiveInfinity : d);
        }
        return new CheckResult(kernel, shape, detail, want.Length, bad, md, true);
    }

    private static CheckResult CompareBytes(string kernel, string shape, string detail, ReadOnlySpan<byte> want, ReadOnlySpan<byte> got, long extraMismatch = 0)
    {
        long bad = extraMismatch; double md = 0;
        if (want.Length != got.Length) return new CheckResult(kernel, shape, detail + $" length {got.Length} != {want.Length}", want.Length, Math.Max(1, bad), double.PositiveInfinity, true);
        for (int i = 0; i < want.Length; i++)
            if (want[i] != got[i]) { bad++; md = Math.Max(md, Math.Abs((sbyte)want[i] - (sbyte)got[i])); }
        return new CheckResult(kernel, shape, detail, want.Length, bad, md, true);
    }

    internal static sbyte[] Trits(int n, int seed)
    {
        var r = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = (sbyte)(r.Next(3) - 1);
        return t;
    }

    internal static float[] Floats(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var t = new float[n];
        for (int i = 0; i < n; i++) t[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return t;
    }
}

using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Rotor;
using Rotor.Kernels;

BenchmarkSwitcher.FromAssembly(typeof(GemvBenchmarks).Assembly).Run(args);

/// <summary>GEMV and GEMM on the BitNet b1.58 2B4T shapes, every kernel path, 1 thread (deeper runs than `rotor bench`).</summary>
[MemoryDiagnoser]
public class GemvBenchmarks
{
    private TernaryMatrix _w = null!;
    private QuantizedActivations _q = null!;
    private float[] _x = [], _y = [];
    private CpuBackend _be = null!;

    [Params("2560x2560", "6912x2560", "2560x6912", "4096x4096")]
    public string Shape { get; set; } = "2560x2560";

    [Params(1, 8, 128)]
    public int M { get; set; }

    [Params(KernelPath.Avx512Vnni, KernelPath.Avx512, KernelPath.Avx2, KernelPath.Portable)]
    public KernelPath Path { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var p = Shape.Split('x');
        int n = int.Parse(p[0]), k = int.Parse(p[1]);
        var rng = new Random(1);
        var t = new sbyte[n * k];
        for (int i = 0; i < t.Length; i++) t[i] = (sbyte)(rng.Next(3) - 1);
        _w = TernaryMatrix.FromTrits(t, n, k, [1f]);
        _x = new float[M * k];
        for (int i = 0; i < _x.Length; i++) _x[i] = (float)(rng.NextDouble() * 2 - 1);
        _q = new QuantizedActivations(M, k);
        _y = new float[M * n];
        _be = new CpuBackend(1, KernelSelector.IsSupported(Path) ? Path : KernelPath.Portable);
    }

    [GlobalCleanup]
    public void Cleanup() => _be.Dispose();

    [Benchmark]
    public void MatMul() => _be.MatMul(_w, _x, _y, _q);
}

/// <summary>Trit encoding throughput.</summary>
public class TritBenchmarks
{
    private readonly sbyte[] _v = new sbyte[1_000_000];
    private readonly byte[] _p = new byte[250_000];
    private readonly sbyte[] _back = new sbyte[1_000_000];

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(1);
        for (int i = 0; i < _v.Length; i++) _v[i] = (sbyte)(r.Next(3) - 1);
    }

    [Benchmark]
    public void PackUnpack1M() { Trits.Pack(_v, _p); Trits.Unpack(_p, _back); }
}

using System.Runtime.InteropServices;
using Rotor.Cuda;
using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Tests.Cuda;

/// <summary>A fact that needs a usable GPU and librotor_cuda; skipped, with CUDA's reason, where there is none.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!CudaBackend.Availability.IsAvailable) Skip = $"CUDA backend {CudaBackend.Availability}";
    }
}

/// <summary>A fact about the machine without a usable GPU; skipped, saying so, where there is one.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaBackend.Availability.IsAvailable) Skip = "a GPU is usable here: this test checks the fallback without one";
    }
}

/// <summary>A theory that needs a usable GPU and librotor_cuda; skipped, with CUDA's reason, where there is none.</summary>
public sealed class CudaTheoryAttribute : TheoryAttribute
{
    public CudaTheoryAttribute()
    {
        if (!CudaBackend.Availability.IsAvailable) Skip = $"CUDA backend {CudaBackend.Availability}";
    }
}

/// <summary>The CUDA backend: every GPU kernel against the CPU reference (bit for bit for integer products), and
/// the behaviour without a GPU (clear reason, CPU fallback), which runs everywhere.</summary>
[Collection("kernels")]
public class CudaTests
{
    private static readonly Lazy<CudaBackend> s_gpu = new(CudaBackend.Create);

    private static void AllPass(IEnumerable<CheckResult> results)
    {
        var list = results.ToList();
        Assert.NotEmpty(list);
        var failed = list.Where(r => !r.Passed).Select(r => $"{r.Kernel} {r.Shape} {r.Detail}: {r.Mismatches} of {r.Compared} off, max |diff| {r.MaxDiff}").ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
    }

    // ---- everywhere ------------------------------------------------------------------------------------------------

    [Fact]
    public void AvailabilitySaysWhyTheGpuIsNotUsed()
    {
        CudaAvailability a = CudaBackend.Availability;
        if (a.IsAvailable)
        {
            Assert.Equal("", a.Reason);
            Assert.False(string.IsNullOrEmpty(a.DeviceName));
            Assert.True(a.ComputeCapability >= 80);
        }
        else
        {
            Assert.False(string.IsNullOrWhiteSpace(a.Reason));
            Assert.StartsWith("not used: ", a.ToString());
        }
    }

    [NoCudaFact]
    public void WithoutAGpuCreateThrowsAndCreateOrCpuFallsBack()
    {
        var e = Assert.Throws<CudaException>(CudaBackend.Create);
        Assert.Contains(CudaBackend.Availability.Reason, e.Message);
        Assert.IsType<CpuBackend>(CudaBackend.CreateOrCpu());
    }

    [Fact]
    public void GemmArgsMatchTheNativeStructLayout()
    {
        // rotor_gemm_args in native/cuda/rotor_cuda.h: seven pointers, then eight int32.
        Assert.Equal(88, Marshal.SizeOf<GemmArgsNative>());
        Assert.Equal(0, (int)Marshal.OffsetOf<GemmArgsNative>(nameof(GemmArgsNative.W)));
        Assert.Equal(48, (int)Marshal.OffsetOf<GemmArgsNative>(nameof(GemmArgsNative.Y)));
        Assert.Equal(56, (int)Marshal.OffsetOf<GemmArgsNative>(nameof(GemmArgsNative.RowBytes)));
        Assert.Equal(84, (int)Marshal.OffsetOf<GemmArgsNative>(nameof(GemmArgsNative.Act)));
    }

    [Fact]
    public void LmLinearArgsMatchTheNativeStructLayout()
    {
        // rotor_lm_linear_args: rotor_gemm_args, two pointers, six 4-byte fields, then the rotary epilogue's six
        // pointers, one 8-byte and six 4-byte fields.
        Assert.Equal(208, Marshal.SizeOf<LmLinearNative>());
        Assert.Equal(128, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.RopeCos)));
        Assert.Equal(176, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.SlotStride)));
        Assert.Equal(184, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.Heads)));
        Assert.Equal(204, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.Reserved)));
        Assert.Equal(88, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.Src)));
        Assert.Equal(96, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.NormWeight)));
        Assert.Equal(104, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.SrcStride)));
        Assert.Equal(124, (int)Marshal.OffsetOf<LmLinearNative>(nameof(LmLinearNative.Act)));
    }

    [Fact]
    public void LmDecodeArgsMatchTheNativeStructLayout()
    {
        // rotor_lm_decode_layer: twelve pointers, eight int32; rotor_lm_decode_args: twelve pointers, an int64, ten
        // int32, two floats.
        Assert.Equal(128, Marshal.SizeOf<LmDecodeLayerNative>());
        Assert.Equal(96, (int)Marshal.OffsetOf<LmDecodeLayerNative>(nameof(LmDecodeLayerNative.RowBytes)));
        Assert.Equal(112, (int)Marshal.OffsetOf<LmDecodeLayerNative>(nameof(LmDecodeLayerNative.WScaleStride)));
        Assert.Equal(152, Marshal.SizeOf<LmDecodeArgsNative>());
        Assert.Equal(96, (int)Marshal.OffsetOf<LmDecodeArgsNative>(nameof(LmDecodeArgsNative.SlotStride)));
        Assert.Equal(104, (int)Marshal.OffsetOf<LmDecodeArgsNative>(nameof(LmDecodeArgsNative.LayerCount)));
        Assert.Equal(128, (int)Marshal.OffsetOf<LmDecodeArgsNative>(nameof(LmDecodeArgsNative.Capacity)));
        Assert.Equal(144, (int)Marshal.OffsetOf<LmDecodeArgsNative>(nameof(LmDecodeArgsNative.Eps)));
    }

    [Fact]
    public void CpuSelftestPasses() => AllPass(CudaSelfTest.RunCpu(quick: true));

    // ---- on a GPU --------------------------------------------------------------------------------------------------

    [CudaFact]
    public void PackAndUnpackMatchTheCpuLayout() => AllPass(CudaSelfTest.PackChecks(s_gpu.Value));

    [CudaFact]
    public void QuantizationMatchesTheCpuBitForBit() => AllPass(CudaSelfTest.QuantizeChecks(s_gpu.Value));

    [CudaTheory]
    [InlineData(1, 1, 1)]
    [InlineData(17, 257, 3)]
    [InlineData(100, 513, 8)]
    [InlineData(129, 1000, 9)]
    [InlineData(255, 2048, 33)]
    [InlineData(40, 6500, 64)]
    [InlineData(300, 2600, 65)]
    [InlineData(1000, 777, 129)]
    [InlineData(129, 1000, 300)]
    public void EveryProductKernelMatchesTheReference(int n, int k, int m) =>
        AllPass(CudaSelfTest.GemmChecks(s_gpu.Value, n, k, m, seed: n + k + m));

    [CudaFact]
    public void FloatProductsStayWithinTheirBound() => AllPass(CudaSelfTest.FloatChecks(s_gpu.Value));

    [CudaFact]
    public void NetworkGraphsMatchTheCpuForward() => AllPass(CudaSelfTest.NetworkChecks(s_gpu.Value));

    [CudaFact]
    public void BackendThroughTheInterfaceEqualsTheCpu()
    {
        ITernaryBackend gpu = s_gpu.Value, cpu = CpuBackend.Default;
        var (w, x, bias) = CudaSelfTest.Problem(77, 700, 5, seed: 4);
        var a = new float[5 * 77];
        var b = new float[5 * 77];
        gpu.MatMul(w, x, a, bias);
        cpu.MatMul(w, x, b, bias);
        Assert.Equal(b, a);

        float[] xf = CudaSelfTest.Floats(5 * 700, 9, 2f);
        gpu.MatMul(w, xf, a, new QuantizedActivations(5, 700), bias);
        cpu.MatMul(w, xf, b, new QuantizedActivations(5, 700), bias);
        Assert.Equal(b, a);
    }

    [CudaFact]
    public void BackendRejectsBadShapesBeforeTouchingTheGpu()
    {
        CudaBackend gpu = s_gpu.Value;
        var (w, x, _) = CudaSelfTest.Problem(10, 300, 2, seed: 2);
        Assert.Throws<ArgumentException>(() => gpu.MatMul(w, x, new float[2 * 10 - 1]));
        Assert.Throws<ArgumentException>(() => gpu.MatMul(w, x, new float[20], new float[9]));
        var wrong = new QuantizedActivations(2, 301);
        wrong.SetQuantized(new sbyte[602], [1f, 1f]);
        Assert.Throws<ArgumentException>(() => gpu.MatMul(w, wrong, new float[20]));
        Assert.Throws<RotorException>(() => gpu.MatMul(w, Enumerable.Repeat(float.NaN, 300).ToArray(), new float[10], new QuantizedActivations(1, 300)));
    }

    [CudaFact]
    public void EvictedMatricesAreUploadedAgain()
    {
        CudaBackend gpu = s_gpu.Value;
        var (w, x, _) = CudaSelfTest.Problem(33, 400, 3, seed: 6);
        var before = new float[99];
        gpu.MatMul(w, x, before);
        long resident = gpu.ResidentBytes;
        Assert.True(resident >= (long)w.Rows * w.RowBytes);
        w.SetRow(0, new sbyte[400]);
        gpu.Evict(w);
        var after = new float[99];
        gpu.MatMul(w, x, after);
        var want = new float[99];
        CpuBackend.Default.MatMul(w, x, want);
        Assert.Equal(want, after);
        Assert.Equal(0f, after[0]);
    }

    [CudaFact]
    public void NetworkRejectsLayersWithoutACudaForm()
    {
        var net = new Sequential(TernaryLinear.Random(8, 16, 1), new Opaque(8));
        var e = Assert.Throws<NotSupportedException>(() => new CudaNetwork(net, s_gpu.Value, 4));
        Assert.Contains("Opaque", e.Message);
    }

    private sealed class Opaque(int size) : ILayer
    {
        public int InputSize => size;
        public int OutputSize => size;
        public string Name => "Opaque";
        public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch) => x.CopyTo(y);
    }
}

using Rotor.Cuda;
using Rotor.Lm.Cuda;

namespace Rotor.Lm.Tests;

/// <summary>A fact that needs a usable GPU and librotor_cuda; skipped, with CUDA's reason, where there is none.</summary>
public sealed class LmCudaFactAttribute : FactAttribute
{
    public LmCudaFactAttribute()
    {
        if (!CudaBackend.Availability.IsAvailable) Skip = $"CUDA backend {CudaBackend.Availability}";
    }
}

/// <summary>A fact about the machine without a usable GPU; skipped, saying so, where there is one.</summary>
public sealed class LmNoCudaFactAttribute : FactAttribute
{
    public LmNoCudaFactAttribute()
    {
        if (CudaBackend.Availability.IsAvailable) Skip = "a GPU is usable here: this test checks the fallback without one";
    }
}

/// <summary>The GPU decoder: its kernels against CPU references and whole models against the CPU decoder (the checks
/// of <c>rotor selftest --device cuda</c>); and, everywhere, the fallback to the CPU without a GPU.</summary>
public class CudaDecoderTests
{
    [LmCudaFact]
    public void KernelsAndModelsMatchTheCpu()
    {
        var results = CudaLmSelfTest.Run(TestPaths.SharedLm("stories260K.bin"), fixtures: Path.GetDirectoryName(TestPaths.Data("gguf", "types.gguf")));
        var failed = results.Where(r => !r.Passed).Select(r => $"{r.Kernel} {r.Shape} {r.Detail}: {r.Mismatches} bad, max {r.MaxDiff}").ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        Assert.Contains(results, r => r.Kernel.StartsWith("lm model", StringComparison.Ordinal));
    }

    [LmNoCudaFact]
    public void WithoutAGpuTheModelRunsOnTheCpuAndSaysWhy()
    {
        var c = RandomModel.BitNet2B4T with { Dim = 64, Layers = 1, Heads = 2, KvHeads = 1, HeadDim = 32, FfnDim = 96, VocabSize = 50 };
        using var m = LanguageModel.FromWeights(c, RandomModel.Create(c), new LanguageModelOptions { Threads = 1, Device = LmDevice.Cuda });
        Assert.Null(m.Cuda);
        Assert.StartsWith("cpu (CUDA not used: ", m.DeviceNote, StringComparison.Ordinal);
        Assert.Contains(CudaBackend.Availability.Reason, m.DeviceNote, StringComparison.Ordinal);
        var s = m.CreateSession(8);
        Assert.False(s.OnGpu);
        Assert.Equal(c.VocabSize, s.Append([1, 2, 3]).Length);
    }
}

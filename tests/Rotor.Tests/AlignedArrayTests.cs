using Rotor.Kernels;

namespace Rotor.Tests;

/// <summary>Counts the arena's regions, so nothing else may allocate weights while it runs.</summary>
[CollectionDefinition("HugePageArena", DisableParallelization = true)]
public sealed class HugePageArenaCollection;

/// <summary>A fact that is skipped, saying why, when ROTOR_HUGEPAGES=0 turns the huge-page arena off.</summary>
public sealed class ArenaFactAttribute : FactAttribute
{
    public ArenaFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("ROTOR_HUGEPAGES") == "0") Skip = "ROTOR_HUGEPAGES=0 turns the huge-page arena off";
    }
}

[Collection("HugePageArena")]
public unsafe class AlignedArrayTests
{
    [Fact]
    public void SmallBuffersAre64ByteAlignedAndZeroed()
    {
        foreach (long n in new long[] { 0, 1, 63, 64, 1000, 65 * 1024, AlignedArray<byte>.HugePageThreshold - 1 })
        {
            var a = new AlignedArray<byte>(n, hugePages: true);   // under the threshold: a pinned array
            Assert.False(a.IsNative);
            Assert.Equal(0, (long)a.Pointer % AlignedArray<byte>.Alignment);
            Assert.Equal(n, a.Span.Length);
            Assert.True(a.Span.IndexOfAnyExcept((byte)0) < 0);
        }
    }

    [Fact]
    public void LargeWeightMatricesUseHugePageAlignedNativeMemoryAndGiveTheSameResults()
    {
        // 2,048 x 8,192 trits = 4 MiB of codes: over the huge-page threshold.
        int n = 2048, k = 8192;
        sbyte[] t = TestData.Trits(n * k, 5);
        var w = TernaryMatrix.FromTrits(t, n, k, [0.5f]);
        var a = new AlignedArray<byte>(AlignedArray<byte>.HugePageThreshold, hugePages: true);
        bool wanted = Environment.GetEnvironmentVariable("ROTOR_HUGEPAGES") != "0";
        Assert.Equal(wanted, a.IsNative);
        if (wanted) Assert.Equal(0, (long)a.Pointer % 64);
        Assert.True(a.Span.IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(t, w.ToTrits());
        var x = TestData.Int8(3 * k, 6);
        var qa = new QuantizedActivations(3, k);
        qa.SetQuantized(x, [0.1f, 0.2f, 0.3f]);
        var expected = new float[3 * n];
        var actual = new float[3 * n];
        using (var reference = new CpuBackend(1, KernelPath.Reference)) reference.MatMul(w, qa, expected);
        using (var fast = new CpuBackend(2)) fast.MatMul(w, qa, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void DroppedNativeBuffersAreFreed()
    {
        // 64 buffers of 8 MiB = 512 MiB if nothing were freed; the finalizers give the memory back.
        GC.Collect(); GC.WaitForPendingFinalizers();
        long before = Environment.WorkingSet;
        for (int i = 0; i < 64; i++)
        {
            var a = new AlignedArray<byte>(8L << 20, hugePages: true);
            a.Span[^1] = 1;
            if (i % 8 == 7) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        }
        GC.Collect(); GC.WaitForPendingFinalizers();
        Assert.True(Environment.WorkingSet < before + (256L << 20), $"working set {Environment.WorkingSet >> 20} MiB after freeing");
    }

    [ArenaFact]
    public void ArenaSlicesAreAlignedZeroedDisjointAndTheirRegionsFreed()
    {
        // Slices of odd sizes: 64-byte aligned, zeroed although the region's memory was written before, never overlapping.
        var slices = new List<AlignedArray<byte>>();
        var rng = new Random(4);
        for (int s = 0; s < 40; s++)
        {
            var a = new AlignedArray<byte>(AlignedArray<byte>.HugePageThreshold + rng.Next(2 << 20), hugePages: true);
            Assert.True(a.IsNative);
            Assert.Equal(0, (long)a.Pointer % 64);
            Assert.True(a.Span.IndexOfAnyExcept((byte)0) < 0);
            a.Span.Fill((byte)(s + 1));
            slices.Add(a);
        }
        for (int s = 0; s < slices.Count; s++) Assert.True(slices[s].Span.IndexOfAnyExcept((byte)(s + 1)) < 0, $"slice {s} was overwritten");
        int live = HugePageArena.LiveRegions;
        Assert.True(live >= 2, $"{live} regions alive for about 50 MiB of slices");
        slices.Clear();
        for (int round = 0; round < 3; round++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        Assert.True(HugePageArena.LiveRegions < live, $"regions alive: {HugePageArena.LiveRegions} (were {live})");
        // A buffer larger than a region gets its own memory.
        var big = new AlignedArray<byte>(HugePageArena.RegionBytes + 1, hugePages: true);
        Assert.True(big.IsNative);
        Assert.True(big.Span.IndexOfAnyExcept((byte)0) < 0);
    }
}

namespace Rotor.Kernels;

/// <summary>An implementation of the CPU kernels; its traits are its row in <see cref="KernelPaths"/>.
/// <see cref="KernelSelector"/> picks the best supported one; the environment variable <c>ROTOR_KERNEL</c>
/// (reference, portable, avx2, avx512, avx512vnni, neon, neondot) or <see cref="KernelSelector.Override"/> forces one.</summary>
public enum KernelPath
{
    /// <summary>Plain scalar code on decoded trits: the test oracle.</summary>
    Reference = 0,
    /// <summary>Vector128 code that runs on any platform.</summary>
    Portable = 1,
    /// <summary>x86 AVX2 (256-bit, vpmaddubsw).</summary>
    Avx2 = 2,
    /// <summary>x86 AVX-512 BW (512-bit, vpmaddubsw).</summary>
    Avx512 = 3,
    /// <summary>Arm AdvSimd (NEON) without the dot-product extension: smull + sadalp widen the products.</summary>
    Neon = 4,
    /// <summary>x86 AVX-512 VNNI (vpdpbusd): machine code generated at run time, Linux x64 (see
    /// <see cref="KernelSelector.Avx512VnniUnavailableReason"/>).</summary>
    Avx512Vnni = 5,
    /// <summary>Arm AdvSimd with the dot-product extension (sdot, Armv8.2 DotProd): four int8 products into each int32
    /// lane in one instruction.</summary>
    NeonDot = 6,
}

/// <summary>Chooses the kernel path at run time: the supported row of <see cref="KernelPaths"/> with the highest
/// priority (AVX-512 VNNI, AVX-512 BW, AVX2, NEON with sdot, NEON, portable), unless <c>ROTOR_KERNEL</c> or <see cref="Override"/>
/// names one.</summary>
public static class KernelSelector
{
    private static KernelPath? s_override = ParseEnv();

    /// <summary>Whether this machine can run <paramref name="path"/>.</summary>
    public static bool IsSupported(KernelPath path) => (uint)path < (uint)KernelPaths.All.Count && KernelPaths.Get(path).IsSupported;

    /// <summary>Why this machine cannot run <paramref name="path"/>, or null when it can.</summary>
    public static string? UnavailableReason(KernelPath path) => KernelPaths.Get(path).UnavailableReason;

    /// <summary>Why <see cref="KernelPath.Avx512Vnni"/> is not supported here, or null when it is.</summary>
    public static string? Avx512VnniUnavailableReason => UnavailableReason(KernelPath.Avx512Vnni);

    /// <summary>The paths this machine supports, best last.</summary>
    public static IReadOnlyList<KernelPath> Supported =>
        KernelPaths.All.Where(p => p.IsSupported).OrderBy(p => p.Priority).Select(p => p.Path).ToArray();

    private static readonly Lazy<KernelPath> s_best = new(() =>
        KernelPaths.All.Where(p => p.IsSupported && p.Priority > 0).MaxBy(p => p.Priority)?.Path ?? KernelPath.Portable);

    /// <summary>The fastest supported path (the machine does not change: chosen once, read on every product).</summary>
    public static KernelPath Best => s_best.Value;

    /// <summary>The path in use: the override if set, else <see cref="Best"/>.</summary>
    public static KernelPath Current => s_override ?? Best;

    /// <summary>Forces a path (null returns to automatic choice). Throws if this machine cannot run it.</summary>
    public static KernelPath? Override
    {
        get => s_override;
        set
        {
            if (value is { } p && !IsSupported(p)) throw new PlatformNotSupportedException($"kernel path {p} is not supported on this machine (supported: {string.Join(", ", Supported)})");
            s_override = value;
        }
    }

    private static KernelPath? ParseEnv()
    {
        string? v = Environment.GetEnvironmentVariable("ROTOR_KERNEL");
        if (string.IsNullOrWhiteSpace(v) || v.Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        KernelPathInfo p = KernelPaths.Find(v.Trim())
            ?? throw new RotorException($"ROTOR_KERNEL={v} is not a kernel path ({string.Join(", ", KernelPaths.All.Select(r => r.Name))}, auto)");
        if (!p.IsSupported) throw new RotorException($"ROTOR_KERNEL={v}: this machine does not support it ({p.UnavailableReason}; supported: {string.Join(", ", Supported)})");
        return p.Path;
    }
}

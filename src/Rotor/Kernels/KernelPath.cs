using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>An implementation of the CPU kernels. <see cref="KernelSelector"/> picks the best supported one; the
/// environment variable <c>ROTOR_KERNEL</c> (reference, portable, avx2, avx512, avx512vnni, neon) or
/// <see cref="KernelSelector.Override"/> forces one.</summary>
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
    /// <summary>Arm AdvSimd (NEON), with the dot-product extension where present.</summary>
    Neon = 4,
    /// <summary>x86 AVX-512 VNNI (vpdpbusd): machine code generated at run time, Linux x64 (see
    /// <see cref="KernelSelector.Avx512VnniUnavailableReason"/>).</summary>
    Avx512Vnni = 5,
}

/// <summary>Chooses the kernel path at run time: AVX-512 VNNI -> AVX-512 BW -> AVX2 -> NEON -> portable.</summary>
public static class KernelSelector
{
    private static KernelPath? s_override = ParseEnv();

    /// <summary>Whether this machine can run <paramref name="path"/>.</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Reference => true,
        KernelPath.Portable => true,
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.Avx512 => Avx512BW.IsSupported && Vector512.IsHardwareAccelerated,
        KernelPath.Neon => AdvSimd.Arm64.IsSupported,
        KernelPath.Avx512Vnni => VnniCode.IsAvailable,
        _ => false,
    };

    /// <summary>Why <see cref="KernelPath.Avx512Vnni"/> is not supported here, or null when it is.</summary>
    public static string? Avx512VnniUnavailableReason => VnniCode.UnavailableReason;

    /// <summary>The paths this machine supports, best last.</summary>
    public static IReadOnlyList<KernelPath> Supported =>
        Enum.GetValues<KernelPath>().Where(IsSupported).ToArray();

    /// <summary>The fastest supported path.</summary>
    public static KernelPath Best =>
        IsSupported(KernelPath.Avx512Vnni) ? KernelPath.Avx512Vnni :
        IsSupported(KernelPath.Avx512) ? KernelPath.Avx512 :
        IsSupported(KernelPath.Avx2) ? KernelPath.Avx2 :
        IsSupported(KernelPath.Neon) ? KernelPath.Neon : KernelPath.Portable;

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
        if (!Enum.TryParse<KernelPath>(v, ignoreCase: true, out var p))
            throw new RotorException($"ROTOR_KERNEL={v} is not a kernel path (reference, portable, avx2, avx512, avx512vnni, neon, auto)");
        if (!IsSupported(p)) throw new RotorException($"ROTOR_KERNEL={v}: this machine does not support it (supported: {string.Join(", ", Supported)})");
        return p;
    }
}

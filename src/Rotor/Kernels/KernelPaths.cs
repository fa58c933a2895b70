using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Kernels;

/// <summary>
/// The traits of one CPU kernel path: one row of <see cref="KernelPaths.All"/>. The driver
/// (<see cref="CpuBackend"/>) reads everything it needs about a path from its row, so a new path is one file of
/// kernels (a struct implementing the kernel contract), one <see cref="KernelPath"/> value and one row.
/// </summary>
public sealed unsafe class KernelPathInfo
{
    private readonly Lazy<string?> _unavailable;

    internal KernelPathInfo(KernelPath path, string name, int priority, Func<string?> unavailableReason,
        delegate*<in GemmArgs, int, int, void> gemm, delegate*<byte*, sbyte*, int, int> dotCodes, delegate*<byte*, float*, int, float> dotF32,
        delegate*<sbyte*, sbyte*, int, int> dotInt8, delegate*<sbyte*, sbyte*, long, int, int*, void> dotInt8x4,
        delegate*<byte*, ushort*, int, byte*, int, int, float*, void> dotQ4, delegate*<float*, long, float*, long, int, int, float*, void> tileF32,
        delegate*<ref GemmArgs, void> prepareGemm = null, delegate*<ushort*, float*, long, int, int, float*, void> dotF16x4 = null)
    {
        Path = path; Name = name; Priority = priority; _unavailable = new Lazy<string?>(unavailableReason);
        Gemm = gemm; DotCodes = dotCodes; DotF32 = dotF32; DotInt8 = dotInt8; DotInt8x4 = dotInt8x4; DotQ4 = dotQ4; TileF32 = tileF32; PrepareGemm = prepareGemm;
        DotF16x4 = dotF16x4;
    }

    /// <summary>The path.</summary>
    public KernelPath Path { get; }
    /// <summary>Lower-case name, as in <c>ROTOR_KERNEL</c> and reports.</summary>
    public string Name { get; }
    /// <summary>Rank in the automatic choice: the supported path of highest priority is used; 0 = never chosen
    /// automatically (the reference).</summary>
    public int Priority { get; }

    /// <summary>Why this machine cannot run the path, or null when it can. Probed once (the VNNI path generates its
    /// code on the first probe).</summary>
    public string? UnavailableReason => _unavailable.Value;

    /// <summary>Whether this machine can run the path.</summary>
    public bool IsSupported => UnavailableReason is null;

    /// <summary>y for weight rows [r0, r1) and every activation row of the arguments (a GEMV when there is one row;
    /// a path may take a separate GEMV route inside for small batches).</summary>
    internal delegate*<in GemmArgs, int, int, void> Gemm { get; }
    /// <summary><c>sum_j code[j] * x[j]</c> of one I2_256 row and one int8 row over kBlocks * 256 values.</summary>
    internal delegate*<byte*, sbyte*, int, int> DotCodes { get; }
    /// <summary><c>sum_j w[j] * x[j]</c> of one I2_256 row and one float row over kBlocks * 256 values.</summary>
    internal delegate*<byte*, float*, int, float> DotF32 { get; }
    /// <summary><c>sum_j w[j] * x[j]</c> of two int8 rows over a multiple of 256 values (dense Int8 matrices such as an
    /// LM head; see <see cref="DenseGemm"/>).</summary>
    internal delegate*<sbyte*, sbyte*, int, int> DotInt8 { get; }
    /// <summary>Four <see cref="DotInt8"/> products of one weight row with activation rows <c>x + i * xStride</c>,
    /// i &lt; 4, into sums[0..3] (the batched products of an Int8 matrix).</summary>
    internal delegate*<sbyte*, sbyte*, long, int, int*, void> DotInt8x4 { get; }
    /// <summary>The products of <see cref="DenseType.Q4"/> weight rows with up to <see cref="DenseQ4.MaxRows"/> packed
    /// activation rows (the contract is <see cref="DenseQ4"/>'s).</summary>
    internal delegate*<byte*, ushort*, int, byte*, int, int, float*, void> DotQ4 { get; }
    /// <summary>Products of four float weight rows with up to four activation rows (the batched products of F32 and F16
    /// matrices, F16 widened first; the contract is <see cref="DenseGemm.TileF32Reference"/>'s).</summary>
    internal delegate*<float*, long, float*, long, int, int, float*, void> TileF32 { get; }
    /// <summary>One F16 weight row against up to <see cref="DenseGemm.F16Rows"/> activation rows, each half widened once
    /// in registers (the contract is <see cref="DenseGemm.DotF16x4Reference"/>'s); null: batches of F16 go through
    /// <see cref="TileF32"/> whatever their size.</summary>
    internal delegate*<ushort*, float*, long, int, int, float*, void> DotF16x4 { get; }
    /// <summary>Run once a call, before the rows are split over threads, when the path wants the activations in
    /// another layout (null: none).</summary>
    internal delegate*<ref GemmArgs, void> PrepareGemm { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>
/// The table of CPU kernel paths, in <see cref="KernelPath"/> order. To add a path: write its kernels in one file
/// (see <c>Portable.cs</c> for the smallest complete one, <see cref="ReferenceKernels"/> for the definitions it must
/// match), add a <see cref="KernelPath"/> value and a row here; the kernel tests and <c>rotor selftest --device cpu</c>
/// then run it against the reference on every machine that supports it.
/// </summary>
public static unsafe class KernelPaths
{
    private static readonly KernelPathInfo[] s_rows =
    [
        new(KernelPath.Reference, "reference", 0, () => null,
            &ReferenceKernels.Gemm, &ReferenceKernels.DotCodes, &ReferenceKernels.DotF32, &DenseGemm.DotInt8Reference, &DenseGemm.DotInt8x4Reference, &DenseQ4.DotReference, &DenseGemm.TileF32Reference),
        new(KernelPath.Portable, "portable", 10, () => null,
            &PortableKernels.Gemm, &PortableKernels.DotCodes, &PortableKernels.DotF32, &DenseGemm.DotInt8Portable, &DenseGemm.DotInt8x4Portable, &DenseQ4.DotPortable, &DenseGemm.TileF32Portable),
        new(KernelPath.Avx2, "avx2", 30, () => Avx2.IsSupported ? null : Missing("AVX2", CpuId7Ebx(5)),
            &Avx2Kernels.Gemm, &Avx2Kernels.DotCodes, &Avx2Kernels.DotF32, &DenseGemm.DotInt8Avx2, &DenseGemm.DotInt8x4Avx2, &DenseQ4.DotAvx2, &DenseGemm.TileF32Avx2,
            dotF16x4: &DenseGemm.DotF16x4Avx2),
        new(KernelPath.Avx512, "avx512", 40,
            () => Avx512BW.IsSupported && Vector512.IsHardwareAccelerated ? null
                : Avx512BW.IsSupported ? "the processor has AVX-512 BW but .NET does not use 512-bit vectors on it" : Missing("AVX-512 BW", CpuId7Ebx(30)),
            &Avx512Kernels.Gemm, &Avx512Kernels.DotCodes, &Avx512Kernels.DotF32, &DenseGemm.DotInt8Avx2, &DenseGemm.DotInt8x4Avx512, &DenseQ4.DotAvx512, &DenseGemm.TileF32Avx512),
        new(KernelPath.Neon, "neon", 20, () => AdvSimd.Arm64.IsSupported ? null : "not an Arm64 processor with AdvSimd",
            &NeonKernels.Gemm, &NeonKernels.DotCodes, &NeonKernels.DotF32, &NeonKernels.DotInt8, &DenseGemm.DotInt8x4Portable, &DenseQ4.DotPortable, &DenseGemm.TileF32Portable),
        new(KernelPath.Avx512Vnni, "avx512vnni", 50, () => VnniCode.UnavailableReason,
            &Avx512VnniKernels.Gemm, &Avx512VnniKernels.DotCodes, &Avx512VnniKernels.DotF32, &DenseGemm.DotInt8Avx2, &DenseGemm.DotInt8x4Avx512, &DenseQ4.DotVnni, &DenseGemm.TileF32Avx512, &Avx512VnniKernels.PrepareGemm),
        new(KernelPath.NeonDot, "neondot", 25,
            () => !AdvSimd.Arm64.IsSupported ? "not an Arm64 processor with AdvSimd" : Dp.IsSupported ? null : "the processor has no dot-product extension (Armv8.2 DotProd, sdot)",
            &NeonDotKernels.Gemm, &NeonDotKernels.DotCodes, &NeonDotKernels.DotF32, &NeonDotKernels.DotInt8, &DenseGemm.DotInt8x4Portable, &DenseQ4.DotPortable, &DenseGemm.TileF32Portable),
    ];

    /// <summary>Why an x86 path is missing: the processor lacks <paramref name="isa"/>, or (native AOT) the processor
    /// has it but this build does not. A native AOT build fixes its instruction sets when it is compiled: AVX2 and
    /// AVX-512 code exists only where the build's x86-64 level includes them (see scripts/publish-aot.sh).</summary>
    private static string Missing(string isa, bool processorHasIt) =>
        processorHasIt && !RuntimeFeature.IsDynamicCodeSupported
            ? $"the processor has {isa} but this native build was compiled for a lower x86-64 level (scripts/publish-aot.sh --x64-level)"
            : $"the processor has no {isa}";

    /// <summary>CPUID leaf 7, sub-leaf 0, EBX bit <paramref name="bit"/> (5: AVX2, 30: AVX-512 BW); false off x86.</summary>
    private static bool CpuId7Ebx(int bit) => X86Base.IsSupported && (X86Base.CpuId(7, 0).Ebx & (1 << bit)) != 0;

    /// <summary>Every path, supported here or not.</summary>
    public static IReadOnlyList<KernelPathInfo> All => s_rows;

    static KernelPaths()
    {
        for (int i = 0; i < s_rows.Length; i++)
            if ((int)s_rows[i].Path != i) throw new InvalidOperationException($"kernel path table: row {i} is {s_rows[i].Path}; rows must follow the KernelPath values");
    }

    /// <summary>The row of <paramref name="path"/>.</summary>
    public static KernelPathInfo Get(KernelPath path) =>
        (uint)path < (uint)s_rows.Length ? s_rows[(int)path] : throw new ArgumentOutOfRangeException(nameof(path), path, $"unknown kernel path {(int)path}");

    /// <summary>The row named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static KernelPathInfo? Find(string name) =>
        All.FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
}

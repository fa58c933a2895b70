using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Rotor.Kernels;

/// <summary>
/// AVX-512 VNNI kernels. vpdpbusd multiplies 64 unsigned codes (w + 1, 0..2) by 64 signed activations and adds
/// groups of four into 16 int32 lanes of the accumulator in one instruction, where AVX-512 BW needs vpmaddubsw, a
/// vpaddw into int16 and a periodic widening: on Zen 4 the pair fills every vector pipe for a cycle, and vpdpbusd
/// needs half of that. .NET 10 has no intrinsic for it on processors without AVX10, so the inner loops are x86-64
/// machine code produced at start-up by the Iced encoder (<see cref="VnniCode"/>) and called through unmanaged
/// function pointers; the blocking, the decoding of the weights and the scales stay in C#.
/// <para>GEMM (m &gt;= 3): the codes of up to <see cref="NR"/> weight rows are decoded once into a panel (per
/// 64-column slice, the rows' 64 codes one after another), then every block of up to <see cref="MR"/> activation
/// rows runs an MR x NR register tile over it: 24 accumulators, 4 code vectors and one activation vector. GEMV
/// (m &lt; 3): each row is unpacked in registers and streamed once; a thread's rows are read as two halves side by
/// side (two weight streams).</para>
/// </summary>
internal unsafe struct Avx512VnniKernels : ITernaryKernels
{
    /// <summary>Activation rows a register tile.</summary>
    internal const int MR = 6;
    /// <summary>Weight rows a register tile (and a decoded panel): four, so that one activation row's four sums
    /// reduce in one tree and leave through one vector epilogue (<see cref="GemmArgs.Store4"/>).</summary>
    internal const int NR = 4;
    // Batches from this size on take the register tiles (m = 3 to 5 as partial tiles); below it each activation row
    // streams W once. Two rows are faster as two GEMVs, three or more as tiles (figures in docs/KERNELS.md).
    internal const int GemmMinRows = 3;
    // Rows a GEMV kernel call: its int32 lanes sit on the stack (32 x 64 bytes).
    private const int GemvBatch = 32;

    [ThreadStatic] private static byte[]? t_panel;
    [ThreadStatic] private static byte[]? t_packed;

    private static byte* Aligned(ref byte[]? cache, long bytes)
    {
        byte[]? a = cache;
        if (bytes > Array.MaxLength - 64)
            throw new RotorException($"a product of {bytes} bytes of packed activations or weight codes is larger than this kernel's scratch buffers allow ({Array.MaxLength - 64} bytes); split the batch");
        if (a is null || a.Length < bytes + 64) cache = a = GC.AllocateUninitializedArray<byte>((int)(bytes + 64), pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));
        return (byte*)((p + 63) & ~(nint)63);
    }

    private static byte* Panel(int bytes) => Aligned(ref t_panel, bytes);

    /// <summary>
    /// Copies the activations into blocks of <see cref="MR"/> rows (the last block may hold fewer), each block
    /// interleaved per 64 columns: slice t of block b holds its rows' columns 64t .. 64t + 63 one row after another,
    /// so that a register tile reads one sequential stream instead of MR strided ones. Block b starts at
    /// b * MR * cols bytes; the whole copy is m * cols bytes, in a buffer of the calling thread that the workers
    /// read until the call returns.
    /// </summary>
    public static void PackActivations(ref GemmArgs a)
    {
        int cols = a.KBlocks * 256, slices = a.KBlocks * 4;
        byte* dst = Aligned(ref t_packed, (long)a.M * cols);
        for (int b0 = 0; b0 < a.M; b0 += MR)
        {
            int rows = Math.Min(MR, a.M - b0);
            byte* block = dst + (long)b0 * cols;
            for (int ii = 0; ii < rows; ii++)
            {
                sbyte* src = a.X + (long)(b0 + ii) * a.XStride;
                byte* d = block + ii * 64;
                for (int t = 0; t < slices; t++) Vector512.Load(src + t * 64).AsByte().Store(d + (long)t * rows * 64);
            }
        }
        a.XPacked = (sbyte*)dst;
    }

    /// <summary>The driver's hook, run once a call before the rows are split over threads: batches that take the
    /// register tiles get their activations packed once instead of once a thread.</summary>
    public static void PrepareGemm(ref GemmArgs a)
    {
        if (a.M >= GemmMinRows) PackActivations(ref a);
    }

    /// <summary>Decodes <paramref name="nr"/> rows of W into the panel layout of <see cref="VnniCode"/>'s tiles:
    /// slice t (columns 64t .. 64t + 63) holds row 0's 64 codes, then row 1's, ... (nr * 64 bytes a slice).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecodePanel(byte* w, int rowBytes, int kBlocks, int nr, byte* panel)
    {
        int slice = nr * 64;
        for (int kb = 0; kb < kBlocks; kb++)
        {
            byte* dst = panel + (long)kb * 4 * slice;
            for (int j = 0; j < nr; j++)
            {
                Avx512Kernels.Unpack(w + (long)j * rowBytes + kb * 64, out var s0, out var s1, out var s2, out var s3);
                byte* d = dst + j * 64;
                s0.Store(d); s1.Store(d + slice); s2.Store(d + 2 * slice); s3.Store(d + 3 * slice);
            }
        }
    }

    /// <summary>Reduces <paramref name="count"/> vectors of 16 int32 lanes at <paramref name="lanes"/> to their sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Reduce(int* lanes, int count, int* sums)
    {
        int e = 0;
        for (; e + 4 <= count; e += 4)
            Avx512Kernels.Sum4(Vector512.Load(lanes + e * 16), Vector512.Load(lanes + (e + 1) * 16),
                Vector512.Load(lanes + (e + 2) * 16), Vector512.Load(lanes + (e + 3) * 16)).Store(sums + e);
        for (; e < count; e++) sums[e] = Vector512.Sum(Vector512.Load(lanes + e * 16));
    }

    public static int DotCodes(byte* w, sbyte* x, int kBlocks)
    {
        int* lanes = stackalloc int[16];
        VnniCode.Rows(w, 0, x, kBlocks, 1, lanes);
        return Vector512.Sum(Vector512.Load(lanes));
    }

    public static float DotF32(byte* w, float* x, int kBlocks) => Avx512Kernels.DotF32(w, x, kBlocks);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in GemmArgs a, int r0, int r1)
    {
        if (a.M < GemmMinRows) { Gemv(a, r0, r1); return; }
        if (a.XPacked == null) { GemmArgs packed = a; PackActivations(ref packed); Gemm(packed, r0, r1); return; }
        int* lanes = stackalloc int[MR * NR * 16];
        int* dots = stackalloc int[MR * NR];
        int slices = a.KBlocks * 4;
        byte* panel = Panel(NR * a.KBlocks * 256);
        // Activation rows a pass over W, kept in L2 beside the panel: about 512 KB of them, a multiple of MR.
        int rowTile = Math.Clamp(512 * 1024 / (a.KBlocks * 256) / MR * MR, MR, 126);
        for (int i0 = 0; i0 < a.M; i0 += rowTile)
        {
            int iEnd = Math.Min(i0 + rowTile, a.M);
            for (int r = r0; r < r1; r += NR)
            {
                int nr = Math.Min(NR, r1 - r);
                DecodePanel(a.W + (long)r * a.RowBytes, a.RowBytes, a.KBlocks, nr, panel);
                for (int i = i0; i < iEnd; i += MR)
                {
                    int mr = Math.Min(MR, iEnd - i);
                    VnniCode.Tile(mr, nr, panel, a.XPacked + (long)i * a.KBlocks * 256, slices, lanes);
                    if (nr == NR)
                    {
                        for (int ii = 0; ii < mr; ii++) a.Store4(i + ii, r, Vector128.Load(lanes + ii * 4));
                        continue;
                    }
                    Reduce(lanes, mr * nr, dots);
                    for (int ii = 0; ii < mr; ii++)
                        for (int jj = 0; jj < nr; jj++) a.Store(i + ii, r + jj, dots[ii * nr + jj]);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemv(in GemmArgs a, int r0, int r1)
    {
        int* lanes = stackalloc int[GemvBatch * 16];
        int* dots = stackalloc int[GemvBatch];
        // The range as two halves read side by side (two weight streams), the odd row last on its own.
        int half = a.RowBytes == a.KBlocks * 64 ? (r1 - r0) / 2 : 0;
        nint offset = (nint)half * a.RowBytes;
        for (int i = 0; i < a.M; i++)
        {
            sbyte* x = a.X + (long)i * a.XStride;
            for (int p = 0; p < half; p += GemvBatch / 2)
            {
                int pairs = Math.Min(GemvBatch / 2, half - p);
                VnniCode.Rows2(a.W + (long)(r0 + p) * a.RowBytes, offset, x, a.KBlocks, pairs, lanes);
                Reduce(lanes, 2 * pairs, dots);
                for (int e = 0; e < pairs; e++) { a.Store(i, r0 + p + e, dots[2 * e]); a.Store(i, r0 + half + p + e, dots[2 * e + 1]); }
            }
            for (int r = r0 + 2 * half; r < r1; r += GemvBatch)
            {
                int rows = Math.Min(GemvBatch, r1 - r);
                VnniCode.Rows(a.W + (long)r * a.RowBytes, a.RowBytes, x, a.KBlocks, rows, lanes);
                Reduce(lanes, rows, dots);
                for (int e = 0; e < rows; e++) a.Store(i, r + e, dots[e]);
            }
        }
    }
}

/// <summary>
/// The machine code of <see cref="Avx512VnniKernels"/>, generated once per process with the Iced encoder into a page
/// that is written, then made read-only and executable (never writable and executable at once). System V x86-64
/// calling convention only (Linux); elsewhere <see cref="IsAvailable"/> is false and the AVX-512 BW path is used.
/// </summary>
internal static unsafe class VnniCode
{
    // Offsets of the entry points in the code page: one tile kernel per (mr, nr), then the GEMV kernel.
    private static readonly nint[] s_tiles = new nint[(Avx512VnniKernels.MR + 1) * (Avx512VnniKernels.NR + 1)];
    private static readonly nint s_rows;
    private static readonly nint s_rows2;
    private static readonly nint[] s_q4 = new nint[DenseQ4.MaxRows + 1];

    /// <summary>Why the VNNI path cannot run here (null when it can).</summary>
    public static string? UnavailableReason { get; }

    /// <summary>Whether the processor has AVX-512 VNNI and BW, the OS is Linux x64, and the code was generated.</summary>
    public static bool IsAvailable => UnavailableReason is null;

    /// <summary>The processor reports AVX-512 VNNI (CPUID leaf 7, ECX bit 11) and .NET uses 512-bit vectors.</summary>
    public static bool CpuHasVnni =>
        X86Base.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;

    static VnniCode()
    {
        if (!CpuHasVnni)
        {
            bool cpuid = X86Base.IsSupported && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;
            UnavailableReason = !cpuid ? "the processor has no AVX-512 VNNI"
                : !Avx512BW.IsSupported && !RuntimeFeature.IsDynamicCodeSupported
                ? "the processor has AVX-512 VNNI but this native build was compiled for a lower x86-64 level (scripts/publish-aot.sh --x64-level v4)"
                : "the processor has AVX-512 VNNI but .NET does not use 512-bit vectors on it";
            return;
        }
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        { UnavailableReason = "generated kernels use the System V calling convention: Linux x64 only"; return; }
        try
        {
            var parts = new List<byte[]>();
            var offsets = new List<int>();
            int at = 0;
            void Add(byte[] code) { offsets.Add(at); parts.Add(code); at += (code.Length + 63) & ~63; }
            for (int mr = 1; mr <= Avx512VnniKernels.MR; mr++)
                for (int nr = 1; nr <= Avx512VnniKernels.NR; nr++) Add(EmitTile(mr, nr));
            Add(EmitRows());
            Add(EmitRows2());
            for (int mr = 1; mr <= DenseQ4.MaxRows; mr++) Add(EmitQ4(mr));
            nint page = ExecutableCode.Map(parts, offsets, at);
            int q = 0;
            for (int mr = 1; mr <= Avx512VnniKernels.MR; mr++)
                for (int nr = 1; nr <= Avx512VnniKernels.NR; nr++) s_tiles[mr * (Avx512VnniKernels.NR + 1) + nr] = page + offsets[q++];
            s_rows = page + offsets[q];
            s_rows2 = page + offsets[q + 1];
            for (int mr = 1; mr <= DenseQ4.MaxRows; mr++) s_q4[mr] = page + offsets[q + 1 + mr];
        }
        catch (Exception e) when (e is RotorException or InvalidOperationException or ArgumentException)
        {
            UnavailableReason = "generating the kernels failed: " + e.Message;
        }
    }

    private static readonly AssemblerRegisterZMM[] Z =
    [
        zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15,
        zmm16, zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
    ];

    private static byte[] Assemble(Assembler a)
    {
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), 0);
        return ms.ToArray();
    }

    /// <summary>
    /// <c>void tile(byte* panel, sbyte* x, nint slices, int* lanes)</c>: for mr activation rows (a block of
    /// <see cref="Avx512VnniKernels.PackActivations"/>) and nr panel rows, the 16 int32 lanes of every dot product,
    /// row-major (lanes + 16 * (i * nr + j)); for nr = 4 the four sums of each activation row instead (lanes + 4 * i).
    /// slices &gt;= 1. Registers: accumulators zmm0..zmm(mr*nr-1), panel codes
    /// zmm24..zmm27, activations zmm28. Both operands stream sequentially: nr * 64 and mr * 64 bytes a slice.
    /// </summary>
    private static byte[] EmitTile(int mr, int nr)
    {
        var a = new Assembler(64);
        for (int e = 0; e < mr * nr; e++) a.vpxord(Z[e], Z[e], Z[e]);
        Label loop = a.CreateLabel();
        a.Label(ref loop);
        for (int j = 0; j < nr; j++) a.vmovdqu64(Z[24 + j], __zmmword_ptr[rdi + j * 64]);
        for (int i = 0; i < mr; i++)
        {
            a.vmovdqu64(zmm28, __zmmword_ptr[rsi + i * 64]);
            for (int j = 0; j < nr; j++) a.vpdpbusd(Z[i * nr + j], Z[24 + j], zmm28);
        }
        a.add(rdi, nr * 64);
        a.add(rsi, mr * 64);
        a.dec(rdx);
        a.jnz(loop);
        if (nr == 4)
            for (int i = 0; i < mr; i++) EmitSum4(a, i * 4, __xmmword_ptr[rcx + i * 16]);
        else
            for (int e = 0; e < mr * nr; e++) a.vmovdqu64(__zmmword_ptr[rcx + e * 64], Z[e]);
        a.vzeroupper();
        a.ret();
        return Assemble(a);
    }

    /// <summary>Reduces accumulators <paramref name="acc"/> .. acc + 3 to their four lane sums and stores them as
    /// four int32 at <paramref name="dst"/>: dword and qword unpacks pair the lanes up within 128-bit lanes (all
    /// EVEX, so any of the 32 registers), then the four 128-bit lanes are folded. Uses zmm24..zmm29.</summary>
    private static void EmitSum4(Assembler a, int acc, AssemblerMemoryOperand dst)
    {
        AssemblerRegisterZMM p = Z[acc], q = Z[acc + 1], r = Z[acc + 2], t = Z[acc + 3];
        a.PreferVex = false;             // ymm28/xmm28 need EVEX
        a.vpunpckldq(zmm24, p, q);       // p0 q0 p1 q1 (each 128-bit lane)
        a.vpunpckhdq(zmm25, p, q);       // p2 q2 p3 q3
        a.vpaddd(zmm24, zmm24, zmm25);   // p02 q02 p13 q13
        a.vpunpckldq(zmm26, r, t);
        a.vpunpckhdq(zmm27, r, t);
        a.vpaddd(zmm26, zmm26, zmm27);   // r02 t02 r13 t13
        a.vpunpcklqdq(zmm28, zmm24, zmm26); // p02 q02 r02 t02
        a.vpunpckhqdq(zmm29, zmm24, zmm26); // p13 q13 r13 t13
        a.vpaddd(zmm28, zmm28, zmm29);   // p q r t, one partial sum each per 128-bit lane
        a.vextracti64x4(ymm29, zmm28, 1);
        a.vpaddd(ymm28, ymm28, ymm29);
        a.vextracti32x4(xmm29, ymm28, 1);
        a.vpaddd(xmm28, xmm28, xmm29);
        a.vmovdqu32(dst, xmm28);
        a.PreferVex = true;
    }

    /// <summary>
    /// <c>void rows(byte* w, nint rowBytes, sbyte* x, nint kBlocks, nint rows, int* lanes)</c>: for each of rows
    /// consecutive weight rows (I2_256 blocks, unpacked in registers), the 16 int32 lanes of its dot product with x.
    /// kBlocks &gt;= 1, rows &gt;= 1. Four blocks a step: their four weight loads come first, then 16 vpdpbusd into 16
    /// accumulators with the activations as memory operands: issuing the loads of a step together keeps more of the
    /// weight stream in flight from DRAM. No software prefetch: the hardware prefetcher follows one linear stream
    /// better without it (docs/KERNELS.md). The blocks left over (kBlocks mod 4) go one at a time.
    /// </summary>
    private static byte[] EmitRows()
    {
        var a = new Assembler(64);
        a.mov(eax, 3);
        a.vpbroadcastb(zmm31, eax);
        Label row = a.CreateLabel(), step = a.CreateLabel(), single = a.CreateLabel(), tail = a.CreateLabel(), done = a.CreateLabel();
        a.Label(ref row);
        for (int e = 0; e < 16; e++) a.vpxord(Z[e], Z[e], Z[e]);
        a.mov(r10, rdi);                                       // weight cursor
        a.mov(r11, rdx);                                       // activation cursor
        a.mov(rax, rcx);                                       // blocks left
        a.cmp(rax, 4);
        a.jl(tail);
        a.Label(ref step);
        for (int u = 0; u < 4; u++) a.vmovdqu64(Z[20 + u], __zmmword_ptr[r10 + 64 * u]);
        for (int u = 0; u < 4; u++) EmitBlock(a, Z[20 + u], 256 * u, 4 * u);
        a.add(r10, 256);
        a.add(r11, 1024);
        a.sub(rax, 4);
        a.cmp(rax, 4);
        a.jge(step);
        a.Label(ref tail);
        a.test(rax, rax);
        a.jz(done);
        a.Label(ref single);
        a.vmovdqu64(zmm20, __zmmword_ptr[r10]);
        EmitBlock(a, zmm20, 0, 0);
        a.add(r10, 64);
        a.add(r11, 256);
        a.dec(rax);
        a.jnz(single);
        a.Label(ref done);
        for (int width = 8; width >= 1; width /= 2)
            for (int e = 0; e < width; e++) a.vpaddd(Z[e], Z[e], Z[e + width]);
        a.vmovdqu64(__zmmword_ptr[r9], zmm0);
        a.add(r9, 64);
        a.add(rdi, rsi);
        a.dec(r8);
        a.jnz(row);
        a.vzeroupper();
        a.ret();
        return Assemble(a);
    }

    /// <summary>
    /// <c>void rows2(byte* w, nint streamOffset, sbyte* x, nint kBlocks, nint rows, int* lanes)</c>: as
    /// <see cref="EmitRows"/>, for the rows at w (stream A) and at w + streamOffset (stream B) at once, two blocks of
    /// each a step: two sequential weight streams that the hardware prefetchers follow side by side, so one core keeps
    /// more of DRAM's latency covered. Rows are kBlocks * 64 bytes; lanes gets row i of A at lanes + 32 i and row i of B
    /// at lanes + 32 i + 16. Accumulators: A zmm0..7, B zmm8..15.
    /// </summary>
    private static byte[] EmitRows2()
    {
        var a = new Assembler(64);
        a.mov(eax, 3);
        a.vpbroadcastb(zmm31, eax);
        Label row = a.CreateLabel(), step = a.CreateLabel(), tail = a.CreateLabel(), done = a.CreateLabel();
        a.Label(ref row);
        for (int e = 0; e < 16; e++) a.vpxord(Z[e], Z[e], Z[e]);
        a.mov(r10, rdi);                                       // stream A cursor; stream B is at r10 + rsi
        a.mov(r11, rdx);                                       // activation cursor
        a.mov(rax, rcx);                                       // blocks left in the row
        a.cmp(rax, 2);
        a.jl(tail);
        a.Label(ref step);
        a.vmovdqu64(zmm20, __zmmword_ptr[r10]);
        a.vmovdqu64(zmm21, __zmmword_ptr[r10 + rsi]);
        a.vmovdqu64(zmm22, __zmmword_ptr[r10 + 64]);
        a.vmovdqu64(zmm23, __zmmword_ptr[r10 + rsi + 64]);
        EmitBlock(a, zmm20, 0, 0);
        EmitBlock(a, zmm21, 0, 8);
        EmitBlock(a, zmm22, 256, 4);
        EmitBlock(a, zmm23, 256, 12);
        a.add(r10, 128);
        a.add(r11, 512);
        a.sub(rax, 2);
        a.cmp(rax, 2);
        a.jge(step);
        a.Label(ref tail);
        a.test(rax, rax);
        a.jz(done);
        a.vmovdqu64(zmm20, __zmmword_ptr[r10]);
        a.vmovdqu64(zmm21, __zmmword_ptr[r10 + rsi]);
        EmitBlock(a, zmm20, 0, 0);
        EmitBlock(a, zmm21, 0, 8);
        a.add(r10, 64);
        a.Label(ref done);
        for (int width = 4; width >= 1; width /= 2)
            for (int e = 0; e < width; e++) { a.vpaddd(Z[e], Z[e], Z[e + width]); a.vpaddd(Z[8 + e], Z[8 + e], Z[8 + e + width]); }
        a.vmovdqu64(__zmmword_ptr[r9], zmm0);
        a.vmovdqu64(__zmmword_ptr[r9 + 64], zmm8);
        a.add(r9, 128);
        a.mov(rdi, r10);                                       // the next row of A follows this one
        a.dec(r8);
        a.jnz(row);
        a.vzeroupper();
        a.ret();
        return Assemble(a);
    }

    /// <summary>One 256-weight block in <paramref name="packed"/> against x at r11 + <paramref name="xOffset"/>:
    /// shift and mask the four code slices (zmm16..19) and add their products with the four activation slices (memory
    /// operands) into accumulators <paramref name="acc"/> .. acc + 3.</summary>
    private static void EmitBlock(Assembler a, AssemblerRegisterZMM packed, int xOffset, int acc)
    {
        for (int s = 0; s < 4; s++)
        {
            AssemblerRegisterZMM c = Z[16 + s];
            if (s == 0) a.vpandd(c, packed, zmm31);
            else { a.vpsrlw(c, packed, (byte)(2 * s)); a.vpandd(c, c, zmm31); }
            a.vpdpbusd(Z[acc + s], c, __zmmword_ptr[r11 + xOffset + 64 * s]);
        }
    }

    private static readonly AssemblerRegisterYMM[] Y = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15];

    /// <summary>
    /// <c>void q4(byte* w, ushort* d, nint supers, byte* xg, nint nrows, float* y)</c>: <see cref="DenseQ4"/>'s
    /// contract for mr activation rows (fixed per kernel). Per superblock: the 256 bytes of nibbles are loaded once
    /// (zmm16..19) and split into the 8 steps' codes (zmm20..27); the 16 half block scales widen with vcvtph2ps
    /// (zmm28); for each activation row, its corrections start the int32 lanes (zmm0..), eight vpdpbusd with the
    /// activations as memory operands add the blocks' products, and one multiply-add by the scales moves them into
    /// the row's float lanes (zmm8..15). nrows, supers &gt;= 1; weight rows and scale rows follow each other.
    /// </summary>
    private static byte[] EmitQ4(int mr)
    {
        var a = new Assembler(64);
        a.mov(eax, 0x0F);
        a.vpbroadcastb(zmm31, eax);
        Label row = a.CreateLabel(), sb = a.CreateLabel();
        int rowSuper = mr * Q4Activations.RowSuperBytes;
        a.Label(ref row);
        for (int i = 0; i < mr; i++) a.vpxord(Z[8 + i], Z[8 + i], Z[8 + i]);
        a.mov(r10, rcx);                                       // activation cursor
        a.mov(r11, rdx);                                       // superblocks left
        a.Label(ref sb);
        for (int k = 0; k < 4; k++) a.vmovdqu64(Z[16 + k], __zmmword_ptr[rdi + 64 * k]);
        for (int k = 0; k < 4; k++)
        {
            a.vpandd(Z[20 + 2 * k], Z[16 + k], zmm31);
            a.vpsrlw(Z[21 + 2 * k], Z[16 + k], 4);
            a.vpandd(Z[21 + 2 * k], Z[21 + 2 * k], zmm31);
        }
        a.vcvtph2ps(zmm28, __ymmword_ptr[rsi]);
        for (int i = 0; i < mr; i++)
        {
            a.vmovdqu32(Z[i], __zmmword_ptr[r10 + DenseQ4.CorrBytes * i]);
            for (int t = 0; t < 8; t++)
                a.vpdpbusd(Z[i], Z[20 + t], __zmmword_ptr[r10 + DenseQ4.CorrBytes * mr + DenseMatrix.Q4SuperCols * i + 64 * t]);
            a.vcvtdq2ps(Z[i], Z[i]);
            a.vfmadd231ps(Z[8 + i], Z[i], zmm28);
        }
        a.add(rdi, DenseMatrix.Q4SuperBytes);
        a.add(rsi, 2 * DenseMatrix.Q4Blocks);
        a.add(r10, rowSuper);
        a.dec(r11);
        a.jnz(sb);
        for (int i = 0; i < mr; i++)
        {
            a.vextractf64x4(ymm0, Z[8 + i], 1);
            a.vaddps(ymm0, ymm0, Y[8 + i]);
            a.vextractf128(xmm1, ymm0, 1);
            a.vaddps(xmm0, xmm0, xmm1);
            a.vmovhlps(xmm1, xmm0, xmm0);
            a.vaddps(xmm0, xmm0, xmm1);
            a.vmovshdup(xmm1, xmm0);
            a.vaddss(xmm0, xmm0, xmm1);
            a.vmovss(__dword_ptr[r9 + 4 * i], xmm0);
        }
        a.add(r9, 4 * mr);
        a.dec(r8);
        a.jnz(row);
        a.vzeroupper();
        a.ret();
        return Assemble(a);
    }

    /// <summary>Runs the Q4 kernel for <paramref name="mr"/> activation rows; see <see cref="EmitQ4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Q4(int mr, byte* w, ushort* d, nint supers, byte* xg, nint nrows, float* y) =>
        ((delegate* unmanaged[SuppressGCTransition]<byte*, ushort*, nint, byte*, nint, float*, void>)s_q4[mr])(w, d, supers, xg, nrows, y);

    /// <summary>Runs the (mr, nr) register tile; see <see cref="EmitTile"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile(int mr, int nr, byte* panel, sbyte* x, nint slices, int* lanes) =>
        ((delegate* unmanaged[SuppressGCTransition]<byte*, sbyte*, nint, int*, void>)s_tiles[mr * (Avx512VnniKernels.NR + 1) + nr])(panel, x, slices, lanes);

    /// <summary>Runs the two-stream GEMV kernel; see <see cref="EmitRows2"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Rows2(byte* w, nint streamOffset, sbyte* x, nint kBlocks, nint rows, int* lanes) =>
        ((delegate* unmanaged[SuppressGCTransition]<byte*, nint, sbyte*, nint, nint, int*, void>)s_rows2)(w, streamOffset, x, kBlocks, rows, lanes);

    /// <summary>Runs the GEMV kernel; see <see cref="EmitRows"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Rows(byte* w, nint rowBytes, sbyte* x, nint kBlocks, nint rows, int* lanes) =>
        ((delegate* unmanaged[SuppressGCTransition]<byte*, nint, sbyte*, nint, nint, int*, void>)s_rows)(w, rowBytes, x, kBlocks, rows, lanes);
}

/// <summary>Pages of generated machine code: mapped writable, filled, then switched to read + execute. They live as
/// long as the process.</summary>
internal static unsafe class ExecutableCode
{
    /// <summary>Copies <paramref name="parts"/> to <paramref name="offsets"/> in a new executable mapping of
    /// <paramref name="size"/> bytes and returns its address.</summary>
    public static nint Map(List<byte[]> parts, List<int> offsets, int size)
    {
        nuint bytes = (nuint)((size + 4095) & ~4095);
        nint page = LinuxMemory.mmap(0, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtWrite, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous, -1, 0);
        if (page == -1) throw new RotorException($"mmap of {bytes} bytes for generated kernels failed (errno {Marshal.GetLastPInvokeError()})");
        for (int i = 0; i < parts.Count; i++) Marshal.Copy(parts[i], 0, page + offsets[i], parts[i].Length);
        if (LinuxMemory.mprotect(page, bytes, LinuxMemory.ProtRead | LinuxMemory.ProtExec) != 0)
            throw new RotorException($"mprotect(PROT_EXEC) of generated kernels failed (errno {Marshal.GetLastPInvokeError()}); the system forbids executable memory");
        return page;
    }
}

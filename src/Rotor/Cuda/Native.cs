using System.Reflection;
using System.Runtime.InteropServices;

namespace Rotor.Cuda;

/// <summary>Mirror of <c>rotor_gemm_args</c> in native/cuda/rotor_cuda.h (88 bytes; field order is the ABI).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GemmArgsNative
{
    public nint W;          // const uint8_t*  (n, rowBytes) I2_256
    public nint X;          // const int8_t*   (m, xStride)
    public nint XScale;     // const float*    (m)
    public nint XSum;       // const int32_t*  (m)
    public nint WScale;     // const float*    (1 or n)
    public nint Bias;       // const float*    (n) or 0
    public nint Y;          // float*          (m, yStride)
    public int RowBytes;
    public int KBlocks;
    public int N;
    public int XStride;
    public int M;
    public int WScaleStride;
    public int YStride;
    public int Act;
}

/// <summary>Mirror of <c>rotor_lm_linear_args</c> in native/cuda/rotor_cuda.h (208 bytes; field order is the ABI).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LmLinearNative
{
    public GemmArgsNative G;
    public nint Src;          // const float* (m, srcStride), or 0: G.X holds the int8 input
    public nint NormWeight;   // const float* (cols), or 0
    public int SrcStride;
    public int Cols;
    public int Norm;
    public float Eps;
    public int Epilogue;      // LmEpilogue
    public int Act;           // rotor_lm_act, for the gated epilogue
    // The rotary epilogue's tables, positions, slots and a layer's caches (as rotor_lm_rope_kv takes them).
    public nint RopeCos, RopeSin, Pos, Slot, KCache, VCache;
    public long SlotStride;
    public int Heads, KvHeads, HeadDim;
    public int RopeStyle;     // 1: pairs (j, j + headDim / 2); 0: (2j, 2j + 1)
    public int CacheType;     // 0 float, 1 f16
    public int Reserved;
}

/// <summary>Mirror of <c>rotor_lm_decode_layer</c> in native/cuda/rotor_cuda.h (128 bytes): one layer's weights for
/// the persistent decode kernel, indexed q/k/v, output, gate/up, down (norms: attn_norm, attn_sub_norm, ffn_norm,
/// ffn_sub_norm).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LmDecodeLayerNative
{
    public fixed long W[4];
    public fixed long WScale[4];
    public fixed long Norm[4];
    public fixed int RowBytes[4];
    public fixed int WScaleStride[4];
}

/// <summary>Mirror of <c>rotor_lm_decode_args</c> in native/cuda/rotor_cuda.h (152 bytes; field order is the ABI).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LmDecodeArgsNative
{
    public nint Layers;       // const rotor_lm_decode_layer* (device)
    public nint X, Q, O, H, Workspace, Sync, Kv, Cos, Sin, Pos, Slot;
    public long SlotStride;
    public int LayerCount, Dim, Heads, KvHeads, HeadDim, Ffn;
    public int Capacity, CacheType, RopeStyle, Act;
    public float Eps, Scale;
}

/// <summary>What <c>rotor_lm_linear</c> does with the product, <c>rotor_lm_epilogue</c>.</summary>
internal enum LmEpilogue { Store = 0, Add = 1, Gated = 2, Rope = 3 }

/// <summary>Mirror of <c>rotor_lm_sampling</c> in native/cuda/rotor_cuda.h (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LmSamplingNative
{
    public float Temperature;
    public float TopP;
    public float MinP;
    public int TopK;
    public ulong Seed;
}

/// <summary>Element types of the dense language-model kernels, <c>rotor_lm_type</c> (the values of <see cref="DenseType"/>).</summary>
internal enum LmType { F32 = 0, F16 = 1, I8 = 2 }

/// <summary>Product kernel choice, <c>rotor_path</c> of rotor_cuda.h: <see cref="Auto"/>, or one kernel forced (tests
/// and benchmarks).</summary>
internal enum CudaPath
{
    /// <summary>The library's choice for the shape and device.</summary>
    Auto = 0,
    /// <summary>The register-load GEMVs (m &lt;= 64).</summary>
    Gemv = 1,
    /// <summary>The tiled kernels' choice, for any m.</summary>
    Tiled = 2,
    /// <summary>The GEMV with bulk-copied weights (m &lt;= 8, at most 47 K blocks, compute capability 9.0 or newer).</summary>
    GemvBulk = 3,
    /// <summary>The split-K cluster GEMV (m &lt;= 64, at most 32 K blocks, compute capability 9.0 or newer).</summary>
    GemvSplitK = 4,
    /// <summary>mma.sync, 128 weight rows x 128 activation rows.</summary>
    Tiled128x128 = 16,
    /// <summary>mma.sync, 64 x 128.</summary>
    Tiled64x128 = 17,
    /// <summary>wgmma (sm_90a) 128 weight rows x 128 activation rows, two CTAs a multiprocessor.</summary>
    Wgmma128x128 = 18,
    /// <summary>wgmma 128 x 96, two CTAs a multiprocessor, three stages.</summary>
    Wgmma128x96 = 19,
    /// <summary>wgmma 128 x 64, two CTAs a multiprocessor, four stages.</summary>
    Wgmma128x64 = 20,
    /// <summary>wgmma 128 x 80, two CTAs a multiprocessor, three stages.</summary>
    Wgmma128x80 = 21,
    /// <summary>Warp-specialized wgmma (TMA producer warp, four consumer warpgroups, persistent): 256 weight rows x 128 activation rows, four stages.</summary>
    Ws256x128 = 22,
    /// <summary>Warp-specialized wgmma, 256 x 80, six stages.</summary>
    Ws256x80 = 23,
    /// <summary>Warp-specialized wgmma, 256 x 96, five stages.</summary>
    Ws256x96 = 24,
    /// <summary>Warp-specialized wgmma, two consumer warpgroups: 128 x 128, five stages.</summary>
    Ws128x128 = 25,
    /// <summary>wgmma 128 x 64 with the K blocks of a tile shared out among the CTAs of a cluster (up to 8), for grids of
    /// few tiles; CUDA 12.</summary>
    Wgmma128x64SplitK = 26,
}

/// <summary>The C API of librotor_cuda (native/cuda/rotor_cuda.h), one declaration a function. Every call returns 0
/// or an error code; <see cref="Check"/> turns a failure into a <see cref="CudaException"/> with the library's message.</summary>
internal static partial class Native
{
    public const string Library = "rotor_cuda";
    public const int Abi = 10;
    public const int EInval = -1;

    static Native()
    {
        try { NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve); }
        catch (InvalidOperationException) { /* another part of Rotor set a resolver: default probing applies */ }
    }

    /// <summary>Finds the library: <c>ROTOR_CUDA_LIB</c> (a file), then beside the application, then the system's
    /// search path (LD_LIBRARY_PATH, ldconfig).</summary>
    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library) return 0;
        string? env = Environment.GetEnvironmentVariable("ROTOR_CUDA_LIB");
        if (!string.IsNullOrWhiteSpace(env))
            return NativeLibrary.TryLoad(env, out nint h) ? h : throw new DllNotFoundException($"ROTOR_CUDA_LIB={env} could not be loaded (missing file, or libcuda not installed)");
        foreach (string file in FileNames())
        {
            string p = Path.Combine(AppContext.BaseDirectory, file);
            if (File.Exists(p) && NativeLibrary.TryLoad(p, out nint h)) return h;
        }
        foreach (string file in FileNames())
            if (NativeLibrary.TryLoad(file, out nint h)) return h;
        return 0;
    }

    internal static string[] FileNames() =>
        OperatingSystem.IsWindows() ? ["rotor_cuda.dll"] : OperatingSystem.IsMacOS() ? ["librotor_cuda.dylib"] : ["librotor_cuda.so"];

    /// <summary>Throws <see cref="CudaException"/> when <paramref name="rc"/> is not 0.</summary>
    public static void Check(int rc, string what)
    {
        if (rc == 0) return;
        throw new CudaException(rc, $"{what}: {LastError()}");
    }

    /// <summary>The calling thread's last failure message from the library.</summary>
    public static unsafe string LastError()
    {
        byte* buf = stackalloc byte[1024];
        if (rotor_cuda_last_error(buf, 1024) != 0) return "(no message)";
        return Marshal.PtrToStringUTF8((nint)buf) ?? "(no message)";
    }

    [LibraryImport(Library)] public static partial int rotor_cuda_abi();
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_last_error(byte* buf, int len);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_device_count(int* count);
    [LibraryImport(Library)] public static partial int rotor_cuda_path_supported(int path);
    [LibraryImport(Library)]
    public static unsafe partial int rotor_cuda_init(int device, byte* name, int nameLen, int* ccMajor, int* ccMinor, int* sms,
        long* globalMem, int* driverVersion, int* runtimeVersion);

    [LibraryImport(Library)] public static partial int rotor_cuda_set_pdl(int on);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_malloc(nint* ptr, nuint bytes);
    [LibraryImport(Library)] public static partial int rotor_cuda_free(nint ptr);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_host_alloc(nint* ptr, nuint bytes);
    [LibraryImport(Library)] public static partial int rotor_cuda_host_free(nint ptr);
    [LibraryImport(Library)] public static partial int rotor_cuda_memcpy_h2d(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_memcpy_d2h(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_memcpy_d2d(nint dst, nint src, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_memset(nint ptr, int value, nuint bytes, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_stream_create(nint* stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_stream_destroy(nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_stream_sync(nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_event_create(nint* ev);
    [LibraryImport(Library)] public static partial int rotor_cuda_event_destroy(nint ev);
    [LibraryImport(Library)] public static partial int rotor_cuda_event_record(nint ev, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_event_elapsed_ms(nint start, nint end, float* ms);
    [LibraryImport(Library)] public static partial int rotor_cuda_graph_begin(nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_graph_end(nint stream, nint* graphExec);
    [LibraryImport(Library)] public static partial int rotor_cuda_graph_launch(nint graphExec, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_graph_destroy(nint graphExec);

    [LibraryImport(Library)] public static partial int rotor_cuda_pack_i2(nint trits, int rows, int cols, nint packed, int rowBytes, nint invalid, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_unpack_i2(nint packed, int rows, int cols, int rowBytes, nint trits, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_quantize(nint x, int m, int cols, int xStride, nint q, int qStride, nint scale, nint sum, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_gemm(GemmArgsNative* args, int path, nint stream);
    [LibraryImport(Library)]
    public static partial int rotor_cuda_gemm_f32(nint w, int rowBytes, int kBlocks, int n, nint x, int cols, int xStride, int m,
        nint wScale, int wScaleStride, nint bias, nint y, int yStride, int act, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_activation(nint x, nint y, long count, int act, nint stream);
    [LibraryImport(Library)] public static partial int rotor_cuda_softmax(nint x, nint y, int rows, int cols, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_bench_gemm(GemmArgsNative* args, int path, int inner, int reps, float* us, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_bench_gemm_many(GemmArgsNative* args, int count, int path, int inner, int reps, float* us, nint stream);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_l2_bytes(long* bytes);
    [LibraryImport(Library)] public static unsafe partial int rotor_cuda_bench_copy(nuint bytes, int reps, double* gbps, nint stream);

    // Language-model kernels (native/cuda/lm.cu).
    [LibraryImport(Library)]
    public static partial int rotor_lm_embed(nint table, int type, int rowStride, nint scales, int vocab, nint tokens, int m, int dim, nint x, int xStride, nint stream);
    [LibraryImport(Library)]
    public static partial int rotor_lm_norm(nint x, int m, int cols, int xStride, nint add, int addStride, nint up, int upStride, int act, int norm,
        nint weight, float eps, nint y, int yStride, nint q, int qStride, nint qScale, nint qSum, nint stream);
    [LibraryImport(Library)]
    public static partial int rotor_lm_rope_kv(nint qkv, int m, int qkvStride, int heads, int kvHeads, int headDim, int style, nint cos, nint sin,
        nint pos, nint slot, nint kCache, nint vCache, int cacheType, long slotStride, nint stream);
    [LibraryImport(Library)]
    public static unsafe partial int rotor_lm_attention_plan(int capacity, int m, int heads, int headDim, int* splitLen, int* splits, long* workspaceBytes);
    [LibraryImport(Library)]
    public static partial int rotor_lm_attention(nint q, int m, int qStride, int heads, int kvHeads, int headDim, nint kCache, nint vCache, int cacheType,
        long slotStride, nint pos, nint slot, float scale, int splitLen, int splits, nint workspace, int norm, nint weight, float eps,
        nint y, int yStride, nint q8, int q8Stride, nint q8Scale, nint q8Sum, nint stream);
    [LibraryImport(Library)]
    public static partial int rotor_lm_dense(nint w, int type, int rowStride, nint wScale, int n, int cols, nint x, int xStride, nint xq, int xqStride,
        nint xScale, int m, nint y, int yStride, nint halfWorkspace, nint stream);
    [LibraryImport(Library)]
    public static unsafe partial int rotor_lm_linear(LmLinearNative* args, nint stream);
    [LibraryImport(Library)]
    public static unsafe partial int rotor_lm_decode_plan(LmDecodeArgsNative* args, int* ctas, long* workspaceBytes, int* syncCount);
    [LibraryImport(Library)]
    public static unsafe partial int rotor_lm_decode(LmDecodeArgsNative* args, nint stream);
    [LibraryImport(Library)]
    public static partial int rotor_lm_sample(nint logits, int m, int vocab, int stride, nint parameters, nint pos, nint workspace, nint output, nint stream);
}

// common.cuh: what every translation unit of librotor_cuda shares: errors, the launch helpers, the device state chosen
// by rotor_cuda_init, the device helpers of the product kernels, the table of tensor-core GEMM configurations, and the
// entry points each kernel file offers the dispatch in rotor_cuda.cu.
//
// Files: common.cuh (this), gemv.cu (GEMVs for m <= 64 and the float product), gemm_mma.cu (mma.sync tiles),
// gemm_wgmma.cu (sm_90a wgmma and warp-specialized TMA kernels), elementwise.cu (pack, unpack, quantize, activation,
// softmax), rotor_cuda.cu (the C API of rotor_cuda.h and the choice of kernel).
//
// Legend: n = weight rows (output features), m = activation rows (batch), K = columns = k_blocks * 256.
// g = lane / 4 (group) and t = lane % 4 (thread in group), as in the PTX fragment tables of mma.m16n8k32.
//
// The one idea every product kernel shares: the I2_256 layout already is an int8 tensor-core operand once its bit
// pairs are split. Take the 16 bytes 16t..16t+15 of a 64-byte block (one uint4): word w of it, shifted right by 2q and
// masked with 0x03030303, is four int8 codes (w + 1, in 0..2) of the consecutive columns 64q + 16t + 4w + 0..3.
// mma.m16n8k32 wants from thread (g, t) exactly four consecutive k of row g per A register and four consecutive k of
// column g per B register, so with the k order of one mma chosen as
//     a0/b0 <- columns 64q + 16t + 8h + 0..3,   a2/b1 <- columns 64q + 16t + 8h + 4..7     (h = 0, 1; q = 0..3)
// eight mmas cover a 256-column block, A comes from one 128-bit weight load per row and B from one 128-bit load of
// x[64q + 16t .. +15] per activation row, with no shuffle and no decode table. The sum is over codes (w + 1);
// the epilogue subtracts the activation row's int8 sum, as GemmArgs.Store does on the CPU.
#pragma once

#include "rotor_cuda.h"

#include <cuda.h>  // CUtensorMap and its enums (types only: the encoder comes from the runtime's driver entry point)
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

// Hopper features, per compilation pass. ROTOR_BULK: bulk copies, mbarriers with transaction counts and clusters
// (sm_90 and newer, CUDA 12 or newer). ROTOR_WGMMA: wgmma (the sm_90a image only).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
#define ROTOR_BULK 1
#else
#define ROTOR_BULK 0
#endif
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ROTOR_WGMMA 1
#else
#define ROTOR_WGMMA 0
#endif

namespace rotor {

// ---------------------------------------------------------------------------------------------------------------
// Errors (rotor_cuda.cu): the calling thread's last message, read by rotor_cuda_last_error.
// ---------------------------------------------------------------------------------------------------------------

int fail(int code, const char* fmt, ...);
int cuda_fail(cudaError_t e, const char* what);
// Runs kernel<<<1, 1>>>(int* out) and reads *out into *result: which of the library's images the device runs.
int run_probe(void (*kernel)(int*), int* result, const char* what);

#define CK(call)                                                  \
    do {                                                          \
        cudaError_t e_ = (call);                                  \
        if (e_ != cudaSuccess) return rotor::cuda_fail(e_, #call); \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Device state, set by rotor_cuda_init
// ---------------------------------------------------------------------------------------------------------------

extern int g_device;   // the device chosen by rotor_cuda_init; made current on any thread that calls in
extern int g_sms;      // its multiprocessors
extern bool g_pdl;     // launch with programmatic stream serialization (sm_90 and newer; rotor_cuda_set_pdl)
extern bool g_bulk;    // the device runs an image with the bulk-copy and split-K cluster GEMVs (gemv.cu)
extern bool g_wgmma;   // the device runs the sm_90a image: the two-CTA wgmma kernels exist (gemm_wgmma.cu)
extern bool g_ws;      // ... and the warp-specialized TMA kernels (g_wgmma and cuTensorMapEncodeTiled found)

// Launches kernel(args...) on s, as a programmatic dependent launch when pdl is set: the kernel may start while the
// previous one on the stream finishes, and every kernel here calls pdl_wait() before it touches data that an earlier
// kernel writes or reads.
template <typename... P, typename... A>
int launch_with(bool pdl, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char* what,
                A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...);
    return e == cudaSuccess ? 0 : cuda_fail(e, what);
}
// As a programmatic dependent launch where the device has it (g_pdl).
template <typename... P, typename... A>
int launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char* what, A... args) {
    return launch_with(g_pdl, kernel, grid, block, smem, s, what, args...);
}
// Always a plain launch: for the multi-wave GEMMs, whose CTAs would only take slots the previous kernel still needs.
template <typename... P, typename... A>
int launch_plain(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char* what, A... args) {
    return launch_with(false, kernel, grid, block, smem, s, what, args...);
}

// ---------------------------------------------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------------------------------------------

#if ROTOR_BULK
// Clusters (the split-K GEMV of gemv.cu and the split-K wgmma GEMM of gemm_wgmma.cu).
__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ unsigned cluster_count() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.aligned;\nbarrier.cluster.wait.aligned;  // release, acquire by default\n" ::: "memory");
}
// 8 bytes at the same shared-memory offset in CTA `rank` of the cluster.
__device__ __forceinline__ int2 ld_cluster_v2(const void* p, unsigned rank) {
    const unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(p));
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local), "r"(rank));
    int2 v;
    asm volatile("ld.shared::cluster.v2.s32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(remote) : "memory");
    return v;
}
// 4 bytes at the same shared-memory offset in CTA `rank` of the cluster.
__device__ __forceinline__ int ld_cluster_s32(const void* p, unsigned rank) {
    const unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(p));
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local), "r"(rank));
    int v;
    asm volatile("ld.shared::cluster.s32 %0, [%1];\n" : "=r"(v) : "r"(remote) : "memory");
    return v;
}
#endif  // ROTOR_BULK

constexpr unsigned kCodeMask = 0x03030303u;

// Codes of bit pair q of four packed bytes: byte e of the result is the code of byte e's column + 64q.
__device__ __forceinline__ unsigned slice(unsigned w, int q) { return (w >> (2 * q)) & kCodeMask; }

// D = A * B + D, A 16x32 s8 (row), B 32x8 s8 (col), D 16x8 s32.
__device__ __forceinline__ void mma_s8(int (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                       unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// A 128-bit load that bypasses L1: GEMV weights are read exactly once. PF: with the L2 prefetch-size hint of 256
// bytes, one warp's 64-byte piece of a row brings the row's next 192 bytes, which the CTA's other warps read at the
// same time, into L2 with it (bigger DRAM requests).
template <bool PF = false>
__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 v;
    if constexpr (PF)
        asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
            : "l"(p));
    else
        asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
            : "l"(p));
    return v;
}

// Programmatic dependent launch (sm_90): wait for the previous kernel on the stream to finish and flush; allow the
// next one to be scheduled. Both are no-ops for a normal launch and on older GPUs.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ float apply_act(float v, int act) {
    if (act == ROTOR_ACT_RELU) return v > 0.f ? v : 0.f;                       // max(v, +0)
    if (act == ROTOR_ACT_SIGN) return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f);  // MathF.Sign
    return v;
}

// GemmArgs.Store with one rounding per operation (no FMA contraction), then the activation.
__device__ __forceinline__ void store_y(const rotor_gemm_args& a, int i, int r, int dot) {
    if (i >= a.m || r >= a.n) return;
    float v = __fmul_rn(__fmul_rn(__int2float_rn(dot - a.x_sum[i]), a.x_scale[i]),
                        a.w_scale[(size_t)r * a.w_scale_stride]);
    if (a.bias != nullptr) v = __fadd_rn(v, a.bias[r]);
    a.y[(size_t)i * a.y_stride + r] = apply_act(v, a.act);
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ int warp_sum(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The gate's activation of a gated FFN, one rounding an operation as the CPU decoder: relu(v)^2 (BitNet's squared
// ReLU, ROTOR_LM_RELU2) or v * sigmoid(v) (SiLU).
__device__ __forceinline__ float gate_act(float v, int act) {
    if (act == ROTOR_LM_RELU2) {
        const float g = fmaxf(v, 0.f);
        return __fmul_rn(g, g);
    }
    return __fmul_rn(v, __fdiv_rn(1.f, 1.f + expf(-v)));
}

// One key/value position of flash decoding for the query heads a warp holds (qr: group heads x DPL values a lane,
// lane + 32 j of the head), the running maximum mx, sum l and accumulator acc of each head updated online: the
// attention of the language model's split kernel and of the persistent decode step alike.
template <int MaxGroup, int DPL>
__device__ __forceinline__ void attend_position(const float (&qr)[MaxGroup][DPL], const float (&kk)[DPL], const float (&vv)[DPL],
                                                int group, float scale, float (&mx)[MaxGroup], float (&l)[MaxGroup],
                                                float (&acc)[MaxGroup][DPL]) {
#pragma unroll
    for (int g = 0; g < MaxGroup; g++) {
        if (g >= group) break;
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < DPL; j++) dot += qr[g][j] * kk[j];
        dot = warp_sum(dot) * scale;
        const float mn = fmaxf(mx[g], dot), corr = expf(mx[g] - mn), p = expf(dot - mn);
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int j = 0; j < DPL; j++) acc[g][j] = acc[g][j] * corr + p * vv[j];
        mx[g] = mn;
    }
}

// cp.async of 16 bytes into shared memory; invalid: fill with zeros, read nothing.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// x staged in shared memory as rows of 256 int8: 16-byte chunk c of row r at r * 256 + 16 * (c ^ 4 * (r & 1)), so the
// 128-bit reads of rows g and g + 1 in one read phase land 64 bytes apart (no bank conflict).
__device__ __forceinline__ int x_offset(int r, int c) { return r * 256 + 16 * (c ^ ((r & 1) << 2)); }

// The bulk-copy GEMVs' row stride in shared memory: a row of k_blocks * 64 bytes rounded to 64 mod 128 bytes, so that
// the 128-bit reads of rows g and g + 1 fall on disjoint banks; and their weight tile's shared memory at most (K up to
// 47 blocks).
__host__ __device__ constexpr int bulk_stride(int k_blocks) { return k_blocks * 64 + (k_blocks % 2 == 0 ? 64 : 0); }
constexpr int kBulkMaxSmem = 48 * 1024;
// ---------------------------------------------------------------------------------------------------------------
// The tensor-core GEMM configurations (weight rows BN x activation rows BM a tile), indexed as the path
// ROTOR_PATH_TILED_CFG0 + i of rotor_cuda.h. Each kernel file checks its tiles against this table.
// ---------------------------------------------------------------------------------------------------------------

enum class GemmFamily { Mma, Wgmma, Ws };
// split: the tile's K blocks are shared out among the CTAs of a cluster (wg_splits), for grids of few tiles.
struct GemmConfig {
    GemmFamily family;
    int bn, bm;
    bool split;
    const char* name;
};
enum : int { kMma128x128, kMma64x128, kWg128x128, kWg128x96, kWg128x64, kWg128x80, kWs256x128, kWs256x80, kWs256x96, kWs128x128,
             kWg128x64k, kGemmConfigs };
inline constexpr GemmConfig kGemm[kGemmConfigs] = {
    {GemmFamily::Mma, 128, 128, false, "mma 128x128"},   {GemmFamily::Mma, 64, 128, false, "mma 64x128"},
    {GemmFamily::Wgmma, 128, 128, false, "wgmma 128x128"}, {GemmFamily::Wgmma, 128, 96, false, "wgmma 128x96"},
    {GemmFamily::Wgmma, 128, 64, false, "wgmma 128x64"},   {GemmFamily::Wgmma, 128, 80, false, "wgmma 128x80"},
    {GemmFamily::Ws, 256, 128, false, "ws 256x128"},       {GemmFamily::Ws, 256, 80, false, "ws 256x80"},
    {GemmFamily::Ws, 256, 96, false, "ws 256x96"},         {GemmFamily::Ws, 128, 128, false, "ws 128x128"},
    {GemmFamily::Wgmma, 128, 64, true, "wgmma 128x64 split-K"},
};

inline long long gemm_tiles(const rotor_gemm_args& a, int cfg) {
    return (long long)((a.m + kGemm[cfg].bm - 1) / kGemm[cfg].bm) * ((a.n + kGemm[cfg].bn - 1) / kGemm[cfg].bn);
}

// The CTAs a tile of the split-K wgmma kernel (kWg128x64k): as many as keep every CTA of the grid resident at once
// (two a multiprocessor), at most 8 (the portable cluster size) and at most half the K blocks (two or more a CTA).
// ROTOR_GEMM_SPLITS=n sets the count (clipped to 1..8 and to K), for benchmarks.
int wg_splits(const rotor_gemm_args& a);

// ---------------------------------------------------------------------------------------------------------------
// Entry points of the kernel files, for rotor_cuda.cu. Launchers take checked arguments (check_gemm and the C API).
// ---------------------------------------------------------------------------------------------------------------

// gemv.cu. gemv_init: fails where the library has no image for the device; sets g_bulk and prepares the kernels.
int gemv_init(const cudaDeviceProp& p);
bool bulk_fits(const rotor_gemm_args& a);  // the bulk-copy GEMV: m <= 8, K up to 47 blocks, g_bulk
bool sk_fits(int m, int k_blocks);         // the split-K cluster GEMV: m <= 64, K up to 32 blocks, g_bulk
int sk_tiles(int m);                       // its 8-row activation tiles for m (NT)
int launch_gemv(const rotor_gemm_args& a, cudaStream_t s);  // the register GEMVs, m <= 64 (ROTOR_PATH_GEMV)
int launch_gemv_bulk(const rotor_gemm_args& a, cudaStream_t s);
int launch_gemv_sk(const rotor_gemm_args& a, cudaStream_t s);
// gemv_fused.cu: allows the fused GEMVs their shared memory (after g_bulk is known).
int fused_init();
int launch_gemm_f32(const uint8_t* w, int row_bytes, int k_blocks, int n, const float* x, int cols, int x_stride, int m,
                    const float* w_scale, int w_scale_stride, const float* bias, float* y, int y_stride, int act,
                    cudaStream_t s);

// gemm_mma.cu: the mma.sync tiles (every device of compute capability 8.0 or newer).
int mma_init(const cudaDeviceProp& p);
int launch_mma(const rotor_gemm_args& a, int cfg, cudaStream_t s);

// gemm_wgmma.cu: sets g_wgmma and g_ws; the wgmma kernels of both families.
int wgmma_init(const cudaDeviceProp& p);
int launch_wgmma(const rotor_gemm_args& a, int cfg, cudaStream_t s);

// elementwise.cu.
int launch_pack_i2(const int8_t* trits, int rows, int cols, uint8_t* packed, int row_bytes, int* invalid, cudaStream_t s);
int launch_unpack_i2(const uint8_t* packed, int rows, int cols, int row_bytes, int8_t* trits, cudaStream_t s);
int launch_quantize(const float* x, int m, int cols, int x_stride, int8_t* q, int q_stride, float* scale, int* sum,
                    cudaStream_t s);
int launch_activation(const float* x, float* y, int64_t count, int act, cudaStream_t s);
int launch_softmax(const float* x, float* y, int rows, int cols, cudaStream_t s);

}  // namespace rotor

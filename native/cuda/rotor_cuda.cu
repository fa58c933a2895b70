// rotor_cuda.cu: the CUDA kernels of Rotor's ternary backend, and the C API of rotor_cuda.h around them.
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
#include "rotor_cuda.h"

#include <cuda.h>  // CUtensorMap and its enums (types only: the encoder comes from the runtime's driver entry point)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

thread_local char t_error[1024];

int fail(int code, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_error, sizeof t_error, fmt, ap);
    va_end(ap);
    return code;
}

int cuda_fail(cudaError_t e, const char* what) {
    return fail((int)e, "%s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

#define CK(call)                                                  \
    do {                                                          \
        cudaError_t e_ = (call);                                  \
        if (e_ != cudaSuccess) return cuda_fail(e_, #call);       \
    } while (0)

// The current device is per thread: a call from another thread (a finalizer, a worker) must first select ours.
// cudaSetDevice only when it differs, so that calls made during a graph capture stay capture-safe.
#define USE_DEVICE()                                                                        \
    do {                                                                                    \
        int cur_ = -1;                                                                      \
        if (g_device >= 0 && (cudaGetDevice(&cur_) != cudaSuccess || cur_ != g_device)) {  \
            cudaError_t e_ = cudaSetDevice(g_device);                                       \
            if (e_ != cudaSuccess) return cuda_fail(e_, "cudaSetDevice");                   \
        }                                                                                   \
    } while (0)

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

int g_device = -1;   // the device chosen by rotor_cuda_init; made current on any thread that calls in
int g_sms = 0;       // multiprocessors of the device chosen by rotor_cuda_init
bool g_pdl = false;  // launch with programmatic stream serialization (sm_90 and newer; rotor_cuda_set_pdl)

// Launches kernel(args...) on s, as a programmatic dependent launch when g_pdl is set: the kernel may start while
// the previous one on the stream finishes, and every kernel here calls pdl_wait() before it touches data that an
// earlier kernel writes or reads.
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
template <typename... P, typename... A>
int launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char* what, A... args) {
    return launch_with(g_pdl, kernel, grid, block, smem, s, what, args...);
}
template <typename... P, typename... A>
int launch_plain(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char* what, A... args) {
    return launch_with(false, kernel, grid, block, smem, s, what, args...);
}

// ---------------------------------------------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------------------------------------------

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

// Block reductions for blocks of up to 1024 threads; every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* scratch /* 32 */) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = op(v);
    __syncthreads();  // scratch may still be read by an earlier reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T r = scratch[0];
    for (int w = 1; w < warps; w++) r = op.combine(r, scratch[w]);
    return r;
}
struct MaxOp {
    __device__ float operator()(float v) const { return warp_max(v); }
    __device__ float combine(float a, float b) const { return fmaxf(a, b); }
};
struct SumIntOp {
    __device__ int operator()(int v) const { return warp_sum(v); }
    __device__ int combine(int a, int b) const { return a + b; }
};
struct SumFloatOp {
    __device__ float operator()(float v) const { return warp_sum(v); }
    __device__ float combine(float a, float b) const { return a + b; }
};

// ---------------------------------------------------------------------------------------------------------------
// GEMV, m <= 8 * NT (<= 64): a CTA owns 16 weight rows; its WARPS warps split the K blocks (warp w takes blocks
// w, w + WARPS, ...), U blocks a step with all their weight loads issued first, each warp holding a 16 x 8NT int32
// tile in registers; the tiles are added in shared memory at the end. Weights stream from DRAM once with 128-bit
// loads that skip L1; x (a few KB) is read through L1. The first weight loads are issued before the wait on the
// previous kernel (programmatic dependent launch): they do not depend on it. gemv_kernel (m <= 8) runs where K is
// not a multiple of 16 blocks; gemv8_kernel, the same product without guards, where it is (launch_gemv8).
// ---------------------------------------------------------------------------------------------------------------

template <int NT>
__device__ __forceinline__ void gemv_block(int (&acc)[NT][4], uint4 wa, uint4 wb, const int8_t* const (&xr)[NT],
                                           const bool (&xok)[NT], int kb) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const unsigned a0 = slice(wa.x, q), a1 = slice(wa.y, q), a2 = slice(wa.z, q), a3 = slice(wa.w, q);
        const unsigned b0 = slice(wb.x, q), b1 = slice(wb.y, q), b2 = slice(wb.z, q), b3 = slice(wb.w, q);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            uint4 xv = make_uint4(0, 0, 0, 0);
            if (xok[j]) xv = __ldg(reinterpret_cast<const uint4*>(xr[j] + (size_t)kb * 256 + 64 * q));
            mma_s8(acc[j], a0, b0, a1, b1, xv.x, xv.y);  // columns 64q + 16t + 0..7
            mma_s8(acc[j], a2, b2, a3, b3, xv.z, xv.w);  // columns 64q + 16t + 8..15
        }
    }
}

// The epilogue's operands of one output, loaded before the main loop so that no load waits at the end.
struct Epilogue {
    float xs, ws, b;
    int xsum;
    float* dst;
};

__device__ __forceinline__ Epilogue epilogue_load(const rotor_gemm_args& a, int i, int r) {
    Epilogue e{0.f, 0.f, 0.f, 0, nullptr};
    if (i < a.m && r < a.n) {
        e.xs = a.x_scale[i];
        e.xsum = a.x_sum[i];
        e.ws = a.w_scale[(size_t)r * a.w_scale_stride];
        e.b = a.bias != nullptr ? a.bias[r] : 0.f;
        e.dst = a.y + (size_t)i * a.y_stride + r;
    }
    return e;
}

__device__ __forceinline__ void epilogue_store(const rotor_gemm_args& a, const Epilogue& e, int dot) {
    if (e.dst == nullptr) return;
    float v = __fmul_rn(__fmul_rn(__int2float_rn(dot - e.xsum), e.xs), e.ws);
    if (a.bias != nullptr) v = __fadd_rn(v, e.b);
    *e.dst = apply_act(v, a.act);
}

// EARLY: let the next kernel launch at entry instead of once this CTA's weights are in.
template <int NT, int WARPS, int U, int MIN_BLOCKS, bool EARLY = false, bool PF = false>
__global__ void __launch_bounds__(32 * WARPS, MIN_BLOCKS) gemv_kernel(rotor_gemm_args a) {
    if constexpr (EARLY) pdl_trigger();
    constexpr int kOut = NT * 4 * 32;         // int32 results of a CTA: 16 rows x 8NT columns
    constexpr int kPer = kOut / (32 * WARPS);  // results a thread stores
    static_assert(kOut % (32 * WARPS) == 0, "every thread stores the same number of results");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    // Rows past n are clamped to the last row: computed, never stored.
    const uint8_t* wA = a.w + (size_t)min(r0 + g, a.n - 1) * a.row_bytes + 16 * t;
    const uint8_t* wB = a.w + (size_t)min(r0 + g + 8, a.n - 1) * a.row_bytes + 16 * t;
    const int8_t* xr[NT];
    bool xok[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int i = 8 * j + g;
        xok[j] = i < a.m;
        xr[j] = a.x + (size_t)(xok[j] ? i : 0) * a.x_stride + 16 * t;
    }
    int acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;

    // idx -> (j, c, lane'): c0 (row g', col 2t'), c1 (g', 2t' + 1), c2 (g' + 8, 2t'), c3 (g' + 8, 2t' + 1)
    auto out_row = [&](int idx) { return r0 + ((idx & 31) >> 2) + ((idx >> 5) & 3) / 2 * 8; };
    auto out_col = [&](int idx) { return 8 * (idx >> 7) + 2 * (idx & 3) + (((idx >> 5) & 3) & 1); };

    Epilogue ep[kPer];
    for (int kb0 = warp; kb0 < a.k_blocks; kb0 += WARPS * U) {
        uint4 wa[U], wb[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kb = kb0 + u * WARPS;
            wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
            if (kb < a.k_blocks) {
                wa[u] = ld_stream<PF>(wA + (size_t)kb * 64);
                wb[u] = ld_stream<PF>(wB + (size_t)kb * 64);
            }
        }
        if (kb0 == warp) pdl_wait();  // x, its scales and y belong to the previous kernel
#pragma unroll
        for (int u = 0; u < U; u++)
            if (kb0 + u * WARPS < a.k_blocks) gemv_block<NT>(acc, wa[u], wb[u], xr, xok, kb0 + u * WARPS);
    }
    pdl_wait();  // for warps that had no block
    if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in: let the next kernel start streaming its own
#pragma unroll
    for (int p = 0; p < kPer; p++) {
        const int idx = threadIdx.x + p * 32 * WARPS;
        ep[p] = epilogue_load(a, out_col(idx), out_row(idx));
    }

    // [warp][j][c][lane]: consecutive lanes hit consecutive banks.
    __shared__ int red[WARPS][NT][4][32];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) red[warp][j][c][lane] = acc[j][c];
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kPer; p++) {
        const int idx = threadIdx.x + p * 32 * WARPS;
        const int j = idx >> 7, c = (idx >> 5) & 3, ln = idx & 31;
        int s = 0;
#pragma unroll
        for (int w = 0; w < WARPS; w++) s += red[w][j][c][ln];
        epilogue_store(a, ep[p], s);
    }
}

// The GEMV for m <= 8 where K is a multiple of 16 blocks (gemv8_kernel): the form of gemv_kernel<1, 4, 4, 8> with
// no guard at all (every warp's step has its 4 blocks) and the epilogue's operands loaded after the reduction. On
// H100 (run 26, 16384x4096 m = 1) 7.44 against 8.78 us from DRAM back to back, 7.98 against 10.32 us isolated, 5.78
// against 6.03 us L2-resident, bit for bit the same results. A form with a guarded last step for other K (one
// kernel for all K) spilled 56 bytes and lost its gain, and a form with every step guarded ran at 9.5 us: for other
// K the launcher keeps gemv_kernel. A warp's step: the 8 weight loads of 4 K blocks, then (first step only) the wait
// on the previous kernel, then 32 mmas.
template <bool PF>
__device__ __forceinline__ void gemv8_step(int (&acc)[4], const uint8_t* wA, const uint8_t* wB, const int8_t* xg, bool xok,
                                           int kb0, bool first) {
    uint4 wa[4], wb[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
        wa[u] = ld_stream<PF>(wA + (size_t)(kb0 + 4 * u) * 64);
        wb[u] = ld_stream<PF>(wB + (size_t)(kb0 + 4 * u) * 64);
    }
    if (first) pdl_wait();  // x, its scales and y belong to the previous kernel
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int kb = kb0 + 4 * u;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            uint4 xv = make_uint4(0, 0, 0, 0);
            if (xok) xv = __ldg(reinterpret_cast<const uint4*>(xg + (size_t)kb * 256 + 64 * q));
            mma_s8(acc, slice(wa[u].x, q), slice(wb[u].x, q), slice(wa[u].y, q), slice(wb[u].y, q), xv.x, xv.y);  // columns 64q + 16t + 0..7
            mma_s8(acc, slice(wa[u].z, q), slice(wb[u].z, q), slice(wa[u].w, q), slice(wb[u].w, q), xv.z, xv.w);  // 64q + 16t + 8..15
        }
    }
}

// k_blocks % 16 == 0. EARLY: let the next kernel launch at entry instead of once this CTA's weights are in. PF: the
// L2 prefetch-size hint.
template <bool EARLY, bool PF>
__global__ void __launch_bounds__(128, 8) gemv8_kernel(rotor_gemm_args a) {
    if constexpr (EARLY) pdl_trigger();
    __shared__ int red[4][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    // Rows past n are clamped to the last row: computed, never stored.
    const uint8_t* wA = a.w + (size_t)min(r0 + g, a.n - 1) * a.row_bytes + 16 * t;
    const uint8_t* wB = a.w + (size_t)min(r0 + g + 8, a.n - 1) * a.row_bytes + 16 * t;
    const bool xok = g < a.m;
    const int8_t* xg = a.x + (size_t)(xok ? g : 0) * a.x_stride + 16 * t;
    int acc[4] = {0, 0, 0, 0};
    for (int kb0 = warp; kb0 < a.k_blocks; kb0 += 16) gemv8_step<PF>(acc, wA, wB, xg, xok, kb0, kb0 == warp);
    if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in: let the next kernel start streaming its own
#pragma unroll
    for (int c = 0; c < 4; c++) red[warp][c][lane] = acc[c];
    __syncthreads();
    const int c = threadIdx.x >> 5, ln = threadIdx.x & 31;
    int sum = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) sum += red[w][c][ln];
    // c0: (row g, col 2t), c1: (g, 2t + 1), c2: (g + 8, 2t), c3: (g + 8, 2t + 1)
    store_y(a, 2 * (ln & 3) + (c & 1), r0 + (ln >> 2) + (c >> 1) * 8, sum);
}

// The GEMV for m <= 8 with the weights brought in by bulk copies (sm_90, cp.async.bulk: the copy engine of the
// multiprocessor, no registers, no per-thread requests): a CTA of 4 warps owns 16 weight rows, lanes 0..15 of warp
// 0 each copy one row's k_blocks * 64 bytes into shared memory (row stride S = the row rounded to 64 mod 128 bytes,
// so that the 128-bit reads of rows g and g + 1 fall on disjoint banks), completing on one mbarrier; then the warps
// split the K blocks as gemv_kernel does, reading the words from shared memory. A CTA holds no weights in
// registers (36 registers, 10 or more CTAs a multiprocessor); the copies start before griddepcontrol.wait. Faster
// than gemv_kernel back to back on grids below 4 CTAs a multiprocessor, not above (launch_gemv). EARLY: let the
// next kernel launch at entry.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
#define ROTOR_BULK 1
#else
#define ROTOR_BULK 0
#endif

__host__ __device__ constexpr int bulk_stride(int k_blocks) { return k_blocks * 64 + (k_blocks % 2 == 0 ? 64 : 0); }
constexpr int kBulkMaxSmem = 48 * 1024;  // a tile's shared memory at most: K up to 47 blocks

#if ROTOR_BULK
// Warp 0 copies rows 16 tile .. of the weights into buf (row stride S), completing on the mbarrier at mb.
__device__ __forceinline__ void bulk_tile(const rotor_gemm_args& a, unsigned char* buf, unsigned mb, int tile, int S) {
    const int lane = threadIdx.x & 31, r0 = tile * 16, rows = min(16, a.n - r0), bytes = a.k_blocks * 64;
    if (lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mb), "r"(rows * bytes) : "memory");
    __syncwarp();
    if (lane < rows) {
        const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(buf + lane * S));
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                     ::"r"(dst), "l"(a.w + (size_t)(r0 + lane) * a.row_bytes), "r"(bytes), "r"(mb) : "memory");
    }
}
#endif

template <bool EARLY>
__global__ void __launch_bounds__(128) gemv_bulk_kernel(rotor_gemm_args a) {
#if ROTOR_BULK
    if constexpr (EARLY) pdl_trigger();
    extern __shared__ __align__(128) unsigned char gb_smem[];
    __shared__ __align__(8) unsigned long long bar;
    __shared__ int red[4][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16, S = bulk_stride(a.k_blocks);
    const unsigned mb = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(mb) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (warp == 0) bulk_tile(a, gb_smem, mb, blockIdx.x, S);
    pdl_wait();  // x, its scales and y belong to the previous kernel
    const bool xok[1] = {g < a.m};
    const int8_t* const xr[1] = {a.x + (size_t)(xok[0] ? g : 0) * a.x_stride + 16 * t};
    unsigned done = 0;
    while (!done)
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(mb) : "memory");
    if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in
    int acc[1][4] = {{0, 0, 0, 0}};
    // Rows past n (never copied) are computed from whatever shared memory holds and never stored.
    const unsigned char* wA = gb_smem + g * S + 16 * t;
    const unsigned char* wB = wA + 8 * S;
    for (int kb = warp; kb < a.k_blocks; kb += 4)
        gemv_block<1>(acc, *reinterpret_cast<const uint4*>(wA + kb * 64), *reinterpret_cast<const uint4*>(wB + kb * 64), xr, xok, kb);
#pragma unroll
    for (int c = 0; c < 4; c++) red[warp][c][lane] = acc[0][c];
    __syncthreads();
    const int c = threadIdx.x >> 5, ln = threadIdx.x & 31;
    int sum = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) sum += red[w][c][ln];
    // c0: (row g, col 2t), c1: (g, 2t + 1), c2: (g + 8, 2t), c3: (g + 8, 2t + 1)
    store_y(a, 2 * (ln & 3) + (c & 1), r0 + (ln >> 2) + (c >> 1) * 8, sum);
#endif
}

// The same product for 9 <= m <= 64 with 8 warps and two blocks a step, unpredicated: its x loads (4 NT a block)
// dominate, and this form keeps them all in flight.
constexpr int kGemvWarps = 8;

// The next layer's activation quantization after the product (rotor_cuda_gemm_q): where y goes, and a grid barrier.
struct QArgs {
    int8_t* q;           // (m, q_stride) int8: quantized y, columns n..q_stride-1 zeroed; may be a.x (read before the barrier)
    int q_stride;
    float* scale;        // m scales (may be a.x_scale)
    int* sum;            // m sums (may be a.x_sum)
    unsigned* barrier;   // {count, generation}: zero before the first use, left so after each
};

__device__ void quantize_row(const float* xr, int cols, int8_t* qr, int q_stride, float* scale, int* sum);

// Every CTA of the grid arrives; all must be resident (the launcher checks the grid against the multiprocessors).
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned* vb = bar;
        const unsigned gen = vb[1];
        __threadfence();
        if (atomicAdd(&bar[0], 1u) == gridDim.x - 1) {
            atomicExch(&bar[0], 0u);
            __threadfence();
            atomicAdd(&bar[1], 1u);
        } else {
            while (vb[1] == gen) __nanosleep(32);
        }
        __threadfence();
    }
    __syncthreads();
}

// Q: after the product, a grid barrier (every y is stored), then CTA i < m quantizes row i of y into qa (as
// quantize_kernel does): the next product's int8 input without a quantize kernel between the two.
// EPL: the epilogue's operands loaded before the product (NT <= 4; ROTOR_CUDA_WIDE_EP=0: after it, as before).
template <int NT, bool Q = false, bool EPL = true>
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_wide_kernel(rotor_gemm_args a, QArgs qa = {}) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    // Rows past n are clamped to the last row: computed, never stored.
    const uint8_t* wA = a.w + (size_t)min(r0 + g, a.n - 1) * a.row_bytes + 16 * t;
    const uint8_t* wB = a.w + (size_t)min(r0 + g + 8, a.n - 1) * a.row_bytes + 16 * t;
    int kb = warp;
    // (pa, pb) always hold block kb once kb < k_blocks: the first is loaded before waiting on the previous kernel.
    uint4 pa = make_uint4(0, 0, 0, 0), pb = pa;
    if (kb < a.k_blocks) {
        pa = ld_stream(wA + (size_t)kb * 64);
        pb = ld_stream(wB + (size_t)kb * 64);
    }
    pdl_wait();  // x and its scales come from the previous kernel
    // EP (NT <= 4): the epilogue's operands of this thread's NT / 2 results, loaded now, while x comes in, and not
    // after the reduction (its L2 round trip was on the critical path of every layer of a small-batch network).
    constexpr bool EP = EPL && NT >= 2 && NT <= 4;
    constexpr int kPer = EP ? NT * 128 / (32 * kGemvWarps) : 1;
    Epilogue ep[kPer];
    if constexpr (EP) {
#pragma unroll
        for (int p = 0; p < kPer; p++) {
            const int idx = threadIdx.x + p * 32 * kGemvWarps, j = idx >> 7, c = (idx >> 5) & 3, ln = idx & 31;
            ep[p] = epilogue_load(a, 8 * j + 2 * (ln & 3) + (c & 1), r0 + (ln >> 2) + (c >> 1) * 8);
        }
    }
    const int8_t* xr[NT];
    bool xok[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int i = 8 * j + g;
        xok[j] = i < a.m;
        xr[j] = a.x + (size_t)(xok[j] ? i : 0) * a.x_stride + 16 * t;
    }
    int acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;

    // Two blocks a step, and the first block of the next step loaded before this one's mmas.
    for (; kb + kGemvWarps < a.k_blocks; kb += 2 * kGemvWarps) {
        const uint4 wa0 = pa, wb0 = pb;
        const uint4 wa1 = ld_stream(wA + (size_t)(kb + kGemvWarps) * 64);
        const uint4 wb1 = ld_stream(wB + (size_t)(kb + kGemvWarps) * 64);
        if (kb + 2 * kGemvWarps < a.k_blocks) {
            pa = ld_stream(wA + (size_t)(kb + 2 * kGemvWarps) * 64);
            pb = ld_stream(wB + (size_t)(kb + 2 * kGemvWarps) * 64);
        }
        gemv_block<NT>(acc, wa0, wb0, xr, xok, kb);
        gemv_block<NT>(acc, wa1, wb1, xr, xok, kb + kGemvWarps);
    }
    if (kb < a.k_blocks) gemv_block<NT>(acc, pa, pb, xr, xok, kb);

    pdl_trigger();  // weights are in: let the next kernel start streaming its own
    // [warp][j][c][lane]: consecutive lanes hit consecutive banks.
    __shared__ int red[kGemvWarps][NT][4][32];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) red[warp][j][c][lane] = acc[j][c];
    __syncthreads();
    if constexpr (EP) {
#pragma unroll
        for (int p = 0; p < kPer; p++) {
            const int idx = threadIdx.x + p * 32 * kGemvWarps, j = idx >> 7, c = (idx >> 5) & 3, ln = idx & 31;
            int s = 0;
#pragma unroll
            for (int w = 0; w < kGemvWarps; w++) s += red[w][j][c][ln];
            epilogue_store(a, ep[p], s);
        }
    } else {
        for (int idx = threadIdx.x; idx < NT * 4 * 32; idx += blockDim.x) {
            const int j = idx >> 7, c = (idx >> 5) & 3, ln = idx & 31;
            int s = 0;
#pragma unroll
            for (int w = 0; w < kGemvWarps; w++) s += red[w][j][c][ln];
            // c0: (row g, col 2t), c1: (g, 2t + 1), c2: (g + 8, 2t), c3: (g + 8, 2t + 1)
            const int row = r0 + (ln >> 2) + (c >> 1) * 8, i = 8 * j + 2 * (ln & 3) + (c & 1);
            store_y(a, i, row, s);
        }
    }
    if constexpr (Q) {
        __threadfence();
        grid_barrier(qa.barrier);
        if ((int)blockIdx.x < a.m)
            quantize_row(a.y + (size_t)blockIdx.x * a.y_stride, a.n, qa.q + (size_t)blockIdx.x * qa.q_stride, qa.q_stride,
                         qa.scale + blockIdx.x, qa.sum + blockIdx.x);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tiled GEMM: a CTA of WW x WX warps owns BN = WW * 16 * MT weight rows and BM = WX * 8 * NT activation rows.
// Each K block (256 columns), copied by cp.async into a STAGES-deep ring of shared memory:
//   x: BM rows x 256 int8, 16-byte chunk c of row r at r * 256 + 16 * (c ^ 4 * (r & 1)) (rows g and g + 1 of one
//      128-bit read phase land 64 bytes apart: no bank conflict);
//   w: BN rows x 64 packed bytes (16 rows x 64 B a warp read: conflict-free as is).
// A warp decodes its packed weights once per bit pair q in registers (shift + mask) and reuses them for NT mmas.
// ---------------------------------------------------------------------------------------------------------------

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int bytes = valid ? 16 : 0;  // 0: fill with zeros, read nothing
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ int x_offset(int r, int c) { return r * 256 + 16 * (c ^ ((r & 1) << 2)); }

// ---------------------------------------------------------------------------------------------------------------
// Split-K GEMV on clusters (m <= 64, compute capability 9.0, CUDA 12): a CTA of 8 warps owns 128 weight rows (16 a
// warp, as in gemv_kernel) and KPC consecutive K blocks; the CS = ceil(k_blocks / KPC) CTAs of a column of the grid
// form one cluster and add their partial tiles through distributed shared memory, each CTA finishing 1 / CS of the
// outputs. x is staged once a CTA in shared memory (swizzled as in the tiled kernel, so the warps' 128-bit reads of
// rows g and g + 1 fall on disjoint banks), where the wide GEMV read all of x through L1 for every 16 weight rows. The
// weights are loaded into registers before the wait on the previous kernel.
// FQ (the fused activation quantization, rotor_cuda_gemm_fq): x comes as floats with its rows' absmax (float bits)
// from the kernel before, and is quantized while it is staged, with the CPU's rounding (quantize_kernel): each CTA
// subtracts its slice's int8 row sums from its partial dots, so the cluster's sum is sum (code - 1) * q exactly. The
// epilogue can also fold max |y| of each activation row into amax_out (atomicMax on the float bits), which is the next
// layer's absmax: no quantize kernel between two products.
// ---------------------------------------------------------------------------------------------------------------

constexpr int kSkWarps = 8;
constexpr int kSkRows = 16 * kSkWarps;  // weight rows a CTA
constexpr int kSkMaxCluster = 8;        // the portable cluster size
constexpr int kSkMaxBlocks = 4 * kSkMaxCluster;

struct FqArgs {
    const float* x;          // (m, cols) floats, row stride `stride` (a multiple of 4), 16-byte aligned; NULL: int8 x
    int cols;
    int stride;
    const unsigned* amax_in;  // m absmax values as float bits
    unsigned* amax_out;       // NULL, or m values that get max |y| of their row (zeroed before the kernel)
    int trigger;              // when the next kernel may launch: 0 at entry, 1 after the mmas, 2 at exit
    int* work;                // without clusters: partial tiles (row tiles x slices x tile) ...
    int* count;               // ... and one counter a row tile, zero between launches
    unsigned long long* dbg;  // ROTOR_CUDA_SK_DEBUG: 10 stamps a CTA
};

__host__ __device__ constexpr int sk_smem(int nt, int kpc) { return kpc * 8 * nt * 256 + kSkWarps * nt * 128 * 4 + 4 * 8 * nt * 4 + 2 * kSkRows * 4; }

#if ROTOR_BULK
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
#endif

// ROTOR_CUDA_SK_DEBUG=1 (a measurement aid): thread 0 of each CTA of the split-K GEMV records clock64 at 8 points of
// its run and the global timer at the first and last, into f.dbg (the last launch's values stay); the library prints
// a summary at exit.
#define SK_STAMP(k)                                                                                      \
    do {                                                                                                 \
        if (f.dbg != nullptr && threadIdx.x == 0) {                                                      \
            unsigned long long* d_ = f.dbg + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * 10;        \
            d_[k] = clock64();                                                                           \
            if ((k) == 0 || (k) == 7) {                                                                  \
                unsigned long long g_;                                                                   \
                asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g_));                                   \
                d_[(k) == 0 ? 8 : 9] = g_;                                                               \
            }                                                                                            \
        }                                                                                                \
    } while (0)

// One float to int8 as QuantizedActivations.QuantizeRow (inv = 0 for a row of zeros).
// cvt.rni rounds half to even as rintf does; clamping the integer is the same as clamping the rounded float.
__device__ __forceinline__ int quant1(float x, float inv) { return min(max(__float2int_rn(__fmul_rn(x, inv)), -127), 127); }

// CL: the slices are added through distributed shared memory in a cluster; else through a workspace in global memory.
template <int NT, int KPC, bool FQ, bool CL>
__global__ void __launch_bounds__(32 * kSkWarps) gemv_sk_kernel(rotor_gemm_args a, FqArgs f) {
#if ROTOR_BULK
    constexpr int R = 8 * NT;  // activation rows of the tile
    extern __shared__ __align__(16) unsigned char sk_buf[];
    unsigned char* xq = sk_buf;                                       // [KPC][R][256] int8, swizzled
    int* red = reinterpret_cast<int*>(sk_buf + KPC * R * 256);        // [warp][NT][4][32] partial dots
    int* qsum = red + kSkWarps * NT * 128;                            // [R] int8 sums of this CTA's slice (FQ), x_sum (else)
    float* s_inv = reinterpret_cast<float*>(qsum + R);                // [R] 127 / amax (FQ)
    float* s_xs = s_inv + R;                                          // [R] x scales
    unsigned* s_amax = reinterpret_cast<unsigned*>(s_xs + R);         // [R] max |y| of this CTA's outputs
    float* s_ws = reinterpret_cast<float*>(s_amax + R);               // [128] the tile's weight scales
    float* s_bias = s_ws + kSkRows;                                   // [128] its bias
    if (f.trigger == 0) pdl_trigger();  // the next kernel's CTAs may take free slots now and load their weights
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kb0 = blockIdx.y * KPC;
    if (threadIdx.x < kSkRows) {
        // The epilogue's weight scales and bias, which no kernel writes: loaded now, not after the reduction.
        const int r = min(blockIdx.x * kSkRows + threadIdx.x, a.n - 1);
        s_ws[threadIdx.x] = a.w_scale[(size_t)r * a.w_scale_stride];
        s_bias[threadIdx.x] = a.bias != nullptr ? a.bias[r] : 0.f;
    }
    // Rows past n are clamped to the last row: computed, never stored.
    const uint8_t* wA = a.w + (size_t)min(blockIdx.x * kSkRows + 16 * warp + g, a.n - 1) * a.row_bytes + 16 * t;
    const uint8_t* wB = a.w + (size_t)min(blockIdx.x * kSkRows + 16 * warp + g + 8, a.n - 1) * a.row_bytes + 16 * t;
    uint4 wa[KPC], wb[KPC];
#pragma unroll
    for (int u = 0; u < KPC; u++) {
        wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
        if (kb0 + u < a.k_blocks) {
            wa[u] = ld_stream(wA + (size_t)(kb0 + u) * 64);
            wb[u] = ld_stream(wB + (size_t)(kb0 + u) * 64);
        }
    }
    SK_STAMP(0);
    pdl_wait();  // x (and its absmax) come from the previous kernel, y may still be read by it
    SK_STAMP(1);
    if (threadIdx.x < R) {
        s_amax[threadIdx.x] = 0;
        if constexpr (FQ) {
            qsum[threadIdx.x] = 0;
            const float amax = threadIdx.x < a.m ? __uint_as_float(f.amax_in[threadIdx.x]) : 0.f;
            s_inv[threadIdx.x] = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
            s_xs[threadIdx.x] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        } else {
            qsum[threadIdx.x] = threadIdx.x < a.m ? a.x_sum[threadIdx.x] : 0;
            s_xs[threadIdx.x] = threadIdx.x < a.m ? a.x_scale[threadIdx.x] : 0.f;
        }
    }
    if constexpr (FQ) {
        __syncthreads();
        // R rows of KPC * 64 float4: a warp's 32 consecutive float4 lie in one row.
        constexpr int kRow4 = KPC * 64, kPer = R * kRow4 / 256, kChunk = kPer < 8 ? kPer : 8;
        static_assert(kPer % kChunk == 0, "whole chunks");
#pragma unroll 1
        for (int p0 = 0; p0 < kPer; p0 += kChunk) {
            float4 v[kChunk];
#pragma unroll
            for (int p = 0; p < kChunk; p++) {
                const int idx = threadIdx.x + (p0 + p) * 256, row = idx / kRow4, col = kb0 * 256 + 4 * (idx % kRow4);
                v[p] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (row < a.m) {
                    const float* src = f.x + (size_t)row * f.stride + col;
                    if (col + 4 <= f.cols) {
                        v[p] = *reinterpret_cast<const float4*>(src);
                    } else {
                        if (col < f.cols) v[p].x = src[0];
                        if (col + 1 < f.cols) v[p].y = src[1];
                        if (col + 2 < f.cols) v[p].z = src[2];
                    }
                }
            }
#pragma unroll
            for (int p = 0; p < kChunk; p++) {
                const int idx = threadIdx.x + (p0 + p) * 256, row = idx / kRow4, c4 = idx % kRow4;
                const float inv = s_inv[row];
                const int q0 = quant1(v[p].x, inv), q1 = quant1(v[p].y, inv), q2 = quant1(v[p].z, inv), q3 = quant1(v[p].w, inv);
                const unsigned packed = __byte_perm(__byte_perm(q0, q1, 0x0040), __byte_perm(q2, q3, 0x0040), 0x5410);
                const int u = c4 >> 6, b = (c4 & 63) * 4;
                *reinterpret_cast<unsigned*>(xq + u * R * 256 + x_offset(row, b >> 4) + (b & 15)) = packed;
                const int s = __reduce_add_sync(0xffffffffu, q0 + q1 + q2 + q3);
                if (lane == 0 && s != 0) atomicAdd(&qsum[row], s);
            }
        }
    } else {
        constexpr int kAll = R * KPC * 16, kPer = (kAll + 255) / 256;  // 16-byte pieces
        uint4 v[kPer];
#pragma unroll
        for (int p = 0; p < kPer; p++) {
            const int idx = threadIdx.x + p * 256, row = idx / (KPC * 16), u = idx % (KPC * 16) / 16, c = idx % 16;
            v[p] = make_uint4(0, 0, 0, 0);
            if (idx < kAll && row < a.m && kb0 + u < a.k_blocks)
                v[p] = *reinterpret_cast<const uint4*>(a.x + (size_t)row * a.x_stride + (size_t)(kb0 + u) * 256 + 16 * c);
        }
#pragma unroll
        for (int p = 0; p < kPer; p++) {
            const int idx = threadIdx.x + p * 256, row = idx / (KPC * 16), u = idx % (KPC * 16) / 16, c = idx % 16;
            if (idx < kAll) *reinterpret_cast<uint4*>(xq + u * R * 256 + x_offset(row, c)) = v[p];
        }
    }
    __syncthreads();

    SK_STAMP(2);
    int acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
#pragma unroll
    for (int u = 0; u < KPC; u++) {
        if (kb0 + u < a.k_blocks) {
            const unsigned char* xb = xq + u * R * 256;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const unsigned a0 = slice(wa[u].x, q), a1 = slice(wa[u].y, q), a2 = slice(wa[u].z, q), a3 = slice(wa[u].w, q);
                const unsigned b0 = slice(wb[u].x, q), b1 = slice(wb[u].y, q), b2 = slice(wb[u].z, q), b3 = slice(wb[u].w, q);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const uint4 xv = *reinterpret_cast<const uint4*>(xb + x_offset(8 * j + g, 4 * q + t));
                    mma_s8(acc[j], a0, b0, a1, b1, xv.x, xv.y);  // columns 64q + 16t + 0..7
                    mma_s8(acc[j], a2, b2, a3, b3, xv.z, xv.w);  // columns 64q + 16t + 8..15
                }
            }
        }
    }
    // Result idx of the tile, in the order [warp][j][c][lane]: c0 (row g, col 2t), c1 (g, 2t + 1), c2 (g + 8, 2t),
    // c3 (g + 8, 2t + 1). The epilogue of 2 consecutive results, their dots summed over the K slices.
    SK_STAMP(3);
    auto finish = [&](int e2, int2 s) {
        const int dots[2] = {s.x, s.y};
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int idx = 2 * e2 + e, w = idx / (NT * 128), j = (idx >> 7) % NT, c = (idx >> 5) & 3, ln = idx & 31;
            const int r = blockIdx.x * kSkRows + 16 * w + (ln >> 2) + (c >> 1) * 8, i = 8 * j + 2 * (ln & 3) + (c & 1);
            if (i < a.m && r < a.n) {
                float v = __fmul_rn(__int2float_rn(FQ ? dots[e] : dots[e] - qsum[i]), s_xs[i]);
                v = __fmul_rn(v, s_ws[r - blockIdx.x * kSkRows]);
                if (a.bias != nullptr) v = __fadd_rn(v, s_bias[r - blockIdx.x * kSkRows]);
                v = apply_act(v, a.act);
                a.y[(size_t)i * a.y_stride + r] = v;
                if (f.amax_out != nullptr) atomicMax(&s_amax[i], __float_as_uint(fabsf(v)));
            }
        }
    };
    constexpr int kGroups = kSkWarps * NT * 64;  // pairs of results
    if constexpr (CL) {
        // FQ: minus the slice's row sums, so that the sum over the cluster is sum (code - 1) * q.
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int v = acc[j][c];
                if constexpr (FQ) v -= qsum[8 * j + 2 * t + (c & 1)];
                red[((warp * NT + j) * 4 + c) * 32 + lane] = v;
            }
        if (f.trigger == 1) pdl_trigger();
        cluster_sync();
        SK_STAMP(4);
        // CTA `rank` finishes groups [rank * per, ...) of 4 consecutive results, summing them over the cluster.
        const unsigned rank = cluster_rank(), cs = cluster_count();
        const int per = (kGroups + (int)cs - 1) / (int)cs, end = min(kGroups, (int)rank * per + per);

        for (int e2 = (int)rank * per + threadIdx.x; e2 < end; e2 += 32 * kSkWarps) {
            int2 s = ld_cluster_v2(red + 2 * e2, 0);
            for (unsigned c = 1; c < cs; c++) {
                const int2 v = ld_cluster_v2(red + 2 * e2, c);
                s.x += v.x; s.y += v.y;
            }
            finish(e2, s);
        }
    } else {
        // No cluster: each CTA stores its partial tile in the workspace (L2); the last CTA of the column to count
        // itself in adds the slices, resets the counter for the next launch and runs the whole tile's epilogue.
        int* part = f.work + ((size_t)blockIdx.x * gridDim.y + blockIdx.y) * (kGroups * 2);
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int v = acc[j][c];
                if constexpr (FQ) v -= qsum[8 * j + 2 * t + (c & 1)];
                __stcg(part + ((warp * NT + j) * 4 + c) * 32 + lane, v);
            }
        if (f.trigger == 1) pdl_trigger();
        __threadfence();
        __syncthreads();
        __shared__ int s_last;
        if (threadIdx.x == 0) s_last = atomicAdd(&f.count[blockIdx.x], 1) == (int)gridDim.y - 1;
        __syncthreads();
        if (!s_last) return;
        __threadfence();
        if (threadIdx.x == 0) f.count[blockIdx.x] = 0;
        const int2* base = reinterpret_cast<const int2*>(f.work + (size_t)blockIdx.x * gridDim.y * (kGroups * 2));
        for (int e2 = threadIdx.x; e2 < kGroups; e2 += 32 * kSkWarps) {
            int2 s = __ldcg(base + e2);
            for (unsigned c = 1; c < gridDim.y; c++) {
                const int2 v = __ldcg(base + (size_t)c * kGroups + e2);
                s.x += v.x; s.y += v.y;
            }
            finish(e2, s);
        }
    }
    SK_STAMP(5);
    if (f.amax_out != nullptr) {
        __syncthreads();
        if (threadIdx.x < R && threadIdx.x < a.m && s_amax[threadIdx.x] != 0) atomicMax(&f.amax_out[threadIdx.x], s_amax[threadIdx.x]);
    }
    SK_STAMP(6);
    if constexpr (CL) cluster_sync();  // the other CTAs have read this one's partial tile
    SK_STAMP(7);
#endif
}

// The activations' row absmax (float bits) for the first fused product of a chain, and zeros for the amax_out
// buffers of the products after it (CTA 0). One CTA a row.
__global__ void __launch_bounds__(256) absmax_kernel(const float* x, int cols, int x_stride, unsigned* amax, unsigned* zero, int zero_count) {
    pdl_trigger();
    pdl_wait();
    __shared__ float scratch[32];
    if (blockIdx.x == 0)
        for (int j = threadIdx.x; j < zero_count; j += blockDim.x) zero[j] = 0;
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    float m = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, fabsf(xr[j]));
    m = block_reduce(m, MaxOp{}, scratch);
    if (threadIdx.x == 0) amax[blockIdx.x] = __float_as_uint(m);
}

template <int WW_, int WX_, int MT_, int NT_, int STAGES_, int MIN_BLOCKS_>
struct TileConfig {
    static constexpr int WW = WW_, WX = WX_, MT = MT_, NT = NT_, STAGES = STAGES_, MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int kThreads = 32 * WW * WX;
    static constexpr int BN = WW * 16 * MT;
    static constexpr int BM = WX * 8 * NT;
    static constexpr int kXBytes = BM * 256;
    static constexpr int kWBytes = BN * 64;
    static constexpr int kStageBytes = kXBytes + kWBytes;
    static constexpr int kSmem = STAGES * kStageBytes;
};

// The configurations, indexed as the path ROTOR_PATH_TILED_CFG0 + i (rotor_cuda.h).
using Tile0 = TileConfig<4, 2, 2, 8, 2, 2>;  // 128 x 128, 256 threads, 80 KB
using Tile1 = TileConfig<8, 2, 2, 8, 3, 1>;  // 256 x 128, 512 threads, 144 KB
using Tile2 = TileConfig<4, 2, 1, 8, 3, 2>;  // 64 x 128, 256 threads, 108 KB: more CTAs for small products
static_assert(Tile0::kSmem == 80 * 1024, "tile 0 stage size");
static_assert(Tile1::kSmem == 144 * 1024, "tile 1 stage size");

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::MIN_BLOCKS) tiled_kernel(rotor_gemm_args a) {
    extern __shared__ __align__(128) unsigned char smem[];
    pdl_trigger();  // the kernel after this one may be scheduled early; it waits for this one to end
    pdl_wait();
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wx = warp % C::WX, ww = warp / C::WX;
    const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;

    auto load_stage = [&](int kb, int s) {
        unsigned char* xs = smem + s * C::kStageBytes;
        unsigned char* ws = xs + C::kXBytes;
        for (int id = tid; id < C::BM * 16; id += C::kThreads) {
            const int r = id >> 4, c = id & 15, i = m0 + r;
            const bool ok = i < a.m;
            cp_async16(xs + x_offset(r, c), a.x + (size_t)(ok ? i : 0) * a.x_stride + (size_t)kb * 256 + 16 * c, ok);
        }
        for (int id = tid; id < C::BN * 4; id += C::kThreads) {
            const int r = id >> 2, c = id & 3, row = n0 + r;
            const bool ok = row < a.n;
            cp_async16(ws + r * 64 + 16 * c, a.w + (size_t)(ok ? row : 0) * a.row_bytes + (size_t)kb * 64 + 16 * c, ok);
        }
    };

    int acc[C::MT][C::NT][4];
#pragma unroll
    for (int i = 0; i < C::MT; i++)
#pragma unroll
        for (int j = 0; j < C::NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) {
        if (s < a.k_blocks) load_stage(s, s);
        cp_async_commit();
    }
    for (int kb = 0; kb < a.k_blocks; kb++) {
        cp_async_wait<C::STAGES - 2>();  // block kb has landed (this thread's copies) ...
        __syncthreads();                 // ... and everyone's; and stage (kb - 1) % STAGES is no longer read
        {
            const int nk = kb + C::STAGES - 1;
            if (nk < a.k_blocks) load_stage(nk, nk % C::STAGES);
            cp_async_commit();
        }
        const unsigned char* xs = smem + (kb % C::STAGES) * C::kStageBytes;
        const unsigned char* ws = xs + C::kXBytes;
        uint4 wr[C::MT][2];
#pragma unroll
        for (int i = 0; i < C::MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                wr[i][h] = *reinterpret_cast<const uint4*>(ws + (ww * 16 * C::MT + 16 * i + g + 8 * h) * 64 + 16 * t);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            unsigned af[C::MT][8];  // [i][word + 4 * (row half)]
#pragma unroll
            for (int i = 0; i < C::MT; i++) {
                af[i][0] = slice(wr[i][0].x, q); af[i][1] = slice(wr[i][0].y, q);
                af[i][2] = slice(wr[i][0].z, q); af[i][3] = slice(wr[i][0].w, q);
                af[i][4] = slice(wr[i][1].x, q); af[i][5] = slice(wr[i][1].y, q);
                af[i][6] = slice(wr[i][1].z, q); af[i][7] = slice(wr[i][1].w, q);
            }
#pragma unroll
            for (int j = 0; j < C::NT; j++) {
                const int r = wx * 8 * C::NT + 8 * j + g;
                const uint4 xv = *reinterpret_cast<const uint4*>(xs + x_offset(r, 4 * q + t));
#pragma unroll
                for (int i = 0; i < C::MT; i++) {
                    mma_s8(acc[i][j], af[i][0], af[i][4], af[i][1], af[i][5], xv.x, xv.y);
                    mma_s8(acc[i][j], af[i][2], af[i][6], af[i][3], af[i][7], xv.z, xv.w);
                }
            }
        }
    }
    cp_async_wait<0>();

    // Operands per weight row pair, then per activation column pair; the accumulators are only ever indexed by
    // unrolled loop counters, so they stay in registers.
    const bool bias = a.bias != nullptr;
#pragma unroll
    for (int i = 0; i < C::MT; i++) {
        const int row = n0 + ww * 16 * C::MT + 16 * i + g;
        const int r0 = min(row, a.n - 1), r1 = min(row + 8, a.n - 1);
        const float ws0 = a.w_scale[(size_t)r0 * a.w_scale_stride], ws1 = a.w_scale[(size_t)r1 * a.w_scale_stride];
        const float b0 = bias ? a.bias[r0] : 0.f, b1 = bias ? a.bias[r1] : 0.f;
#pragma unroll
        for (int j = 0; j < C::NT; j++) {
            const int col = m0 + wx * 8 * C::NT + 8 * j + 2 * t;
            const int c0 = min(col, a.m - 1), c1 = min(col + 1, a.m - 1);
            const float xs0 = a.x_scale[c0], xs1 = a.x_scale[c1];
            const int xm0 = a.x_sum[c0], xm1 = a.x_sum[c1];
            float v[4];
            v[0] = __fmul_rn(__fmul_rn(__int2float_rn(acc[i][j][0] - xm0), xs0), ws0);
            v[1] = __fmul_rn(__fmul_rn(__int2float_rn(acc[i][j][1] - xm1), xs1), ws0);
            v[2] = __fmul_rn(__fmul_rn(__int2float_rn(acc[i][j][2] - xm0), xs0), ws1);
            v[3] = __fmul_rn(__fmul_rn(__int2float_rn(acc[i][j][3] - xm1), xs1), ws1);
            if (bias) { v[0] = __fadd_rn(v[0], b0); v[1] = __fadd_rn(v[1], b0); v[2] = __fadd_rn(v[2], b1); v[3] = __fadd_rn(v[3], b1); }
            if (row < a.n && col < a.m) a.y[(size_t)col * a.y_stride + row] = apply_act(v[0], a.act);
            if (row < a.n && col + 1 < a.m) a.y[(size_t)(col + 1) * a.y_stride + row] = apply_act(v[1], a.act);
            if (row + 8 < a.n && col < a.m) a.y[(size_t)col * a.y_stride + row + 8] = apply_act(v[2], a.act);
            if (row + 8 < a.n && col + 1 < a.m) a.y[(size_t)(col + 1) * a.y_stride + row + 8] = apply_act(v[3], a.act);
        }
    }
}

template <class C>
int launch_tiled(const rotor_gemm_args& a, cudaStream_t s) {
    const dim3 grid((a.m + C::BM - 1) / C::BM, (a.n + C::BN - 1) / C::BN);
    if (grid.y > 65535) return fail(ROTOR_CUDA_EINVAL, "n = %d needs %u row tiles, more than 65535", a.n, grid.y);
    // Not a programmatic dependent launch: measured slower on H200 for these multi-wave kernels.
    return launch_plain(tiled_kernel<C>, grid, dim3(C::kThreads), C::kSmem, s, "tiled_kernel", a);
}

template <class C>
long long tiles(const rotor_gemm_args& a) {
    return (long long)((a.m + C::BM - 1) / C::BM) * ((a.n + C::BN - 1) / C::BN);
}

template <class C>
int prepare_tiled() {
    CK(cudaFuncSetAttribute(tiled_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Hopper GEMM (sm_90a only, chosen at run time on compute capability 9.0): wgmma.mma_async m64nBMk32 s8.
// A CTA of two warpgroups owns 128 weight rows (64 a warpgroup: the wgmma M) x BM activation rows (the wgmma N).
// A (weights) comes from registers, decoded from the packed bytes with the same shift + mask as above; B (x) comes
// from shared memory through a matrix descriptor. Each K block (256 columns) is copied by cp.async into a
// STAGES-deep ring of shared memory:
//   x: BM rows x 256 int8, K-major with 128-byte swizzle: half block h (128 columns) of row r at h * BM * 128 +
//      r * 128, its 16-byte chunk c at (c ^ (r % 8)) * 16 (the canonical layout without swizzle ran 1.6x slower);
//   w: 128 rows x 64 packed bytes at a row stride of 80 bytes (the 8 rows of a warp's 32-bit reads hit 8 disjoint
//      groups of 4 banks).
// In natural column order, the A fragment of thread (g, t) for k32 step s = 2q + h is, per row (g and g + 8 of its
// warp's 16), word 8h + t (a0/a1) and word 8h + 4 + t (a2/a3) of the row's 64 packed bytes, sliced at bit pair q:
// the thread reads words t, t + 4, t + 8, t + 12 of two rows once per K block and slices them 8 times.
// A warpgroup waits for its wgmmas at the end of every block: registers that feed a wgmma may not be written while
// any wgmma of the warpgroup is in flight (ptxas serializes the wgmmas otherwise, C7513), so the tensor cores are
// kept busy by the other CTA of the multiprocessor (two CTAs of 256 threads, 128 registers a thread) and, with 3+
// stages, by doing everything else of the next block while the wgmmas run (see wgmma_kernel). All 8 warps copy and
// multiply (cp.async groups and __syncthreads). The tile height BM trades waves against work a
// CTA: 128 for large grids, 96 and 64 (more stages) for the others (launch_gemm). Measured slower on H100 and
// removed: x without the swizzle (1.6x), a copy warp with mbarriers (one warp cannot issue cp.async fast enough),
// A decoded into shared memory to overlap blocks (smem-bound, 529 against 774 TOPS), 256 weight rows a CTA (one
// CTA a multiprocessor: nothing hides the per-block barrier).
// ---------------------------------------------------------------------------------------------------------------

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ROTOR_WGMMA 1
#else
#define ROTOR_WGMMA 0
#endif

#if ROTOR_WGMMA  // the helpers exist only where wgmma does
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Matrix descriptor, K-major with 128-byte swizzle: rows of 128 bytes whose 16-byte chunk c sits at c ^ (row % 8),
// 8-row groups 1024 bytes apart (the stride byte offset); the leading byte offset is unused (1). The start address
// may point inside a row (the k32 steps of a 128-byte row): the swizzle is applied to the final address bits, so
// the 8-row atoms must be 1024-byte aligned.
__device__ __forceinline__ uint64_t wg_desc_sw128(unsigned saddr) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// cp.async (generic proxy) writes become visible to wgmma (async proxy) reads.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Keeps the compiler from moving accesses of the accumulators across the asynchronous wgmma.
template <int R>
__device__ __forceinline__ void fence_regs(int (&d)[R]) {
#pragma unroll
    for (int i = 0; i < R; i++) asm volatile("" : "+r"(d[i])::"memory");
}

// D (64 x 64, s32) += A (64 x 32 s8, registers) * B (64 x 32 s8, K-major in shared memory, descriptor db).
__device__ __forceinline__ void wgmma_rs_n64(int (&d)[32], unsigned a0, unsigned a1, unsigned a2, unsigned a3, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, {%32, %33, %34, %35}, %36, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));  // scale-d = 1: D += A * B
}

// D (64 x 80, s32) += A (64 x 32 s8, registers) * B (80 x 32 s8, K-major in shared memory, descriptor db).
__device__ __forceinline__ void wgmma_rs_n80(int (&d)[40], unsigned a0, unsigned a1, unsigned a2, unsigned a3, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %45, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n80k32.s32.s8.s8 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39"
        "}, {%40, %41, %42, %43}, %44, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));  // scale-d = 1: D += A * B
}

// D (64 x 96, s32) += A (64 x 32 s8, registers) * B (96 x 32 s8, K-major in shared memory, descriptor db).
__device__ __forceinline__ void wgmma_rs_n96(int (&d)[48], unsigned a0, unsigned a1, unsigned a2, unsigned a3, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %53, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n96k32.s32.s8.s8 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
        "}, {%48, %49, %50, %51}, %52, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));  // scale-d = 1: D += A * B
}

// D (64 x 128, s32) += A (64 x 32 s8, registers) * B (128 x 32 s8, K-major in shared memory, descriptor db).
__device__ __forceinline__ void wgmma_rs_n128(int (&d)[64], unsigned a0, unsigned a1, unsigned a2, unsigned a3, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, {%64, %65, %66, %67}, %68, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
          "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
          "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));  // scale-d = 1: D += A * B
}

template <int N>
__device__ __forceinline__ void wgmma_rs(int (&d)[N / 2], unsigned a0, unsigned a1, unsigned a2, unsigned a3, uint64_t db) {
    static_assert(N == 64 || N == 80 || N == 96 || N == 128, "wgmma N");
    if constexpr (N == 64) wgmma_rs_n64(d, a0, a1, a2, a3, db);
    else if constexpr (N == 80) wgmma_rs_n80(d, a0, a1, a2, a3, db);
    else if constexpr (N == 96) wgmma_rs_n96(d, a0, a1, a2, a3, db);
    else wgmma_rs_n128(d, a0, a1, a2, a3, db);
}
#endif  // ROTOR_WGMMA

template <int BM_, int STAGES_>
struct WgConfig {
    static constexpr int BM = BM_, STAGES = STAGES_, MIN_BLOCKS = 2;
    static constexpr int BN = 128, kThreads = 256, kWStride = 80;
    static constexpr int kXBytes = BM * 256;
    static constexpr int kWBytes = BN * kWStride;
    static constexpr int kStageBytes = kXBytes + kWBytes;
    static constexpr int kSmem = STAGES * kStageBytes;
    static_assert(STAGES >= 2, "pipeline depth");
    static_assert(kSmem <= 227 * 1024 && kSmem * MIN_BLOCKS <= 228 * 1024, "shared memory");
    static_assert(kStageBytes % 1024 == 0, "swizzle atoms 1024-byte aligned");
};

// The configurations (weight rows x activation rows), indexed as the path ROTOR_PATH_TILED_CFG0 + 3 + i.
using Wg0 = WgConfig<128, 2>;  // 128 x 128, 84 KB, one block ahead
using Wg1 = WgConfig<96, 3>;   // 128 x 96, 96 KB, two blocks ahead
using Wg2 = WgConfig<64, 4>;   // 128 x 64, 104 KB, three blocks ahead
using Wg3 = WgConfig<80, 3>;   // 128 x 80, 90 KB, two blocks ahead: 2048 / 80 = 25.6 tiles fill two waves of 2560 rows
constexpr int kWgConfigs = 4;

#if ROTOR_WGMMA
// Copies K block kb into stage memory st (x then w), thread `first` of `count` taking every count-th 16 bytes.
template <class C>
__device__ __forceinline__ void wg_load(const rotor_gemm_args& a, unsigned char* st, int kb, int m0, int n0, int first,
                                        int count) {
    // 8 consecutive threads: the 8 chunks of one row's half block, 128 contiguous bytes either side.
    for (int id = first; id < C::BM * 16; id += count) {
        const int cc = id & 7, r = (id >> 3) % C::BM, half = (id >> 3) / C::BM, i = m0 + r;
        const bool ok = i < a.m;
        cp_async16(st + half * C::BM * 128 + r * 128 + ((cc ^ (r & 7)) << 4),
                   a.x + (size_t)(ok ? i : 0) * a.x_stride + (size_t)kb * 256 + 128 * half + 16 * cc, ok);
    }
    unsigned char* ws = st + C::kXBytes;
    for (int id = first; id < C::BN * 4; id += count) {
        const int r = id >> 2, c = id & 3, row = n0 + r;
        const bool ok = row < a.n;
        cp_async16(ws + r * C::kWStride + 16 * c, a.w + (size_t)(ok ? row : 0) * a.row_bytes + (size_t)kb * 64 + 16 * c, ok);
    }
}

// The packed words a thread needs of one K block: words t + 4j of rows wrow and wrow + 8 of the stage.
template <class C>
__device__ __forceinline__ void wg_words(unsigned (&p0)[4], unsigned (&p1)[4], const unsigned char* st, int wrow, int t) {
    const unsigned char* w0 = st + C::kXBytes + wrow * C::kWStride + 4 * t;
    const unsigned char* w1 = w0 + 8 * C::kWStride;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        p0[j] = *reinterpret_cast<const unsigned*>(w0 + 16 * j);
        p1[j] = *reinterpret_cast<const unsigned*>(w1 + 16 * j);
    }
}

// One K block of one warpgroup: the A fragments sliced from the packed words, and 8 wgmmas committed as one group;
// the caller waits for them (see above).
template <class C>
__device__ __forceinline__ void wg_issue(int (&acc)[C::BM / 2], const unsigned char* st, const unsigned (&p0)[4],
                                         const unsigned (&p1)[4]) {
    unsigned af[8][4];
#pragma unroll
    for (int s = 0; s < 8; s++) {
        const int q = s >> 1, h = s & 1;
        af[s][0] = slice(p0[2 * h], q);
        af[s][1] = slice(p1[2 * h], q);
        af[s][2] = slice(p0[2 * h + 1], q);
        af[s][3] = slice(p1[2 * h + 1], q);
    }
    const unsigned xbase = smem_u32(st);
    wg_fence();
    fence_regs(acc);
#pragma unroll
    for (int s = 0; s < 8; s++)
        wgmma_rs<C::BM>(acc, af[s][0], af[s][1], af[s][2], af[s][3], wg_desc_sw128(xbase + (s >> 2) * C::BM * 128 + (s & 3) * 32));
    wg_commit();
    fence_regs(acc);
}

// acc[4j + e]: weight row `row` + 8 (e >> 1), activation row m0 + 8j + 2t + (e & 1).
template <class C>
__device__ __forceinline__ void wg_epilogue(const rotor_gemm_args& a, const int (&acc)[C::BM / 2], int m0, int row, int t) {
    const bool bias = a.bias != nullptr;
    const int r0 = min(row, a.n - 1), r1 = min(row + 8, a.n - 1);
    const float ws0 = a.w_scale[(size_t)r0 * a.w_scale_stride], ws1 = a.w_scale[(size_t)r1 * a.w_scale_stride];
    const float b0 = bias ? a.bias[r0] : 0.f, b1 = bias ? a.bias[r1] : 0.f;
#pragma unroll
    for (int j = 0; j < C::BM / 8; j++) {
        const int col = m0 + 8 * j + 2 * t;
        const int c0 = min(col, a.m - 1), c1 = min(col + 1, a.m - 1);
        const float xs0 = a.x_scale[c0], xs1 = a.x_scale[c1];
        const int xm0 = a.x_sum[c0], xm1 = a.x_sum[c1];
        float v[4];
        v[0] = __fmul_rn(__fmul_rn(__int2float_rn(acc[4 * j + 0] - xm0), xs0), ws0);
        v[1] = __fmul_rn(__fmul_rn(__int2float_rn(acc[4 * j + 1] - xm1), xs1), ws0);
        v[2] = __fmul_rn(__fmul_rn(__int2float_rn(acc[4 * j + 2] - xm0), xs0), ws1);
        v[3] = __fmul_rn(__fmul_rn(__int2float_rn(acc[4 * j + 3] - xm1), xs1), ws1);
        if (bias) { v[0] = __fadd_rn(v[0], b0); v[1] = __fadd_rn(v[1], b0); v[2] = __fadd_rn(v[2], b1); v[3] = __fadd_rn(v[3], b1); }
        if (row < a.n && col < a.m) a.y[(size_t)col * a.y_stride + row] = apply_act(v[0], a.act);
        if (row < a.n && col + 1 < a.m) a.y[(size_t)(col + 1) * a.y_stride + row] = apply_act(v[1], a.act);
        if (row + 8 < a.n && col < a.m) a.y[(size_t)col * a.y_stride + row + 8] = apply_act(v[2], a.act);
        if (row + 8 < a.n && col + 1 < a.m) a.y[(size_t)(col + 1) * a.y_stride + row + 8] = apply_act(v[3], a.act);
    }
}
#endif  // ROTOR_WGMMA

// With 3 or more stages the barrier, the copies of a later block and the next block's packed words all happen while
// a block's wgmmas run: only the 32 slices sit between a block's wait and the next block's wgmmas. With 2 (the
// 128-row tile: two CTAs have the shared memory for no more) the stage to refill is free only once the previous
// block's wgmmas are done, so everything runs in step (the overlapped form with two barriers a block measured 7-12%
// slower there, the in-step form 2-5% slower for the 96- and 64-row tiles).
template <class C>
__global__ void __launch_bounds__(C::kThreads, C::MIN_BLOCKS) wgmma_kernel(rotor_gemm_args a) {
#if ROTOR_WGMMA
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    unsigned char* const smem = wg_smem;
    const int tid = threadIdx.x, lane = tid & 31, t = lane & 3;
    const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
    // This thread's first weight row in the tile (the second is + 8): warpgroup, warp, group g.
    const int wrow = 64 * (tid >> 7) + 16 * ((tid >> 5) & 3) + (lane >> 2);
    auto stage = [&](int kb) { return smem + (kb % C::STAGES) * C::kStageBytes; };
    int acc[C::BM / 2];
#pragma unroll
    for (int j = 0; j < C::BM / 2; j++) acc[j] = 0;

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) {
        if (s < a.k_blocks) wg_load<C>(a, stage(s), s, m0, n0, tid, C::kThreads);
        cp_async_commit();
    }
    if constexpr (C::STAGES >= 3) {
        cp_async_wait<C::STAGES - 2>();  // block 0 (this thread's copies) ...
        fence_proxy_async();             // ... visible to wgmma ...
        __syncthreads();                 // ... for everyone's copies
        unsigned p0[4], p1[4];           // packed words t + 4j of rows wrow and wrow + 8 of the next block
        wg_words<C>(p0, p1, stage(0), wrow, t);
        for (int kb = 0; kb < a.k_blocks; kb++) {
            wg_issue<C>(acc, stage(kb), p0, p1);
            if (kb + 1 < a.k_blocks) {
                cp_async_wait<C::STAGES - 3>();  // block kb + 1 (this thread's copies)
                fence_proxy_async();
                __syncthreads();  // everyone's copies of kb + 1; every wgmma of kb - 1 done: its stage is free
                const int nk = kb + C::STAGES - 1;
                if (nk < a.k_blocks) wg_load<C>(a, stage(nk), nk, m0, n0, tid, C::kThreads);
                cp_async_commit();
                wg_words<C>(p0, p1, stage(kb + 1), wrow, t);
            }
            wg_wait<0>();
            fence_regs(acc);
        }
    } else {
        for (int kb = 0; kb < a.k_blocks; kb++) {
            cp_async_wait<C::STAGES - 2>();  // block kb has landed (this thread's copies) ...
            fence_proxy_async();             // ... is visible to wgmma ...
            __syncthreads();                 // ... for everyone's copies; the stage written next is no longer read
            const int nk = kb + C::STAGES - 1;
            if (nk < a.k_blocks) wg_load<C>(a, stage(nk), nk, m0, n0, tid, C::kThreads);
            cp_async_commit();
            unsigned p0[4], p1[4];
            wg_words<C>(p0, p1, stage(kb), wrow, t);
            wg_issue<C>(acc, stage(kb), p0, p1);
            wg_wait<0>();
            fence_regs(acc);
        }
    }
    cp_async_wait<0>();
    wg_epilogue<C>(a, acc, m0, n0 + wrow, t);
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Warp-specialized wgmma GEMM (sm_90a): one CTA a multiprocessor, persistent over the tiles. NWG consumer
// warpgroups own 64 weight rows each (BN = 64 NWG) of a tile of BM activation rows; one producer warp copies each
// K block with the tensor memory accelerator (cp.async.bulk.tensor, CUtensorMaps built on the host) into a
// STAGES-deep ring: x as two boxes of BM rows x 128 bytes with the 128-byte swizzle the wgmma descriptor reads (the
// same layout as wgmma_kernel's), the packed weights as one box of BN rows x 64 bytes with the 64-byte swizzle (16-byte
// chunk c of row r at c ^ ((r / 2) % 4): the 8 rows of a warp's 32-bit reads hit 8 disjoint groups of 4 banks).
// Stage s is full when its mbarrier has counted the bytes of the three copies, and free again when every consumer
// warp has arrived on its second mbarrier after its wgmmas on it completed. No __syncthreads in the main loop: the
// warpgroups run out of step, so one's slicing, waiting and epilogue hide under another's wgmmas, and the producer
// runs up to STAGES blocks ahead, into the next tile while the consumers store the last one's results.
// ---------------------------------------------------------------------------------------------------------------

template <int NWG_, int BM_, int STAGES_>
struct WsConfig {
    static constexpr int NWG = NWG_, BM = BM_, STAGES = STAGES_;
    static constexpr int BN = 64 * NWG, kThreads = 128 * NWG + 32;
    static constexpr int kXBytes = BM * 256, kWBytes = BN * 64;
    static constexpr int kStageBytes = kXBytes + kWBytes;
    static constexpr int kSmem = STAGES * kStageBytes + 16 * STAGES;  // + the mbarriers
    static_assert(kSmem <= 227 * 1024, "shared memory");
    static_assert(kStageBytes % 1024 == 0 && (BM * 128) % 1024 == 0, "swizzle atoms 1024-byte aligned");
    static_assert(BM <= 256 && BN <= 256, "TMA box");
};

// The configurations, indexed as the path ROTOR_PATH_TILED_CFG0 + 3 + kWgConfigs + i.
using Ws0 = WsConfig<4, 128, 4>;  // 256 x 128, 192 KB
using Ws1 = WsConfig<4, 80, 6>;   // 256 x 80, 216 KB
using Ws2 = WsConfig<4, 96, 5>;   // 256 x 96, 200 KB
using Ws3 = WsConfig<2, 128, 5>;  // 128 x 128, 200 KB
constexpr int kWsConfigs = 4;

#if ROTOR_WGMMA
__device__ __forceinline__ void mbar_init(unsigned mb, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mb), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned mb) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(mb) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(unsigned mb, int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mb), "r"(bytes) : "memory");
}
// Waits for the phase of the given parity to complete, the loop inside one asm block (as CUTLASS does; the same
// speed as a C++ loop on H200, run 22).
__device__ __forceinline__ void mbar_wait(unsigned mb, unsigned parity) {
    asm volatile("{\n.reg .pred p;\nLAB_WAIT:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@p bra DONE;\nbra LAB_WAIT;\nDONE:\n}\n"
                 ::"r"(mb), "r"(parity) : "memory");
}
__device__ __forceinline__ void tma_2d(unsigned dst, const CUtensorMap* map, int c0, int c1, unsigned mb) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
                 ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(mb) : "memory");
}

// Words t + 4j of rows wrow and wrow + 8 of the stage's weights (64-byte rows, 64-byte swizzle).
template <class C>
__device__ __forceinline__ void ws_words(unsigned (&p0)[4], unsigned (&p1)[4], const unsigned char* st, int wrow, int t) {
    const unsigned char* w0 = st + C::kXBytes + wrow * 64 + 4 * t;
    const unsigned char* w1 = w0 + 8 * 64;
    const int sw0 = (wrow >> 1) & 3, sw1 = ((wrow + 8) >> 1) & 3;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        p0[j] = *reinterpret_cast<const unsigned*>(w0 + 16 * (j ^ sw0));
        p1[j] = *reinterpret_cast<const unsigned*>(w1 + 16 * (j ^ sw1));
    }
}
#endif

#if CUDA_VERSION >= 12000  // CUtensorMap
template <class C>
__global__ void __launch_bounds__(C::kThreads, 1)
    ws_kernel(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw, rotor_gemm_args a) {
#if ROTOR_WGMMA
    extern __shared__ __align__(1024) unsigned char ws_smem[];
    unsigned char* const smem = ws_smem;
    const unsigned full0 = smem_u32(smem + C::STAGES * C::kStageBytes), empty0 = full0 + 8 * C::STAGES;
    const int tid = threadIdx.x, lane = tid & 31;
    const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0);  // warp-uniform, as the compiler can see
    const int mt = (a.m + C::BM - 1) / C::BM, tiles = mt * ((a.n + C::BN - 1) / C::BN);
    if (tid == 0) {
        for (int s = 0; s < C::STAGES; s++) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, 4 * C::NWG);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (warp == 4 * C::NWG) {  // the producer
        if (lane == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tx)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tw)) : "memory");
            int it = 0;
            for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
                const int m0 = (tile % mt) * C::BM, n0 = (tile / mt) * C::BN;
                for (int kb = 0; kb < a.k_blocks; kb++, it++) {
                    const int s = it % C::STAGES;
                    mbar_wait(empty0 + 8 * s, ((it / C::STAGES) & 1) ^ 1);
                    const unsigned full = full0 + 8 * s, st = smem_u32(smem + s * C::kStageBytes);
                    mbar_expect_tx(full, C::kStageBytes);
                    tma_2d(st, &tx, kb * 256, m0, full);
                    tma_2d(st + C::BM * 128, &tx, kb * 256 + 128, m0, full);
                    tma_2d(st + C::kXBytes, &tw, kb * 64, n0, full);
                }
            }
        }
        return;
    }
    const int t = lane & 3;
    const int wrow = 64 * (warp >> 2) + 16 * (warp & 3) + (lane >> 2);
    int it = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int m0 = (tile % mt) * C::BM, n0 = (tile / mt) * C::BN;
        int acc[C::BM / 2];
#pragma unroll
        for (int j = 0; j < C::BM / 2; j++) acc[j] = 0;
        unsigned p0[4], p1[4];
        {
            const int s = it % C::STAGES;
            mbar_wait(full0 + 8 * s, (it / C::STAGES) & 1);
            ws_words<C>(p0, p1, smem + s * C::kStageBytes, wrow, t);
        }
        for (int kb = 0; kb < a.k_blocks; kb++, it++) {
            const int s = it % C::STAGES;
            wg_issue<C>(acc, smem + s * C::kStageBytes, p0, p1);
            if (kb + 1 < a.k_blocks) {  // the next block's words while the wgmmas run
                const int s1 = (it + 1) % C::STAGES;
                mbar_wait(full0 + 8 * s1, ((it + 1) / C::STAGES) & 1);
                ws_words<C>(p0, p1, smem + s1 * C::kStageBytes, wrow, t);
            }
            wg_wait<0>();
            fence_regs(acc);
            __syncwarp();
            if (lane == 0) mbar_arrive(empty0 + 8 * s);
        }
        wg_epilogue<C>(a, acc, m0, n0 + wrow, t);
    }
#endif
}
#endif  // CUDA_VERSION >= 12000

// 1 in the sm_90a image (wgmma compiled in), 0 in every other.
__global__ void wgmma_probe_kernel(int* out) { *out = ROTOR_WGMMA; }


bool g_wgmma = false;  // the device runs the sm_90a image: the wgmma kernels exist (rotor_cuda_init)
bool g_bulk = false;   // the device runs an image with the bulk-copy GEMV (probe_bulk, from rotor_cuda_init)
// Auto's newer choices, which ROTOR_CUDA_WG80=0 and ROTOR_CUDA_GEMV_BULK=0 turn off (rotor_cuda_init): the
// 128 x 80 wgmma tile, the bulk-copy GEMV on grids of fewer than 4 CTAs a multiprocessor.
bool g_auto_wg80 = true, g_auto_gemv_bulk = true;
// The register-load GEMV (m <= 8) with the L2 prefetch-size hint (ROTOR_CUDA_L2PF=1; an experiment, off by default).
int g_l2pf_mode = -1;  // gemv8_kernel: -1 = the hint on large grids only (default), 1 = always (ROTOR_CUDA_L2PF=1), 0 = never
// ROTOR_CUDA_GEMV_OLD=1: the previous register GEMV (gemv_kernel) for m <= 8, for comparisons.
bool g_gemv_old = false;

bool env_off(const char* name) {
    const char* v = getenv(name);
    return v != nullptr && (strcmp(v, "0") == 0 || strcmp(v, "off") == 0);
}

template <class C>
int launch_wgmma(const rotor_gemm_args& a, cudaStream_t s) {
    if (!g_wgmma) return fail(ROTOR_CUDA_EINVAL, "gemm: the wgmma kernels need compute capability 9.0 and a library built for sm_90a");
    const dim3 grid((a.m + C::BM - 1) / C::BM, (a.n + C::BN - 1) / C::BN);
    if (grid.y > 65535) return fail(ROTOR_CUDA_EINVAL, "n = %d needs %u row tiles, more than 65535", a.n, grid.y);
    return launch_plain(wgmma_kernel<C>, grid, dim3(C::kThreads), C::kSmem, s, "wgmma_kernel", a);
}

template <class C>
int prepare_wgmma() {
    CK(cudaFuncSetAttribute(wgmma_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return 0;
}

bool g_ws = false;       // the warp-specialized TMA kernels exist (g_wgmma and the encoder found)
bool g_auto_ws = true;   // auto may take them (ROTOR_CUDA_WS=0 turns this off)
// Auto's estimate of a warp-specialized tile (launch_gemm): BM + kWsFixed, times kWsUnit on the scale of wgmma_kernel's.
constexpr long long kWsFixed = 40, kWsUnit = 52;

#if CUDA_VERSION >= 12000
// cuTensorMapEncodeTiled, from the runtime's driver entry point (probe_wgmma): no link against libcuda.
typedef CUresult (*TensorMapEncodeFn)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                      const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                      CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
TensorMapEncodeFn g_encode = nullptr;

// A 2-D map of uint8: rows of `cols` bytes, `stride` bytes apart; boxes of box_cols x box_rows.
int tensor_map(CUtensorMap* map, const void* base, int cols, int rows, int stride, int box_cols, int box_rows,
               CUtensorMapSwizzle sw, const char* what) {
    const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)stride};
    const cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows};
    const cuuint32_t estr[2] = {1, 1};
    const CUresult r = g_encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, estr,
                                CU_TENSOR_MAP_INTERLEAVE_NONE, sw, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return fail(ROTOR_CUDA_EINVAL, "cuTensorMapEncodeTiled (%s: %d x %d bytes, stride %d, box %d x %d): error %d", what,
                    rows, cols, stride, box_rows, box_cols, (int)r);
    return 0;
}

template <class C>
int launch_ws(const rotor_gemm_args& a, cudaStream_t s) {
    if (!g_ws) return fail(ROTOR_CUDA_EINVAL, "gemm: the warp-specialized wgmma kernels need compute capability 9.0, a library built for sm_90a and a driver with cuTensorMapEncodeTiled");
    CUtensorMap tx, tw;
    int r;
    if ((r = tensor_map(&tx, a.x, a.k_blocks * 256, a.m, a.x_stride, 128, C::BM, CU_TENSOR_MAP_SWIZZLE_128B, "x")) != 0) return r;
    if ((r = tensor_map(&tw, a.w, a.k_blocks * 64, a.n, a.row_bytes, 64, C::BN, CU_TENSOR_MAP_SWIZZLE_64B, "w")) != 0) return r;
    const long long n_tiles = (long long)((a.m + C::BM - 1) / C::BM) * ((a.n + C::BN - 1) / C::BN);
    if (n_tiles > INT32_MAX) return fail(ROTOR_CUDA_EINVAL, "gemm: %lld tiles", n_tiles);
    const int grid = (int)std::min<long long>(n_tiles, g_sms);
    return launch_plain(ws_kernel<C>, dim3(grid), dim3(C::kThreads), C::kSmem, s, "ws_kernel", tx, tw, a);
}

template <class C>
int prepare_ws() {
    CK(cudaFuncSetAttribute(ws_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return 0;
}

// Finds cuTensorMapEncodeTiled and sets g_ws (after g_wgmma is known).
int probe_ws() {
    g_ws = false;
    if (!g_wgmma) return 0;
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
#else
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault);
    q = cudaDriverEntryPointSuccess;
#endif
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || fn == nullptr) {
        cudaGetLastError();
        return 0;
    }
    g_encode = reinterpret_cast<TensorMapEncodeFn>(fn);
    int r;
    if ((r = prepare_ws<Ws0>()) != 0) return r;
    if ((r = prepare_ws<Ws1>()) != 0) return r;
    if ((r = prepare_ws<Ws2>()) != 0) return r;
    if ((r = prepare_ws<Ws3>()) != 0) return r;
    g_ws = true;
    return 0;
}
#else
template <class C>
int launch_ws(const rotor_gemm_args&, cudaStream_t) {
    return fail(ROTOR_CUDA_EINVAL, "gemm: the warp-specialized wgmma kernels need a library built with CUDA 12 or newer");
}
int probe_ws() { g_ws = false; return 0; }
#endif  // CUDA_VERSION >= 12000

// Sets g_wgmma: true when the device is 9.0 and runs the sm_90a code of this library.
int probe_wgmma(const cudaDeviceProp& p) {
    g_wgmma = false;
    const char* off = getenv("ROTOR_CUDA_WGMMA");
    if (off != nullptr && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0)) return 0;
    if (p.major != 9 || p.minor != 0 || p.sharedMemPerBlockOptin < (size_t)Wg2::kSmem) return 0;  // the largest
    int* d = nullptr;
    int h = 0;
    CK(cudaMalloc(&d, sizeof(int)));
    cudaError_t e = cudaMemset(d, 0, sizeof(int));
    if (e == cudaSuccess) {
        wgmma_probe_kernel<<<1, 1>>>(d);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) return cuda_fail(e, "wgmma probe");
    if (h != 1) return 0;
    int r;
    if ((r = prepare_wgmma<Wg0>()) != 0) return r;
    if ((r = prepare_wgmma<Wg1>()) != 0) return r;
    if ((r = prepare_wgmma<Wg2>()) != 0) return r;
    if ((r = prepare_wgmma<Wg3>()) != 0) return r;
    g_wgmma = true;
    return probe_ws();
}

template <int NT, int WARPS, int U, int MIN_BLOCKS, bool EARLY = false>
int launch_gemv_cfg(const rotor_gemm_args& a, cudaStream_t s) {
    if (g_l2pf_mode == 1)
        return launch(gemv_kernel<NT, WARPS, U, MIN_BLOCKS, EARLY, true>, dim3((a.n + 15) / 16), dim3(32 * WARPS), 0, s, "gemv_kernel", a);
    return launch(gemv_kernel<NT, WARPS, U, MIN_BLOCKS, EARLY>, dim3((a.n + 15) / 16), dim3(32 * WARPS), 0, s, "gemv_kernel", a);
}

// m <= 8 with the register-load kernels: gemv8_kernel where K is a multiple of 16 blocks, else gemv_kernel. The L2
// prefetch-size hint is on by default for gemv8_kernel where the next kernel launches at entry (the large grids: H100
// run 24, 16384x4096 m = 1 from DRAM 7.54 -> 7.35 us, L2-resident 4.88 -> 5.12 us); ROTOR_CUDA_L2PF=1 / 0: always /
// never; ROTOR_CUDA_GEMV_OLD=1: gemv_kernel for every K (for comparisons).
bool gemv8_fits(const rotor_gemm_args& a) { return !g_gemv_old && a.m <= 8 && a.k_blocks % 16 == 0; }

template <bool EARLY>
int launch_gemv8(const rotor_gemm_args& a, cudaStream_t s) {
    if (!gemv8_fits(a)) return launch_gemv_cfg<1, 4, 4, 8, EARLY>(a, s);
    const dim3 grid((a.n + 15) / 16);
    if (g_l2pf_mode == 1 || (EARLY && g_l2pf_mode < 0)) return launch(gemv8_kernel<EARLY, true>, grid, dim3(128), 0, s, "gemv8_kernel", a);
    return launch(gemv8_kernel<EARLY, false>, grid, dim3(128), 0, s, "gemv8_kernel", a);
}


bool g_wide_ep = true;  // ROTOR_CUDA_WIDE_EP=0: the wide GEMV loads its epilogue's operands after the product (as before)

template <int NT>
int launch_gemv_wide(const rotor_gemm_args& a, cudaStream_t s) {
    // The early epilogue loads only where a warp has at most one step of two blocks: with more (4096 columns) their
    // registers cost the loop more than they save (H100 run 35: 4096x4096 m = 32 6.04 against 5.75 us).
    if (!g_wide_ep || a.k_blocks >= 2 * kGemvWarps) return launch(gemv_wide_kernel<NT, false, false>, dim3((a.n + 15) / 16), dim3(32 * kGemvWarps), 0, s, "gemv_wide_kernel", a, QArgs{});
    return launch(gemv_wide_kernel<NT, false>, dim3((a.n + 15) / 16), dim3(32 * kGemvWarps), 0, s, "gemv_wide_kernel", a, QArgs{});
}

bool g_gemm_q = true;  // ROTOR_CUDA_GEMM_Q=0: rotor_cuda_gemm_q_fits says 0

// rotor_cuda_gemm_q: the wide GEMV with the quantization tail, where every CTA can be resident at once (one a
// multiprocessor at least) and there is a CTA for every activation row.
bool gemm_q_fits(int n, int m) { return g_gemm_q && m >= 1 && m <= 64 && (n + 15) / 16 <= g_sms && m <= (n + 15) / 16; }

int launch_gemm_q(const rotor_gemm_args& a, const QArgs& q, cudaStream_t s) {
    const dim3 grid((a.n + 15) / 16), block(32 * kGemvWarps);
    if (a.m <= 16) return launch(gemv_wide_kernel<2, true>, grid, block, 0, s, "gemv_wide_kernel<q>", a, q);
    if (a.m <= 32) return launch(gemv_wide_kernel<4, true>, grid, block, 0, s, "gemv_wide_kernel<q>", a, q);
    return launch(gemv_wide_kernel<8, true>, grid, block, 0, s, "gemv_wide_kernel<q>", a, q);
}

// 1 in an image with the bulk-copy GEMV compiled in (sm_90 and newer, CUDA 12 or newer), 0 in every other.
__global__ void bulk_probe_kernel(int* out) { *out = ROTOR_BULK; }

int prepare_sk();  // below: the split-K cluster GEMV's shared-memory limits

// Sets g_bulk: true when the device runs an image of this library with the bulk-copy GEMV compiled in.
int probe_bulk(const cudaDeviceProp& p) {
    g_bulk = false;
    if (p.major < 9) return 0;
    int* d = nullptr;
    int h = 0;
    CK(cudaMalloc(&d, sizeof(int)));
    cudaError_t e = cudaMemset(d, 0, sizeof(int));
    if (e == cudaSuccess) {
        bulk_probe_kernel<<<1, 1>>>(d);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) return cuda_fail(e, "bulk-copy probe");
    if (h != 1) return 0;
    // A tile of 48 KB and the static arrays exceed the default limit of 48 KB a CTA.
    CK(cudaFuncSetAttribute(gemv_bulk_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBulkMaxSmem));
    CK(cudaFuncSetAttribute(gemv_bulk_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBulkMaxSmem));
    int r = prepare_sk();
    if (r != 0) return r;
    g_bulk = true;
    return 0;
}

bool bulk_fits(const rotor_gemm_args& a) { return g_bulk && a.m <= 8 && 16 * bulk_stride(a.k_blocks) <= kBulkMaxSmem; }

// The bulk-copy GEMV (m <= 8, K up to 47 blocks): the next kernel may launch at entry where the grid has 4 or more
// CTAs a multiprocessor, as for gemv_kernel.
int launch_gemv_bulk(const rotor_gemm_args& a, cudaStream_t s) {
    if (!bulk_fits(a))
        return fail(ROTOR_CUDA_EINVAL, "gemm: the bulk-copy GEMV takes m <= 8 and k_blocks <= 47 on compute capability 9.0+, got m = %d, k_blocks = %d",
                    a.m, a.k_blocks);
    const int grid = (a.n + 15) / 16, smem = 16 * bulk_stride(a.k_blocks);
    if (grid >= 4 * g_sms) return launch(gemv_bulk_kernel<true>, dim3(grid), dim3(128), smem, s, "gemv_bulk_kernel", a);
    return launch(gemv_bulk_kernel<false>, dim3(grid), dim3(128), smem, s, "gemv_bulk_kernel", a);
}

// The split-K cluster GEMV (gemv_sk_kernel): m <= 64, K up to 32 blocks, on devices running the sm_90 image (g_bulk).
// KPC: the fewest K blocks a CTA that keeps the cluster within 8 CTAs; NT: 8-row activation tiles for m.
bool g_auto_sk = true;  // ROTOR_CUDA_SK=0: no fused products (rotor_cuda_fq_fits says 0: CudaNetwork keeps the quantize kernels)
int g_sk_trigger = 0;   // ROTOR_CUDA_SK_TRIGGER: FqArgs::trigger
unsigned long long* g_sk_dbg = nullptr;  // ROTOR_CUDA_SK_DEBUG=1: 4096 CTAs x 10 stamps (see SK_STAMP)
unsigned g_sk_dbg_grid[2] = {0, 0};      // the grid of the last launch recorded
constexpr int kSkDbgCtas = 4096;

// Prints, per phase of the split-K GEMV, the minimum / median / maximum over the CTAs of the last launch (cycles),
// and the spread of their start and end times (ns).
void sk_debug_dump() {
    if (g_sk_dbg == nullptr) return;
    const unsigned n = std::min<unsigned>(g_sk_dbg_grid[0] * g_sk_dbg_grid[1], kSkDbgCtas);
    std::vector<unsigned long long> h((size_t)kSkDbgCtas * 10);
    if (cudaMemcpy(h.data(), g_sk_dbg, h.size() * 8, cudaMemcpyDeviceToHost) != cudaSuccess || n == 0) return;
    unsigned long long g0 = ~0ull;
    for (unsigned c = 0; c < n; c++) g0 = std::min(g0, h[c * 10 + 8]);
    const char* names[10] = {"wait", "stage x", "mma", "cluster sync", "reduce+epilogue", "amax", "final sync", "", "start ns", "end ns"};
    fprintf(stderr, "sk debug: grid %u x %u, last launch recorded\n", g_sk_dbg_grid[0], g_sk_dbg_grid[1]);
    for (int k = 0; k < 10; k++) {
        if (k == 7) continue;
        std::vector<long long> v;
        for (unsigned c = 0; c < n; c++) {
            const unsigned long long* d = &h[c * 10];
            v.push_back(k < 7 ? (long long)(d[k + 1] - d[k]) : (long long)(d[k] - g0));
        }
        std::sort(v.begin(), v.end());
        fprintf(stderr, "  %-16s min %8lld  median %8lld  max %8lld\n", names[k], v.front(), v[v.size() / 2], v.back());
    }
}

bool g_quant_warp = true;  // ROTOR_CUDA_QUANT_WARP=0: quantize_kernel for every row length (for comparisons)
bool g_fq_cluster = true;  // ROTOR_CUDA_FQ_CLUSTER=0: the fused product adds its slices through the caller's workspace
bool sk_fits(int m, int k_blocks) { return g_bulk && m >= 1 && m <= 64 && k_blocks >= 1 && k_blocks <= kSkMaxBlocks; }
int sk_kpc(int k_blocks) { return k_blocks <= kSkMaxCluster ? 1 : k_blocks <= 2 * kSkMaxCluster ? 2 : 4; }

// Bytes of the workspace of the form without clusters: the partial tiles of every slice, then a counter a row tile.
// The counters come first, at fixed places (products of other shapes may share the workspace).
constexpr int kSkMaxTiles = 1024;  // row tiles: n <= 131072
size_t sk_work_bytes(int n, int m, int k_blocks) {
    const size_t nt = m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8, tiles = (size_t)(n + kSkRows - 1) / kSkRows;
    const size_t kpc = (size_t)sk_kpc(k_blocks), slices = ((size_t)k_blocks + kpc - 1) / kpc;
    return (kSkMaxTiles + tiles * slices * nt * kSkRows * 8) * sizeof(int);
}

template <int NT, int KPC, bool FQ>
int launch_sk3(const rotor_gemm_args& a, const FqArgs& f, cudaStream_t s) {
    const unsigned cs = (unsigned)((a.k_blocks + KPC - 1) / KPC);
    const bool cl = f.work == nullptr;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((a.n + kSkRows - 1) / kSkRows), cs);
    cfg.blockDim = dim3(32 * kSkWarps);
    cfg.dynamicSmemBytes = sk_smem(NT, KPC);
    cfg.stream = s;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = cs;
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = cl ? attr : attr + 1;
    cfg.numAttrs = (cl ? 1 : 0) + (g_pdl ? 1 : 0);
    FqArgs f2 = f;
    f2.trigger = g_sk_trigger;
    f2.dbg = g_sk_dbg;
    g_sk_dbg_grid[0] = cfg.gridDim.x;
    g_sk_dbg_grid[1] = cfg.gridDim.y;
    cudaError_t e;
    if constexpr (FQ) {
        if (!cl) {
            f2.count = f.work;
            f2.work = f.work + kSkMaxTiles;
            e = cudaLaunchKernelEx(&cfg, gemv_sk_kernel<NT, KPC, true, false>, a, f2);
        } else {
            e = cudaLaunchKernelEx(&cfg, gemv_sk_kernel<NT, KPC, true, true>, a, f2);
        }
    } else {
        e = cudaLaunchKernelEx(&cfg, gemv_sk_kernel<NT, KPC, false, true>, a, f2);
    }
    return e == cudaSuccess ? 0 : cuda_fail(e, "gemv_sk_kernel");
}
template <int NT, bool FQ>
int launch_sk2(const rotor_gemm_args& a, const FqArgs& f, cudaStream_t s) {
    switch (sk_kpc(a.k_blocks)) {
        case 1: return launch_sk3<NT, 1, FQ>(a, f, s);
        case 2: return launch_sk3<NT, 2, FQ>(a, f, s);
        default: return launch_sk3<NT, 4, FQ>(a, f, s);
    }
}
template <bool FQ>
int launch_sk(const rotor_gemm_args& a, const FqArgs& f, cudaStream_t s) {
    if (!sk_fits(a.m, a.k_blocks))
        return fail(ROTOR_CUDA_EINVAL, "gemm: the split-K cluster GEMV takes m <= 64 and k_blocks <= %d on compute capability 9.0+ (CUDA 12), got m = %d, k_blocks = %d",
                    kSkMaxBlocks, a.m, a.k_blocks);
    if (a.m <= 8) return launch_sk2<1, FQ>(a, f, s);
    if (a.m <= 16) return launch_sk2<2, FQ>(a, f, s);
    if (a.m <= 32) return launch_sk2<4, FQ>(a, f, s);
    return launch_sk2<8, FQ>(a, f, s);
}

template <int NT, int KPC, bool FQ, bool CL>
int prepare_sk3() {
    CK(cudaFuncSetAttribute(gemv_sk_kernel<NT, KPC, FQ, CL>, cudaFuncAttributeMaxDynamicSharedMemorySize, sk_smem(NT, KPC)));
    return 0;
}
template <int NT, int KPC>
int prepare_sk2() {
    int r = prepare_sk3<NT, KPC, false, true>();
    if (r == 0) r = prepare_sk3<NT, KPC, true, true>();
    return r != 0 ? r : prepare_sk3<NT, KPC, true, false>();
}
template <int NT>
int prepare_sk1() {
    int r;
    if ((r = prepare_sk2<NT, 1>()) != 0 || (r = prepare_sk2<NT, 2>()) != 0) return r;
    return prepare_sk2<NT, 4>();
}
int prepare_sk() {
    int r;
    if ((r = prepare_sk1<1>()) != 0 || (r = prepare_sk1<2>()) != 0 || (r = prepare_sk1<4>()) != 0) return r;
    return prepare_sk1<8>();
}

// auto: may take the bulk-copy kernel (the GEMV path forces the register-load kernels).
int launch_gemv(const rotor_gemm_args& a, cudaStream_t s, bool from_auto) {
    // m <= 8: 4 warps x 4 blocks of weights in flight, eight CTAs a multiprocessor; larger m: registers go to x.
    // A grid of 4 or more CTAs a multiprocessor (close to the 8 resident) lets the next kernel launch at entry: its
    // CTAs then start as soon as slots free up (measured on H100: 16384x4096 from 6.59 to 6.11 us chained; smaller
    // grids lose, 4096x4096 from 3.24 to 3.81 us).
    // Auto takes the bulk-copy kernel on the smaller grids, where it was faster back to back (H100 run 16: 4096x4096
    // m = 1 from 3.30 to 3.03 us, from DRAM 4.12 to 3.72 us), not on 1024 tiles (5.91 against 6.35 us).
    // K a multiple of 16 blocks: gemv8_kernel also on the small grids (H100 run 26, 4096x4096 m = 1: 2.45 against 3.01
    // us back to back for the bulk-copy kernel, 2.9 against 4.0 us isolated, the same from DRAM).
    if (a.m <= 8 && (a.n + 15) / 16 >= 4 * g_sms) return launch_gemv8<true>(a, s);
    if (a.m <= 8 && from_auto && g_auto_gemv_bulk && bulk_fits(a) && !gemv8_fits(a)) return launch_gemv_bulk(a, s);
    if (a.m <= 8) return launch_gemv8<false>(a, s);
    // 9 <= m <= 64: the split-K cluster GEMV where the wide GEMV's x traffic (every 16 weight rows read all of x) is
    // large: n * k_blocks * NT >= 250000, and K not a multiple of 16 blocks (there the wide GEMV's two-block steps keep
    // it ahead). H100 runs 30-33, m = 32: 6912x2560 9.4 against 10.1 us, 2560x6912 8.8 against 10.4 us; its fixed
    // latency (about 9 us) loses on the smaller shapes (2560x2560: 8.8 against 5.9 us).
    if (from_auto && g_auto_sk && a.m > 8 && sk_fits(a.m, a.k_blocks) && a.k_blocks % 16 != 0 &&
        (long long)a.n * a.k_blocks * (a.m <= 16 ? 2 : a.m <= 32 ? 4 : 8) >= 250000)
        return launch_sk<false>(a, FqArgs{}, s);
    if (a.m <= 16) return launch_gemv_wide<2>(a, s);
    if (a.m <= 32) return launch_gemv_wide<4>(a, s);
    return launch_gemv_wide<8>(a, s);
}

int check_gemm(const rotor_gemm_args* a, int path) {
    if (a == nullptr) return fail(ROTOR_CUDA_EINVAL, "gemm: args is NULL");
    if (a->w == nullptr || a->x == nullptr || a->x_scale == nullptr || a->x_sum == nullptr || a->w_scale == nullptr ||
        a->y == nullptr)
        return fail(ROTOR_CUDA_EINVAL, "gemm: a required pointer (w, x, x_scale, x_sum, w_scale, y) is NULL");
    if (a->n <= 0 || a->m <= 0 || a->k_blocks <= 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm: n = %d, m = %d, k_blocks = %d must be positive", a->n, a->m, a->k_blocks);
    if (a->row_bytes < a->k_blocks * 64 || a->row_bytes % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm: row_bytes = %d, expected a multiple of 16 and at least k_blocks * 64 = %d",
                    a->row_bytes, a->k_blocks * 64);
    if (a->x_stride < a->k_blocks * 256 || a->x_stride % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm: x_stride = %d, expected a multiple of 16 and at least k_blocks * 256 = %d",
                    a->x_stride, a->k_blocks * 256);
    if (a->y_stride < a->n) return fail(ROTOR_CUDA_EINVAL, "gemm: y_stride = %d < n = %d", a->y_stride, a->n);
    if (a->w_scale_stride != 0 && a->w_scale_stride != 1)
        return fail(ROTOR_CUDA_EINVAL, "gemm: w_scale_stride = %d, expected 0 or 1", a->w_scale_stride);
    if (a->act < ROTOR_ACT_NONE || a->act > ROTOR_ACT_SIGN) return fail(ROTOR_CUDA_EINVAL, "gemm: act = %d", a->act);
    if ((reinterpret_cast<uintptr_t>(a->w) | reinterpret_cast<uintptr_t>(a->x)) % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm: w and x must be 16-byte aligned");
    if (path == ROTOR_PATH_GEMV && a->m > 64) return fail(ROTOR_CUDA_EINVAL, "gemm: the GEMV path takes m <= 64, got %d", a->m);
    if (path < ROTOR_PATH_AUTO || (path > ROTOR_PATH_GEMV_SK && (path < ROTOR_PATH_TILED_CFG0 || path > ROTOR_PATH_TILED_CFG0 + 2 + kWgConfigs + kWsConfigs)))
        return fail(ROTOR_CUDA_EINVAL, "gemm: unknown path %d", path);
    return 0;
}

// One CTA's time per K block with the 128 x 80 tile on the scale of the others' 100 : 75 : 58.
constexpr int kWg80Alone = 66;

int launch_gemm(const rotor_gemm_args& a, int path, cudaStream_t s) {
    if (path == ROTOR_PATH_GEMV_BULK) return launch_gemv_bulk(a, s);
    if (path == ROTOR_PATH_GEMV_SK) return launch_sk<false>(a, FqArgs{}, s);
    if (path == ROTOR_PATH_GEMV || (path == ROTOR_PATH_AUTO && a.m <= 64)) return launch_gemv(a, s, path == ROTOR_PATH_AUTO);
    switch (path) {
        case ROTOR_PATH_TILED_CFG0: return launch_tiled<Tile0>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 1: return launch_tiled<Tile1>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 2: return launch_tiled<Tile2>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 3: return launch_wgmma<Wg0>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 4: return launch_wgmma<Wg1>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 5: return launch_wgmma<Wg2>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 6: return launch_wgmma<Wg3>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 7: return launch_ws<Ws0>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 8: return launch_ws<Ws1>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 9: return launch_ws<Ws2>(a, s);
        case ROTOR_PATH_TILED_CFG0 + 10: return launch_ws<Ws3>(a, s);

        default: break;
    }
    if (g_wgmma) {
        // The time of the busiest multiprocessor: k = ceil(tiles / SMs) CTAs, run two at a time, a pair taking 1.35
        // times as long as one CTA alone; one CTA alone per K block takes 100 : 75 : 58 for BM 128 : 96 : 64
        // (measured on H100 from m = 128 and 512).
        auto cost = [&](long long tl, long long alone) {
            const long long k = (tl + g_sms - 1) / g_sms;
            return (k / 2 * 135 + k % 2 * 100) * alone;
        };
        // The warp-specialized kernels (one persistent CTA a multiprocessor): ceil(tiles / SMs) tiles of 256 weight
        // rows on the busiest, each taking BM + 40 on a scale where one unit is 52 of the above (fitted to H100 run
        // 21 at m = 2048: 256 x 128 tiles take 1.8 us a K block, a 128 x 128 pair 5.5 us).
        auto cost_ws = [&](long long tl, long long bm) { return (tl + g_sms - 1) / g_sms * (bm + kWsFixed) * kWsUnit; };
        constexpr long long kNo = 1LL << 62;
        const long long c[8] = {cost(tiles<Wg0>(a), 100), cost(tiles<Wg1>(a), 75), cost(tiles<Wg2>(a), 58),
                                g_auto_wg80 ? cost(tiles<Wg3>(a), kWg80Alone) : kNo,
                                g_ws && g_auto_ws ? cost_ws(tiles<Ws0>(a), 128) : kNo,
                                g_ws && g_auto_ws ? cost_ws(tiles<Ws1>(a), 80) : kNo,
                                g_ws && g_auto_ws ? cost_ws(tiles<Ws2>(a), 96) : kNo,
                                // 128 weight rows, two consumer warpgroups: 0.62 of a 256-row tile's time (H200 run
                                // 22, m = 512); it lost on short K (2560: 15.4 against 13.4 us at m = 128)
                                g_ws && g_auto_ws && a.k_blocks >= 16 ? cost_ws(tiles<Ws3>(a), 128) * 5 / 8 : kNo};
        int best = 0;
        for (int i = 1; i < 8; i++)
            if (c[i] < c[best]) best = i;
        switch (best) {
            case 0: return launch_wgmma<Wg0>(a, s);
            case 1: return launch_wgmma<Wg1>(a, s);
            case 2: return launch_wgmma<Wg2>(a, s);
            case 3: return launch_wgmma<Wg3>(a, s);
            case 4: return launch_ws<Ws0>(a, s);
            case 5: return launch_ws<Ws1>(a, s);
            case 6: return launch_ws<Ws2>(a, s);
            default: return launch_ws<Ws3>(a, s);
        }
    }
    // Measured on H200 (docs/BENCHMARKS-cuda.md): 128 x 128 tiles win once there are 3.5 of them a
    // multiprocessor; below that the 64 x 128 tiles keep more multiprocessors busy. 256 x 128 never won.
    if (tiles<Tile0>(a) * 2 >= 7LL * g_sms) return launch_tiled<Tile0>(a, s);
    return launch_tiled<Tile2>(a, s);
}

// ---------------------------------------------------------------------------------------------------------------
// Float product (ActivationMode.Float): a warp a weight row, up to 4 activation rows a CTA row; lane j reads
// bytes j and j + 32 of every block, i.e. columns 64q + j (+ 32). Plain float sums: compared with a tolerance.
// ---------------------------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(256) gemm_f32_kernel(const uint8_t* w, int row_bytes, int k_blocks, int n,
                                                       const float* x, int cols, int x_stride, int m,
                                                       const float* w_scale, int w_scale_stride, const float* bias,
                                                       float* y, int y_stride, int act) {
    pdl_trigger();
    pdl_wait();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.x * 8 + warp, i0 = blockIdx.y * 4;
    if (r >= n) return;
    const uint8_t* wr = w + (size_t)r * row_bytes;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int b = 0; b < k_blocks; b++)
        for (int half = 0; half < 2; half++) {
            const int j = lane + 32 * half;
            const unsigned byte = wr[b * 64 + j];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int c = 256 * b + 64 * q + j;
                const int wv = (int)((byte >> (2 * q)) & 3u) - 1;
                if (c >= cols || wv == 0) continue;
#pragma unroll
                for (int ii = 0; ii < 4; ii++)
                    if (i0 + ii < m) {
                        const float xv = x[(size_t)(i0 + ii) * x_stride + c];
                        acc[ii] += wv > 0 ? xv : -xv;
                    }
            }
        }
#pragma unroll
    for (int ii = 0; ii < 4; ii++) {
        const float s = warp_sum(acc[ii]);
        if (lane == 0 && i0 + ii < m) {
            float v = __fmul_rn(s, w_scale[(size_t)r * w_scale_stride]);
            if (bias != nullptr) v = __fadd_rn(v, bias[r]);
            y[(size_t)(i0 + ii) * y_stride + r] = apply_act(v, act);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Quantization, formats, elementwise
// ---------------------------------------------------------------------------------------------------------------

// One CTA a row. Same operations as QuantizedActivations.QuantizeRow: inv = 127 / amax, rint(x * inv) (half to
// even), clamp to +-127; scale = amax / 127. Writes 4 bytes a thread a step (q_stride is a multiple of 4).
__device__ void quantize_row(const float* xr, int cols, int8_t* qr, int q_stride, float* scale, int* sum);

__global__ void __launch_bounds__(256) quantize_kernel(const float* x, int cols, int x_stride, int8_t* q, int q_stride,
                                                        float* scale, int* sum) {
    pdl_trigger();
    pdl_wait();
    quantize_row(x + (size_t)blockIdx.x * x_stride, cols, q + (size_t)blockIdx.x * q_stride, q_stride, scale + blockIdx.x, sum + blockIdx.x);
}

// One row by the whole CTA (blockDim.x threads, a multiple of 32): quantize_kernel's body, also the tail of
// gemv_wide_kernel<NT, true>.
__device__ void quantize_row(const float* xr, int cols, int8_t* qr, int q_stride, float* scale, int* sum) {
    __shared__ float fscratch[32];
    __shared__ int iscratch[32];
    float amax = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) amax = fmaxf(amax, fabsf(xr[j]));
    amax = block_reduce(amax, MaxOp{}, fscratch);
    const float inv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    int s = 0;
    for (int j = 4 * threadIdx.x; j < q_stride; j += 4 * blockDim.x) {
        unsigned packed = 0;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int v = 0;
            if (j + e < cols && amax != 0.f) v = (int)fminf(fmaxf(rintf(__fmul_rn(xr[j + e], inv)), -127.f), 127.f);
            s += v;
            packed |= (unsigned)(v & 0xff) << (8 * e);
        }
        *reinterpret_cast<unsigned*>(qr + j) = packed;
    }
    s = block_reduce(s, SumIntOp{}, iscratch);
    if (threadIdx.x == 0) {
        *scale = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        *sum = s;
    }
}

// The same quantization with one warp a row (rows of up to kQuantWarpCols columns, cols and x_stride multiples of 4,
// x 16-byte aligned): float4 loads, the absmax and the sum by warp reductions (redux.sync), no CTA barrier. Two
// passes over the row; the second finds it in L1. Bit for bit the result of quantize_kernel.
constexpr int kQuantWarpCols = 8192;
__global__ void __launch_bounds__(256) quantize_warp_kernel(const float* x, int m, int cols, int x_stride, int8_t* q, int q_stride,
                                                            float* scale, int* sum) {
    pdl_trigger();
    pdl_wait();
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= m) return;
    const float4* xr = reinterpret_cast<const float4*>(x + (size_t)row * x_stride);
    const int n4 = cols / 4;
    unsigned amax_bits = 0;  // |x| >= 0: the float order is the integer order of the bits
#pragma unroll 4
    for (int j = lane; j < n4; j += 32) {
        const float4 v = xr[j];
        amax_bits = max(amax_bits, max(max(__float_as_uint(fabsf(v.x)), __float_as_uint(fabsf(v.y))),
                                       max(__float_as_uint(fabsf(v.z)), __float_as_uint(fabsf(v.w)))));
    }
    const float amax = __uint_as_float(__reduce_max_sync(0xffffffffu, amax_bits));
    const float inv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    unsigned* qr = reinterpret_cast<unsigned*>(q + (size_t)row * q_stride);
    int s = 0;
#pragma unroll 4
    for (int j = lane; j < q_stride / 4; j += 32) {
        unsigned packed = 0;
        if (j < n4) {
            const float4 v = xr[j];
            const int q0 = quant1(v.x, inv), q1 = quant1(v.y, inv), q2 = quant1(v.z, inv), q3 = quant1(v.w, inv);
            packed = __byte_perm(__byte_perm(q0, q1, 0x0040), __byte_perm(q2, q3, 0x0040), 0x5410);
            s += q0 + q1 + q2 + q3;
        }
        qr[j] = packed;
    }
    s = __reduce_add_sync(0xffffffffu, s);
    if (lane == 0) {
        scale[row] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        sum[row] = s;
    }
}

// One thread a packed byte.
__global__ void pack_i2_kernel(const int8_t* trits, int rows, int cols, uint8_t* packed, int row_bytes, int* invalid) {
    pdl_trigger();
    pdl_wait();
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * row_bytes) return;
    const int r = (int)(idx / row_bytes), bi = (int)(idx % row_bytes), b = bi >> 6, j = bi & 63;
    unsigned byte = 0;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int c = 256 * b + 64 * q + j;
        int v = 0;
        if (c < cols) {
            v = trits[(size_t)r * cols + c];
            if (v < -1 || v > 1) {
                atomicAdd(invalid, 1);
                v = 0;
            }
        }
        byte |= (unsigned)(v + 1) << (2 * q);
    }
    packed[idx] = (uint8_t)byte;
}

// One thread a trit.
__global__ void unpack_i2_kernel(const uint8_t* packed, int rows, int cols, int row_bytes, int8_t* trits) {
    pdl_trigger();
    pdl_wait();
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * cols) return;
    const int r = (int)(idx / cols), c = (int)(idx % cols);
    const int b = c >> 8, within = c & 255, q = within >> 6, j = within & 63;
    trits[idx] = (int8_t)((int)((packed[(size_t)r * row_bytes + b * 64 + j] >> (2 * q)) & 3u) - 1);
}

__global__ void activation_kernel(const float* x, float* y, int64_t count, int act) {
    pdl_trigger();
    pdl_wait();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = apply_act(x[i], act);
}

// One CTA a row: y = exp(x - max) / sum exp(x - max).
__global__ void __launch_bounds__(256) softmax_kernel(const float* x, float* y, int cols) {
    pdl_trigger();
    pdl_wait();
    __shared__ float scratch[32];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float* yr = y + (size_t)blockIdx.x * cols;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, xr[j]);
    mx = block_reduce(mx, MaxOp{}, scratch);
    float s = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - mx);
    s = block_reduce(s, SumFloatOp{}, scratch);
    const float inv = 1.f / s;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - mx) * inv;
}

bool pdl_disabled() {
    const char* v = getenv("ROTOR_CUDA_PDL");
    return v != nullptr && (strcmp(v, "0") == 0 || strcmp(v, "off") == 0);
}

int grid_for(size_t items, int threads) { return (int)std::min<size_t>((items + threads - 1) / threads, 1u << 30); }

}  // namespace

// -------------------------------------------------------------------------------------------------------------------
// C API
// -------------------------------------------------------------------------------------------------------------------

extern "C" {

ROTOR_API int rotor_cuda_abi(void) { return ROTOR_CUDA_ABI; }

ROTOR_API int rotor_cuda_last_error(char* buf, int len) {
    if (buf == nullptr || len <= 0) return ROTOR_CUDA_EINVAL;
    snprintf(buf, (size_t)len, "%s", t_error);
    return 0;
}

ROTOR_API int rotor_cuda_device_count(int* count) {
    if (count == nullptr) return fail(ROTOR_CUDA_EINVAL, "device_count: count is NULL");
    *count = 0;
    CK(cudaGetDeviceCount(count));
    return 0;
}

ROTOR_API int rotor_cuda_init(int device, char* name, int name_len, int* cc_major, int* cc_minor, int* sms,
                              int64_t* global_mem, int* driver_version, int* runtime_version) {
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    if (device < 0 || device >= count) return fail(ROTOR_CUDA_EINVAL, "device %d does not exist (%d devices)", device, count);
    CK(cudaSetDevice(device));
    g_device = device;
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, device));
    if (name != nullptr && name_len > 0) snprintf(name, (size_t)name_len, "%s", p.name);
    if (cc_major) *cc_major = p.major;
    if (cc_minor) *cc_minor = p.minor;
    if (sms) *sms = p.multiProcessorCount;
    if (global_mem) *global_mem = (int64_t)p.totalGlobalMem;
    if (driver_version) CK(cudaDriverGetVersion(driver_version));
    if (runtime_version) CK(cudaRuntimeGetVersion(runtime_version));
    g_sms = p.multiProcessorCount;
    if (p.major < 8)
        return fail(ROTOR_CUDA_EINVAL, "%s has compute capability %d.%d; the int8 mma kernels need 8.0 or newer", p.name,
                    p.major, p.minor);
    // Fails with cudaErrorNoKernelImageForDevice when the library was not built for this architecture.
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, gemv8_kernel<false, false>));
    g_pdl = p.major >= 9 && !pdl_disabled();
    int r;
    if ((r = prepare_tiled<Tile0>()) != 0) return r;
    if ((size_t)Tile1::kSmem <= p.sharedMemPerBlockOptin && (r = prepare_tiled<Tile1>()) != 0) return r;
    if ((r = prepare_tiled<Tile2>()) != 0) return r;
    g_auto_wg80 = !env_off("ROTOR_CUDA_WG80");
    g_auto_gemv_bulk = !env_off("ROTOR_CUDA_GEMV_BULK");
    g_l2pf_mode = getenv("ROTOR_CUDA_L2PF") == nullptr ? -1 : env_off("ROTOR_CUDA_L2PF") ? 0 : 1;
    g_gemv_old = getenv("ROTOR_CUDA_GEMV_OLD") != nullptr && !env_off("ROTOR_CUDA_GEMV_OLD");
    g_auto_ws = !env_off("ROTOR_CUDA_WS");
    g_auto_sk = !env_off("ROTOR_CUDA_SK");
    g_fq_cluster = !env_off("ROTOR_CUDA_FQ_CLUSTER");
    g_quant_warp = !env_off("ROTOR_CUDA_QUANT_WARP");
    g_gemm_q = !env_off("ROTOR_CUDA_GEMM_Q");
    g_wide_ep = !env_off("ROTOR_CUDA_WIDE_EP");
    if (getenv("ROTOR_CUDA_SK_DEBUG") != nullptr && g_sk_dbg == nullptr) {
        CK(cudaMalloc(&g_sk_dbg, (size_t)kSkDbgCtas * 10 * 8));
        CK(cudaMemset(g_sk_dbg, 0, (size_t)kSkDbgCtas * 10 * 8));
        atexit(sk_debug_dump);
    }
    g_sk_trigger = getenv("ROTOR_CUDA_SK_TRIGGER") != nullptr ? atoi(getenv("ROTOR_CUDA_SK_TRIGGER")) : 0;
    if ((r = probe_bulk(p)) != 0) return r;
    return probe_wgmma(p);
}

ROTOR_API int rotor_cuda_path_supported(int path) {
    if (path == ROTOR_PATH_GEMV_BULK || path == ROTOR_PATH_GEMV_SK) return g_bulk ? 1 : 0;
    if (path >= ROTOR_PATH_TILED_CFG0 + 3 && path <= ROTOR_PATH_TILED_CFG0 + 2 + kWgConfigs) return g_wgmma ? 1 : 0;
    if (path > ROTOR_PATH_TILED_CFG0 + 2 + kWgConfigs && path <= ROTOR_PATH_TILED_CFG0 + 2 + kWgConfigs + kWsConfigs) return g_ws ? 1 : 0;
    return path == ROTOR_PATH_AUTO || path == ROTOR_PATH_GEMV || path == ROTOR_PATH_TILED ||
                   (path >= ROTOR_PATH_TILED_CFG0 && path <= ROTOR_PATH_TILED_CFG0 + 2)
               ? 1
               : 0;
}

ROTOR_API int rotor_cuda_set_pdl(int on) {
    USE_DEVICE();
    int major = 0, dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    g_pdl = on != 0 && major >= 9;
    return g_pdl ? 1 : 0;
}

ROTOR_API int rotor_cuda_malloc(void** d_ptr, size_t bytes) {
    USE_DEVICE();
    if (d_ptr == nullptr) return fail(ROTOR_CUDA_EINVAL, "malloc: d_ptr is NULL");
    *d_ptr = nullptr;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(d_ptr, bytes);
    if (e != cudaSuccess) return fail((int)e, "cudaMalloc(%zu bytes): %s (%s)", bytes, cudaGetErrorName(e), cudaGetErrorString(e));
    return 0;
}
ROTOR_API int rotor_cuda_free(void* d_ptr) {
    USE_DEVICE();
    CK(cudaFree(d_ptr));
    return 0;
}
ROTOR_API int rotor_cuda_host_alloc(void** h_ptr, size_t bytes) {
    USE_DEVICE();
    if (h_ptr == nullptr) return fail(ROTOR_CUDA_EINVAL, "host_alloc: h_ptr is NULL");
    *h_ptr = nullptr;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMallocHost(h_ptr, bytes);
    if (e != cudaSuccess) return fail((int)e, "cudaMallocHost(%zu bytes): %s (%s)", bytes, cudaGetErrorName(e), cudaGetErrorString(e));
    return 0;
}
ROTOR_API int rotor_cuda_host_free(void* h_ptr) {
    USE_DEVICE();
    CK(cudaFreeHost(h_ptr));
    return 0;
}
ROTOR_API int rotor_cuda_memcpy_h2d(void* d_dst, const void* h_src, size_t bytes, void* stream) {
    USE_DEVICE();
    CK(cudaMemcpyAsync(d_dst, h_src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_memcpy_d2h(void* h_dst, const void* d_src, size_t bytes, void* stream) {
    USE_DEVICE();
    CK(cudaMemcpyAsync(h_dst, d_src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_memcpy_d2d(void* d_dst, const void* d_src, size_t bytes, void* stream) {
    USE_DEVICE();
    CK(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_memset(void* d_ptr, int value, size_t bytes, void* stream) {
    USE_DEVICE();
    CK(cudaMemsetAsync(d_ptr, value, bytes, as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_stream_create(void** stream) {
    USE_DEVICE();
    if (stream == nullptr) return fail(ROTOR_CUDA_EINVAL, "stream_create: stream is NULL");
    cudaStream_t s = nullptr;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *stream = s;
    return 0;
}
ROTOR_API int rotor_cuda_stream_destroy(void* stream) {
    USE_DEVICE();
    CK(cudaStreamDestroy(as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_stream_sync(void* stream) {
    USE_DEVICE();
    CK(cudaStreamSynchronize(as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_event_create(void** event) {
    USE_DEVICE();
    if (event == nullptr) return fail(ROTOR_CUDA_EINVAL, "event_create: event is NULL");
    cudaEvent_t e = nullptr;
    CK(cudaEventCreate(&e));
    *event = e;
    return 0;
}
ROTOR_API int rotor_cuda_event_destroy(void* event) {
    USE_DEVICE();
    CK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
    return 0;
}
ROTOR_API int rotor_cuda_event_record(void* event, void* stream) {
    USE_DEVICE();
    CK(cudaEventRecord(static_cast<cudaEvent_t>(event), as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_event_elapsed_ms(void* start, void* end, float* ms) {
    USE_DEVICE();
    if (ms == nullptr) return fail(ROTOR_CUDA_EINVAL, "event_elapsed_ms: ms is NULL");
    CK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
    CK(cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
    return 0;
}
ROTOR_API int rotor_cuda_graph_begin(void* stream) {
    USE_DEVICE();
    if (stream == nullptr) return fail(ROTOR_CUDA_EINVAL, "graph_begin: the default stream cannot be captured");
    CK(cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeThreadLocal));
    return 0;
}
ROTOR_API int rotor_cuda_graph_end(void* stream, void** graph_exec) {
    USE_DEVICE();
    if (graph_exec == nullptr) return fail(ROTOR_CUDA_EINVAL, "graph_end: graph_exec is NULL");
    *graph_exec = nullptr;
    cudaGraph_t graph = nullptr;
    CK(cudaStreamEndCapture(as_stream(stream), &graph));
    cudaGraphExec_t exec = nullptr;
    cudaError_t e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGraphInstantiateWithFlags");
    *graph_exec = exec;
    return 0;
}
ROTOR_API int rotor_cuda_graph_launch(void* graph_exec, void* stream) {
    USE_DEVICE();
    CK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph_exec), as_stream(stream)));
    return 0;
}
ROTOR_API int rotor_cuda_graph_destroy(void* graph_exec) {
    USE_DEVICE();
    CK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec)));
    return 0;
}

ROTOR_API int rotor_cuda_pack_i2(const int8_t* d_trits, int rows, int cols, uint8_t* d_packed, int row_bytes,
                                 int* d_invalid, void* stream) {
    USE_DEVICE();
    if (rows <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "pack_i2: %dx%d, dimensions must be positive", rows, cols);
    if (row_bytes != (cols + 255) / 256 * 64)
        return fail(ROTOR_CUDA_EINVAL, "pack_i2: row_bytes = %d, expected %d for %d columns", row_bytes, (cols + 255) / 256 * 64, cols);
    if (d_trits == nullptr || d_packed == nullptr || d_invalid == nullptr) return fail(ROTOR_CUDA_EINVAL, "pack_i2: NULL pointer");
    const size_t total = (size_t)rows * row_bytes;
    return launch(pack_i2_kernel, dim3(grid_for(total, 256)), dim3(256), 0, as_stream(stream), "pack_i2_kernel", d_trits, rows, cols,
                  d_packed, row_bytes, d_invalid);
}

ROTOR_API int rotor_cuda_unpack_i2(const uint8_t* d_packed, int rows, int cols, int row_bytes, int8_t* d_trits,
                                   void* stream) {
    USE_DEVICE();
    if (rows <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: %dx%d, dimensions must be positive", rows, cols);
    if (row_bytes < (cols + 255) / 256 * 64) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: row_bytes = %d too small for %d columns", row_bytes, cols);
    if (d_trits == nullptr || d_packed == nullptr) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: NULL pointer");
    const size_t total = (size_t)rows * cols;
    return launch(unpack_i2_kernel, dim3(grid_for(total, 256)), dim3(256), 0, as_stream(stream), "unpack_i2_kernel", d_packed, rows,
                  cols, row_bytes, d_trits);
}

ROTOR_API int rotor_cuda_quantize(const float* d_x, int m, int cols, int x_stride, int8_t* d_q, int q_stride,
                                  float* d_scale, int32_t* d_sum, void* stream) {
    USE_DEVICE();
    if (m <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "quantize: m = %d, cols = %d must be positive", m, cols);
    if (x_stride < cols || q_stride < cols || q_stride % 4 != 0)
        return fail(ROTOR_CUDA_EINVAL, "quantize: x_stride = %d, q_stride = %d for %d columns (q_stride a multiple of 4)", x_stride, q_stride, cols);
    if (d_x == nullptr || d_q == nullptr || d_scale == nullptr || d_sum == nullptr) return fail(ROTOR_CUDA_EINVAL, "quantize: NULL pointer");
    if (g_quant_warp && cols % 4 == 0 && x_stride % 4 == 0 && cols <= kQuantWarpCols && reinterpret_cast<uintptr_t>(d_x) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(d_q) % 4 == 0)
        return launch(quantize_warp_kernel, dim3((m + 7) / 8), dim3(256), 0, as_stream(stream), "quantize_warp_kernel", d_x, m, cols, x_stride,
                      d_q, q_stride, d_scale, d_sum);
    return launch(quantize_kernel, dim3(m), dim3(256), 0, as_stream(stream), "quantize_kernel", d_x, cols, x_stride, d_q, q_stride,
                  d_scale, d_sum);
}

ROTOR_API int rotor_cuda_row_absmax(const float* d_x, int m, int cols, int x_stride, uint32_t* d_amax, uint32_t* d_zero,
                                    int zero_count, void* stream) {
    USE_DEVICE();
    if (m <= 0 || cols <= 0 || x_stride < cols || zero_count < 0)
        return fail(ROTOR_CUDA_EINVAL, "row_absmax: m = %d, cols = %d, x_stride = %d, zero_count = %d", m, cols, x_stride, zero_count);
    if (d_x == nullptr || d_amax == nullptr || (zero_count > 0 && d_zero == nullptr)) return fail(ROTOR_CUDA_EINVAL, "row_absmax: NULL pointer");
    return launch(absmax_kernel, dim3(m), dim3(256), 0, as_stream(stream), "absmax_kernel", d_x, cols, x_stride,
                  reinterpret_cast<unsigned*>(d_amax), reinterpret_cast<unsigned*>(d_zero), zero_count);
}

ROTOR_API int rotor_cuda_gemm_q_fits(int n, int m) { return gemm_q_fits(n, m) ? 1 : 0; }

ROTOR_API int rotor_cuda_gemm_q(const rotor_gemm_args* args, int8_t* d_q, int q_stride, float* d_scale, int32_t* d_sum,
                                uint32_t* d_barrier, void* stream) {
    USE_DEVICE();
    int r = check_gemm(args, ROTOR_PATH_GEMV);
    if (r != 0) return r;
    if (!gemm_q_fits(args->n, args->m))
        return fail(ROTOR_CUDA_EINVAL, "gemm_q: n = %d, m = %d: needs m <= 64, m <= ceil(n / 16) <= %d multiprocessors (rotor_cuda_gemm_q_fits)",
                    args->n, args->m, g_sms);
    if (d_q == nullptr || d_scale == nullptr || d_sum == nullptr || d_barrier == nullptr) return fail(ROTOR_CUDA_EINVAL, "gemm_q: NULL pointer");
    if (q_stride < args->n || q_stride % 4 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm_q: q_stride = %d for %d columns (a multiple of 4)", q_stride, args->n);
    const QArgs q{d_q, q_stride, d_scale, reinterpret_cast<int*>(d_sum), reinterpret_cast<unsigned*>(d_barrier)};
    return launch_gemm_q(*args, q, as_stream(stream));
}

ROTOR_API int rotor_cuda_fq_fits(int m, int k_blocks) { return g_auto_sk && sk_fits(m, k_blocks) ? 1 : 0; }

ROTOR_API int rotor_cuda_fq_work_bytes(int n, int m, int k_blocks, size_t* bytes) {
    if (bytes == nullptr || n <= 0 || m <= 0 || m > 64 || k_blocks <= 0 || k_blocks > kSkMaxBlocks)
        return fail(ROTOR_CUDA_EINVAL, "fq_work_bytes: n = %d, m = %d (1..64), k_blocks = %d (1..%d)", n, m, k_blocks, kSkMaxBlocks);
    *bytes = sk_work_bytes(n, m, k_blocks);
    return 0;
}

ROTOR_API int rotor_cuda_gemm_fq(const rotor_gemm_args* args, const float* d_x, int cols, int x_stride, const uint32_t* d_amax_in,
                                 uint32_t* d_amax_out, void* d_work, size_t work_bytes, void* stream) {
    USE_DEVICE();
    if (args == nullptr) return fail(ROTOR_CUDA_EINVAL, "gemm_fq: args is NULL");
    const rotor_gemm_args& a = *args;
    if (a.w == nullptr || a.w_scale == nullptr || a.y == nullptr || d_x == nullptr || d_amax_in == nullptr)
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: a required pointer (w, w_scale, y, x, amax_in) is NULL");
    if (a.n <= 0 || a.m <= 0 || a.k_blocks <= 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: n = %d, m = %d, k_blocks = %d must be positive", a.n, a.m, a.k_blocks);
    if (a.row_bytes < a.k_blocks * 64 || a.row_bytes % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: row_bytes = %d, expected a multiple of 16 and at least k_blocks * 64 = %d", a.row_bytes, a.k_blocks * 64);
    if (cols <= 0 || cols > a.k_blocks * 256 || x_stride < cols || x_stride % 4 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: cols = %d (at most k_blocks * 256 = %d), x_stride = %d (at least cols, a multiple of 4)", cols,
                    a.k_blocks * 256, x_stride);
    if (a.y_stride < a.n) return fail(ROTOR_CUDA_EINVAL, "gemm_fq: y_stride = %d < n = %d", a.y_stride, a.n);
    if (a.w_scale_stride != 0 && a.w_scale_stride != 1) return fail(ROTOR_CUDA_EINVAL, "gemm_fq: w_scale_stride = %d, expected 0 or 1", a.w_scale_stride);
    if (a.act < ROTOR_ACT_NONE || a.act > ROTOR_ACT_SIGN) return fail(ROTOR_CUDA_EINVAL, "gemm_fq: act = %d", a.act);
    if ((reinterpret_cast<uintptr_t>(a.w) | reinterpret_cast<uintptr_t>(d_x)) % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: w and x must be 16-byte aligned");
    if (d_work != nullptr && ((a.n + kSkRows - 1) / kSkRows > kSkMaxTiles || a.m > 64 || a.k_blocks > kSkMaxBlocks || work_bytes < sk_work_bytes(a.n, a.m, a.k_blocks)))
        return fail(ROTOR_CUDA_EINVAL, "gemm_fq: work_bytes = %zu, this product needs %zu (rotor_cuda_fq_work_bytes)", work_bytes,
                    a.m <= 64 && a.k_blocks <= kSkMaxBlocks ? sk_work_bytes(a.n, a.m, a.k_blocks) : (size_t)0);
    const FqArgs f{d_x, cols, x_stride, reinterpret_cast<const unsigned*>(d_amax_in), reinterpret_cast<unsigned*>(d_amax_out), 0,
                   g_fq_cluster ? nullptr : static_cast<int*>(d_work), nullptr};
    return launch_sk<true>(a, f, as_stream(stream));
}

ROTOR_API int rotor_cuda_gemm(const rotor_gemm_args* args, int path, void* stream) {
    USE_DEVICE();
    int r = check_gemm(args, path);
    return r != 0 ? r : launch_gemm(*args, path, as_stream(stream));
}

ROTOR_API int rotor_cuda_gemm_f32(const uint8_t* d_w, int row_bytes, int k_blocks, int n, const float* d_x, int cols,
                                  int x_stride, int m, const float* d_w_scale, int w_scale_stride, const float* d_bias,
                                  float* d_y, int y_stride, int act, void* stream) {
    USE_DEVICE();
    if (n <= 0 || m <= 0 || cols <= 0 || k_blocks * 256 < cols || row_bytes < k_blocks * 64 || x_stride < cols || y_stride < n)
        return fail(ROTOR_CUDA_EINVAL, "gemm_f32: n = %d, m = %d, cols = %d, k_blocks = %d, row_bytes = %d, x_stride = %d, y_stride = %d",
                    n, m, cols, k_blocks, row_bytes, x_stride, y_stride);
    if (d_w == nullptr || d_x == nullptr || d_w_scale == nullptr || d_y == nullptr) return fail(ROTOR_CUDA_EINVAL, "gemm_f32: NULL pointer");
    if (m > 4 * 65535) return fail(ROTOR_CUDA_EINVAL, "gemm_f32: m = %d is more than %d", m, 4 * 65535);
    const dim3 grid((n + 7) / 8, (m + 3) / 4);
    return launch(gemm_f32_kernel, grid, dim3(256), 0, as_stream(stream), "gemm_f32_kernel", d_w, row_bytes, k_blocks, n, d_x, cols,
                  x_stride, m, d_w_scale, w_scale_stride, d_bias, d_y, y_stride, act);
}

ROTOR_API int rotor_cuda_activation(const float* d_x, float* d_y, int64_t count, int act, void* stream) {
    USE_DEVICE();
    if (count <= 0 || act < ROTOR_ACT_NONE || act > ROTOR_ACT_SIGN) return fail(ROTOR_CUDA_EINVAL, "activation: count = %lld, act = %d", (long long)count, act);
    return launch(activation_kernel, dim3((unsigned)std::min<int64_t>((count + 255) / 256, 4096)), dim3(256), 0, as_stream(stream),
                  "activation_kernel", d_x, d_y, count, act);
}

ROTOR_API int rotor_cuda_softmax(const float* d_x, float* d_y, int rows, int cols, void* stream) {
    USE_DEVICE();
    if (rows <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "softmax: %dx%d", rows, cols);
    return launch(softmax_kernel, dim3(rows), dim3(256), 0, as_stream(stream), "softmax_kernel", d_x, d_y, cols);
}

ROTOR_API int rotor_cuda_bench_gemm(const rotor_gemm_args* args, int path, int inner, int reps, float* us, void* stream) {
    return rotor_cuda_bench_gemm_many(args, 1, path, inner, reps, us, stream);
}

ROTOR_API int rotor_cuda_bench_gemm_many(const rotor_gemm_args* args, int count, int path, int inner, int reps, float* us,
                                         void* stream) {
    USE_DEVICE();
    if (args == nullptr || count <= 0) return fail(ROTOR_CUDA_EINVAL, "bench_gemm: %d products", count);
    int r = 0;
    for (int c = 0; c < count && r == 0; c++) r = check_gemm(args + c, path);
    if (r != 0) return r;
    if (inner <= 0 || reps <= 0 || us == nullptr) return fail(ROTOR_CUDA_EINVAL, "bench_gemm: inner = %d, reps = %d", inner, reps);
    if (stream == nullptr) return fail(ROTOR_CUDA_EINVAL, "bench_gemm: needs a stream of its own (graphs cannot capture the default stream)");
    cudaStream_t s = as_stream(stream);
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int k = 0; k < inner && r == 0; k++) r = launch_gemm(args[k % count], path, s);
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (r != 0) { if (graph) cudaGraphDestroy(graph); return r; }
    if (e != cudaSuccess) return cuda_fail(e, "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGraphInstantiateWithFlags");
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) e = cudaGraphLaunch(exec, s);  // warm-up
    for (int k = 0; k < reps && e == cudaSuccess; k++) {
        float ms = 0;
        e = cudaEventRecord(e0, s);
        if (e == cudaSuccess) e = cudaGraphLaunch(exec, s);
        if (e == cudaSuccess) e = cudaEventRecord(e1, s);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        us[k] = ms * 1000.f / inner;
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaGraphExecDestroy(exec);
    return e == cudaSuccess ? 0 : cuda_fail(e, "bench_gemm replay");
}

ROTOR_API int rotor_cuda_l2_bytes(int64_t* bytes) {
    USE_DEVICE();
    if (bytes == nullptr) return fail(ROTOR_CUDA_EINVAL, "l2_bytes: NULL");
    int dev = 0, v = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, dev));
    *bytes = v;
    return 0;
}

ROTOR_API int rotor_cuda_bench_copy(size_t bytes, int reps, double* gbps, void* stream) {
    USE_DEVICE();
    if (bytes == 0 || reps <= 0 || gbps == nullptr) return fail(ROTOR_CUDA_EINVAL, "bench_copy: bytes = %zu, reps = %d", bytes, reps);
    void *a = nullptr, *b = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    cudaStream_t s = as_stream(stream);
    std::vector<double> v;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, s);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);  // warm-up
    for (int k = 0; k < reps && e == cudaSuccess; k++) {
        float ms = 0;
        e = cudaEventRecord(e0, s);
        if (e == cudaSuccess) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);
        if (e == cudaSuccess) e = cudaEventRecord(e1, s);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e == cudaSuccess) v.push_back(2.0 * (double)bytes / (ms * 1e-3) / 1e9);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    if (e != cudaSuccess) return cuda_fail(e, "bench_copy");
    std::sort(v.begin(), v.end());
    *gbps = v[v.size() / 2];
    return 0;
}

}  // extern "C"

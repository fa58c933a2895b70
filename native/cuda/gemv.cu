// gemv.cu: the products for m <= 64 (register-load, bulk-copy, wide and split-K cluster GEMVs) and the float product.
// Every GEMV streams the weights from DRAM once with 128-bit loads (or bulk copies) and multiplies with mma.sync as
// common.cuh describes; which one runs is chosen in rotor_cuda.cu (choose_gemv).
#include "common.cuh"

#include <algorithm>

namespace rotor {

// ---------------------------------------------------------------------------------------------------------------
// Register-load GEMV, m <= 8 * NT: a CTA owns 16 weight rows; its WARPS warps split the K blocks (warp w takes blocks
// w, w + WARPS, ...), U blocks a step with all their weight loads issued first, each warp holding a 16 x 8NT int32
// tile in registers; the tiles are added in shared memory at the end. Weights stream from DRAM once with 128-bit
// loads that skip L1; x (a few KB) is read through L1. The first weight loads are issued before the wait on the
// previous kernel (programmatic dependent launch): they do not depend on it. gemv_kernel (m <= 8) runs where K is
// not a multiple of 16 blocks; gemv8_kernel, the same product without guards, where it is (launch_gemv).
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

// Thread (g, t)'s piece of weight row `row`: from byte 16t of each block. Rows past n are clamped to the last row:
// computed, never stored.
__device__ __forceinline__ const uint8_t* weight_row(const rotor_gemm_args& a, int row, int t) {
    return a.w + (size_t)min(row, a.n - 1) * a.row_bytes + 16 * t;
}

// Thread (g, t)'s activation rows g + 8j of the NT tiles, from byte 16t (rows past m read row 0 and are masked by xok),
// and its accumulators at zero.
template <int NT>
__device__ __forceinline__ void gemv_start(const rotor_gemm_args& a, int g, int t, const int8_t* (&xr)[NT], bool (&xok)[NT],
                                           int (&acc)[NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int i = 8 * j + g;
        xok[j] = i < a.m;
        xr[j] = a.x + (size_t)(xok[j] ? i : 0) * a.x_stride + 16 * t;
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
    }
}

// The end of the 4-warp GEMVs for m <= 8 (CTA of 128 threads, rows r0 .. r0 + 15): the warps' 16 x 8 tiles added in
// shared memory, one result a thread.
__device__ __forceinline__ void gemv4_store(const rotor_gemm_args& a, int (&red)[4][4][32], const int (&acc)[4], int r0) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < 4; c++) red[warp][c][lane] = acc[c];
    __syncthreads();
    int sum = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) sum += red[w][warp][lane];
    // c = warp, lane: c0 (row g, col 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
    store_y(a, 2 * (lane & 3) + (warp & 1), r0 + (lane >> 2) + (warp >> 1) * 8, sum);
}

// The epilogue's operands of one output, loaded before the reduction so that no load waits at the end.
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
template <int NT, int WARPS, int U, int MIN_BLOCKS, bool EARLY = false>
__global__ void __launch_bounds__(32 * WARPS, MIN_BLOCKS) gemv_kernel(rotor_gemm_args a) {
    if constexpr (EARLY) pdl_trigger();
    constexpr int kOut = NT * 4 * 32;         // int32 results of a CTA: 16 rows x 8NT columns
    constexpr int kPer = kOut / (32 * WARPS);  // results a thread stores
    static_assert(kOut % (32 * WARPS) == 0, "every thread stores the same number of results");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    const uint8_t* wA = weight_row(a, r0 + g, t);
    const uint8_t* wB = weight_row(a, r0 + g + 8, t);
    const int8_t* xr[NT];
    bool xok[NT];
    int acc[NT][4];
    gemv_start<NT>(a, g, t, xr, xok, acc);

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
                wa[u] = ld_stream(wA + (size_t)kb * 64);
                wb[u] = ld_stream(wB + (size_t)kb * 64);
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

// The GEMV for m <= 8 where K is a multiple of 16 blocks (gemv8_kernel): the form of gemv_kernel<1, 4, 4, 8> with no
// guard at all (every warp's step has its 4 blocks) and the epilogue's operands loaded after the reduction, which
// keeps it free of spills; a guarded last step for other K would spill, so other K keep gemv_kernel. A warp's step:
// the 8 weight loads of 4 K blocks, then (first step only) the wait on the previous kernel, then 32 mmas.
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

// k_blocks % 16 == 0. EARLY (the large grids, launch_gemv): let the next kernel launch at entry instead of once this
// CTA's weights are in, and ask L2 for 256 bytes a load: the hint raises the DRAM bandwidth where the whole grid's
// requests are in flight at once, and costs time where the weights come from L2.
template <bool EARLY>
__global__ void __launch_bounds__(128, 8) gemv8_kernel(rotor_gemm_args a) {
    if constexpr (EARLY) pdl_trigger();
    __shared__ int red[4][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    const uint8_t* wA = weight_row(a, r0 + g, t);
    const uint8_t* wB = weight_row(a, r0 + g + 8, t);
    const bool xok = g < a.m;
    const int8_t* xg = a.x + (size_t)(xok ? g : 0) * a.x_stride + 16 * t;
    int acc[4] = {0, 0, 0, 0};
    for (int kb0 = warp; kb0 < a.k_blocks; kb0 += 16) gemv8_step<EARLY>(acc, wA, wB, xg, xok, kb0, kb0 == warp);
    if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in: let the next kernel start streaming its own
    gemv4_store(a, red, acc, r0);
}

// ---------------------------------------------------------------------------------------------------------------
// Bulk-copy GEMV, m <= 8 (sm_90, cp.async.bulk: the copy engine of the multiprocessor, no registers, no per-thread
// requests): a CTA of 4 warps owns 16 weight rows, lanes 0..15 of warp 0 each copy one row's k_blocks * 64 bytes into
// shared memory (row stride S = the row rounded to 64 mod 128 bytes, so that the 128-bit reads of rows g and g + 1
// fall on disjoint banks), completing on one mbarrier; then the warps split the K blocks as gemv_kernel does, reading
// the words from shared memory. A CTA holds no weights in registers (more CTAs a multiprocessor than gemv_kernel);
// the copies start before griddepcontrol.wait. EARLY: let the next kernel launch at entry.
// ---------------------------------------------------------------------------------------------------------------


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
    gemv4_store(a, red, acc[0], r0);
#endif
}

// 1 in an image with the bulk-copy GEMV compiled in (sm_90 and newer, CUDA 12 or newer), 0 in every other.
__global__ void bulk_probe_kernel(int* out) { *out = ROTOR_BULK; }

// ---------------------------------------------------------------------------------------------------------------
// Wide GEMV, 9 <= m <= 64: the register-load GEMV with 8 warps, NT = 2, 4 or 8 activation tiles a warp and two blocks
// a step, unpredicated: its x loads (4 NT a block) dominate, and this form keeps them all in flight.
// ---------------------------------------------------------------------------------------------------------------

constexpr int kGemvWarps = 8;

// EPL: the epilogue's operands loaded right after the wait on the previous kernel, while x comes in (NT <= 4), so that
// their L2 round trip is off the critical path after the reduction; taken where a warp has at most one step
// (launch_gemv): with more, their registers cost the main loop more than the early loads save.
template <int NT, bool EPL>
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_wide_kernel(rotor_gemm_args a) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    const uint8_t* wA = weight_row(a, r0 + g, t);
    const uint8_t* wB = weight_row(a, r0 + g + 8, t);
    int kb = warp;
    // (pa, pb) always hold block kb once kb < k_blocks: the first is loaded before waiting on the previous kernel.
    uint4 pa = make_uint4(0, 0, 0, 0), pb = pa;
    if (kb < a.k_blocks) {
        pa = ld_stream(wA + (size_t)kb * 64);
        pb = ld_stream(wB + (size_t)kb * 64);
    }
    pdl_wait();  // x and its scales come from the previous kernel
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
    int acc[NT][4];
    gemv_start<NT>(a, g, t, xr, xok, acc);

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
}

// ---------------------------------------------------------------------------------------------------------------
// Split-K GEMV on clusters (m <= 64, compute capability 9.0, CUDA 12): a CTA of 8 warps owns 128 weight rows (16 a
// warp, as in gemv_kernel) and KPC consecutive K blocks; the CS = ceil(k_blocks / KPC) CTAs of a column of the grid
// form one cluster and add their partial tiles through distributed shared memory, each CTA finishing 1 / CS of the
// outputs. x is staged once a CTA in shared memory (swizzled as x_offset says, so the warps' 128-bit reads of rows g
// and g + 1 fall on disjoint banks), where the wide GEMV reads all of x through L1 for every 16 weight rows. The
// weights are loaded into registers before the wait on the previous kernel.
// ---------------------------------------------------------------------------------------------------------------

constexpr int kSkWarps = 8;
constexpr int kSkRows = 16 * kSkWarps;  // weight rows a CTA
constexpr int kSkMaxCluster = 8;        // the portable cluster size
constexpr int kSkMaxBlocks = 4 * kSkMaxCluster;

// Shared memory: x [KPC][8 NT][256], the partial dots [warp][NT][4][32], x sums and scales [8 NT], weight scales and
// bias [128].
__host__ __device__ constexpr int sk_smem(int nt, int kpc) { return kpc * 8 * nt * 256 + kSkWarps * nt * 128 * 4 + 2 * 8 * nt * 4 + 2 * kSkRows * 4; }


template <int NT, int KPC>
__global__ void __launch_bounds__(32 * kSkWarps) gemv_sk_kernel(rotor_gemm_args a) {
#if ROTOR_BULK
    constexpr int R = 8 * NT;  // activation rows of the tile
    extern __shared__ __align__(16) unsigned char sk_buf[];
    unsigned char* xq = sk_buf;                                  // [KPC][R][256] int8, swizzled
    int* red = reinterpret_cast<int*>(sk_buf + KPC * R * 256);   // [warp][NT][4][32] partial dots
    int* s_xsum = red + kSkWarps * NT * 128;                     // [R] x sums
    float* s_xs = reinterpret_cast<float*>(s_xsum + R);          // [R] x scales
    float* s_ws = s_xs + R;                                      // [128] the tile's weight scales
    float* s_bias = s_ws + kSkRows;                              // [128] its bias
    pdl_trigger();  // the next kernel's CTAs may take free slots now and load their weights
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kb0 = blockIdx.y * KPC;
    if (threadIdx.x < kSkRows) {
        // The epilogue's weight scales and bias, which no kernel writes: loaded now, not after the reduction.
        const int r = min(blockIdx.x * kSkRows + threadIdx.x, a.n - 1);
        s_ws[threadIdx.x] = a.w_scale[(size_t)r * a.w_scale_stride];
        s_bias[threadIdx.x] = a.bias != nullptr ? a.bias[r] : 0.f;
    }
    const uint8_t* wA = weight_row(a, blockIdx.x * kSkRows + 16 * warp + g, t);
    const uint8_t* wB = weight_row(a, blockIdx.x * kSkRows + 16 * warp + g + 8, t);
    uint4 wa[KPC], wb[KPC];
#pragma unroll
    for (int u = 0; u < KPC; u++) {
        wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
        if (kb0 + u < a.k_blocks) {
            wa[u] = ld_stream(wA + (size_t)(kb0 + u) * 64);
            wb[u] = ld_stream(wB + (size_t)(kb0 + u) * 64);
        }
    }
    pdl_wait();  // x comes from the previous kernel, y may still be read by it
    if (threadIdx.x < R) {
        s_xsum[threadIdx.x] = threadIdx.x < a.m ? a.x_sum[threadIdx.x] : 0;
        s_xs[threadIdx.x] = threadIdx.x < a.m ? a.x_scale[threadIdx.x] : 0.f;
    }
    {
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
    auto finish = [&](int e2, int2 s) {
        const int dots[2] = {s.x, s.y};
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int idx = 2 * e2 + e, w = idx / (NT * 128), j = (idx >> 7) % NT, c = (idx >> 5) & 3, ln = idx & 31;
            const int r = blockIdx.x * kSkRows + 16 * w + (ln >> 2) + (c >> 1) * 8, i = 8 * j + 2 * (ln & 3) + (c & 1);
            if (i < a.m && r < a.n) {
                float v = __fmul_rn(__int2float_rn(dots[e] - s_xsum[i]), s_xs[i]);
                v = __fmul_rn(v, s_ws[r - blockIdx.x * kSkRows]);
                if (a.bias != nullptr) v = __fadd_rn(v, s_bias[r - blockIdx.x * kSkRows]);
                a.y[(size_t)i * a.y_stride + r] = apply_act(v, a.act);
            }
        }
    };
    constexpr int kGroups = kSkWarps * NT * 64;  // pairs of results
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) red[((warp * NT + j) * 4 + c) * 32 + lane] = acc[j][c];
    cluster_sync();
    // CTA `rank` finishes pairs [rank * per, ...) of results, summing them over the cluster.
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
    cluster_sync();  // the other CTAs have read this one's partial tile
#endif
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
// Host side
// ---------------------------------------------------------------------------------------------------------------

bool g_bulk = false;

int sk_kpc(int k_blocks) { return k_blocks <= kSkMaxCluster ? 1 : k_blocks <= 2 * kSkMaxCluster ? 2 : 4; }
int sk_tiles(int m) { return m <= 8 ? 1 : m <= 16 ? 2 : m <= 32 ? 4 : 8; }

template <int NT, int KPC>
int prepare_sk2() {
    CK(cudaFuncSetAttribute(gemv_sk_kernel<NT, KPC>, cudaFuncAttributeMaxDynamicSharedMemorySize, sk_smem(NT, KPC)));
    return 0;
}
template <int NT>
int prepare_sk1() {
    int r;
    if ((r = prepare_sk2<NT, 1>()) != 0 || (r = prepare_sk2<NT, 2>()) != 0) return r;
    return prepare_sk2<NT, 4>();
}

// Sets g_bulk: true when the device runs an image of this library with the bulk-copy GEMV compiled in.
int probe_bulk(const cudaDeviceProp& p) {
    g_bulk = false;
    if (p.major < 9) return 0;
    int h = 0, r = run_probe(bulk_probe_kernel, &h, "bulk-copy probe");
    if (r != 0 || h != 1) return r;
    // A tile of 48 KB and the static arrays exceed the default limit of 48 KB a CTA.
    CK(cudaFuncSetAttribute(gemv_bulk_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBulkMaxSmem));
    CK(cudaFuncSetAttribute(gemv_bulk_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, kBulkMaxSmem));
    if ((r = prepare_sk1<1>()) != 0 || (r = prepare_sk1<2>()) != 0 || (r = prepare_sk1<4>()) != 0 || (r = prepare_sk1<8>()) != 0)
        return r;
    g_bulk = true;
    return 0;
}

int gemv_init(const cudaDeviceProp& p) {
    // Fails with cudaErrorNoKernelImageForDevice when the library was not built for this architecture.
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, gemv8_kernel<false>));
    if (int r = probe_bulk(p)) return r;
    return fused_init();
}

bool bulk_fits(const rotor_gemm_args& a) { return g_bulk && a.m <= 8 && 16 * bulk_stride(a.k_blocks) <= kBulkMaxSmem; }
bool sk_fits(int m, int k_blocks) { return g_bulk && m >= 1 && m <= 64 && k_blocks >= 1 && k_blocks <= kSkMaxBlocks; }

// The register GEMVs. m <= 8: 4 warps x 4 blocks of weights in flight, eight CTAs a multiprocessor; gemv8_kernel where
// K is a multiple of 16 blocks, else gemv_kernel. A grid of 4 or more CTAs a multiprocessor (close to the 8 resident)
// lets the next kernel launch at entry: its CTAs then take slots as they free up; on smaller grids the early launch
// would take slots this one's later CTAs need, so it waits until this CTA's weights are in. 9 <= m <= 64: the wide
// GEMV, registers going to x; its epilogue operands early where K has fewer than 16 blocks (a warp does at most one
// step; gemv_wide_kernel).
int launch_gemv(const rotor_gemm_args& a, cudaStream_t s) {
    const dim3 grid((a.n + 15) / 16);
    if (a.m <= 8) {
        const bool early = (int)grid.x >= 4 * g_sms;
        if (a.k_blocks % 16 == 0) {
            if (early) return launch(gemv8_kernel<true>, grid, dim3(128), 0, s, "gemv8_kernel", a);
            return launch(gemv8_kernel<false>, grid, dim3(128), 0, s, "gemv8_kernel", a);
        }
        if (early) return launch(gemv_kernel<1, 4, 4, 8, true>, grid, dim3(128), 0, s, "gemv_kernel", a);
        return launch(gemv_kernel<1, 4, 4, 8>, grid, dim3(128), 0, s, "gemv_kernel", a);
    }
    const dim3 block(32 * kGemvWarps);
    const bool ep = a.k_blocks < 2 * kGemvWarps;
    switch (sk_tiles(a.m)) {
        case 2: return ep ? launch(gemv_wide_kernel<2, true>, grid, block, 0, s, "gemv_wide_kernel", a)
                          : launch(gemv_wide_kernel<2, false>, grid, block, 0, s, "gemv_wide_kernel", a);
        case 4: return ep ? launch(gemv_wide_kernel<4, true>, grid, block, 0, s, "gemv_wide_kernel", a)
                          : launch(gemv_wide_kernel<4, false>, grid, block, 0, s, "gemv_wide_kernel", a);
        default: return launch(gemv_wide_kernel<8, false>, grid, block, 0, s, "gemv_wide_kernel", a);
    }
}

// The bulk-copy GEMV: the next kernel may launch at entry where the grid has 4 or more CTAs a multiprocessor, as for
// the register GEMV.
int launch_gemv_bulk(const rotor_gemm_args& a, cudaStream_t s) {
    if (!bulk_fits(a))
        return fail(ROTOR_CUDA_EINVAL, "gemm: the bulk-copy GEMV takes m <= 8 and k_blocks <= 47 on compute capability 9.0+, got m = %d, k_blocks = %d",
                    a.m, a.k_blocks);
    const int grid = (a.n + 15) / 16, smem = 16 * bulk_stride(a.k_blocks);
    if (grid >= 4 * g_sms) return launch(gemv_bulk_kernel<true>, dim3(grid), dim3(128), smem, s, "gemv_bulk_kernel", a);
    return launch(gemv_bulk_kernel<false>, dim3(grid), dim3(128), smem, s, "gemv_bulk_kernel", a);
}

// KPC: the fewest K blocks a CTA that keeps the cluster within 8 CTAs.
template <int NT, int KPC>
int launch_sk2(const rotor_gemm_args& a, cudaStream_t s) {
    const unsigned cs = (unsigned)((a.k_blocks + KPC - 1) / KPC);
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
    cfg.attrs = attr;
    cfg.numAttrs = g_pdl ? 2 : 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, gemv_sk_kernel<NT, KPC>, a);
    return e == cudaSuccess ? 0 : cuda_fail(e, "gemv_sk_kernel");
}
template <int NT>
int launch_sk1(const rotor_gemm_args& a, cudaStream_t s) {
    switch (sk_kpc(a.k_blocks)) {
        case 1: return launch_sk2<NT, 1>(a, s);
        case 2: return launch_sk2<NT, 2>(a, s);
        default: return launch_sk2<NT, 4>(a, s);
    }
}
int launch_gemv_sk(const rotor_gemm_args& a, cudaStream_t s) {
    if (!sk_fits(a.m, a.k_blocks))
        return fail(ROTOR_CUDA_EINVAL, "gemm: the split-K cluster GEMV takes m <= 64 and k_blocks <= %d on compute capability 9.0+ (CUDA 12), got m = %d, k_blocks = %d",
                    kSkMaxBlocks, a.m, a.k_blocks);
    switch (sk_tiles(a.m)) {
        case 1: return launch_sk1<1>(a, s);
        case 2: return launch_sk1<2>(a, s);
        case 4: return launch_sk1<4>(a, s);
        default: return launch_sk1<8>(a, s);
    }
}

int launch_gemm_f32(const uint8_t* w, int row_bytes, int k_blocks, int n, const float* x, int cols, int x_stride, int m,
                    const float* w_scale, int w_scale_stride, const float* bias, float* y, int y_stride, int act,
                    cudaStream_t s) {
    const dim3 grid((n + 7) / 8, (m + 3) / 4);
    return launch(gemm_f32_kernel, grid, dim3(256), 0, s, "gemm_f32_kernel", w, row_bytes, k_blocks, n, x, cols, x_stride,
                  m, w_scale, w_scale_stride, bias, y, y_stride, act);
}

}  // namespace rotor

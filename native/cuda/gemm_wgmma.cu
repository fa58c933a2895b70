// gemm_wgmma.cu: the tensor-core GEMMs of Hopper (sm_90a only, chosen at run time on compute capability 9.0 where the
// device runs this library's sm_90a image): wgmma.mma_async m64nBMk32 s8, with the weights' A fragments sliced in
// registers from the packed bytes as common.cuh describes and x read from shared memory through a matrix descriptor.
// Two families: wgmma_kernel (two CTAs a multiprocessor, every warp copies and multiplies) and ws_kernel (one
// persistent CTA a multiprocessor, a TMA producer warp and consumer warpgroups); rotor_cuda.cu picks the configuration.
#include "common.cuh"

#include <algorithm>

namespace rotor {

// ---------------------------------------------------------------------------------------------------------------
// Two-CTA wgmma GEMM. A CTA of two warpgroups owns 128 weight rows (64 a warpgroup: the wgmma M) x BM activation rows
// (the wgmma N). Each K block (256 columns) is copied by cp.async into a STAGES-deep ring of shared memory:
//   x: BM rows x 256 int8, K-major with 128-byte swizzle: half block h (128 columns) of row r at h * BM * 128 +
//      r * 128, its 16-byte chunk c at (c ^ (r % 8)) * 16 (the layout a wgmma descriptor reads without bank conflicts);
//   w: 128 rows x 64 packed bytes at a row stride of 80 bytes (the 8 rows of a warp's 32-bit reads hit 8 disjoint
//      groups of 4 banks).
// In natural column order, the A fragment of thread (g, t) for k32 step s = 2q + h is, per row (g and g + 8 of its
// warp's 16), word 8h + t (a0/a1) and word 8h + 4 + t (a2/a3) of the row's 64 packed bytes, sliced at bit pair q:
// the thread reads words t, t + 4, t + 8, t + 12 of two rows once per K block and slices them 8 times.
// A warpgroup waits for its wgmmas at the end of every block: registers that feed a wgmma may not be written while
// any wgmma of the warpgroup is in flight (ptxas serializes the wgmmas otherwise, C7513), so the tensor cores are
// kept busy by the other CTA of the multiprocessor (two CTAs of 256 threads, 128 registers a thread) and, with 3+
// stages, by doing everything else of the next block while the wgmmas run (see wgmma_kernel). All 8 warps copy and
// multiply (cp.async groups and __syncthreads): one copy warp cannot issue cp.async fast enough. The tile height BM
// trades waves against work a CTA: 128 for large grids, 96, 80 and 64 (more stages) for the others.
// ---------------------------------------------------------------------------------------------------------------

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

// The configurations kWg128x128 .. kWg128x80 of common.cuh's table (weight rows x activation rows).
using Wg0 = WgConfig<128, 2>;  // 128 x 128, 84 KB, one block ahead
using Wg1 = WgConfig<96, 3>;   // 128 x 96, 96 KB, two blocks ahead
using Wg2 = WgConfig<64, 4>;   // 128 x 64, 104 KB, three blocks ahead
using Wg3 = WgConfig<80, 3>;   // 128 x 80, 90 KB, two blocks ahead: 2048 / 80 = 25.6 tiles fill two waves of 2560 rows
static_assert(Wg0::BM == kGemm[kWg128x128].bm && Wg1::BM == kGemm[kWg128x96].bm && Wg2::BM == kGemm[kWg128x64].bm &&
              Wg3::BM == kGemm[kWg128x80].bm && Wg0::BN == kGemm[kWg128x128].bn && Wg2::BM == kGemm[kWg128x64k].bm,
              "the configuration table");

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

// One result of the split kernel: dot product `dot` of activation row `col` and weight row `row`, as wg_epilogue
// computes it.
__device__ __forceinline__ void wg_store_one(const rotor_gemm_args& a, int dot, int col, int row) {
    if (row >= a.n || col >= a.m) return;
    float v = __fmul_rn(__fmul_rn(__int2float_rn(dot - a.x_sum[col]), a.x_scale[col]), a.w_scale[(size_t)row * a.w_scale_stride]);
    if (a.bias != nullptr) v = __fadd_rn(v, a.bias[row]);
    a.y[(size_t)col * a.y_stride + row] = apply_act(v, a.act);
}
#endif  // ROTOR_WGMMA

// With 3 or more stages the barrier, the copies of a later block and the next block's packed words all happen while
// a block's wgmmas run: only the 32 slices sit between a block's wait and the next block's wgmmas. With 2 (the
// 128-row tile: two CTAs have the shared memory for no more) the stage to refill is free only once the previous
// block's wgmmas are done, so everything runs in step (overlapping would take a second barrier a block, which costs
// more than it hides).
//
// SPLIT: the K blocks are shared out among the gridDim.z CTAs of a cluster (1, 1, gridDim.z) that own one tile, CTA z
// taking blocks [z K / S, (z + 1) K / S). For grids of fewer tiles than multiprocessors, where one CTA's chain of K
// blocks is the whole time. Each CTA leaves its partial accumulators in its own (then idle) stage memory, and after a
// cluster barrier CTA z sums accumulator registers [z A / S, (z + 1) A / S) of every thread over the cluster (A =
// BM / 2 a thread) through distributed shared memory and stores those results: integer sums, so the order of the
// pieces does not matter and the results equal the unsplit kernel's bit for bit.
template <class C, bool SPLIT>
__global__ void __launch_bounds__(C::kThreads, C::MIN_BLOCKS) wgmma_kernel(rotor_gemm_args a) {
#if ROTOR_WGMMA
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    unsigned char* const smem = wg_smem;
    const int tid = threadIdx.x, lane = tid & 31, t = lane & 3;
    const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
    // This CTA's K blocks: [kb0, kb0 + nk), all of them unless SPLIT (gridDim.z <= k_blocks: nk >= 1).
    int kb0 = 0, nk = a.k_blocks;
    if constexpr (SPLIT) {
        kb0 = (int)blockIdx.z * a.k_blocks / (int)gridDim.z;
        nk = ((int)blockIdx.z + 1) * a.k_blocks / (int)gridDim.z - kb0;
    }
    // This thread's first weight row in the tile (the second is + 8): warpgroup, warp, group g.
    const int wrow = 64 * (tid >> 7) + 16 * ((tid >> 5) & 3) + (lane >> 2);
    auto stage = [&](int kb) { return smem + (kb % C::STAGES) * C::kStageBytes; };
    int acc[C::BM / 2];
#pragma unroll
    for (int j = 0; j < C::BM / 2; j++) acc[j] = 0;

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) {
        if (s < nk) wg_load<C>(a, stage(s), kb0 + s, m0, n0, tid, C::kThreads);
        cp_async_commit();
    }
    if constexpr (C::STAGES >= 3) {
        cp_async_wait<C::STAGES - 2>();  // block 0 (this thread's copies) ...
        fence_proxy_async();             // ... visible to wgmma ...
        __syncthreads();                 // ... for everyone's copies
        unsigned p0[4], p1[4];           // packed words t + 4j of rows wrow and wrow + 8 of the next block
        wg_words<C>(p0, p1, stage(0), wrow, t);
        for (int kb = 0; kb < nk; kb++) {
            wg_issue<C>(acc, stage(kb), p0, p1);
            if (kb + 1 < nk) {
                cp_async_wait<C::STAGES - 3>();  // block kb + 1 (this thread's copies)
                fence_proxy_async();
                __syncthreads();  // everyone's copies of kb + 1; every wgmma of kb - 1 done: its stage is free
                const int next = kb + C::STAGES - 1;
                if (next < nk) wg_load<C>(a, stage(next), kb0 + next, m0, n0, tid, C::kThreads);
                cp_async_commit();
                wg_words<C>(p0, p1, stage(kb + 1), wrow, t);
            }
            wg_wait<0>();
            fence_regs(acc);
        }
    } else {
        for (int kb = 0; kb < nk; kb++) {
            cp_async_wait<C::STAGES - 2>();  // block kb has landed (this thread's copies) ...
            fence_proxy_async();             // ... is visible to wgmma ...
            __syncthreads();                 // ... for everyone's copies; the stage written next is no longer read
            const int next = kb + C::STAGES - 1;
            if (next < nk) wg_load<C>(a, stage(next), kb0 + next, m0, n0, tid, C::kThreads);
            cp_async_commit();
            unsigned p0[4], p1[4];
            wg_words<C>(p0, p1, stage(kb), wrow, t);
            wg_issue<C>(acc, stage(kb), p0, p1);
            wg_wait<0>();
            fence_regs(acc);
        }
    }
    cp_async_wait<0>();
    if constexpr (SPLIT) {
#if ROTOR_BULK
        constexpr int A = C::BM / 2;
        static_assert(C::kThreads * A * 4 <= C::kSmem, "the partial tile fits the stage memory");
        __syncthreads();  // every warp is done reading the stages
        int* part = reinterpret_cast<int*>(smem);  // [A][kThreads]: consecutive threads, consecutive words
#pragma unroll
        for (int j = 0; j < A; j++) part[j * C::kThreads + tid] = acc[j];
        cluster_sync();
        const unsigned rank = cluster_rank(), cs = cluster_count();
        const int j1 = ((int)rank + 1) * A / (int)cs;
        for (int j = (int)rank * A / (int)cs; j < j1; j++) {
            int sum = 0;
            for (unsigned c = 0; c < cs; c++) sum += ld_cluster_s32(part + j * C::kThreads + tid, c);
            wg_store_one(a, sum, m0 + 8 * (j >> 2) + 2 * t + (j & 1), n0 + wrow + 8 * ((j >> 1) & 1));
        }
        cluster_sync();  // the other CTAs have read this one's partial tile
#endif
    } else {
        wg_epilogue<C>(a, acc, m0, n0 + wrow, t);
    }
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

// The configurations kWs256x128 .. kWs128x128 of common.cuh's table.
using Ws0 = WsConfig<4, 128, 4>;  // 256 x 128, 192 KB
using Ws1 = WsConfig<4, 80, 6>;   // 256 x 80, 216 KB
using Ws2 = WsConfig<4, 96, 5>;   // 256 x 96, 200 KB
using Ws3 = WsConfig<2, 128, 5>;  // 128 x 128, 200 KB
static_assert(Ws0::BN == kGemm[kWs256x128].bn && Ws0::BM == kGemm[kWs256x128].bm && Ws1::BM == kGemm[kWs256x80].bm &&
              Ws2::BM == kGemm[kWs256x96].bm && Ws3::BN == kGemm[kWs128x128].bn && Ws3::BM == kGemm[kWs128x128].bm,
              "the configuration table");

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
// Waits for the phase of the given parity to complete, the loop inside one asm block.
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

// ---------------------------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------------------------

bool g_wgmma = false;
bool g_ws = false;

// 1 in the sm_90a image (wgmma compiled in), 0 in every other.
__global__ void wgmma_probe_kernel(int* out) { *out = ROTOR_WGMMA; }

template <class C>
int launch_wg(const rotor_gemm_args& a, cudaStream_t s) {
    if (!g_wgmma) return fail(ROTOR_CUDA_EINVAL, "gemm: the wgmma kernels need compute capability 9.0 and a library built for sm_90a");
    const dim3 grid((a.m + C::BM - 1) / C::BM, (a.n + C::BN - 1) / C::BN);
    if (grid.y > 65535) return fail(ROTOR_CUDA_EINVAL, "n = %d needs %u row tiles, more than 65535", a.n, grid.y);
    return launch_plain(wgmma_kernel<C, false>, grid, dim3(C::kThreads), C::kSmem, s, "wgmma_kernel", a);
}

// The split kernel: wg_splits(a) CTAs a tile in clusters along z; one piece is the plain kernel.
template <class C>
int launch_wg_split(const rotor_gemm_args& a, cudaStream_t s) {
    if (!g_wgmma || !g_bulk) return fail(ROTOR_CUDA_EINVAL, "gemm: the split-K wgmma kernel needs compute capability 9.0 and a library built for sm_90a with CUDA 12");
    const int splits = wg_splits(a);
    if (splits <= 1) return launch_wg<C>(a, s);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((a.m + C::BM - 1) / C::BM), (unsigned)((a.n + C::BN - 1) / C::BN), (unsigned)splits);
    if (cfg.gridDim.y > 65535) return fail(ROTOR_CUDA_EINVAL, "n = %d needs %u row tiles, more than 65535", a.n, cfg.gridDim.y);
    cfg.blockDim = dim3(C::kThreads);
    cfg.dynamicSmemBytes = C::kSmem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = (unsigned)splits;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, wgmma_kernel<C, true>, a);
    return e == cudaSuccess ? 0 : cuda_fail(e, "wgmma_kernel (split-K)");
}

template <class C>
int prepare_wg() {
    CK(cudaFuncSetAttribute(wgmma_kernel<C, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return 0;
}
template <class C>
int prepare_wg_split() {
    CK(cudaFuncSetAttribute(wgmma_kernel<C, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
    return 0;
}

#if CUDA_VERSION >= 12000
// cuTensorMapEncodeTiled, from the runtime's driver entry point (probe_ws): no link against libcuda.
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

// Sets g_wgmma (the device is 9.0 and runs the sm_90a code of this library) and g_ws.
int wgmma_init(const cudaDeviceProp& p) {
    g_wgmma = false;
    g_ws = false;
    if (p.major != 9 || p.minor != 0 || p.sharedMemPerBlockOptin < (size_t)Wg2::kSmem) return 0;  // the largest
    int h = 0, r = run_probe(wgmma_probe_kernel, &h, "wgmma probe");
    if (r != 0 || h != 1) return r;
    if ((r = prepare_wg<Wg0>()) != 0) return r;
    if ((r = prepare_wg<Wg1>()) != 0) return r;
    if ((r = prepare_wg<Wg2>()) != 0) return r;
    if ((r = prepare_wg<Wg3>()) != 0) return r;
    if (g_bulk && (r = prepare_wg_split<Wg2>()) != 0) return r;
    g_wgmma = true;
    return probe_ws();
}

int launch_wgmma(const rotor_gemm_args& a, int cfg, cudaStream_t s) {
    switch (cfg) {
        case kWg128x128: return launch_wg<Wg0>(a, s);
        case kWg128x96: return launch_wg<Wg1>(a, s);
        case kWg128x64: return launch_wg<Wg2>(a, s);
        case kWg128x80: return launch_wg<Wg3>(a, s);
        case kWg128x64k: return launch_wg_split<Wg2>(a, s);
        case kWs256x128: return launch_ws<Ws0>(a, s);
        case kWs256x80: return launch_ws<Ws1>(a, s);
        case kWs256x96: return launch_ws<Ws2>(a, s);
        case kWs128x128: return launch_ws<Ws3>(a, s);
        default: return fail(ROTOR_CUDA_EINVAL, "gemm: configuration %d is no wgmma kernel", cfg);
    }
}

}  // namespace rotor

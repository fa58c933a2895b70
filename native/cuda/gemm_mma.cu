// gemm_mma.cu: the tiled GEMM on mma.sync, for m > 64 on every device of compute capability 8.0 or newer (on H100 and
// H200, where the library's sm_90a image runs, the wgmma kernels of gemm_wgmma.cu take its place).
//
// A CTA of WW x WX warps owns BN = WW * 16 * MT weight rows and BM = WX * 8 * NT activation rows. Each K block (256
// columns), copied by cp.async into a STAGES-deep ring of shared memory:
//   x: BM rows x 256 int8 at x_offset (common.cuh: no bank conflict between rows g and g + 1 of a read phase);
//   w: BN rows x 64 packed bytes (16 rows x 64 B a warp read: conflict-free as is).
// A warp decodes its packed weights once per bit pair q in registers (shift + mask) and reuses them for NT mmas.
#include "common.cuh"

namespace rotor {

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

using Tile0 = TileConfig<4, 2, 2, 8, 2, 2>;  // 128 x 128, 256 threads, 80 KB: two CTAs a multiprocessor
using Tile1 = TileConfig<4, 2, 1, 8, 3, 2>;  // 64 x 128, 256 threads, 108 KB: twice the CTAs for small grids
static_assert(Tile0::kSmem == 80 * 1024, "tile 0 stage size");
static_assert(Tile0::BN == kGemm[kMma128x128].bn && Tile0::BM == kGemm[kMma128x128].bm, "the configuration table");
static_assert(Tile1::BN == kGemm[kMma64x128].bn && Tile1::BM == kGemm[kMma64x128].bm, "the configuration table");

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
    return launch_plain(tiled_kernel<C>, grid, dim3(C::kThreads), C::kSmem, s, "tiled_kernel", a);
}

int mma_init(const cudaDeviceProp&) {
    CK(cudaFuncSetAttribute(tiled_kernel<Tile0>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile0::kSmem));
    CK(cudaFuncSetAttribute(tiled_kernel<Tile1>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile1::kSmem));
    return 0;
}

int launch_mma(const rotor_gemm_args& a, int cfg, cudaStream_t s) {
    return cfg == kMma128x128 ? launch_tiled<Tile0>(a, s) : launch_tiled<Tile1>(a, s);
}

}  // namespace rotor

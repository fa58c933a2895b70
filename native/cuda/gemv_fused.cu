// gemv_fused.cu: the ternary GEMV of a decode step (m <= 8 activation rows) with the work around it fused in, so that a
// BitNet layer runs as 5 kernels a step instead of 8 to 10 (rotor_lm_linear):
//   prologue  the int8 input made in every CTA from float rows: RMSNorm (optional weight), then the absmax quantization
//             of rotor_lm_norm (rint, clamp to +-127, scale = amax / 127, sum of the ints). Each CTA repeats it for
//             the whole row (a few KB from L2, while its weights are in flight), which replaces a one-CTA norm kernel
//             on the step's critical path.
//   epilogue  store; add to y (the residual stream, each output read and written by the thread that computes it); or,
//             for a matrix of gate rows [0, n/2) and up rows [n/2, n), the gated product act(gate) * up into n/2
//             columns (a CTA owns gate rows 8c .. 8c + 7 and the same up rows: its tile's rows g and g + 8); or, for
//             the q/k/v rows of an attention layer, rotary embeddings on q and k and the append of k and v to the
//             caches (rotor_lm_rope_kv's work: a CTA owns 8 rotary pairs, each pair's rows at g and g + 8).
// The product itself is gemv.cu's: the 16 x 8 tile of mma.m16n8k32 over the I2_256 codes (common.cuh), 4 warps
// splitting the K blocks, weights streamed once, either into registers (4 blocks a warp in flight, issued before the
// wait on the previous kernel) or, on grids of fewer than 4 CTAs a multiprocessor, by bulk copies into shared memory.
#include "common.cuh"

#include <cuda_fp16.h>

#include <cmath>

namespace rotor {
namespace {

static_assert(sizeof(rotor_lm_linear_args) == 208, "rotor_lm_linear_args is mirrored by LmLinearNative in Native.cs");

constexpr int kFusedThreads = 128;
constexpr int kFusedMaxRows = 8;
constexpr int kFusedMaxSmem = 160 * 1024;  // weights (bulk copies), the int8 input and the staged float rows, at most

// Block reductions over the CTA's 4 warps; every thread gets the result. scratch: 4 values, free on entry.
template <typename T>
__device__ __forceinline__ T cta_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0] + scratch[1] + scratch[2] + scratch[3];
    __syncthreads();
    return v;
}
__device__ __forceinline__ float cta_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = fmaxf(fmaxf(scratch[0], scratch[1]), fmaxf(scratch[2], scratch[3]));
    __syncthreads();
    return v;
}

// The prologue's float rows go through shared memory: a row (and the norm weight) is copied in with all its loads in
// flight at once (cp.async where rows are 16-byte aligned), then read three times there. Reading it from L2 in the
// reduction loops instead costs one L2 round trip a loop step.
__host__ __device__ constexpr int fused_cols4(int cols) { return (cols + 3) / 4 * 4; }

// Copies n floats from global memory to shared memory (no wait): cp.async of 16 bytes where both are 16-byte aligned
// and n is a multiple of 4, else plain loads, 4 in flight a thread.
__device__ __forceinline__ void stage_floats(float* dst, const float* src, int n) {
    if (n % 4 == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0) {
        for (int c = threadIdx.x; c < n / 4; c += kFusedThreads) cp_async16(dst + 4 * c, src + 4 * c, true);
        cp_async_commit();
    } else {
#pragma unroll 4
        for (int j = threadIdx.x; j < n; j += kFusedThreads) dst[j] = src[j];
    }
}

// The prologue: rows i < m of src -> int8 rows of kp bytes at xs (columns past cols zero), their scales and sums.
// The operations of rotor_lm_norm's finish_regs, one rounding each: v = x * inv, then v * weight; q = rint(v * 127 /
// amax) clamped to +-127. wbuf holds the norm weight (staged before the wait on the previous kernel), rbuf a row.
// Where cols is a multiple of 4 the three passes over the row read float4s, several in flight a thread (a pass of
// dependent scalar steps is as slow as a norm kernel); the sums differ from rotor_lm_norm's only in their order.
__device__ __forceinline__ int8_t quant1(float v, float qinv) {
    return (int8_t)min(max(__float2int_rn(__fmul_rn(v, qinv)), -127), 127);
}

__device__ void make_x(const rotor_lm_linear_args& la, int8_t* xs, int kp, float* rbuf, const float* wbuf, float* s_scale,
                       int* s_sum, float* fr, int* ir) {
    const int tid = threadIdx.x, cols = la.cols;
    const bool norm = la.norm != 0, weighted = norm && la.norm_weight != nullptr, vec = cols % 4 == 0;
    const float4* r4 = reinterpret_cast<const float4*>(rbuf);
    const float4* w4 = reinterpret_cast<const float4*>(wbuf);
    for (int i = 0; i < la.g.m; i++) {
        stage_floats(rbuf, la.src + (size_t)i * la.src_stride, cols);
        cp_async_wait<0>();  // this row, and the norm weight with the first
        __syncthreads();
        float inv = 1.f;
        if (norm) {
            float ss = 0.f;
            if (vec) {
                float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma unroll 4
                for (int c = tid; c < cols / 4; c += kFusedThreads) {
                    const float4 v = r4[c];
                    s0 += v.x * v.x; s1 += v.y * v.y; s2 += v.z * v.z; s3 += v.w * v.w;
                }
                ss = (s0 + s1) + (s2 + s3);
            } else {
                for (int j = tid; j < cols; j += kFusedThreads) ss += rbuf[j] * rbuf[j];
            }
            ss = cta_sum(ss, fr);
            inv = __fdiv_rn(1.f, sqrtf(__fdiv_rn(ss, (float)cols) + la.eps));
        }
        auto value = [&](float x, float w) {
            if (norm) {
                x = __fmul_rn(x, inv);
                if (weighted) x = __fmul_rn(x, w);
            }
            return x;
        };
        auto value4 = [&](int c) {
            float4 v = r4[c];
            const float4 w = weighted ? w4[c] : make_float4(1.f, 1.f, 1.f, 1.f);
            v.x = value(v.x, w.x); v.y = value(v.y, w.y); v.z = value(v.z, w.z); v.w = value(v.w, w.w);
            return v;
        };
        float amax = 0.f;
        if (vec) {
            float m0 = 0.f, m1 = 0.f;
#pragma unroll 4
            for (int c = tid; c < cols / 4; c += kFusedThreads) {
                const float4 v = value4(c);
                m0 = fmaxf(m0, fmaxf(fabsf(v.x), fabsf(v.y)));
                m1 = fmaxf(m1, fmaxf(fabsf(v.z), fabsf(v.w)));
            }
            amax = fmaxf(m0, m1);
        } else {
            for (int j = tid; j < cols; j += kFusedThreads) amax = fmaxf(amax, fabsf(value(rbuf[j], weighted ? wbuf[j] : 1.f)));
        }
        amax = cta_max(amax, fr);
        const float qinv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
        int8_t* row = xs + (size_t)i * kp;
        int s = 0;
        if (vec) {
#pragma unroll 4
            for (int c = tid; c < kp / 4; c += kFusedThreads) {
                char4 q = make_char4(0, 0, 0, 0);
                if (c < cols / 4) {
                    const float4 v = value4(c);
                    q = make_char4(quant1(v.x, qinv), quant1(v.y, qinv), quant1(v.z, qinv), quant1(v.w, qinv));
                }
                reinterpret_cast<char4*>(row)[c] = q;
                s += (int)q.x + (int)q.y + (int)q.z + (int)q.w;
            }
        } else {
            for (int j = tid; j < kp; j += kFusedThreads) {
                const int8_t q = j < cols ? quant1(value(rbuf[j], weighted ? wbuf[j] : 1.f), qinv) : (int8_t)0;
                row[j] = q;
                s += q;
            }
        }
        s = cta_sum(s, ir);  // ends with a barrier: rbuf is free for the next row
        if (tid == 0) {
            s_scale[i] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
            s_sum[i] = s;
        }
    }
    __syncthreads();
}

// Weight row of the CTA's local row lr (0..15): rows 16c + lr; for the gated epilogue gate row 8c + lr (lr < 8) and
// up row n/2 + 8c + lr - 8; for the rotary epilogue the two rows of pair 8c + (lr & 7) (lr < 8: the first), so that
// a pair's values meet in one thread as the gated product's gate and up do. valid: the row exists (its output is
// stored). A row past the end is clamped to the last one of its part: read, computed, never stored.
template <int EPI>
__device__ __forceinline__ int local_row(const rotor_lm_linear_args& la, int lr, bool* valid) {
    const rotor_gemm_args& a = la.g;
    if constexpr (EPI == ROTOR_LM_GATED) {
        const int half = a.n / 2, r = 8 * blockIdx.x + (lr & 7);
        *valid = r < half;
        return (lr < 8 ? 0 : half) + min(r, half - 1);
    } else if constexpr (EPI == ROTOR_LM_ROPE) {
        const int pairs = a.n / 2, p = min(8 * blockIdx.x + (lr & 7), pairs - 1);
        *valid = 8 * blockIdx.x + (lr & 7) < pairs;
        const int half = la.head_dim / 2, rotated = (la.heads + la.kv_heads) * half;
        if (p >= rotated) return a.n - 2 * (pairs - p) + (lr >> 3);  // v: adjacent rows, not rotated
        const int o = (p / half) * la.head_dim, j = p % half;
        if (la.rope_style == ROTOR_LM_ROPE_HALF) return o + j + (lr < 8 ? 0 : half);
        return o + 2 * j + (lr >> 3);
    } else {
        const int r = 16 * blockIdx.x + lr;
        *valid = r < a.n;
        return min(r, a.n - 1);
    }
}

// One 256-column block of the tile: weight words wa (row g) and wb (row g + 8), x of activation row g at xg (16t
// into the row; NULL: a row past m, zeros).
template <bool SMEM_X>
__device__ __forceinline__ void fused_block(int (&acc)[4], uint4 wa, uint4 wb, const int8_t* xg, int kb) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        uint4 xv = make_uint4(0, 0, 0, 0);
        if (xg != nullptr) {
            const uint4* p = reinterpret_cast<const uint4*>(xg + (size_t)kb * 256 + 64 * q);
            xv = SMEM_X ? *p : __ldg(p);
        }
        mma_s8(acc, slice(wa.x, q), slice(wb.x, q), slice(wa.y, q), slice(wb.y, q), xv.x, xv.y);  // columns 64q + 16t + 0..7
        mma_s8(acc, slice(wa.z, q), slice(wb.z, q), slice(wa.w, q), slice(wb.w, q), xv.z, xv.w);  // 64q + 16t + 8..15
    }
}

// BULK: weights by bulk copies into shared memory (sm_90), else into registers. PRO: the int8 input made from
// la.src, else read from la.g.x. EPI: rotor_lm_epilogue. EARLY: let the next kernel launch at entry (large grids).
template <bool BULK, bool PRO, int EPI, bool EARLY>
__global__ void __launch_bounds__(kFusedThreads) gemv_fused_kernel(rotor_lm_linear_args la) {
    if constexpr (BULK && !ROTOR_BULK) {
        return;
    } else {
        if constexpr (EARLY) pdl_trigger();
        const rotor_gemm_args& a = la.g;
        extern __shared__ __align__(128) unsigned char fu_smem[];
        __shared__ int red[4][4][32];
        __shared__ float s_scale[kFusedMaxRows], s_v[4][32], fr[4];
        __shared__ int s_sum[kFusedMaxRows], ir[4];
        __shared__ __align__(8) unsigned long long bar;
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
        const int S = bulk_stride(a.k_blocks), kp = a.k_blocks * 256;
        int8_t* xs = reinterpret_cast<int8_t*>(fu_smem + (BULK ? 16 * S : 0));
        float* rbuf = reinterpret_cast<float*>(xs + (size_t)a.m * kp);
        float* wbuf = rbuf + fused_cols4(la.cols);
        if constexpr (PRO) {
            // The norm weight is never written by a kernel: staged before the wait.
            if (la.norm && la.norm_weight != nullptr) stage_floats(wbuf, la.norm_weight, la.cols);
        }
        bool okA, okB;
        const int rowA = local_row<EPI>(la, g, &okA), rowB = local_row<EPI>(la, g + 8, &okB);

        constexpr int U = 4;
        uint4 wa[U], wb[U];
        [[maybe_unused]] unsigned mb = 0;
        if constexpr (BULK) {
#if ROTOR_BULK
            mb = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
            if (threadIdx.x == 0) {
                asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(mb) : "memory");
                asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
            }
            __syncthreads();
            if (warp == 0) {
                const int bytes = a.k_blocks * 64;
                bool ok = false;
                const int r = lane < 16 ? local_row<EPI>(la, lane, &ok) : 0;
                const unsigned copies = __ballot_sync(0xffffffffu, lane < 16 && ok);
                if (lane == 0)
                    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mb), "r"(__popc(copies) * bytes) : "memory");
                __syncwarp();
                if (lane < 16 && ok) {
                    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(fu_smem + lane * S));
                    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                                 ::"r"(dst), "l"(a.w + (size_t)r * a.row_bytes), "r"(bytes), "r"(mb) : "memory");
                }
            }
#endif
        } else {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int kb = warp + 4 * u;
                wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
                if (kb < a.k_blocks) {
                    wa[u] = ld_stream(a.w + (size_t)rowA * a.row_bytes + 16 * t + (size_t)kb * 64);
                    wb[u] = ld_stream(a.w + (size_t)rowB * a.row_bytes + 16 * t + (size_t)kb * 64);
                }
            }
        }
        pdl_wait();  // src, x, its scales and y belong to earlier kernels
        if constexpr (PRO) make_x(la, xs, kp, rbuf, wbuf, s_scale, s_sum, fr, ir);
        const int8_t* xg = nullptr;
        if (g < a.m) xg = PRO ? xs + (size_t)g * kp + 16 * t : a.x + (size_t)g * a.x_stride + 16 * t;

        int acc[4] = {0, 0, 0, 0};
        if constexpr (BULK) {
#if ROTOR_BULK
            unsigned done = 0;
            while (!done)
                asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\nselp.u32 %0, 1, 0, p;\n}\n"
                             : "=r"(done) : "r"(mb) : "memory");
            if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in
            // Rows not copied hold whatever shared memory held: computed, never stored.
            const unsigned char* pA = fu_smem + g * S + 16 * t;
            const unsigned char* pB = pA + 8 * S;
            for (int kb = warp; kb < a.k_blocks; kb += 4)
                fused_block<PRO>(acc, *reinterpret_cast<const uint4*>(pA + kb * 64), *reinterpret_cast<const uint4*>(pB + kb * 64), xg, kb);
#endif
        } else {
            for (int kb0 = warp;; kb0 += 4 * U) {
#pragma unroll
                for (int u = 0; u < U; u++)
                    if (kb0 + 4 * u < a.k_blocks) fused_block<PRO>(acc, wa[u], wb[u], xg, kb0 + 4 * u);
                if (kb0 + 4 * U >= a.k_blocks) break;
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int kb = kb0 + 4 * U + 4 * u;
                    if (kb < a.k_blocks) {
                        wa[u] = ld_stream(a.w + (size_t)rowA * a.row_bytes + 16 * t + (size_t)kb * 64);
                        wb[u] = ld_stream(a.w + (size_t)rowB * a.row_bytes + 16 * t + (size_t)kb * 64);
                    }
                }
            }
            if constexpr (!EARLY) pdl_trigger();  // this CTA's weights are in
        }

        // The 4 warps' tiles added in shared memory; thread (warp, lane) finishes fragment c = warp of lane: c0 (row g,
        // activation row 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).
#pragma unroll
        for (int c = 0; c < 4; c++) red[warp][c][lane] = acc[c];
        __syncthreads();
        const int dot = red[0][warp][lane] + red[1][warp][lane] + red[2][warp][lane] + red[3][warp][lane];
        const int lr = (lane >> 2) + (warp >> 1) * 8, i = 2 * (lane & 3) + (warp & 1);
        const int r = lr < 8 ? rowA : rowB;  // this thread's row g is lane >> 2 as well
        const bool ok = i < a.m && (lr < 8 ? okA : okB);
        float v = 0.f;
        if (ok) {
            const float xsc = PRO ? s_scale[i] : a.x_scale[i];
            const int xsum = PRO ? s_sum[i] : a.x_sum[i];
            v = __fmul_rn(__fmul_rn(__int2float_rn(dot - xsum), xsc), a.w_scale[(size_t)r * a.w_scale_stride]);
        }
        if constexpr (EPI == ROTOR_LM_STORE) {
            if (ok) a.y[(size_t)i * a.y_stride + r] = apply_act(v, a.act);
        } else if constexpr (EPI == ROTOR_LM_ADD) {
            if (ok) {
                float* p = a.y + (size_t)i * a.y_stride + r;
                *p = __fadd_rn(*p, v);
            }
        } else if constexpr (EPI == ROTOR_LM_ROPE) {
            s_v[warp][lane] = v;
            __syncthreads();
            if (warp < 2 && ok) {
                // rowA and rowB (warps 2, 3 hold rowB's value for the same activation row) as rope_kv_kernel rotates
                // them, with its roundings; k and v also to the caches, as it appends them.
                const int qd = la.heads * la.head_dim, kvd = la.kv_heads * la.head_dim, half = la.head_dim / 2;
                const int p = la.pos[i];
                float na = v, nb = s_v[warp + 2][lane];
                if (rowA < qd + kvd) {
                    const int j = la.rope_style == ROTOR_LM_ROPE_HALF ? rowA % la.head_dim : (rowA % la.head_dim) / 2;
                    const float c = la.rope_cos[(size_t)p * half + j], sn = la.rope_sin[(size_t)p * half + j], b = nb;
                    na = __fsub_rn(__fmul_rn(v, c), __fmul_rn(b, sn));
                    nb = la.rope_style == ROTOR_LM_ROPE_HALF ? __fadd_rn(__fmul_rn(b, c), __fmul_rn(v, sn))
                                                             : __fadd_rn(__fmul_rn(v, sn), __fmul_rn(b, c));
                }
                float* yr = a.y + (size_t)i * a.y_stride;
                yr[rowA] = na;
                yr[rowB] = nb;
                if (rowA >= qd) {
                    const bool isv = rowA >= qd + kvd;
                    const size_t base = (size_t)la.slot[i] * la.slot_stride + (size_t)p * kvd + (isv ? rowA - qd - kvd : rowA - qd);
                    const size_t off = (size_t)(rowB - rowA);
                    void* cache = isv ? la.v_cache : la.k_cache;
                    if (la.cache_type == 1) {
                        __half* hc = static_cast<__half*>(cache);
                        hc[base] = __float2half_rn(na);
                        hc[base + off] = __float2half_rn(nb);
                    } else {
                        float* fc = static_cast<float*>(cache);
                        fc[base] = na;
                        fc[base + off] = nb;
                    }
                }
            }
        } else {
            s_v[warp][lane] = v;
            __syncthreads();
            if (warp < 2 && ok) {
                // gate (warp 0, 1: rows g) and up (warp 2, 3: rows g + 8) of the same activation row
                a.y[(size_t)i * a.y_stride + r] = __fmul_rn(gate_act(v, la.act), s_v[warp + 2][lane]);
            }
        }
    }
}

// Dynamic shared memory: [bulk-copied weights: 16 rows of bulk_stride][PRO: int8 input (m, kp)][row (cols4)][norm weight (cols4)].
size_t fused_smem(const rotor_lm_linear_args& la, bool bulk) {
    const size_t w = bulk ? 16 * (size_t)bulk_stride(la.g.k_blocks) : 0;
    if (la.src == nullptr) return w;
    return w + (size_t)la.g.m * la.g.k_blocks * 256 + 2 * sizeof(float) * (size_t)fused_cols4(la.cols);
}

template <bool BULK, bool PRO, int EPI, bool EARLY>
int allow_fused() {
    CK(cudaFuncSetAttribute(gemv_fused_kernel<BULK, PRO, EPI, EARLY>, cudaFuncAttributeMaxDynamicSharedMemorySize, kFusedMaxSmem));
    return 0;
}
template <bool BULK, bool PRO>
int allow_fused2() {
    int r;
    if ((r = allow_fused<BULK, PRO, ROTOR_LM_STORE, false>()) || (r = allow_fused<BULK, PRO, ROTOR_LM_STORE, true>()) ||
        (r = allow_fused<BULK, PRO, ROTOR_LM_ADD, false>()) || (r = allow_fused<BULK, PRO, ROTOR_LM_ADD, true>()) ||
        (r = allow_fused<BULK, PRO, ROTOR_LM_GATED, false>()) || (r = allow_fused<BULK, PRO, ROTOR_LM_GATED, true>()) ||
        (r = allow_fused<BULK, PRO, ROTOR_LM_ROPE, false>()) || (r = allow_fused<BULK, PRO, ROTOR_LM_ROPE, true>()))
        return r;
    return 0;
}

template <bool BULK, bool PRO, int EPI>
int launch_fused3(const rotor_lm_linear_args& la, dim3 grid, size_t smem, bool early, cudaStream_t s) {
    if (early) return launch(gemv_fused_kernel<BULK, PRO, EPI, true>, grid, dim3(kFusedThreads), smem, s, "gemv_fused_kernel", la);
    return launch(gemv_fused_kernel<BULK, PRO, EPI, false>, grid, dim3(kFusedThreads), smem, s, "gemv_fused_kernel", la);
}
template <bool BULK, bool PRO>
int launch_fused2(const rotor_lm_linear_args& la, dim3 grid, size_t smem, bool early, cudaStream_t s) {
    switch (la.epilogue) {
        case ROTOR_LM_STORE: return launch_fused3<BULK, PRO, ROTOR_LM_STORE>(la, grid, smem, early, s);
        case ROTOR_LM_ADD: return launch_fused3<BULK, PRO, ROTOR_LM_ADD>(la, grid, smem, early, s);
        case ROTOR_LM_ROPE: return launch_fused3<BULK, PRO, ROTOR_LM_ROPE>(la, grid, smem, early, s);
        default: return launch_fused3<BULK, PRO, ROTOR_LM_GATED>(la, grid, smem, early, s);
    }
}

}  // namespace

int fused_init() {
    int r;
    if ((r = allow_fused2<false, false>()) || (r = allow_fused2<false, true>())) return r;
    if (g_bulk && ((r = allow_fused2<true, false>()) || (r = allow_fused2<true, true>()))) return r;
    return 0;
}

}  // namespace rotor

using namespace rotor;

extern "C" ROTOR_API int rotor_lm_linear(const rotor_lm_linear_args* args, void* stream) {
    if (args == nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_linear: args is NULL");
    if (g_device >= 0) {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess || cur != g_device) CK(cudaSetDevice(g_device));
    }
    const rotor_lm_linear_args& la = *args;
    const rotor_gemm_args& a = la.g;
    const bool gated = la.epilogue == ROTOR_LM_GATED, rope = la.epilogue == ROTOR_LM_ROPE;
    if (a.m < 1 || a.m > kFusedMaxRows || a.n < 1 || a.k_blocks < 1 || a.row_bytes < a.k_blocks * 64 ||
        la.epilogue < ROTOR_LM_STORE || la.epilogue > ROTOR_LM_ROPE || (gated && a.n % 2 != 0) ||
        a.y_stride < (gated ? a.n / 2 : a.n) || a.w_scale_stride < 0)
        return fail(ROTOR_CUDA_EINVAL, "lm_linear: m = %d (1..%d), n = %d, k_blocks = %d, row_bytes = %d, epilogue = %d, y_stride = %d",
                    a.m, kFusedMaxRows, a.n, a.k_blocks, a.row_bytes, la.epilogue, a.y_stride);
    if (a.w == nullptr || a.w_scale == nullptr || a.y == nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_linear: NULL weights, scales or y");
    if (a.bias != nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_linear: a bias is not supported");
    if (gated && la.act != ROTOR_LM_SILU && la.act != ROTOR_LM_RELU2) return fail(ROTOR_CUDA_EINVAL, "lm_linear: act = %d", la.act);
    if (!gated && la.epilogue == ROTOR_LM_ADD && a.act != ROTOR_ACT_NONE) return fail(ROTOR_CUDA_EINVAL, "lm_linear: the add epilogue takes no activation");
    if (rope) {
        if (la.heads < 1 || la.kv_heads < 1 || la.head_dim < 2 || la.head_dim % 2 != 0 ||
            a.n != (la.heads + 2 * la.kv_heads) * la.head_dim || a.act != ROTOR_ACT_NONE ||
            (la.rope_style != ROTOR_LM_ROPE_HALF && la.rope_style != ROTOR_LM_ROPE_INTERLEAVED) ||
            (la.cache_type != 0 && la.cache_type != 1) || la.slot_stride < 0)
            return fail(ROTOR_CUDA_EINVAL, "lm_linear: rotary epilogue with heads = %d, kv_heads = %d, head_dim = %d, n = %d, style = %d, cache_type = %d, act = %d",
                        la.heads, la.kv_heads, la.head_dim, a.n, la.rope_style, la.cache_type, a.act);
        if (!la.rope_cos || !la.rope_sin || !la.pos || !la.slot || !la.k_cache || !la.v_cache)
            return fail(ROTOR_CUDA_EINVAL, "lm_linear: rotary epilogue with a NULL table, position, slot or cache");
    }
    if (la.src != nullptr) {
        if (la.cols < 1 || la.cols > a.k_blocks * 256 || la.src_stride < la.cols)
            return fail(ROTOR_CUDA_EINVAL, "lm_linear: cols = %d (1..%d), src_stride = %d", la.cols, a.k_blocks * 256, la.src_stride);
    } else if (a.x == nullptr || a.x_scale == nullptr || a.x_sum == nullptr || a.x_stride < a.k_blocks * 256) {
        return fail(ROTOR_CUDA_EINVAL, "lm_linear: no src and no int8 x (x_stride = %d)", a.x_stride);
    }
    const int ctas = gated || rope ? (a.n / 2 + 7) / 8 : (a.n + 15) / 16;
    // As choose_gemv: bulk copies where the grid has fewer than 4 CTAs a multiprocessor and K is not a multiple of 16
    // blocks; an early launch of the next kernel where it has 4 or more.
    const bool bulk = g_bulk && ctas < 4 * g_sms && a.k_blocks % 16 != 0 && 16 * bulk_stride(a.k_blocks) <= kBulkMaxSmem;
    const bool early = ctas >= 4 * g_sms;
    const size_t smem = fused_smem(la, bulk);
    if (smem > (size_t)kFusedMaxSmem)
        return fail(ROTOR_CUDA_EINVAL, "lm_linear: %d rows of %d blocks take %zu bytes of shared memory (at most %d)", a.m, a.k_blocks, smem, kFusedMaxSmem);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    const dim3 grid(ctas);
    if (bulk) return la.src != nullptr ? launch_fused2<true, true>(la, grid, smem, early, s) : launch_fused2<true, false>(la, grid, smem, early, s);
    return la.src != nullptr ? launch_fused2<false, true>(la, grid, smem, early, s) : launch_fused2<false, false>(la, grid, smem, early, s);
}

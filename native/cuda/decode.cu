// decode.cu: a whole one-row decode step of a BitNet-style model's layers in one persistent kernel (rotor_lm_decode).
//
// Why: a one-row step is latency-bound, not bandwidth-bound. As separate kernels a layer is 8 to 10 launches, each
// paying its launch gap, its ramp and its tail, and a product's weights start streaming only when its kernel starts.
// Here one CTA a multiprocessor runs every layer; the phases of a layer are separated by grid barriers, and each CTA's
// share of every weight matrix of the next layer is bulk-copied into its shared memory while the current layer
// computes, so a phase reads its weights from shared memory and its critical path is: barrier, input row from L2,
// norm + quantization, tensor-core products, epilogue.
//
// Phases of layer l (each CTA takes units blockIdx.x, + ctas, ...; a unit is one or two 16-row tiles of a matrix):
//   QKV   x -> RMSNorm (attn_norm) -> int8 -> q, k, v rows; rotary embeddings on q and k (a unit holds both rows of
//         every rotary pair: tiles t and t + hd / 32 of a head), q to a.q, k and v appended to the cache at pos.
//   ATTN  (key/value head, split of the context) units: online softmax over the split's positions, one warp a
//         position in turn; the partial sums go to a.ws and the last split of a key/value head to arrive (a counter)
//         merges them into a.o (flash decoding with the combine in the last CTA).
//   WO    o -> attn_sub_norm (when given) -> int8 -> product, added to x.
//   GU    x -> ffn_norm -> int8 -> gate rows 8u.. and up rows f + 8u.. (one 16-row tile) -> act(gate) * up -> a.h.
//   DOWN  h -> ffn_sub_norm (when given) -> int8 -> product, added to x.
// Every CTA repeats the norm of a phase's input row itself (a few KB from L2), instead of one CTA making it behind one
// more barrier. The arithmetic is rotor_lm_norm's, gemv_fused.cu's and the attention kernels' (lm.cu), one rounding an
// operation; sums are taken in another order, so results equal theirs within float rounding, not bit for bit.
//
// Memory: data written inside the kernel is read with ld.global.cg (L2), never through L1, which other CTAs' writes
// do not update. The grid barrier is cooperative groups' flip-bit counter (self-resetting, so graph replays need no
// reset); the launch is cooperative, so all CTAs are resident.
#include "common.cuh"

#include <cuda_fp16.h>

#include <cmath>
#include <cstdlib>

namespace rotor {
namespace {

constexpr int kDT = 256;              // threads a CTA
constexpr int kDW = kDT / 32;         // warps a CTA
constexpr int kDMaxT = 8;             // tiles a CTA holds in one phase (its accumulators)
constexpr int kDMaxF4 = 8;            // float4s a thread holds of an input row: rows up to 8192 columns
constexpr int kDMaxGroup = 8;         // query heads a key/value head
constexpr int kDMaxDpl = 4;           // head dims a lane (head size up to 128)
constexpr int kDMaxSmem = 227 * 1024;
constexpr int kSyncStride = 32;       // uint32s between the counters of a.sync (one 128-byte line each)

enum { P_QKV = 0, P_WO = 1, P_GU = 2, P_DOWN = 3 };

// The work split, made by the host (plan()).
struct Plan {
    int ctas;
    int kb[4];      // K blocks of each product's input (dim, qd, dim, ffn)
    int n[4];       // rows of each matrix
    int units[4];   // units of each phase
    int tpu[4];     // tiles a unit: 2 for QKV (the rotary pairs), else 1
    int stride[4];  // bytes of a weight row in shared memory
    int off[4];     // shared-memory offset of the phase's weight buffer
    int maxt[4];    // tiles a CTA holds at most in the phase
    int xs_off;     // the int8 input row (kp_max bytes) and, aliased, the attention's per-warp partial sums
    int smem;
    int max_splits; // attention splits at most (a.ws holds heads * max_splits partials)
    int skip;       // phases left out (bit P, attention bit 4; bit 5: no weight copies): ROTOR_DECODE_SKIP, for timing the parts (wrong results)
};

__device__ __forceinline__ float ldcg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float ldcg(const __half* p) { return __half2float(__ldcg(p)); }
__device__ __forceinline__ void stcg(float* p, float v) { __stcg(p, v); }
__device__ __forceinline__ void stcg(__half* p, float v) { __stcg(p, __float2half_rn(v)); }

__device__ __forceinline__ void grid_sync(unsigned* bar, unsigned n) {
    __syncthreads();
    if (threadIdx.x == 0) {
        // Block 0 adds 2^31 - (n - 1), the others 1: the top bit flips once all n have arrived, the low bits return
        // to where they were.
        const unsigned add = blockIdx.x == 0 ? 0x80000000u - (n - 1) : 1u;
        __threadfence();
        const unsigned old = atomicAdd(bar, add);
        unsigned cur;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(cur) : "l"(bar) : "memory");
        } while (((old ^ cur) & 0x80000000u) == 0);
        __threadfence();
    }
    __syncthreads();
}

// Units of phase p this CTA takes, and so its local tiles (unit j's tiles are j * tpu .. + tpu - 1).
__device__ __forceinline__ int my_units(const Plan& pl, int p) {
    const int b = blockIdx.x;
    return b < pl.units[p] ? (pl.units[p] - 1 - b) / pl.ctas + 1 : 0;
}

// Matrix row of local tile lt, tile row r (0..15); valid: its output exists (a row past the end is clamped to the
// last row of its part: read, computed, never stored).
__device__ __forceinline__ int tile_row(const Plan& pl, const rotor_lm_decode_args& a, int p, int lt, int r, bool* valid) {
    const int tpu = pl.tpu[p], u = blockIdx.x + (lt / tpu) * pl.ctas, k = lt % tpu;
    *valid = true;
    if (p == P_QKV) {
        const int per = a.head_dim / 32, head = u / per, j = u % per;
        return head * a.head_dim + k * (a.head_dim / 2) + 16 * j + r;
    }
    if (p == P_GU) {
        const int half = a.ffn, g = 8 * u + (r & 7);
        *valid = g < half;
        return (r < 8 ? 0 : half) + min(g, half - 1);
    }
    const int row = 16 * u + r;
    *valid = row < pl.n[p];
    return min(row, pl.n[p] - 1);
}

// Bulk copies of this CTA's rows of phase p of layer L into its weight buffer; completion on mbarrier mb.
__device__ void prefetch(const Plan& pl, const rotor_lm_decode_args& a, const rotor_lm_decode_layer* L, int p,
                         unsigned char* smem, unsigned mb) {
#if ROTOR_BULK
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    const float* nw = L->norm[p];
    if (nw != nullptr) {
        // The phase's norm weight is read on the critical path: its 128-byte lines brought into L2 now, spread over
        // the CTAs.
        const int cols = p == P_WO ? a.heads * a.head_dim : (p == P_DOWN ? a.ffn : a.dim), lines = (cols * 4 + 127) / 128;
        for (int k = blockIdx.x + lane * pl.ctas; k < lines; k += 32 * pl.ctas)
            asm volatile("prefetch.global.L2 [%0];\n" ::"l"(reinterpret_cast<const char*>(nw) + (size_t)k * 128));
    }
    const int T = my_units(pl, p) * pl.tpu[p];
    if (T == 0) return;
    const int bytes = pl.kb[p] * 64, rows = 16 * T;
    const uint8_t* w = L->w[p];
    const long long rb = L->row_bytes[p];
    if (lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mb), "r"(rows * bytes) : "memory");
    __syncwarp();
    const float* sc = L->w_scale[p];
    const int scs = L->w_scale_stride[p];
    for (int idx = lane; idx < rows; idx += 32) {
        bool valid;
        const int row = tile_row(pl, a, p, idx / 16, idx % 16, &valid);
        const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem + pl.off[p] + (size_t)idx * pl.stride[p]));
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                     ::"r"(dst), "l"(w + row * rb), "r"(bytes), "r"(mb) : "memory");
        // So is the row's scale (the epilogue's): into L2 now.
        if (scs != 0 || idx == 0) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(sc + (size_t)row * scs));
    }
#endif
}

__device__ __forceinline__ void mbar_wait(unsigned mb, unsigned parity) {
#if ROTOR_BULK
    unsigned done = 0;
    while (!done)
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(mb), "r"(parity) : "memory");
#endif
}

// Reductions over the CTA's warps; every thread gets the result. scratch: kDW values, not used by the previous one.
__device__ __forceinline__ float cta_sum(float v, float* scratch) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < kDW; w++) s += scratch[w];
    return s;
}
__device__ __forceinline__ float cta_max(float v, float* scratch) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = 0.f;
#pragma unroll
    for (int w = 0; w < kDW; w++) m = fmaxf(m, scratch[w]);
    return m;
}

__device__ __forceinline__ int8_t quant(float v, float qinv) {
    return (int8_t)min(max(__float2int_rn(__fmul_rn(v, qinv)), -127), 127);
}

// The int8 input of a product from the float row src (cols, a multiple of 4): RMSNorm when norm (times nw when not
// NULL), then the absmax quantization of rotor_lm_norm: xs gets kp bytes (zeros past cols); returns the scale, and
// each warp's part of the int8 sum in isum[warp] (read after the next __syncthreads).
__device__ float make_input(const float* src, const float* nw, int cols, bool norm, float eps, int kp, int8_t* xs,
                            float* fsum, float* fmax, int* isum) {
    const int tid = threadIdx.x, n4 = cols / 4;
    float4 v[kDMaxF4], w[kDMaxF4];
#pragma unroll
    for (int k = 0; k < kDMaxF4; k++) {
        const int c = tid + k * kDT;
        v[k] = make_float4(0.f, 0.f, 0.f, 0.f);
        w[k] = make_float4(1.f, 1.f, 1.f, 1.f);
        if (c < n4) {
            v[k] = __ldcg(reinterpret_cast<const float4*>(src) + c);
            if (norm && nw != nullptr) w[k] = __ldg(reinterpret_cast<const float4*>(nw) + c);
        }
    }
    if (norm) {
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int k = 0; k < kDMaxF4; k++) {
            s0 += v[k].x * v[k].x + v[k].y * v[k].y;
            s1 += v[k].z * v[k].z + v[k].w * v[k].w;
        }
        const float ss = cta_sum(s0 + s1, fsum);
        const float inv = __fdiv_rn(1.f, sqrtf(__fdiv_rn(ss, (float)cols) + eps));
        const bool weighted = nw != nullptr;
#pragma unroll
        for (int k = 0; k < kDMaxF4; k++) {
            v[k].x = __fmul_rn(v[k].x, inv); v[k].y = __fmul_rn(v[k].y, inv);
            v[k].z = __fmul_rn(v[k].z, inv); v[k].w = __fmul_rn(v[k].w, inv);
            if (weighted) {
                v[k].x = __fmul_rn(v[k].x, w[k].x); v[k].y = __fmul_rn(v[k].y, w[k].y);
                v[k].z = __fmul_rn(v[k].z, w[k].z); v[k].w = __fmul_rn(v[k].w, w[k].w);
            }
        }
    }
    float m = 0.f;
#pragma unroll
    for (int k = 0; k < kDMaxF4; k++) m = fmaxf(m, fmaxf(fmaxf(fabsf(v[k].x), fabsf(v[k].y)), fmaxf(fabsf(v[k].z), fabsf(v[k].w))));
    const float amax = cta_max(m, fmax);
    const float qinv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    int s = 0;
#pragma unroll
    for (int k = 0; k < kDMaxF4; k++) {
        const int c = tid + k * kDT;
        if (c < n4) {
            const char4 q = make_char4(quant(v[k].x, qinv), quant(v[k].y, qinv), quant(v[k].z, qinv), quant(v[k].w, qinv));
            reinterpret_cast<char4*>(xs)[c] = q;
            s += (int)q.x + (int)q.y + (int)q.z + (int)q.w;
        }
    }
    for (int c = n4 + tid; c < kp / 4; c += kDT) reinterpret_cast<char4*>(xs)[c] = make_char4(0, 0, 0, 0);
    s = warp_sum(s);
    if ((tid & 31) == 0) isum[tid >> 5] = s;
    return amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
}

// The products of the CTA's T tiles (weights in shared memory at wbuf, rows of stride bytes) with the int8 row xs of
// kb blocks: warp w takes blocks w, w + kDW, ..; each tile's two accumulator sets (the block's halves) keep the mma
// chains short. The row sums (activation column 0: fragments c0, row g, and c2, row g + 8, of lanes t = 0) go to
// dot[lt][r] by shared-memory atomics (integers: the order does not matter).
__device__ __forceinline__ void products(const unsigned char* wbuf, int stride, int T, int kb, const int8_t* xs, int (*dot)[16]) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int acc[kDMaxT][2][4];
#pragma unroll
    for (int lt = 0; lt < kDMaxT; lt++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[lt][h][c] = 0;
    for (int b = warp; b < kb; b += kDW) {
        uint4 xv[4];
#pragma unroll
        for (int q = 0; q < 4; q++)
            xv[q] = g == 0 ? *reinterpret_cast<const uint4*>(xs + (size_t)b * 256 + 64 * q + 16 * t) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int lt = 0; lt < kDMaxT; lt++) {
            if (lt >= T) break;
            const unsigned char* pA = wbuf + (size_t)(16 * lt + g) * stride + 16 * t + (size_t)b * 64;
            const uint4 wa = *reinterpret_cast<const uint4*>(pA);
            const uint4 wb = *reinterpret_cast<const uint4*>(pA + 8 * (size_t)stride);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                mma_s8(acc[lt][0], slice(wa.x, q), slice(wb.x, q), slice(wa.y, q), slice(wb.y, q), xv[q].x, xv[q].y);
                mma_s8(acc[lt][1], slice(wa.z, q), slice(wb.z, q), slice(wa.w, q), slice(wb.w, q), xv[q].z, xv[q].w);
            }
        }
    }
    if (t == 0) {
#pragma unroll
        for (int lt = 0; lt < kDMaxT; lt++) {
            if (lt >= T) break;
            atomicAdd(&dot[lt][g], acc[lt][0][0] + acc[lt][1][0]);
            atomicAdd(&dot[lt][g + 8], acc[lt][0][2] + acc[lt][1][2]);
        }
    }
}

struct Shared {
    int dot[kDMaxT][16];
    float val[kDMaxT * 16];
    float fsum[kDW], fmax[kDW];
    int isum[kDW];
    float ml[kDW][kDMaxGroup][2];
    float coef[kDMaxGroup][64];
    int last;
};

// One product phase of layer l: input row, products, epilogue; then this CTA's weights of the same phase of layer
// l + 1 are requested.
template <int P, typename T>
__device__ void product_phase(const Plan& pl, const rotor_lm_decode_args& a, int l, unsigned char* smem, Shared& sh,
                              unsigned mb, int pos, int slot, float rc, float rs) {
    const int T_ = my_units(pl, P) * pl.tpu[P];
    if (T_ == 0) return;
    const rotor_lm_decode_layer* L = a.d_layers + l;
    const int tid = threadIdx.x;
    if (tid < T_ * 16) sh.dot[tid / 16][tid % 16] = 0;
    // The phase's input row.
    const float* src = P == P_WO ? a.o : (P == P_DOWN ? a.h : a.x);
    const int cols = P == P_WO ? a.heads * a.head_dim : (P == P_DOWN ? a.ffn : a.dim);
    const float* nw = L->norm[P];
    const bool norm = P == P_QKV || P == P_GU || nw != nullptr;
    int8_t* xs = reinterpret_cast<int8_t*>(smem + pl.xs_off);
    const float xscale = make_input(src, nw, cols, norm, a.eps, pl.kb[P] * 256, xs, sh.fsum, sh.fmax, sh.isum);
    if (!(pl.skip & 32)) mbar_wait(mb, (unsigned)(l & 1));
    __syncthreads();  // xs and isum written
    int xsum = 0;
#pragma unroll
    for (int w = 0; w < kDW; w++) xsum += sh.isum[w];
    products(smem + pl.off[P], pl.stride[P], T_, pl.kb[P], xs, sh.dot);
    __syncthreads();  // the weights are read: the buffer takes the next layer's
    if (l + 1 < a.layers && !(pl.skip & 32)) prefetch(pl, a, L + 1, P, smem, mb);

    // Epilogue: thread tid < 16 T computes tile row (tid / 16, tid % 16).
    float v = 0.f;
    bool valid = false;
    int row = 0;
    if (tid < T_ * 16) {
        row = tile_row(pl, a, P, tid / 16, tid % 16, &valid);
        const float ws = __ldg(L->w_scale[P] + (size_t)row * L->w_scale_stride[P]);
        v = __fmul_rn(__fmul_rn(__int2float_rn(sh.dot[tid / 16][tid % 16] - xsum), xscale), ws);
    }
    if constexpr (P == P_WO || P == P_DOWN) {
        if (valid) stcg(a.x + row, __fadd_rn(ldcg(a.x + row), v));
    } else if constexpr (P == P_GU) {
        if (tid < T_ * 16) sh.val[tid] = v;
        __syncthreads();
        if (tid < T_ * 8) {
            const int lt = tid / 8, r = tid % 8;
            bool ok;
            const int gr = tile_row(pl, a, P, lt, r, &ok);
            if (ok) {
                const float gv = sh.val[lt * 16 + r], up = sh.val[lt * 16 + 8 + r];
                stcg(a.h + gr, __fmul_rn(gate_act(gv, a.act), up));
            }
        }
    } else {
        // QKV: rotary pairs, then q to a.q, k and v into the cache at (slot, pos).
        if (tid < T_ * 16) sh.val[tid] = v;
        __syncthreads();
        const int qd = a.heads * a.head_dim, kvd = a.kv_heads * a.head_dim;
        if (tid < T_ * 16) {
            const int lt = tid / 16, r = tid % 16;
            float out = v;
            if (row < qd + kvd) {
                const float c = rc, s = rs;  // rotary_of(row)
                if (a.rope_style == ROTOR_LM_ROPE_HALF) {
                    // Tile k = 0 of a unit holds dims j < hd / 2, tile k = 1 the partners j + hd / 2 (same r).
                    const bool first = (lt % 2) == 0;
                    const float pa = first ? v : sh.val[(lt - 1) * 16 + r];
                    const float pb = first ? sh.val[(lt + 1) * 16 + r] : v;
                    out = first ? __fsub_rn(__fmul_rn(pa, c), __fmul_rn(pb, s)) : __fadd_rn(__fmul_rn(pb, c), __fmul_rn(pa, s));
                } else {
                    const bool first = (r % 2) == 0;
                    const float pa = first ? v : sh.val[tid - 1];
                    const float pb = first ? sh.val[tid + 1] : v;
                    out = first ? __fsub_rn(__fmul_rn(pa, c), __fmul_rn(pb, s)) : __fadd_rn(__fmul_rn(pa, s), __fmul_rn(pb, c));
                }
            }
            T* kc = static_cast<T*>(a.kv) + (size_t)2 * l * a.capacity * kvd;
            T* vc = kc + (size_t)a.capacity * kvd;
            const size_t base = (size_t)slot * a.slot_stride + (size_t)pos * kvd;
            if (row < qd) stcg(a.q + row, out);
            else if (row < qd + kvd) stcg(kc + base + (row - qd), out);
            else stcg(vc + base + (row - qd - kvd), out);
        }
    }
}

// Attention of layer l: units (key/value head, split); the last split of a head to finish merges them into a.o.
template <typename T>
__device__ void attention_phase(const Plan& pl, const rotor_lm_decode_args& a, int l, unsigned char* smem, Shared& sh,
                                int pos, int slot) {
    const int len = pos + 1, group = a.heads / a.kv_heads, hd = a.head_dim, kvd = a.kv_heads * hd;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    // Positions a warp: as few as keep the splits within max_splits.
    const int per = max(1, (len + kDW * pl.max_splits - 1) / (kDW * pl.max_splits));
    const int sl = kDW * per, ns = (len + sl - 1) / sl, units = a.kv_heads * ns;
    float* s_acc = reinterpret_cast<float*>(smem + pl.xs_off);  // (kDW, group, hd)
    float* part_acc = a.ws;                                     // (heads, max_splits, hd)
    float2* part_ml = reinterpret_cast<float2*>(a.ws + (size_t)a.heads * pl.max_splits * hd);  // (heads, max_splits)
    const T* K0 = static_cast<const T*>(a.kv) + (size_t)2 * l * a.capacity * kvd + (size_t)slot * a.slot_stride;
    const T* V0 = K0 + (size_t)a.capacity * kvd;
    for (int u = blockIdx.x; u < units; u += pl.ctas) {
        const int kvh = u / ns, s = u % ns, h0 = kvh * group;
        const int t0 = s * sl, t1 = min(len, t0 + sl);
        float qr[kDMaxGroup][kDMaxDpl], acc[kDMaxGroup][kDMaxDpl], mx[kDMaxGroup], ls[kDMaxGroup];
#pragma unroll
        for (int g = 0; g < kDMaxGroup; g++) {
            mx[g] = -INFINITY;
            ls[g] = 0.f;
#pragma unroll
            for (int j = 0; j < kDMaxDpl; j++) {
                const int d = lane + 32 * j;
                qr[g][j] = (g < group && d < hd) ? __ldcg(a.q + (size_t)(h0 + g) * hd + d) : 0.f;
                acc[g][j] = 0.f;
            }
        }
        const T* K = K0 + (size_t)kvh * hd;
        const T* V = V0 + (size_t)kvh * hd;
        for (int t = t0 + warp; t < t1; t += kDW) {
            float kk[kDMaxDpl], vv[kDMaxDpl];
#pragma unroll
            for (int j = 0; j < kDMaxDpl; j++) {
                const int d = lane + 32 * j;
                kk[j] = d < hd ? ldcg(K + (size_t)t * kvd + d) : 0.f;
                vv[j] = d < hd ? ldcg(V + (size_t)t * kvd + d) : 0.f;
            }
            attend_position(qr, kk, vv, group, a.scale, mx, ls, acc);
        }
#pragma unroll
        for (int g = 0; g < kDMaxGroup; g++) {
            if (g >= group) break;
            if (lane == 0) { sh.ml[warp][g][0] = mx[g]; sh.ml[warp][g][1] = ls[g]; }
#pragma unroll
            for (int j = 0; j < kDMaxDpl; j++) {
                const int d = lane + 32 * j;
                if (d < hd) s_acc[((size_t)warp * group + g) * hd + d] = acc[g][j];
            }
        }
        __syncthreads();
        for (int e = tid; e < group * hd; e += kDT) {
            const int g = e / hd, d = e % hd;
            float m = -INFINITY;
#pragma unroll
            for (int w = 0; w < kDW; w++) m = fmaxf(m, sh.ml[w][g][0]);
            float sum = 0.f, lsum = 0.f;
#pragma unroll
            for (int w = 0; w < kDW; w++) {
                if (sh.ml[w][g][0] == -INFINITY) continue;  // a warp without positions
                const float c = expf(sh.ml[w][g][0] - m);
                sum += s_acc[((size_t)w * group + g) * hd + d] * c;
                lsum += sh.ml[w][g][1] * c;
            }
            const size_t idx = (size_t)(h0 + g) * pl.max_splits + s;
            __stcg(part_acc + idx * hd + d, sum);
            if (d == 0) __stcg(part_ml + idx, make_float2(m, lsum));
        }
        __syncthreads();
        if (tid == 0) {
            __threadfence();
            unsigned* cnt = a.sync + kSyncStride * (1 + kvh);
            const unsigned old = atomicAdd(cnt, 1u);
            sh.last = old == (unsigned)(ns - 1);
            if (sh.last) {
                atomicExch(cnt, 0u);  // every split has arrived: the counter is free for the next layer
                __threadfence();
            }
        }
        __syncthreads();
        if (sh.last) {
            // The merge of attn_combine_kernel for this head's query heads: weights exp(m_s - M) / L.
            if (warp < group) {
                const int h = h0 + warp;
                const float2* ml = part_ml + (size_t)h * pl.max_splits;
                float m = -INFINITY;
                for (int q = lane; q < ns; q += 32) m = fmaxf(m, __ldcg(&ml[q]).x);
                m = warp_max(m);
                float lsum = 0.f;
                for (int q = lane; q < ns; q += 32) {
                    const float2 v = __ldcg(&ml[q]);
                    lsum += v.y * expf(v.x - m);
                }
                lsum = warp_sum(lsum);
                for (int q = lane; q < ns; q += 32) sh.coef[warp][q] = expf(__ldcg(&ml[q]).x - m) / lsum;
            }
            __syncthreads();
            for (int e = tid; e < group * hd; e += kDT) {
                const int g = e / hd, d = e % hd;
                const float* pa = part_acc + ((size_t)(h0 + g) * pl.max_splits) * hd + d;
                float v = 0.f;
                for (int q = 0; q < ns; q++) v += sh.coef[g][q] * __ldcg(pa + (size_t)q * hd);
                __stcg(a.o + (size_t)(h0 + g) * hd + d, v);
            }
        }
        __syncthreads();  // shared memory is reused by the next unit
    }
}

template <typename T>
__global__ void __launch_bounds__(kDT, 1) decode_kernel(rotor_lm_decode_args a, Plan pl) {
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ Shared sh;
    __shared__ __align__(8) unsigned long long mbar[4];
    unsigned mb[4];
#pragma unroll
    for (int p = 0; p < 4; p++) mb[p] = static_cast<unsigned>(__cvta_generic_to_shared(&mbar[p]));
#if ROTOR_BULK
    if (threadIdx.x == 0) {
#pragma unroll
        for (int p = 0; p < 4; p++) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(mb[p]) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
#endif
    // The weights never change: layer 0's are requested before waiting for the embedding.
#pragma unroll
    for (int p = 0; p < 4; p++)
        if (!(pl.skip & (1 << p)) && !(pl.skip & 32)) prefetch(pl, a, a.d_layers, p, smem, mb[p]);
    pdl_wait();
    const int pos = a.pos[0], slot = a.slot[0];
    // This thread's rotary cos and sin: a CTA's q/k/v rows are the same in every layer.
    float rc = 0.f, rs = 0.f;
    if ((int)threadIdx.x < my_units(pl, P_QKV) * 32) {
        bool valid;
        const int row = tile_row(pl, a, P_QKV, threadIdx.x / 16, threadIdx.x % 16, &valid);
        if (row < (a.heads + a.kv_heads) * a.head_dim) {
            const int j = row % a.head_dim, half = a.head_dim / 2;
            const int jj = a.rope_style == ROTOR_LM_ROPE_HALF ? (j < half ? j : j - half) : j / 2;
            rc = __ldg(a.cos_t + (size_t)pos * half + jj);
            rs = __ldg(a.sin_t + (size_t)pos * half + jj);
        }
    }
    const int skip = pl.skip;
    for (int l = 0; l < a.layers; l++) {
        if (!(skip & 1)) product_phase<P_QKV, T>(pl, a, l, smem, sh, mb[P_QKV], pos, slot, rc, rs);
        grid_sync(a.sync, pl.ctas);
        if (!(skip & 16)) attention_phase<T>(pl, a, l, smem, sh, pos, slot);
        grid_sync(a.sync, pl.ctas);
        if (!(skip & 2)) product_phase<P_WO, T>(pl, a, l, smem, sh, mb[P_WO], pos, slot, 0.f, 0.f);
        grid_sync(a.sync, pl.ctas);
        if (!(skip & 4)) product_phase<P_GU, T>(pl, a, l, smem, sh, mb[P_GU], pos, slot, 0.f, 0.f);
        grid_sync(a.sync, pl.ctas);
        if (!(skip & 8)) product_phase<P_DOWN, T>(pl, a, l, smem, sh, mb[P_DOWN], pos, slot, 0.f, 0.f);
        if (l + 1 < a.layers) grid_sync(a.sync, pl.ctas);
    }
}

// The plan of a shape, or a message why the kernel cannot take it.
int plan(const rotor_lm_decode_args& a, Plan* out) {
    if (!g_bulk) return fail(ROTOR_CUDA_EINVAL, "lm_decode: the device has no bulk copies (compute capability 9.0 and CUDA 12 needed)");
    if (a.layers < 1 || a.dim < 4 || a.heads < 1 || a.kv_heads < 1 || a.head_dim < 32 || a.ffn < 4 || a.capacity < 1)
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: layers = %d, dim = %d, heads = %d, kv_heads = %d, head_dim = %d, ffn = %d, capacity = %d",
                    a.layers, a.dim, a.heads, a.kv_heads, a.head_dim, a.ffn, a.capacity);
    const int qd = a.heads * a.head_dim;
    if (a.head_dim % 32 != 0 || a.head_dim > 32 * kDMaxDpl || a.heads % a.kv_heads != 0 || a.heads / a.kv_heads > kDMaxGroup)
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: head_dim %d (a multiple of 32 up to %d), %d query heads over %d key/value heads (at most %d a group)",
                    a.head_dim, 32 * kDMaxDpl, a.heads, a.kv_heads, kDMaxGroup);
    if (a.dim % 4 != 0 || a.ffn % 4 != 0 || a.dim > 4 * kDT * kDMaxF4 || a.ffn > 4 * kDT * kDMaxF4 || qd > 4 * kDT * kDMaxF4)
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: rows of %d, %d and %d columns (multiples of 4 up to %d)", a.dim, qd, a.ffn, 4 * kDT * kDMaxF4);
    if (a.cache_type != 0 && a.cache_type != 1) return fail(ROTOR_CUDA_EINVAL, "lm_decode: cache_type = %d", a.cache_type);
    if (a.rope_style != ROTOR_LM_ROPE_HALF && a.rope_style != ROTOR_LM_ROPE_INTERLEAVED)
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: rope_style = %d", a.rope_style);
    if (a.act != ROTOR_LM_SILU && a.act != ROTOR_LM_RELU2) return fail(ROTOR_CUDA_EINVAL, "lm_decode: act = %d", a.act);
    Plan p = {};
    p.ctas = g_sms;
    const int kbd = (a.dim + 255) / 256, kbo = (qd + 255) / 256, kbf = (a.ffn + 255) / 256;
    p.kb[P_QKV] = kbd; p.kb[P_WO] = kbo; p.kb[P_GU] = kbd; p.kb[P_DOWN] = kbf;
    p.n[P_QKV] = qd + 2 * a.kv_heads * a.head_dim; p.n[P_WO] = a.dim; p.n[P_GU] = 2 * a.ffn; p.n[P_DOWN] = a.dim;
    p.units[P_QKV] = p.n[P_QKV] / 32; p.units[P_WO] = (a.dim + 15) / 16; p.units[P_GU] = (a.ffn + 7) / 8; p.units[P_DOWN] = (a.dim + 15) / 16;
    p.tpu[P_QKV] = 2; p.tpu[P_WO] = 1; p.tpu[P_GU] = 1; p.tpu[P_DOWN] = 1;
    int off = 0, kp = 0;
    for (int i = 0; i < 4; i++) {
        p.stride[i] = bulk_stride(p.kb[i]);
        p.maxt[i] = (p.units[i] + p.ctas - 1) / p.ctas * p.tpu[i];
        if (p.maxt[i] > kDMaxT)
            return fail(ROTOR_CUDA_EINVAL, "lm_decode: product %d needs %d tiles a CTA over %d CTAs (at most %d)", i, p.maxt[i], p.ctas, kDMaxT);
        p.off[i] = off;
        off += 16 * p.maxt[i] * p.stride[i];
        kp = kp > p.kb[i] * 256 ? kp : p.kb[i] * 256;
    }
    p.xs_off = off;
    const int attn = kDW * (a.heads / a.kv_heads) * a.head_dim * (int)sizeof(float);
    p.smem = off + (kp > attn ? kp : attn);
    const char* skip = getenv("ROTOR_DECODE_SKIP");
    p.skip = skip != nullptr ? atoi(skip) & 63 : 0;
    p.max_splits = p.ctas / a.kv_heads < 1 ? 1 : p.ctas / a.kv_heads;
    if (p.max_splits > 64) p.max_splits = 64;  // Shared::coef
    if (p.smem + (int)sizeof(Shared) + 64 > kDMaxSmem)  // with the static shared memory and the mbarriers
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: a layer's weights take %d bytes of shared memory a CTA over %d CTAs (at most %d)", p.smem, p.ctas, kDMaxSmem);
    *out = p;
    return 0;
}

int allow(int smem) {
    CK(cudaFuncSetAttribute(decode_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    CK(cudaFuncSetAttribute(decode_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int blocks = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, decode_kernel<float>, kDT, smem));
    if (blocks < 1) return fail(ROTOR_CUDA_EINVAL, "lm_decode: a CTA of %d threads and %d bytes of shared memory does not fit a multiprocessor", kDT, smem);
    return 0;
}

}  // namespace
}  // namespace rotor

using namespace rotor;

extern "C" ROTOR_API int rotor_lm_decode_plan(const rotor_lm_decode_args* args, int32_t* ctas, int64_t* workspace_bytes, int32_t* sync_count) {
    if (args == nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_decode_plan: args is NULL");
    if (g_device >= 0) {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess || cur != g_device) CK(cudaSetDevice(g_device));
    }
    Plan p;
    int r = plan(*args, &p);
    if (r != 0) return r;
    if ((r = allow(p.smem)) != 0) return r;
    if (ctas != nullptr) *ctas = p.ctas;
    if (workspace_bytes != nullptr) *workspace_bytes = (int64_t)args->heads * p.max_splits * (args->head_dim + 2) * (int64_t)sizeof(float);
    if (sync_count != nullptr) *sync_count = kSyncStride * (1 + args->kv_heads);
    return 0;
}

extern "C" ROTOR_API int rotor_lm_decode(const rotor_lm_decode_args* args, void* stream) {
    if (args == nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_decode: args is NULL");
    const rotor_lm_decode_args& a = *args;
    Plan p;
    int r = plan(a, &p);
    if (r != 0) return r;
    if (a.d_layers == nullptr || a.x == nullptr || a.q == nullptr || a.o == nullptr || a.h == nullptr || a.ws == nullptr ||
        a.sync == nullptr || a.kv == nullptr || a.cos_t == nullptr || a.sin_t == nullptr || a.pos == nullptr || a.slot == nullptr)
        return fail(ROTOR_CUDA_EINVAL, "lm_decode: a NULL buffer");
    if (g_device >= 0) {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess || cur != g_device) CK(cudaSetDevice(g_device));
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(p.ctas);
    cfg.blockDim = dim3(kDT);
    cfg.dynamicSmemBytes = p.smem;
    cfg.stream = static_cast<cudaStream_t>(stream);
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    const cudaError_t e = a.cache_type == 1 ? cudaLaunchKernelEx(&cfg, decode_kernel<__half>, a, p)
                                            : cudaLaunchKernelEx(&cfg, decode_kernel<float>, a, p);
    return e == cudaSuccess ? 0 : cuda_fail(e, "decode_kernel");
}

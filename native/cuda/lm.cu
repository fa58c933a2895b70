// lm.cu: the kernels of a decoder step of a language model around the ternary products: embedding gather, RMSNorm
// fused with the residual add, the gated activation and the int8 quantization of the next BitLinear's input, rotary
// embeddings with the key/value cache append, split-context attention with its combine, the dense (LM head) products
// and sampling on the device. The kernels know shapes and pointers only, nothing about a model.
//
// Legend: m = rows (tokens) of a step, one a sequence in a batched decode; D = cols of a row; hd = head size;
// G = query heads a key/value head (grouped-query attention); S = splits of the context (flash decoding).
//
// Every kernel calls pdl_trigger() then pdl_wait() before touching memory: launched as programmatic dependent launches,
// the next kernel (a GEMV streaming its weights) may start while this one runs, and this one reads nothing an earlier
// kernel writes before the wait.
#include "common.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>

namespace rotor {
namespace {

int use_device() {
    int cur = -1;
    if (g_device >= 0 && (cudaGetDevice(&cur) != cudaSuccess || cur != g_device)) {
        cudaError_t e = cudaSetDevice(g_device);
        if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice");
    }
    return 0;
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

__device__ __forceinline__ float load_f(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const __half* p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store_f(float* p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }

// Block reductions (blockDim a multiple of 32, at most 1024); every thread gets the result. scratch: 32 values. After
// the warps' partials are in shared memory, every warp reduces them with shuffles itself (one load a lane) instead of
// each thread adding them one after another: a row kernel runs three of these on its critical path.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0.f);
}
__device__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? scratch[lane] : -INFINITY);
}
__device__ int block_sum_int(int v, int* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding gather: x[i] = table[tokens[i]] as float (int8 rows times their scale). Ids outside the table give zeros
// (the caller checks them first).
// ---------------------------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(256) embed_kernel(const uint8_t* table, int type, int row_stride, const float* scales,
                                                    int vocab, const int* tokens, int dim, float* x, int x_stride) {
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, t = tokens[i];
    float* xr = x + (size_t)i * x_stride;
    const bool ok = t >= 0 && t < vocab;
    const uint8_t* row = table + (size_t)(ok ? t : 0) * row_stride;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float v = 0.f;
        if (ok) {
            if (type == ROTOR_LM_F32) v = reinterpret_cast<const float*>(row)[j];
            else if (type == ROTOR_LM_F16) v = __half2float(reinterpret_cast<const __half*>(row)[j]);
            else v = __fmul_rn(scales[t], (float)reinterpret_cast<const int8_t*>(row)[j]);
        }
        xr[j] = v;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A row in shared memory -> optional RMSNorm -> optional float output -> optional int8 quantization, the operations
// of Decoder.RmsNorm (x * inv, then * weight: two roundings) and QuantizedActivations.Quantize (inv = 127 / amax,
// rint, clamp to +-127, scale = amax / 127, padding columns zero).
// ---------------------------------------------------------------------------------------------------------------

struct RowOut {
    int norm;              // 1: RMSNorm the row
    const float* weight;   // (cols) norm weight, or NULL: none
    float eps;
    float* y;              // (m, y_stride) float output, or NULL
    int y_stride;
    int8_t* q;             // (m, q_stride) int8 output, or NULL
    int q_stride;
    float* q_scale;        // (m)
    int* q_sum;            // (m)
};

__device__ void finish_row(float* row, int cols, int i, const RowOut& o, float* fs, int* is) {
    if (o.norm) {
        float ss = 0.f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) ss += row[j] * row[j];
        ss = block_sum(ss, fs);
        const float inv = __fdiv_rn(1.f, sqrtf(__fdiv_rn(ss, (float)cols) + o.eps));
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float v = __fmul_rn(row[j], inv);
            if (o.weight != nullptr) v = __fmul_rn(v, o.weight[j]);
            row[j] = v;
        }
    }
    float amax = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        if (o.y != nullptr) o.y[(size_t)i * o.y_stride + j] = row[j];
        amax = fmaxf(amax, fabsf(row[j]));
    }
    if (o.q == nullptr) return;
    amax = block_max(amax, fs);
    const float inv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    int8_t* qr = o.q + (size_t)i * o.q_stride;
    int s = 0;
    for (int j = threadIdx.x; j < o.q_stride; j += blockDim.x) {
        int v = 0;
        if (j < cols) v = min(max(__float2int_rn(__fmul_rn(row[j], inv)), -127), 127);
        qr[j] = (int8_t)v;
        s += v;
    }
    s = block_sum_int(s, is);
    if (threadIdx.x == 0) {
        o.q_scale[i] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        o.q_sum[i] = s;
    }
}

// One CTA a row. The row is x[i] (+ add[i], written back to x: the residual), or with up != NULL the gated product
// act(x[i]) * up[i] (act: ROTOR_LM_RELU2 relu(g)^2, ROTOR_LM_SILU g * sigmoid(g)); then finish_row.
__global__ void __launch_bounds__(512) norm_kernel(float* x, int x_stride, const float* add, int add_stride,
                                                   const float* up, int up_stride, int act, int cols, RowOut o) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ float row[];
    __shared__ float fs[32];
    __shared__ int is[32];
    const int i = blockIdx.x;
    float* xr = x + (size_t)i * x_stride;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = xr[j];
        if (add != nullptr) {
            v = __fadd_rn(v, add[(size_t)i * add_stride + j]);
            xr[j] = v;
        } else if (up != nullptr) {
            v = __fmul_rn(gate_act(v, act), up[(size_t)i * up_stride + j]);
        }
        row[j] = v;
    }
    __syncthreads();
    finish_row(row, cols, i, o, fs, is);
}

// The same with the row in registers, for rows of up to 8 * 1024 columns: 1024 threads, element j = tid + 1024 k in
// v[k], all loads of a thread issued before any is used (one memory round trip instead of one a loop step), the norm
// weight loaded before the wait on the previous kernel (weights are never written by a kernel).
// Threads of the one-CTA-a-row kernels (norms, the attention combine): 512 beat 1024 and 256 in a decode step on an
// H100 (fewer warps to gather in each block reduction, against fewer loads in flight); -DROTOR_ROW_THREADS=N to try
// others (a multiple of 32, at most 1024).
#ifndef ROTOR_ROW_THREADS
#define ROTOR_ROW_THREADS 512
#endif
constexpr int kRowThreads = ROTOR_ROW_THREADS;

template <int K>
__device__ void finish_regs(float (&v)[K], const float (&w)[K], int cols, int i, const RowOut& o, float* fs, int* is) {
    const int tid = threadIdx.x;
    if (o.norm) {
        float ss = 0.f;
#pragma unroll
        for (int k = 0; k < K; k++)
            if (tid + k * kRowThreads < cols) ss += v[k] * v[k];
        ss = block_sum(ss, fs);
        const float inv = __fdiv_rn(1.f, sqrtf(__fdiv_rn(ss, (float)cols) + o.eps));
#pragma unroll
        for (int k = 0; k < K; k++) {
            float x = __fmul_rn(v[k], inv);
            if (o.weight != nullptr) x = __fmul_rn(x, w[k]);
            v[k] = x;
        }
    }
    float amax = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = tid + k * kRowThreads;
        if (j < cols) {
            if (o.y != nullptr) o.y[(size_t)i * o.y_stride + j] = v[k];
            amax = fmaxf(amax, fabsf(v[k]));
        }
    }
    if (o.q == nullptr) return;
    amax = block_max(amax, fs);
    const float inv = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    int8_t* qr = o.q + (size_t)i * o.q_stride;
    int s = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = tid + k * kRowThreads;
        if (j < o.q_stride) {
            int q = 0;
            if (j < cols) q = min(max(__float2int_rn(__fmul_rn(v[k], inv)), -127), 127);
            qr[j] = (int8_t)q;
            s += q;
        }
    }
    for (int j = tid + K * kRowThreads; j < o.q_stride; j += kRowThreads) qr[j] = 0;
    s = block_sum_int(s, is);
    if (tid == 0) {
        o.q_scale[i] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        o.q_sum[i] = s;
    }
}

template <int K>
__device__ __forceinline__ void load_weight(float (&w)[K], const RowOut& o, int cols) {
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = threadIdx.x + k * kRowThreads;
        w[k] = (o.norm && o.weight != nullptr && j < cols) ? __ldg(o.weight + j) : 1.f;
    }
}

template <int K>
__global__ void __launch_bounds__(kRowThreads) norm_regs_kernel(float* x, int x_stride, const float* add, int add_stride,
                                                               const float* up, int up_stride, int act, int cols, RowOut o) {
    pdl_trigger();
    float w[K];
    load_weight(w, o, cols);
    pdl_wait();
    __shared__ float fs[32];
    __shared__ int is[32];
    const int i = blockIdx.x, tid = threadIdx.x;
    float* xr = x + (size_t)i * x_stride;
    float v[K], u[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = tid + k * kRowThreads;
        v[k] = j < cols ? xr[j] : 0.f;
        u[k] = 0.f;
        if (j < cols && add != nullptr) u[k] = add[(size_t)i * add_stride + j];
        if (j < cols && up != nullptr) u[k] = up[(size_t)i * up_stride + j];
    }
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = tid + k * kRowThreads;
        if (add != nullptr) {
            v[k] = __fadd_rn(v[k], u[k]);
            if (j < cols) xr[j] = v[k];
        } else if (up != nullptr) {
            v[k] = __fmul_rn(gate_act(v[k], act), u[k]);
        }
    }
    finish_regs(v, w, cols, i, o, fs, is);
}

// ---------------------------------------------------------------------------------------------------------------
// Rotary embeddings and the key/value cache append. Row i of qkv holds q (heads * hd), k (kv_heads * hd), v (kv_heads
// * hd); q and k are rotated in place by position pos[i] (cos/sin tables (positions, hd / 2), Decoder.RopeTables), and
// k, v are written to the cache of sequence slot[i] at row pos[i]: element (slot, p, c) of a layer's keys at
// k_cache[slot * slot_stride + p * kv_dim + c].
// ---------------------------------------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(1024) rope_kv_kernel(float* qkv, int qkv_stride, int heads, int kv_heads, int hd, int style,
                                                      const float* cos_t, const float* sin_t, const int* pos,
                                                      const int* slot, T* kc, T* vc, long long slot_stride) {
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, p = pos[i], half = hd / 2, qd = heads * hd, kvd = kv_heads * hd;
    float* r = qkv + (size_t)i * qkv_stride;
    const float* cs = cos_t + (size_t)p * half;
    const float* sn = sin_t + (size_t)p * half;
    const size_t base = (size_t)slot[i] * slot_stride + (size_t)p * kvd;
    const int pairs = (heads + kv_heads) * half;
    for (int e = threadIdx.x; e < pairs; e += blockDim.x) {
        const int h = e / half, j = e % half;
        const int o = h * hd;  // q heads then k heads: contiguous in the row
        int ia, ib;
        if (style == ROTOR_LM_ROPE_HALF) { ia = o + j; ib = o + j + half; }
        else { ia = o + 2 * j; ib = o + 2 * j + 1; }
        const float a = r[ia], b = r[ib], c = cs[j], s = sn[j];
        float na, nb;
        if (style == ROTOR_LM_ROPE_HALF) {
            na = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            nb = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        } else {
            na = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            nb = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
        }
        r[ia] = na;
        r[ib] = nb;
        if (ia >= qd) {
            store_f(kc, base + (ia - qd), na);
            store_f(kc, base + (ib - qd), nb);
        }
    }
    for (int c = threadIdx.x; c < kvd; c += blockDim.x) store_f(vc, base + c, r[qd + kvd + c]);
}

// ---------------------------------------------------------------------------------------------------------------
// Attention of row i's query heads over positions 0..pos[i] of its sequence's cache, split over the context: CTA
// (s, hb, i) takes positions [s * split_len, (s + 1) * split_len) and query heads hb * gb .. + gb (gb of one key/value
// head's G, at most 8), 4 warps taking every 4th position, online softmax per warp, the warps merged in shared memory;
// it writes the unnormalized partial sums with their max and sum (flash decoding). attn_combine_kernel merges the
// splits. A lane holds dims lane + 32 j of a head (j < DPL).
// ---------------------------------------------------------------------------------------------------------------

struct AttnArgs {
    const float* q;        // (m, q_stride): query heads, rotated
    int q_stride;
    int heads, kv_heads, hd, group, gb;
    const void* k;         // a layer's keys, addressed as in rope_kv_kernel
    const void* v;
    long long slot_stride;
    const int* pos;
    const int* slot;
    float scale;
    int split_len, splits;
    float* part_acc;       // (m, heads, splits, hd)
    float2* part_ml;       // (m, heads, splits): running max and sum
};

// Warps of an attention split CTA: a split holds up to 64 positions, which its warps take in turn, so the warps set the
// split's latency on a decode step's critical path; 8 beat 4 on an H100 (-DROTOR_ATTN_WARPS=N to try others).
#ifndef ROTOR_ATTN_WARPS
#define ROTOR_ATTN_WARPS 8
#endif
constexpr int kAttnWarps = ROTOR_ATTN_WARPS;
// Warps of a split CTA for DPL dims a lane: their partial sums must fit 48 KB of static shared memory.
template <int DPL> constexpr int attn_warps() { return DPL * kAttnWarps <= 32 ? kAttnWarps : 32 / DPL; }
constexpr int kMaxGroup = 8;

template <int DPL, typename T>
__global__ void __launch_bounds__(attn_warps<DPL>() * 32) attn_split_kernel(AttnArgs a) {
    pdl_trigger();
    pdl_wait();
    __shared__ float s_acc[attn_warps<DPL>()][kMaxGroup][DPL * 32];
    __shared__ float s_ml[attn_warps<DPL>()][kMaxGroup][2];
    const int s = blockIdx.x, h0 = blockIdx.y * a.gb, i = blockIdx.z;
    const int len = a.pos[i] + 1, t0 = s * a.split_len;
    if (t0 >= len) return;
    const int t1 = min(len, t0 + a.split_len);
    const int kvh = h0 / a.group, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kvd = a.kv_heads * a.hd;
    float qr[kMaxGroup][DPL], acc[kMaxGroup][DPL], mx[kMaxGroup], l[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; g++) {
        mx[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int j = 0; j < DPL; j++) {
            const int d = lane + 32 * j;
            qr[g][j] = (g < a.gb && d < a.hd) ? a.q[(size_t)i * a.q_stride + (size_t)(h0 + g) * a.hd + d] : 0.f;
            acc[g][j] = 0.f;
        }
    }
    const T* K = static_cast<const T*>(a.k) + (size_t)a.slot[i] * a.slot_stride + (size_t)kvh * a.hd;
    const T* V = static_cast<const T*>(a.v) + (size_t)a.slot[i] * a.slot_stride + (size_t)kvh * a.hd;
    for (int t = t0 + warp; t < t1; t += attn_warps<DPL>()) {
        float kk[DPL], vv[DPL];
#pragma unroll
        for (int j = 0; j < DPL; j++) {
            const int d = lane + 32 * j;
            kk[j] = d < a.hd ? load_f(K, (size_t)t * kvd + d) : 0.f;
            vv[j] = d < a.hd ? load_f(V, (size_t)t * kvd + d) : 0.f;
        }
        attend_position(qr, kk, vv, a.gb, a.scale, mx, l, acc);
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; g++) {
        if (g >= a.gb) break;
        if (lane == 0) { s_ml[warp][g][0] = mx[g]; s_ml[warp][g][1] = l[g]; }
#pragma unroll
        for (int j = 0; j < DPL; j++) s_acc[warp][g][lane + 32 * j] = acc[g][j];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < a.gb * a.hd; e += blockDim.x) {
        const int g = e / a.hd, d = e % a.hd;
        float m = -INFINITY;
#pragma unroll
        for (int w = 0; w < attn_warps<DPL>(); w++) m = fmaxf(m, s_ml[w][g][0]);
        float sum = 0.f, lsum = 0.f;
#pragma unroll
        for (int w = 0; w < attn_warps<DPL>(); w++) {
            if (s_ml[w][g][0] == -INFINITY) continue;  // a warp without positions
            const float c = expf(s_ml[w][g][0] - m);
            sum += s_acc[w][g][d] * c;
            lsum += s_ml[w][g][1] * c;
        }
        const size_t idx = ((size_t)i * a.heads + h0 + g) * a.splits + s;
        a.part_acc[idx * a.hd + d] = sum;
        if (d == 0) a.part_ml[idx] = make_float2(m, lsum);
    }
}

// The weight of each split of row i's heads in the combined output, coef (heads, active): a split's share of the
// softmax's sum, rescaled to the row's largest maximum. A warp a head.
__device__ __forceinline__ void split_weights(const AttnArgs& a, int i, int active, float* coef) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int h = warp; h < a.heads; h += warps) {
        const float2* ml = a.part_ml + ((size_t)i * a.heads + h) * a.splits;
        float m = -INFINITY;
        for (int s = lane; s < active; s += 32) m = fmaxf(m, ml[s].x);
        m = warp_max(m);
        float l = 0.f;
        for (int s = lane; s < active; s += 32) l += ml[s].y * expf(ml[s].x - m);
        l = warp_sum(l);
        for (int s = lane; s < active; s += 32) coef[h * active + s] = expf(ml[s].x - m) / l;
    }
}

// One CTA a row: the splits of every head merged (softmax weights exp(m_s - M) / L), the heads' outputs in shared
// memory, then finish_row (BitNet's attn_sub_norm and the quantization for the output projection).
__global__ void __launch_bounds__(256) attn_combine_kernel(AttnArgs a, RowOut o) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ float sm[];
    __shared__ float fs[32];
    __shared__ int is[32];
    const int i = blockIdx.x, qd = a.heads * a.hd;
    const int active = (a.pos[i] + a.split_len) / a.split_len;  // splits holding positions 0..pos[i]
    float* row = sm;                  // (qd)
    float* coef = sm + qd;            // (heads, active)
    split_weights(a, i, active, coef);
    __syncthreads();
    for (int e = threadIdx.x; e < qd; e += blockDim.x) {
        const int h = e / a.hd, d = e % a.hd;
        const float* acc = a.part_acc + (((size_t)i * a.heads + h) * a.splits) * a.hd + d;
        float v = 0.f;
        for (int s = 0; s < active; s++) v += coef[h * active + s] * acc[(size_t)s * a.hd];
        row[e] = v;
    }
    __syncthreads();
    finish_row(row, qd, i, o, fs, is);
}

// The combine with the row in registers (rows of up to 8 * 1024 columns), as norm_regs_kernel.
template <int K>
__global__ void __launch_bounds__(kRowThreads) attn_combine_regs_kernel(AttnArgs a, RowOut o) {
    pdl_trigger();
    const int qd = a.heads * a.hd;
    float w[K];
    load_weight(w, o, qd);
    pdl_wait();
    extern __shared__ float coef[];   // (heads, active)
    __shared__ float fs[32];
    __shared__ int is[32];
    const int i = blockIdx.x, tid = threadIdx.x;
    const int active = (a.pos[i] + a.split_len) / a.split_len;
    split_weights(a, i, active, coef);
    __syncthreads();
    float v[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int e = tid + k * kRowThreads;
        v[k] = 0.f;
        if (e < qd) {
            const int h = e / a.hd, d = e % a.hd;
            const float* acc = a.part_acc + (((size_t)i * a.heads + h) * a.splits) * a.hd + d;
            for (int s = 0; s < active; s++) v[k] += coef[h * active + s] * acc[(size_t)s * a.hd];
        }
    }
    finish_regs(v, w, qd, i, o, fs, is);
}

// Greedy sampling's first pass: CTA (b, i) finds the largest logit of slice b of row i, packed with its id so that the
// larger value and then the lower id wins a plain 64-bit max: (order_key << 32) | (0xffffffff - id).
__global__ void __launch_bounds__(256) argmax_part_kernel(const float* logits, int vocab, int stride, int parts,
                                                          unsigned long long* out);

// ---------------------------------------------------------------------------------------------------------------
// Dense products y (m, n) = x (m, cols) W^T for the LM head and float models' layers: W rows of row_stride bytes,
// F32, F16 or Int8 (int8 x int8 with x quantized per row, y = (float)dot * x_scale * w_scale as DenseGemm does).
// GEMV: a warp a weight row, up to 8 activation rows at once (x through L1). F16 with m > 8: mma.sync tiles.
// ---------------------------------------------------------------------------------------------------------------

template <int MR>
__global__ void __launch_bounds__(256) dense_gemv_kernel(const uint8_t* w, int type, int row_stride, const float* w_scale,
                                                         int n, int cols, const float* x, int x_stride, const int8_t* xq,
                                                         int xq_stride, const float* x_scale, int m, float* y,
                                                         int y_stride) {
    pdl_trigger();
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= n) return;
    const uint8_t* wr = w + (size_t)r * row_stride;
    float acc[MR];
    int iacc[MR];
#pragma unroll
    for (int k = 0; k < MR; k++) { acc[k] = 0.f; iacc[k] = 0; }
    if (type == ROTOR_LM_F16) {
        const int c8 = cols / 8 * 8;
        for (int c = lane * 8; c < c8; c += 256) {
            const uint4 u = ld_stream(wr + (size_t)c * 2);
            const __half2* h2 = reinterpret_cast<const __half2*>(&u);
            float wf[8];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __half22float2(h2[e]);
                wf[2 * e] = f.x;
                wf[2 * e + 1] = f.y;
            }
#pragma unroll
            for (int k = 0; k < MR; k++) {
                if (k >= m) break;
                const float4* xp = reinterpret_cast<const float4*>(x + (size_t)k * x_stride + c);
                const float4 a = __ldg(xp), b = __ldg(xp + 1);
                acc[k] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y +
                          wf[6] * b.z + wf[7] * b.w;
            }
        }
        for (int c = c8 + lane; c < cols; c += 32) {
            const float wv = __half2float(reinterpret_cast<const __half*>(wr)[c]);
#pragma unroll
            for (int k = 0; k < MR; k++)
                if (k < m) acc[k] += wv * x[(size_t)k * x_stride + c];
        }
    } else if (type == ROTOR_LM_F32) {
        const int c4 = cols / 4 * 4;
        for (int c = lane * 4; c < c4; c += 128) {
            const uint4 u = ld_stream(wr + (size_t)c * 4);
            const float4 wf = *reinterpret_cast<const float4*>(&u);
#pragma unroll
            for (int k = 0; k < MR; k++) {
                if (k >= m) break;
                const float4 a = __ldg(reinterpret_cast<const float4*>(x + (size_t)k * x_stride + c));
                acc[k] += wf.x * a.x + wf.y * a.y + wf.z * a.z + wf.w * a.w;
            }
        }
        for (int c = c4 + lane; c < cols; c += 32) {
            const float wv = reinterpret_cast<const float*>(wr)[c];
#pragma unroll
            for (int k = 0; k < MR; k++)
                if (k < m) acc[k] += wv * x[(size_t)k * x_stride + c];
        }
    } else {
        // Int8: rows padded to a multiple of 256 columns with zeros, x quantized with zeroed padding (xq_stride).
        const int padded = (cols + 255) / 256 * 256;
        for (int c = lane * 16; c < padded; c += 512) {
            const uint4 u = ld_stream(wr + c);
#pragma unroll
            for (int k = 0; k < MR; k++) {
                if (k >= m) break;
                const int4 xv = __ldg(reinterpret_cast<const int4*>(xq + (size_t)k * xq_stride + c));
                int s = iacc[k];
                s = __dp4a((int)u.x, xv.x, s);
                s = __dp4a((int)u.y, xv.y, s);
                s = __dp4a((int)u.z, xv.z, s);
                s = __dp4a((int)u.w, xv.w, s);
                iacc[k] = s;
            }
        }
    }
#pragma unroll
    for (int k = 0; k < MR; k++) {
        if (k >= m) break;
        if (type == ROTOR_LM_I8) {
            const int d = warp_sum(iacc[k]);
            if (lane == 0) y[(size_t)k * y_stride + r] = __fmul_rn(__fmul_rn((float)d, x_scale[k]), w_scale[r]);
        } else {
            const float d = warp_sum(acc[k]);
            if (lane == 0) y[(size_t)k * y_stride + r] = d;
        }
    }
}

// x (m, cols) float -> f16 (m, xh_stride), columns past cols zero.
__global__ void __launch_bounds__(256) to_half_kernel(const float* x, int x_stride, int cols, __half* xh, int xh_stride) {
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x;
    for (int j = threadIdx.x; j < xh_stride; j += blockDim.x)
        xh[(size_t)i * xh_stride + j] = __float2half_rn(j < cols ? x[(size_t)i * x_stride + j] : 0.f);
}

__device__ __forceinline__ void mma_f16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                        unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// F16 weights (n, cols), cols a multiple of 16, times f16 x (m, xh_stride): a CTA of 8 warps owns 128 weight rows
// (16 a warp) x 64 activation rows (8 tiles of 8); fragments straight from global memory (W through L1, where the
// second half of each 32-byte sector is read by the next k step, x from L1/L2).
__global__ void __launch_bounds__(256) dense_mma_kernel(const uint8_t* w, int row_stride, int n, int cols,
                                                        const __half* xh, int xh_stride, int m, float* y, int y_stride) {
    pdl_trigger();
    pdl_wait();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 128 + warp * 16, i0 = blockIdx.y * 64;
    if (r0 >= n) return;
    const int ra = min(r0 + g, n - 1), rb = min(r0 + g + 8, n - 1);
    const __half* wa = reinterpret_cast<const __half*>(w + (size_t)ra * row_stride);
    const __half* wb = reinterpret_cast<const __half*>(w + (size_t)rb * row_stride);
    const __half* xr[8];
    bool xv[8];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        const int i = i0 + nt * 8 + g;
        xv[nt] = i < m;
        xr[nt] = xh + (size_t)(xv[nt] ? i : 0) * xh_stride;
    }
    float c[8][4] = {};
    for (int k = 0; k < cols; k += 16) {
        const unsigned a0 = *reinterpret_cast<const unsigned*>(wa + k + 2 * t);
        const unsigned a1 = *reinterpret_cast<const unsigned*>(wb + k + 2 * t);
        const unsigned a2 = *reinterpret_cast<const unsigned*>(wa + k + 2 * t + 8);
        const unsigned a3 = *reinterpret_cast<const unsigned*>(wb + k + 2 * t + 8);
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            if (i0 + nt * 8 >= m) break;
            const unsigned b0 = xv[nt] ? *reinterpret_cast<const unsigned*>(xr[nt] + k + 2 * t) : 0u;
            const unsigned b1 = xv[nt] ? *reinterpret_cast<const unsigned*>(xr[nt] + k + 2 * t + 8) : 0u;
            mma_f16(c[nt], a0, a1, a2, a3, b0, b1);
        }
    }
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        const int i = i0 + nt * 8 + 2 * t;
        const int ro = r0 + g;
        if (ro < n) {
            if (i < m) y[(size_t)i * y_stride + ro] = c[nt][0];
            if (i + 1 < m) y[(size_t)(i + 1) * y_stride + ro] = c[nt][1];
        }
        if (ro + 8 < n) {
            if (i < m) y[(size_t)i * y_stride + ro + 8] = c[nt][2];
            if (i + 1 < m) y[(size_t)(i + 1) * y_stride + ro + 8] = c[nt][3];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling, one CTA of 1024 threads a row: the argmax (temperature 0; the first among equals), or Sampler.Sample's
// top-k (k <= 1024: the k-th largest by a 4-pass radix select on order-preserving keys, ties taken in id order),
// softmax with temperature over the k, the top-p prefix, min-p, and one uniform draw from (seed, pos[i]).
// ---------------------------------------------------------------------------------------------------------------

constexpr int kSampleThreads = 1024;
constexpr int kMaxTopK = 1024;
constexpr int kArgmaxParts = 64;  // CTAs a row of the greedy first pass (rotor_lm_sample's workspace: m * 64 * 8 bytes)

__device__ __forceinline__ unsigned order_key(float f) {
    const unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void __launch_bounds__(256) argmax_part_kernel(const float* logits, int vocab, int stride, int parts,
                                                          unsigned long long* out) {
    pdl_trigger();
    pdl_wait();
    __shared__ unsigned long long best_w[8];
    const int b = blockIdx.x, i = blockIdx.y;
    const int chunk = (vocab + parts - 1) / parts, j0 = b * chunk, j1 = min(vocab, j0 + chunk);
    const float* l = logits + (size_t)i * stride;
    unsigned long long best = 0;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x)
        best = max(best, ((unsigned long long)order_key(l[j]) << 32) | (0xffffffffu - (unsigned)j));
    for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
    if ((threadIdx.x & 31) == 0) best_w[threadIdx.x >> 5] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) best = max(best, best_w[w]);
        best = max(best, best_w[0]);
        out[(size_t)i * parts + b] = best;
    }
}

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Inclusive prefix sum over the block (kSampleThreads values of T: float probabilities, int counts), every thread
// gets its own and the total.
template <typename T> __device__ T block_scan(T v, T* scratch, T* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        const T u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += u;
    }
    __syncthreads();
    if (lane == 31) scratch[warp] = v;
    __syncthreads();
    T before = 0, all = 0;
    for (int w = 0; w < kSampleThreads / 32; w++) {
        if (w < warp) before += scratch[w];
        all += scratch[w];
    }
    *total = all;
    return v + before;
}

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(const float* logits, int vocab, int stride,
                                                                const rotor_lm_sampling* params, const int* pos,
                                                                const unsigned long long* part, int parts, int* out) {
    pdl_trigger();
    pdl_wait();
    __shared__ unsigned hist[256];
    __shared__ float c_val[kMaxTopK];
    __shared__ int c_id[kMaxTopK];
    __shared__ float fscr[32];
    __shared__ int iscr[32];
    __shared__ int s_count;
    const int i = blockIdx.x, tid = threadIdx.x;
    const float* l = logits + (size_t)i * stride;
    const rotor_lm_sampling p = params[i];
    if (part != nullptr && (p.temperature <= 0.f || p.top_k == 1)) {
        if (tid < 32) {
            unsigned long long best = 0;
            for (int b = tid; b < parts; b += 32) best = max(best, part[(size_t)i * parts + b]);
            for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
            if (tid == 0) out[i] = (int)(0xffffffffu - (unsigned)(best & 0xffffffffu));
        }
        return;
    }

    // Argmax: the largest key, then the lowest id holding it.
    unsigned best = 0;
    for (int j = tid; j < vocab; j += kSampleThreads) best = max(best, order_key(l[j]));
    best = __reduce_max_sync(0xffffffffu, best);
    __syncthreads();
    if ((tid & 31) == 0) iscr[tid >> 5] = (int)best;
    __syncthreads();
    best = 0;
    for (int w = 0; w < kSampleThreads / 32; w++) best = max(best, (unsigned)iscr[w]);
    __syncthreads();
    if (p.temperature <= 0.f || p.top_k == 1) {
        int first = vocab;
        for (int j = tid; j < vocab; j += kSampleThreads)
            if (order_key(l[j]) == best) { first = j; break; }
        first = __reduce_min_sync(0xffffffffu, first);
        if ((tid & 31) == 0) iscr[tid >> 5] = first;
        __syncthreads();
        if (tid == 0) {
            int f = vocab;
            for (int w = 0; w < kSampleThreads / 32; w++) f = min(f, iscr[w]);
            out[i] = f;
        }
        return;
    }

    // The k-th largest key: 4 passes of 8 bits from the top.
    const int k = min(p.top_k > 0 ? p.top_k : kMaxTopK, min(vocab, kMaxTopK));
    unsigned prefix = 0, mask = 0;
    int need = k;  // rank still to find among the keys matching prefix under mask
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += kSampleThreads) hist[b] = 0;
        __syncthreads();
        for (int j = tid; j < vocab; j += kSampleThreads) {
            const unsigned key = order_key(l[j]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            int acc = 0, b = 255;
            for (; b > 0; b--) {
                if (acc + (int)hist[b] >= need) break;
                acc += (int)hist[b];
            }
            iscr[0] = b;
            iscr[1] = need - acc;
        }
        __syncthreads();
        prefix |= (unsigned)iscr[0] << shift;
        mask |= 255u << shift;
        need = iscr[1];
        __syncthreads();
    }
    const unsigned kth = prefix;  // the k-th largest key; `need` of its ties belong to the top k

    // Gather: every key above kth, and the first `need` ties in id order (threads own contiguous id ranges).
    if (tid == 0) s_count = 0;
    const int chunk = (vocab + kSampleThreads - 1) / kSampleThreads;
    const int j0 = tid * chunk, j1 = min(vocab, j0 + chunk);
    int ties = 0;
    for (int j = j0; j < j1; j++) ties += order_key(l[j]) == kth;
    int tie_total;
    const int tie_end = block_scan(ties, iscr, &tie_total);
    int tie_rank = tie_end - ties;
    __syncthreads();
    for (int j = j0; j < j1; j++) {
        const unsigned key = order_key(l[j]);
        bool take = key > kth;
        if (key == kth) take = tie_rank++ < need;
        if (take) {
            const int at = atomicAdd(&s_count, 1);
            if (at < kMaxTopK) { c_val[at] = l[j]; c_id[at] = j; }
        }
    }
    __syncthreads();
    const int count = min(s_count, k);
    // Sort descending by (value, -id): bitonic over kMaxTopK slots, empty slots last.
    if (tid >= count) { c_val[tid] = -INFINITY; c_id[tid] = INT_MAX; }
    __syncthreads();
    for (int size = 2; size <= kMaxTopK; size <<= 1) {
        for (int stride2 = size >> 1; stride2 > 0; stride2 >>= 1) {
            const int j = tid, o = j ^ stride2;
            if (o > j) {
                const bool desc = (j & size) == 0;
                const float va = c_val[j], vb = c_val[o];
                const int ia = c_id[j], ib = c_id[o];
                const bool a_first = va > vb || (va == vb && ia < ib);
                if (a_first != desc) {
                    c_val[j] = vb; c_val[o] = va;
                    c_id[j] = ib; c_id[o] = ia;
                }
            }
            __syncthreads();
        }
    }
    // Softmax with temperature over the k, then the top-p prefix and min-p, as Sampler.Sample.
    const float top = c_val[0];
    float pr = tid < count ? expf((c_val[tid] - top) / p.temperature) : 0.f;
    const float sum = block_sum(pr, fscr);
    pr = pr / sum;
    float all;
    const float cum = block_scan(pr, fscr, &all);
    // keep = first index whose running sum reaches top_p, + 1; min-p: first index past 0 below min_p * p[0].
    int keep = count;
    if (p.top_p < 1.f && tid < count && cum >= p.top_p) keep = tid + 1;
    const float p0 = 1.f / sum;  // p[0] = exp(0) / sum
    if (p.min_p > 0.f && tid >= 1 && tid < count && pr < p.min_p * p0) keep = min(keep, tid);
    keep = __reduce_min_sync(0xffffffffu, keep);
    __syncthreads();
    if ((tid & 31) == 0) iscr[tid >> 5] = keep;
    __syncthreads();
    keep = count;
    for (int w = 0; w < kSampleThreads / 32; w++) keep = min(keep, iscr[w]);
    __syncthreads();
    // The draw: the first candidate whose running sum passes u * (mass of the kept prefix).
    const unsigned long long h = mix64(p.seed ^ mix64((unsigned long long)(unsigned)pos[i] + 0x1234567ull));
    const float u = (float)(h >> 40) * (1.f / 16777216.f);
    if (tid == keep - 1) fscr[0] = cum;
    __syncthreads();
    const float r = u * fscr[0];
    int pick = keep - 1;
    if (tid < keep && cum > r) pick = tid;
    pick = __reduce_min_sync(0xffffffffu, pick);
    __syncthreads();
    if ((tid & 31) == 0) iscr[tid >> 5] = pick;
    __syncthreads();
    if (tid == 0) {
        int f = keep - 1;
        for (int w = 0; w < kSampleThreads / 32; w++) f = min(f, iscr[w]);
        out[i] = c_id[f];
    }
}

template <int DPL>
int launch_attn_split(const AttnArgs& a, int m, int cache_type, cudaStream_t s) {
    const dim3 grid(a.splits, a.heads / a.gb, m);
    if (cache_type == ROTOR_LM_F16)
        return launch(attn_split_kernel<DPL, __half>, grid, dim3(attn_warps<DPL>() * 32), 0, s, "attn_split_kernel", a);
    return launch(attn_split_kernel<DPL, float>, grid, dim3(attn_warps<DPL>() * 32), 0, s, "attn_split_kernel", a);
}

RowOut row_out(int norm, const float* weight, float eps, float* y, int y_stride, int8_t* q, int q_stride, float* q_scale,
               int32_t* q_sum) {
    RowOut o;
    o.norm = norm;
    o.weight = weight;
    o.eps = eps;
    o.y = y;
    o.y_stride = y_stride;
    o.q = q;
    o.q_stride = q_stride;
    o.q_scale = q_scale;
    o.q_sum = reinterpret_cast<int*>(q_sum);
    return o;
}

int check_row_out(const char* what, int cols, const float* y, int y_stride, const int8_t* q, int q_stride,
                  const float* q_scale, const int32_t* q_sum) {
    if (y == nullptr && q == nullptr) return fail(ROTOR_CUDA_EINVAL, "%s: neither y nor q is given", what);
    if (y != nullptr && y_stride < cols) return fail(ROTOR_CUDA_EINVAL, "%s: y_stride = %d < cols = %d", what, y_stride, cols);
    if (q != nullptr && (q_stride < cols || q_scale == nullptr || q_sum == nullptr))
        return fail(ROTOR_CUDA_EINVAL, "%s: q_stride = %d < cols = %d, or q_scale / q_sum NULL", what, q_stride, cols);
    return 0;
}

constexpr int kMaxRowFloats = 48 * 1024;  // shared memory of a row kernel: 192 KB

// Raises a kernel's dynamic shared memory limit once to `bytes` (above the default 48 KB); the first call of a size
// happens outside graph capture (the decoder runs every step once before it records one).
template <typename K>
int allow_smem(K kernel, size_t bytes, size_t* done) {
    if (bytes <= 48 * 1024 || bytes <= *done) return 0;
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = bytes;
    return 0;
}
size_t g_norm_smem = 0, g_combine_smem = 0;

int row_threads(int cols) { return cols >= 4096 ? 512 : 256; }

}  // namespace
}  // namespace rotor

using namespace rotor;

extern "C" {

ROTOR_API int rotor_lm_embed(const void* d_table, int type, int row_stride, const float* d_scales, int vocab,
                             const int32_t* d_tokens, int m, int dim, float* d_x, int x_stride, void* stream) {
    if (int r = use_device()) return r;
    if (m <= 0 || dim <= 0 || vocab <= 0 || x_stride < dim || type < ROTOR_LM_F32 || type > ROTOR_LM_I8 ||
        row_stride < dim * (type == ROTOR_LM_F32 ? 4 : type == ROTOR_LM_F16 ? 2 : 1))
        return fail(ROTOR_CUDA_EINVAL, "lm_embed: m = %d, dim = %d, vocab = %d, type = %d, row_stride = %d, x_stride = %d", m, dim,
                    vocab, type, row_stride, x_stride);
    if (d_table == nullptr || d_tokens == nullptr || d_x == nullptr || (type == ROTOR_LM_I8 && d_scales == nullptr))
        return fail(ROTOR_CUDA_EINVAL, "lm_embed: NULL pointer");
    return launch(embed_kernel, dim3(m), dim3(256), 0, as_stream(stream), "embed_kernel",
                  static_cast<const uint8_t*>(d_table), type, row_stride, d_scales, vocab, reinterpret_cast<const int*>(d_tokens),
                  dim, d_x, x_stride);
}

ROTOR_API int rotor_lm_norm(float* d_x, int m, int cols, int x_stride, const float* d_add, int add_stride,
                            const float* d_up, int up_stride, int act, int norm, const float* d_weight, float eps,
                            float* d_y, int y_stride, int8_t* d_q, int q_stride, float* d_q_scale, int32_t* d_q_sum,
                            void* stream) {
    if (int r = use_device()) return r;
    if (m <= 0 || cols <= 0 || cols > kMaxRowFloats || x_stride < cols)
        return fail(ROTOR_CUDA_EINVAL, "lm_norm: m = %d, cols = %d (at most %d), x_stride = %d", m, cols, kMaxRowFloats, x_stride);
    if (d_x == nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_norm: x is NULL");
    if (d_add != nullptr && d_up != nullptr) return fail(ROTOR_CUDA_EINVAL, "lm_norm: add and up are both given");
    if ((d_add != nullptr && add_stride < cols) || (d_up != nullptr && up_stride < cols))
        return fail(ROTOR_CUDA_EINVAL, "lm_norm: add_stride = %d, up_stride = %d < cols = %d", add_stride, up_stride, cols);
    if (d_up != nullptr && act != ROTOR_LM_SILU && act != ROTOR_LM_RELU2) return fail(ROTOR_CUDA_EINVAL, "lm_norm: act = %d", act);
    if (int r = check_row_out("lm_norm", cols, d_y, y_stride, d_q, q_stride, d_q_scale, d_q_sum)) return r;
    const cudaStream_t st = as_stream(stream);
    const RowOut o = row_out(norm, d_weight, eps, d_y, y_stride, d_q, q_stride, d_q_scale, d_q_sum);
    const int kk = (cols + kRowThreads - 1) / kRowThreads;
#define ROTOR_NORM_REGS(K) \
    launch(norm_regs_kernel<K>, dim3(m), dim3(kRowThreads), 0, st, "norm_regs_kernel", d_x, x_stride, d_add, add_stride, d_up, up_stride, act, cols, o)
    if (kk <= 1) return ROTOR_NORM_REGS(1);
    if (kk <= 2) return ROTOR_NORM_REGS(2);
    if (kk <= 3) return ROTOR_NORM_REGS(3);
    if (kk <= 4) return ROTOR_NORM_REGS(4);
    if (kk <= 5) return ROTOR_NORM_REGS(5);
    if (kk <= 8) return ROTOR_NORM_REGS(8);
    if (kRowThreads < 1024 && kk <= 16) return ROTOR_NORM_REGS(16);
    if (kRowThreads < 512 && kk <= 32) return ROTOR_NORM_REGS(32);
#undef ROTOR_NORM_REGS
    const size_t smem = (size_t)cols * sizeof(float);
    if (int r = allow_smem(norm_kernel, smem, &g_norm_smem)) return r;
    return launch(norm_kernel, dim3(m), dim3(row_threads(cols)), smem, st, "norm_kernel", d_x, x_stride, d_add,
                  add_stride, d_up, up_stride, act, cols, o);
}

ROTOR_API int rotor_lm_rope_kv(float* d_qkv, int m, int qkv_stride, int heads, int kv_heads, int head_dim, int style,
                               const float* d_cos, const float* d_sin, const int32_t* d_pos, const int32_t* d_slot,
                               void* d_k_cache, void* d_v_cache, int cache_type, int64_t slot_stride, void* stream) {
    if (int r = use_device()) return r;
    if (m <= 0 || heads <= 0 || kv_heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 ||
        qkv_stride < (heads + 2 * kv_heads) * head_dim || (style != ROTOR_LM_ROPE_HALF && style != ROTOR_LM_ROPE_INTERLEAVED) ||
        (cache_type != ROTOR_LM_F32 && cache_type != ROTOR_LM_F16) || slot_stride < 0)
        return fail(ROTOR_CUDA_EINVAL, "lm_rope_kv: m = %d, heads = %d, kv_heads = %d, head_dim = %d, qkv_stride = %d, style = %d, cache_type = %d",
                    m, heads, kv_heads, head_dim, qkv_stride, style, cache_type);
    if (!d_qkv || !d_cos || !d_sin || !d_pos || !d_slot || !d_k_cache || !d_v_cache) return fail(ROTOR_CUDA_EINVAL, "lm_rope_kv: NULL pointer");
    const cudaStream_t s = as_stream(stream);
    const int* pos = reinterpret_cast<const int*>(d_pos);
    const int* slot = reinterpret_cast<const int*>(d_slot);
    // Every rotated pair and copied value in one step of the CTA where the head fits 1024 threads.
    const int work = std::max((heads + kv_heads) * head_dim / 2, kv_heads * head_dim);
    const int threads = std::min(1024, (work + 31) / 32 * 32);
    if (cache_type == ROTOR_LM_F16)
        return launch(rope_kv_kernel<__half>, dim3(m), dim3(threads), 0, s, "rope_kv_kernel", d_qkv, qkv_stride, heads, kv_heads,
                      head_dim, style, d_cos, d_sin, pos, slot, static_cast<__half*>(d_k_cache), static_cast<__half*>(d_v_cache),
                      (long long)slot_stride);
    return launch(rope_kv_kernel<float>, dim3(m), dim3(threads), 0, s, "rope_kv_kernel", d_qkv, qkv_stride, heads, kv_heads, head_dim,
                  style, d_cos, d_sin, pos, slot, static_cast<float*>(d_k_cache), static_cast<float*>(d_v_cache),
                  (long long)slot_stride);
}

ROTOR_API int rotor_lm_attention_plan(int capacity, int m, int heads, int head_dim, int* split_len, int* splits,
                                      int64_t* workspace_bytes) {
    if (capacity <= 0 || m <= 0 || heads <= 0 || head_dim <= 0 || !split_len || !splits || !workspace_bytes)
        return fail(ROTOR_CUDA_EINVAL, "lm_attention_plan: capacity = %d, m = %d, heads = %d, head_dim = %d", capacity, m, heads, head_dim);
    // At most 64 splits of at least 64 positions: long contexts spread over the multiprocessors, short ones stay in
    // few CTAs (the splits past a row's length exit at once).
    const int len = std::max(64, (capacity + 63) / 64 + 63) / 64 * 64;
    *split_len = len;
    *splits = (capacity + len - 1) / len;
    *workspace_bytes = (int64_t)m * heads * *splits * ((int64_t)head_dim * 4 + 8);
    return 0;
}

ROTOR_API int rotor_lm_attention(const float* d_q, int m, int q_stride, int heads, int kv_heads, int head_dim,
                                 const void* d_k_cache, const void* d_v_cache, int cache_type, int64_t slot_stride,
                                 const int32_t* d_pos, const int32_t* d_slot, float scale, int split_len, int splits,
                                 void* d_workspace, int norm, const float* d_weight, float eps, float* d_y, int y_stride,
                                 int8_t* d_q8, int q8_stride, float* d_q8_scale, int32_t* d_q8_sum, void* stream) {
    if (int r = use_device()) return r;
    if (m <= 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || head_dim <= 0 || head_dim > 256 ||
        q_stride < heads * head_dim || split_len <= 0 || splits <= 0 || (cache_type != ROTOR_LM_F32 && cache_type != ROTOR_LM_F16))
        return fail(ROTOR_CUDA_EINVAL, "lm_attention: m = %d, heads = %d, kv_heads = %d, head_dim = %d (at most 256), q_stride = %d, split_len = %d, splits = %d, cache_type = %d",
                    m, heads, kv_heads, head_dim, q_stride, split_len, splits, cache_type);
    if (!d_q || !d_k_cache || !d_v_cache || !d_pos || !d_slot || !d_workspace) return fail(ROTOR_CUDA_EINVAL, "lm_attention: NULL pointer");
    const int qd = heads * head_dim;
    if (int r = check_row_out("lm_attention", qd, d_y, y_stride, d_q8, q8_stride, d_q8_scale, d_q8_sum)) return r;
    const size_t smem = ((size_t)qd + (size_t)heads * splits) * sizeof(float);
    if (smem > (size_t)kMaxRowFloats * 4) return fail(ROTOR_CUDA_EINVAL, "lm_attention: %d heads x %d splits need too much shared memory", heads, splits);
    AttnArgs a;
    a.q = d_q;
    a.q_stride = q_stride;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.hd = head_dim;
    a.group = heads / kv_heads;
    a.gb = 1;
    for (int g = std::min(a.group, kMaxGroup); g >= 1; g--)
        if (a.group % g == 0) { a.gb = g; break; }
    a.k = d_k_cache;
    a.v = d_v_cache;
    a.slot_stride = slot_stride;
    a.pos = reinterpret_cast<const int*>(d_pos);
    a.slot = reinterpret_cast<const int*>(d_slot);
    a.scale = scale;
    a.split_len = split_len;
    a.splits = splits;
    a.part_ml = static_cast<float2*>(d_workspace);
    a.part_acc = reinterpret_cast<float*>(static_cast<float2*>(d_workspace) + (size_t)m * heads * splits);
    const cudaStream_t s = as_stream(stream);
    int r;
    if (head_dim <= 32) r = launch_attn_split<1>(a, m, cache_type, s);
    else if (head_dim <= 64) r = launch_attn_split<2>(a, m, cache_type, s);
    else if (head_dim <= 128) r = launch_attn_split<4>(a, m, cache_type, s);
    else r = launch_attn_split<8>(a, m, cache_type, s);
    if (r != 0) return r;
    const RowOut o = row_out(norm, d_weight, eps, d_y, y_stride, d_q8, q8_stride, d_q8_scale, d_q8_sum);
    const int kk = (qd + kRowThreads - 1) / kRowThreads;
    const size_t csmem = (size_t)heads * splits * sizeof(float);
#define ROTOR_COMBINE_REGS(K) \
    launch(attn_combine_regs_kernel<K>, dim3(m), dim3(kRowThreads), csmem, s, "attn_combine_regs_kernel", a, o)
    if (csmem <= 48 * 1024) {
        if (kk <= 1) return ROTOR_COMBINE_REGS(1);
        if (kk <= 2) return ROTOR_COMBINE_REGS(2);
        if (kk <= 3) return ROTOR_COMBINE_REGS(3);
        if (kk <= 4) return ROTOR_COMBINE_REGS(4);
        if (kk <= 5) return ROTOR_COMBINE_REGS(5);
        if (kk <= 8) return ROTOR_COMBINE_REGS(8);
        if (kRowThreads < 1024 && kk <= 16) return ROTOR_COMBINE_REGS(16);
        if (kRowThreads < 512 && kk <= 32) return ROTOR_COMBINE_REGS(32);
    }
#undef ROTOR_COMBINE_REGS
    if (int r = allow_smem(attn_combine_kernel, smem, &g_combine_smem)) return r;
    return launch(attn_combine_kernel, dim3(m), dim3(256), smem, s, "attn_combine_kernel", a, o);
}

ROTOR_API int rotor_lm_dense(const void* d_w, int type, int row_stride, const float* d_w_scale, int n, int cols,
                             const float* d_x, int x_stride, const int8_t* d_xq, int xq_stride, const float* d_x_scale,
                             int m, float* d_y, int y_stride, void* d_half_ws, void* stream) {
    if (int r = use_device()) return r;
    if (n <= 0 || cols <= 0 || m <= 0 || y_stride < n || type < ROTOR_LM_F32 || type > ROTOR_LM_I8 ||
        row_stride < cols * (type == ROTOR_LM_F32 ? 4 : type == ROTOR_LM_F16 ? 2 : 1) || row_stride % 16 != 0)
        return fail(ROTOR_CUDA_EINVAL, "lm_dense: n = %d, cols = %d, m = %d, type = %d, row_stride = %d, y_stride = %d", n, cols, m,
                    type, row_stride, y_stride);
    if (!d_w || !d_y) return fail(ROTOR_CUDA_EINVAL, "lm_dense: NULL pointer");
    if (type == ROTOR_LM_I8) {
        if (!d_xq || !d_x_scale || !d_w_scale || xq_stride < (cols + 255) / 256 * 256 || xq_stride % 16 != 0)
            return fail(ROTOR_CUDA_EINVAL, "lm_dense: int8 weights need xq (stride a multiple of 16, at least the padded columns), x_scale and w_scale");
    } else if (!d_x || x_stride < cols || x_stride % 4 != 0 || reinterpret_cast<uintptr_t>(d_x) % 16 != 0) {
        return fail(ROTOR_CUDA_EINVAL, "lm_dense: x (16-byte aligned, x_stride a multiple of 4 and at least cols) is required");
    }
    const cudaStream_t s = as_stream(stream);
    const uint8_t* w = static_cast<const uint8_t*>(d_w);
    if (type == ROTOR_LM_F16 && m > 8 && cols % 16 == 0 && d_half_ws != nullptr) {
        __half* xh = static_cast<__half*>(d_half_ws);  // (m, cols) f16
        if (int r = launch(to_half_kernel, dim3(m), dim3(256), 0, s, "to_half_kernel", d_x, x_stride, cols, xh, cols)) return r;
        return launch(dense_mma_kernel, dim3((n + 127) / 128, (m + 63) / 64), dim3(256), 0, s, "dense_mma_kernel", w, row_stride, n,
                      cols, static_cast<const __half*>(xh), cols, m, d_y, y_stride);
    }
    for (int i0 = 0; i0 < m; i0 += 8) {
        const int mm = std::min(8, m - i0);
        const float* x = d_x ? d_x + (size_t)i0 * x_stride : nullptr;
        const int8_t* xq = d_xq ? d_xq + (size_t)i0 * xq_stride : nullptr;
        const float* xs = d_x_scale ? d_x_scale + i0 : nullptr;
        float* y = d_y + (size_t)i0 * y_stride;
        const dim3 grid((n + 7) / 8);
        int r;
        if (mm == 1) r = launch(dense_gemv_kernel<1>, grid, dim3(256), 0, s, "dense_gemv_kernel", w, type, row_stride, d_w_scale, n, cols, x, x_stride, xq, xq_stride, xs, mm, y, y_stride);
        else if (mm <= 4) r = launch(dense_gemv_kernel<4>, grid, dim3(256), 0, s, "dense_gemv_kernel", w, type, row_stride, d_w_scale, n, cols, x, x_stride, xq, xq_stride, xs, mm, y, y_stride);
        else r = launch(dense_gemv_kernel<8>, grid, dim3(256), 0, s, "dense_gemv_kernel", w, type, row_stride, d_w_scale, n, cols, x, x_stride, xq, xq_stride, xs, mm, y, y_stride);
        if (r != 0) return r;
    }
    return 0;
}

ROTOR_API int rotor_lm_sample(const float* d_logits, int m, int vocab, int stride, const rotor_lm_sampling* d_params,
                              const int32_t* d_pos, void* d_workspace, int32_t* d_out, void* stream) {
    if (int r = use_device()) return r;
    if (m <= 0 || vocab <= 0 || stride < vocab) return fail(ROTOR_CUDA_EINVAL, "lm_sample: m = %d, vocab = %d, stride = %d", m, vocab, stride);
    if (!d_logits || !d_params || !d_pos || !d_out) return fail(ROTOR_CUDA_EINVAL, "lm_sample: NULL pointer");
    const cudaStream_t st = as_stream(stream);
    unsigned long long* part = static_cast<unsigned long long*>(d_workspace);
    const int parts = std::min(kArgmaxParts, std::max(1, vocab / 2048));
    if (part != nullptr)
        if (int r = launch(argmax_part_kernel, dim3(parts, m), dim3(256), 0, st, "argmax_part_kernel", d_logits, vocab, stride, parts, part))
            return r;
    return launch(sample_kernel, dim3(m), dim3(kSampleThreads), 0, st, "sample_kernel", d_logits, vocab, stride, d_params,
                  reinterpret_cast<const int*>(d_pos), static_cast<const unsigned long long*>(part), parts, reinterpret_cast<int*>(d_out));
}

}  // extern "C"

// elementwise.cu: the kernels around the products: I2_256 pack and unpack, the int8 activation quantization of
// src/Rotor/Quantization/QuantizedActivations.cs, ReLU/Sign, row softmax.
#include "common.cuh"

#include <algorithm>
#include <cmath>

namespace rotor {

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
// Activation quantization. Same operations as QuantizedActivations.QuantizeRow: inv = 127 / amax, rint(x * inv)
// (half to even), clamp to +-127; scale = amax / 127; a row of zeros gets inv = 0 and scale 0. Both kernels write the
// whole padded row (q_stride, a multiple of 4) and give the same bytes.
// ---------------------------------------------------------------------------------------------------------------

// One float to int8: cvt.rni rounds half to even as rintf does; clamping the integer is the same as clamping the
// rounded float.
__device__ __forceinline__ int quant1(float x, float inv) { return min(max(__float2int_rn(__fmul_rn(x, inv)), -127), 127); }

// One CTA a row, 4 bytes a thread a step.
__global__ void __launch_bounds__(256) quantize_kernel(const float* x, int cols, int x_stride, int8_t* q, int q_stride,
                                                        float* scale, int* sum) {
    pdl_trigger();
    pdl_wait();
    __shared__ float fscratch[32];
    __shared__ int iscratch[32];
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    int8_t* qr = q + (size_t)blockIdx.x * q_stride;
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
        scale[blockIdx.x] = amax == 0.f ? 0.f : __fdiv_rn(amax, 127.f);
        sum[blockIdx.x] = s;
    }
}

// One warp a row (rows of up to kQuantWarpCols columns, cols and x_stride multiples of 4, x 16-byte aligned): float4
// loads, the absmax and the sum by warp reductions (redux.sync), no CTA barrier. Two passes over the row; the second
// finds it in L1.
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

// ---------------------------------------------------------------------------------------------------------------
// Formats and element-wise functions
// ---------------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------------------------

int grid_for(size_t items, int threads) { return (int)std::min<size_t>((items + threads - 1) / threads, 1u << 30); }

int launch_pack_i2(const int8_t* trits, int rows, int cols, uint8_t* packed, int row_bytes, int* invalid, cudaStream_t s) {
    const size_t total = (size_t)rows * row_bytes;
    return launch(pack_i2_kernel, dim3(grid_for(total, 256)), dim3(256), 0, s, "pack_i2_kernel", trits, rows, cols, packed,
                  row_bytes, invalid);
}

int launch_unpack_i2(const uint8_t* packed, int rows, int cols, int row_bytes, int8_t* trits, cudaStream_t s) {
    const size_t total = (size_t)rows * cols;
    return launch(unpack_i2_kernel, dim3(grid_for(total, 256)), dim3(256), 0, s, "unpack_i2_kernel", packed, rows, cols,
                  row_bytes, trits);
}

// A warp a row where its float4 loads apply (rows of a multiple of 4 columns, up to kQuantWarpCols, 16-byte aligned):
// no CTA barrier, eight rows a CTA; else a CTA a row.
int launch_quantize(const float* x, int m, int cols, int x_stride, int8_t* q, int q_stride, float* scale, int* sum,
                    cudaStream_t s) {
    if (cols % 4 == 0 && x_stride % 4 == 0 && cols <= kQuantWarpCols && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(q) % 4 == 0)
        return launch(quantize_warp_kernel, dim3((m + 7) / 8), dim3(256), 0, s, "quantize_warp_kernel", x, m, cols, x_stride,
                      q, q_stride, scale, sum);
    return launch(quantize_kernel, dim3(m), dim3(256), 0, s, "quantize_kernel", x, cols, x_stride, q, q_stride, scale, sum);
}

int launch_activation(const float* x, float* y, int64_t count, int act, cudaStream_t s) {
    return launch(activation_kernel, dim3((unsigned)std::min<int64_t>((count + 255) / 256, 4096)), dim3(256), 0, s,
                  "activation_kernel", x, y, count, act);
}

int launch_softmax(const float* x, float* y, int rows, int cols, cudaStream_t s) {
    return launch(softmax_kernel, dim3(rows), dim3(256), 0, s, "softmax_kernel", x, y, cols);
}

}  // namespace rotor

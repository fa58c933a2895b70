// gemv_probe.cu: times variants of the m <= 8 GEMV kernel of native/cuda/rotor_cuda.cu on the GPU, without .NET.
// A tool for choosing launch parameters, not part of the library:
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o gemv_probe bench/cuda/gemv_probe.cu && ./gemv_probe
// Each GEMV variant's output is compared with that of the first (gemv_kernel), bit for bit ("exp" kernels need K a
// multiple of 16 blocks; the streaming-read kernels and "loads only" compute nothing). The streaming reads give the
// physical bound: the same bytes read with nothing else to do. "warm": the same weights every launch
// (as rotor bench-cuda: they may partly stay in L2); "cold": launches rotate over copies of the weights that
// together exceed the L2 cache, so every byte comes from DRAM.
#include "../../native/cuda/rotor_cuda.cu"

namespace {

#define PCK(call)                                                                              \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_)); exit(1); } \
    } while (0)

using Kernel = void (*)(rotor_gemm_args);

unsigned rng_state = 1;
unsigned rng() {  // xorshift32: random test data, no more
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

struct Variant {
    const char* name;
    Kernel k;
    int warps;
    bool smem = false;  // m * K bytes of dynamic shared memory (gemv_exp_kernel with XS)
};

// The physical bound: a plain streaming read of the same bytes. Each thread of a 256-thread CTA reads U 16-byte
// words (256 U consecutive words a CTA, the CTA's share all requested at once, as the GEMV does) and folds them;
// the result is stored only when it equals a constant that random data never gives. PFB: thread 0 first asks L2
// for the CTA's share with one cp.async.bulk.prefetch.L2. The weights' rotation and launch modes are the GEMV's.
template <int U, bool PFB>
__global__ void __launch_bounds__(256) stream_read_kernel(rotor_gemm_args a) {
    pdl_trigger();
    const size_t words = (size_t)a.n * a.row_bytes / 16, base = (size_t)blockIdx.x * 256 * U;
    const uint4* p = reinterpret_cast<const uint4*>(a.w);
    if constexpr (PFB) {
        if (threadIdx.x == 0)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p + base),
                         "r"((unsigned)(min((size_t)256 * U, words - base) * 16)) : "memory");
    }
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const size_t i = base + u * 256 + threadIdx.x;
        v[u] = i < words ? ld_stream(p + i) : make_uint4(0, 0, 0, 0);
    }
    unsigned x = 0;
#pragma unroll
    for (int u = 0; u < U; u++) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    pdl_wait();
    if (x == 0x9e3779b9u) a.y[blockIdx.x & 15] = (float)x;
}

// The same as a grid-stride loop over 8 CTAs a multiprocessor, 4 words a thread a step.
__global__ void __launch_bounds__(256) stream_loop_kernel(rotor_gemm_args a) {
    pdl_trigger();
    const size_t words = (size_t)a.n * a.row_bytes / 16;
    const uint4* p = reinterpret_cast<const uint4*>(a.w);
    unsigned x = 0;
    for (size_t i = (size_t)blockIdx.x * 1024 + threadIdx.x; i < words; i += (size_t)gridDim.x * 1024) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) v[u] = i + 256 * u < words ? ld_stream(p + i + 256 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < 4; u++) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    pdl_wait();
    if (x == 0x9e3779b9u) a.y[blockIdx.x & 15] = (float)x;
}

// (Run 24 also timed two forms of gemv8 with a guarded step for any K: every step guarded, 9.5 us from DRAM, and the
// epilogue's operands loaded early as gemv_kernel does, 8.1 us; see git history of this file.)

// Experimental forms of the m <= 8 GEMV (16 rows a CTA of 4 warps, 4 blocks a warp a step, as gemv_kernel; here
// k_blocks must be a multiple of 16): ACC2: two accumulators, so the mma chain of a warp is half as long; XS: x
// staged once into shared memory by the CTA after the wait (m * K bytes); MMA = false: the loads alone (their
// words folded), to tell the memory side from the rest.
template <bool ACC2, bool XS, bool MMA>
__global__ void __launch_bounds__(128, 8) gemv_exp_kernel(rotor_gemm_args a) {
    pdl_trigger();
    extern __shared__ __align__(16) unsigned char gx_smem[];
    __shared__ int red[4][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * 16;
    const uint8_t* wA = a.w + (size_t)min(r0 + g, a.n - 1) * a.row_bytes + 16 * t;
    const uint8_t* wB = a.w + (size_t)min(r0 + g + 8, a.n - 1) * a.row_bytes + 16 * t;
    const bool xok = g < a.m;
    const int8_t* xg = a.x + (size_t)(xok ? g : 0) * a.x_stride + 16 * t;
    const unsigned char* xsg = gx_smem + (size_t)(xok ? g : 0) * a.k_blocks * 256 + 16 * t;
    int acc[4] = {0, 0, 0, 0}, acc2[4] = {0, 0, 0, 0};
    unsigned fold = 0;
    for (int kb0 = warp; kb0 < a.k_blocks; kb0 += 16) {
        uint4 wa[4], wb[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            wa[u] = ld_stream(wA + (size_t)(kb0 + 4 * u) * 64);
            wb[u] = ld_stream(wB + (size_t)(kb0 + 4 * u) * 64);
        }
        if (kb0 == warp) {
            pdl_wait();
            if constexpr (XS && MMA) {
                const int per_row = a.k_blocks * 16;
                for (int i = threadIdx.x; i < a.m * per_row; i += 128)
                    reinterpret_cast<uint4*>(gx_smem)[i] =
                        __ldg(reinterpret_cast<const uint4*>(a.x + (size_t)(i / per_row) * a.x_stride) + i % per_row);
                __syncthreads();
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int kb = kb0 + 4 * u;
            if constexpr (!MMA) {
                fold ^= wa[u].x ^ wa[u].y ^ wa[u].z ^ wa[u].w ^ wb[u].x ^ wb[u].y ^ wb[u].z ^ wb[u].w;
            } else {
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint4 xv = make_uint4(0, 0, 0, 0);
                    if (xok) {
                        if constexpr (XS) xv = *reinterpret_cast<const uint4*>(xsg + (size_t)kb * 256 + 64 * q);
                        else xv = __ldg(reinterpret_cast<const uint4*>(xg + (size_t)kb * 256 + 64 * q));
                    }
                    mma_s8(acc, slice(wa[u].x, q), slice(wb[u].x, q), slice(wa[u].y, q), slice(wb[u].y, q), xv.x, xv.y);
                    if constexpr (ACC2)
                        mma_s8(acc2, slice(wa[u].z, q), slice(wb[u].z, q), slice(wa[u].w, q), slice(wb[u].w, q), xv.z, xv.w);
                    else
                        mma_s8(acc, slice(wa[u].z, q), slice(wb[u].z, q), slice(wa[u].w, q), slice(wb[u].w, q), xv.z, xv.w);
                }
            }
        }
    }
    if constexpr (!MMA) {
        if (fold == 0x9e3779b9u) a.y[blockIdx.x & 15] = (float)fold;
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; c++) red[warp][c][lane] = acc[c] + acc2[c];
    __syncthreads();
    const int c = threadIdx.x >> 5, ln = threadIdx.x & 31;
    int sum = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) sum += red[w][c][ln];
    store_y(a, 2 * (ln & 3) + (c & 1), r0 + (ln >> 2) + (c >> 1) * 8, sum);
}

// Median us of one launch: `inner` launches in a graph (each on its own weight copy, round robin), 15 replays.
float time_variant(const Variant& v, std::vector<rotor_gemm_args>& args, bool pdl, cudaStream_t s) {
    const int inner = 200;
    PCK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < inner; i++) {
        const rotor_gemm_args& a = args[i % args.size()];
        const size_t words = (size_t)a.n * a.row_bytes / 16;
        // warps < 0: a streaming-read kernel of -warps 16-byte words a thread (256 threads); 0: the grid-stride loop
        const unsigned grid = v.warps > 0 ? (a.n + 15) / 16 : v.warps < 0 ? (unsigned)((words + 256 * -v.warps - 1) / (256 * -v.warps)) : 8 * g_sms;
        const size_t smem = v.smem ? (size_t)a.m * a.k_blocks * 256 : 0;
        if (launch_with(pdl, v.k, dim3(grid), dim3(v.warps > 0 ? 32 * v.warps : 256), smem, s, v.name, a) != 0) {
            fprintf(stderr, "launch: %s\n", t_error);
            exit(1);
        }
    }
    cudaGraph_t g;
    PCK(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t ge;
    PCK(cudaGraphInstantiateWithFlags(&ge, g, 0));
    cudaEvent_t e0, e1;
    PCK(cudaEventCreate(&e0));
    PCK(cudaEventCreate(&e1));
    PCK(cudaGraphLaunch(ge, s));
    std::vector<float> t;
    for (int r = 0; r < 15; r++) {
        float ms;
        PCK(cudaEventRecord(e0, s));
        PCK(cudaGraphLaunch(ge, s));
        PCK(cudaEventRecord(e1, s));
        PCK(cudaEventSynchronize(e1));
        PCK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms * 1000.f / inner);
    }
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

}  // namespace

int main() {
    cudaDeviceProp p;
    PCK(cudaGetDeviceProperties(&p, 0));
    g_sms = p.multiProcessorCount;
    printf("%s, %d SMs, L2 %d MB\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20);
    cudaStream_t s;
    PCK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    double copy = 0;
    if (rotor_cuda_bench_copy(1ull << 30, 20, &copy, s) != 0) { fprintf(stderr, "%s\n", t_error); return 1; }
    printf("copy %.0f GB/s (read + write)\n", copy);
    const Variant variants[] = {
        {"gemv_kernel early (run 18-22)", gemv_kernel<1, 4, 4, 8, true>, 4},
        {"gemv8 early", gemv8_kernel<true, false>, 4},
        {"gemv8 early + L2::256B (auto)", gemv8_kernel<true, true>, 4},
        {"gemv8 late trigger", gemv8_kernel<false, false>, 4},
        {"exp: one chain (run 22)", gemv_exp_kernel<false, false, true>, 4},
        {"exp: loads only (GEMV addressing)", gemv_exp_kernel<false, false, false>, 4},
        {"read: 4 x 16 B a thread", stream_read_kernel<4, false>, -4},
        {"read: 8 x 16 B + bulk L2 pf", stream_read_kernel<8, true>, -8},
        {"read: grid-stride 8 CTA/SM", stream_loop_kernel, 0},
    };
    // K a multiple of 16 blocks: gemv8_kernel and the exp kernels take no other
    const int shapes[][2] = {{16384, 4096}, {4096, 4096}, {65536, 8192}};
    for (auto& sh : shapes) {
        const int n = sh[0], k = sh[1], kb = (k + 255) / 256, m = 1;
        const size_t wbytes = (size_t)n * kb * 64;
        const int copies = (int)std::max<size_t>(1, (3 * (size_t)p.l2CacheSize) / wbytes + 1);
        std::vector<uint8_t> hw(wbytes);
        std::vector<int8_t> hx((size_t)m * kb * 256);
        for (auto& b : hw) { unsigned v = 0; for (int q = 0; q < 4; q++) v |= (rng() % 3) << (2 * q); b = (uint8_t)v; }
        for (auto& b : hx) b = (int8_t)((int)(rng() % 255) - 127);
        uint8_t* dw; int8_t* dx; float *dxs, *dws, *dy, *dy0; int* dsum;
        PCK(cudaMalloc(&dw, wbytes * copies));
        for (int c = 0; c < copies; c++) PCK(cudaMemcpy(dw + c * wbytes, hw.data(), wbytes, cudaMemcpyHostToDevice));
        PCK(cudaMalloc(&dx, hx.size()));
        PCK(cudaMemcpy(dx, hx.data(), hx.size(), cudaMemcpyHostToDevice));
        PCK(cudaMalloc(&dxs, 4 * m)); PCK(cudaMalloc(&dws, 4)); PCK(cudaMalloc(&dsum, 4 * m));
        PCK(cudaMalloc(&dy, 4 * (size_t)m * n)); PCK(cudaMalloc(&dy0, 4 * (size_t)m * n));
        const float one = 1.f; const int zero = 0;
        PCK(cudaMemcpy(dxs, &one, 4, cudaMemcpyHostToDevice)); PCK(cudaMemcpy(dws, &one, 4, cudaMemcpyHostToDevice));
        PCK(cudaMemcpy(dsum, &zero, 4, cudaMemcpyHostToDevice));
        auto args_for = [&](int c, float* y) {
            rotor_gemm_args a{};
            a.w = dw + (size_t)c * wbytes; a.row_bytes = kb * 64; a.k_blocks = kb; a.n = n;
            a.x = dx; a.x_stride = kb * 256; a.m = m; a.x_scale = dxs; a.x_sum = dsum;
            a.w_scale = dws; a.w_scale_stride = 0; a.bias = nullptr; a.y = y; a.y_stride = n; a.act = ROTOR_ACT_NONE;
            return a;
        };
        std::vector<rotor_gemm_args> warm{args_for(0, dy)}, cold;
        for (int c = 0; c < copies; c++) cold.push_back(args_for(c, dy));
        // reference output: the committed kernel
        rotor_gemm_args a0 = args_for(0, dy0);
        launch_with(false, variants[0].k, dim3((n + 15) / 16), dim3(128), 0, s, "ref", a0);
        PCK(cudaStreamSynchronize(s));  // s does not wait for the legacy default stream's copies, nor they for it
        std::vector<float> ref(n), got(n);
        PCK(cudaMemcpy(ref.data(), dy0, 4 * n, cudaMemcpyDeviceToHost));
        const double mb = wbytes / 1e6;
        printf("\n%dx%d m=1: %.1f MB of weights, cold = %d copies\n", n, k, mb, copies);
        printf("%-28s %9s %9s %9s %9s  %s\n", "variant", "warm pdl", "warm iso", "cold pdl", "cold iso", "cold pdl % of copy, check");
        for (const Variant& v : variants) {
            float tw = time_variant(v, warm, true, s), tiw = time_variant(v, warm, false, s);
            float tc = time_variant(v, cold, true, s), tic = time_variant(v, cold, false, s);
            PCK(cudaStreamSynchronize(s));
            PCK(cudaMemcpy(got.data(), dy, 4 * n, cudaMemcpyDeviceToHost));
            const bool same = v.warps <= 0 || strstr(v.name, "loads only") != nullptr || memcmp(got.data(), ref.data(), 4 * n) == 0;
            printf("%-28s %9.2f %9.2f %9.2f %9.2f  %.0f%% / warm %.0f%%, %s\n", v.name, tw, tiw, tc, tic,
                   100.0 * wbytes / (tc * 1e-6) / 1e9 / copy, 100.0 * wbytes / (tw * 1e-6) / 1e9 / copy, same ? "same" : "DIFFERENT");
        }
        cudaFree(dw); cudaFree(dx); cudaFree(dxs); cudaFree(dws); cudaFree(dsum); cudaFree(dy); cudaFree(dy0);
    }
    return 0;
}

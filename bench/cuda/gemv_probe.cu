// gemv_probe.cu: times variants of the m <= 8 GEMV kernel of native/cuda/rotor_cuda.cu on the GPU, without .NET.
// A tool for choosing launch parameters, not part of the library:
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o gemv_probe bench/cuda/gemv_probe.cu && ./gemv_probe
// Each variant's output is compared with the committed kernel's, bit for bit. "warm": the same weights every launch
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
};

// Median us of one launch: `inner` launches in a graph (each on its own weight copy, round robin), 15 replays.
float time_variant(const Variant& v, std::vector<rotor_gemm_args>& args, bool pdl, cudaStream_t s) {
    const int inner = 200;
    PCK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < inner; i++) {
        const rotor_gemm_args& a = args[i % args.size()];
        if (launch_with(pdl, v.k, dim3((a.n + 15) / 16), dim3(32 * v.warps), 0, s, v.name, a) != 0) {
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
        {"gemv 4w u4 (committed)", gemv_kernel<1, 4, 4, 8, false>, 4},
        {"gemv 4w u4 early trigger", gemv_kernel<1, 4, 4, 8, true>, 4},
        {"gemv 2w u8", gemv_kernel<1, 2, 8, 8, false>, 2},
        {"gemv 2w u8 early trigger", gemv_kernel<1, 2, 8, 8, true>, 2},
        {"gemv 4w u2", gemv_kernel<1, 4, 2, 8, false>, 4},
    };
    const int shapes[][2] = {{2560, 2560}, {6912, 2560}, {2560, 6912}, {4096, 4096}, {16384, 4096}};
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
        std::vector<float> ref(n), got(n);
        PCK(cudaMemcpy(ref.data(), dy0, 4 * n, cudaMemcpyDeviceToHost));
        const double mb = wbytes / 1e6;
        printf("\n%dx%d m=1: %.1f MB of weights, cold = %d copies\n", n, k, mb, copies);
        printf("%-28s %9s %9s %9s %9s  %s\n", "variant", "warm pdl", "warm iso", "cold pdl", "cold iso", "cold pdl % of copy, check");
        for (const Variant& v : variants) {
            float tw = time_variant(v, warm, true, s), tiw = time_variant(v, warm, false, s);
            float tc = time_variant(v, cold, true, s), tic = time_variant(v, cold, false, s);
            PCK(cudaMemcpy(got.data(), dy, 4 * n, cudaMemcpyDeviceToHost));
            const bool same = memcmp(got.data(), ref.data(), 4 * n) == 0;
            printf("%-28s %9.2f %9.2f %9.2f %9.2f  %.0f%% / warm %.0f%%, %s\n", v.name, tw, tiw, tc, tic,
                   100.0 * wbytes / (tc * 1e-6) / 1e9 / copy, 100.0 * wbytes / (tw * 1e-6) / 1e9 / copy, same ? "same" : "DIFFERENT");
        }
        cudaFree(dw); cudaFree(dx); cudaFree(dxs); cudaFree(dws); cudaFree(dsum); cudaFree(dy); cudaFree(dy0);
    }
    return 0;
}

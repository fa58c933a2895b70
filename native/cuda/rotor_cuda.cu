// rotor_cuda.cu: the C API of rotor_cuda.h, and the choice of kernel for a product (choose_gemv, choose_gemm). The
// kernels live in gemv.cu, gemm_mma.cu, gemm_wgmma.cu and elementwise.cu; common.cuh is what they share.
#include "common.cuh"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace rotor {

// ---------------------------------------------------------------------------------------------------------------
// Errors and device state
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

int run_probe(void (*kernel)(int*), int* result, const char* what) {
    int* d = nullptr;
    *result = 0;
    CK(cudaMalloc(&d, sizeof(int)));
    cudaError_t e = cudaMemset(d, 0, sizeof(int));
    void* args[] = {&d};
    if (e == cudaSuccess) e = cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(1), dim3(1), args, 0, nullptr);
    if (e == cudaSuccess) e = cudaMemcpy(result, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    return e == cudaSuccess ? 0 : cuda_fail(e, what);
}

// *p = a new block of `bytes` (at least 1) from alloc (cudaMalloc, cudaMallocHost), or the error, named `what`.
template <typename F>
int allocate(void** p, size_t bytes, F alloc, const char* what) {
    if (p == nullptr) return fail(ROTOR_CUDA_EINVAL, "%s: the pointer to set is NULL", what);
    *p = nullptr;
    cudaError_t e = alloc(p, bytes == 0 ? 1 : bytes);
    if (e != cudaSuccess) return fail((int)e, "%s(%zu bytes): %s (%s)", what, bytes, cudaGetErrorName(e), cudaGetErrorString(e));
    return 0;
}

int g_device = -1;
int g_sms = 0;
bool g_pdl = false;

// The current device is per thread: a call from another thread (a finalizer, a worker) must first select ours.
// cudaSetDevice only when it differs, so that calls made during a graph capture stay capture-safe.
#define USE_DEVICE()                                                                        \
    do {                                                                                    \
        int cur_ = -1;                                                                      \
        if (rotor::g_device >= 0 && (cudaGetDevice(&cur_) != cudaSuccess || cur_ != rotor::g_device)) {  \
            cudaError_t e_ = cudaSetDevice(rotor::g_device);                                \
            if (e_ != cudaSuccess) return rotor::cuda_fail(e_, "cudaSetDevice");           \
        }                                                                                   \
    } while (0)

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// ---------------------------------------------------------------------------------------------------------------
// The choice of kernel (ROTOR_PATH_AUTO): one rule a kernel, with why that kernel wins where it is chosen.
// ---------------------------------------------------------------------------------------------------------------

enum class Gemv { Register, Bulk, Wide, SplitK };

// m <= 64: every weight byte is read once, so the time is the weight stream plus what follows its last bytes.
Gemv choose_gemv(const rotor_gemm_args& a) {
    const int ctas = (a.n + 15) / 16;  // the register and bulk-copy GEMVs: 16 weight rows a CTA
    if (a.m <= 8) {
        // Bulk copies hold no weights in registers, so more CTAs and more bytes are in flight a multiprocessor: that
        // wins on grids of fewer than 4 CTAs a multiprocessor. On larger grids every CTA is resident anyway and the
        // register GEMV lets the next kernel launch at entry; where K is a multiple of 16 blocks the unguarded
        // gemv8_kernel issues its loads sooner than the copy engine delivers on every grid.
        if (ctas < 4 * g_sms && a.k_blocks % 16 != 0 && bulk_fits(a)) return Gemv::Bulk;
        return Gemv::Register;
    }
    // 9 <= m <= 64: the wide GEMV reads all of x through L1 for every 16 weight rows; the split-K cluster GEMV reads
    // each x slice once a CTA but has a longer chain of dependent steps (stage x, mma, cluster barrier, remote reads,
    // barrier). It wins where that x traffic is large, n * k_blocks * NT >= 250000, except where K is a multiple of 16
    // blocks: there every two-block step of the wide GEMV is whole.
    if (sk_fits(a.m, a.k_blocks) && a.k_blocks % 16 != 0 && (long long)a.n * a.k_blocks * sk_tiles(a.m) >= 250000)
        return Gemv::SplitK;
    return Gemv::Wide;
}

// The two-CTA wgmma tiles: one CTA's time per K block, alone on a multiprocessor, for kWg128x128 .. kWg128x80 (BM 128,
// 96, 64, 80), on one scale fitted to timings of each tile on H100.
constexpr long long kWgAlone[] = {100, 75, 58, 66};

// ROTOR_GEMM_SPLITS, read once: 0 when unset.
int splits_override() {
    static const int v = [] {
        const char* e = getenv("ROTOR_GEMM_SPLITS");
        return e != nullptr ? atoi(e) : 0;
    }();
    return v;
}

// The time of the busiest multiprocessor, in the units of kWgAlone; far above every other where the kernel is absent.
long long gemm_cost(const rotor_gemm_args& a, int cfg) {
    constexpr long long kNo = 1LL << 62;
    const GemmConfig& c = kGemm[cfg];
    if (c.split) return kNo;  // chosen by its own rule (choose_gemm)
    const long long k = (gemm_tiles(a, cfg) + g_sms - 1) / g_sms;  // tiles of the busiest multiprocessor
    switch (c.family) {
        case GemmFamily::Wgmma:
            // Two CTAs share a multiprocessor; a pair takes 1.35 times as long as one CTA alone.
            return (k / 2 * 135 + k % 2 * 100) * kWgAlone[cfg - kWg128x128];
        case GemmFamily::Ws:
            // One persistent CTA a multiprocessor: BM + 40 units of 52 a tile of 256 weight rows. The 128-row form (two
            // consumer warpgroups) takes 5/8 of that, and only pays back its pipeline's fill on 16 or more K blocks.
            if (!g_ws || (c.bn == 128 && a.k_blocks < 16)) return kNo;
            return k * (c.bm + 40) * 52 * (c.bn == 256 ? 8 : 5) / 8;
        default:
            return kNo;
    }
}

// A split pays only on grids of at most half a tile a multiprocessor, where one CTA's chain of K blocks is the whole
// time, and while the split grid stays within about one CTA a multiprocessor; counts that are no power of two were
// slower (clusters that do not tile a GPC's multiprocessors). So S is the largest power of two with S * tiles <= 5/4
// of the multiprocessors, where tiles <= half of them, at most 8 and at most half the K blocks (the timings of every
// forced S: docs/BENCHMARKS-cuda.md).
int wg_splits(const rotor_gemm_args& a) {
    const int forced = splits_override();
    if (forced > 0) return std::max(1, std::min({forced, 8, a.k_blocks}));
    const long long tiles = std::max<long long>(1, gemm_tiles(a, kWg128x64k));
    if (2 * tiles > g_sms) return 1;
    const long long fit = std::min<long long>({5LL * g_sms / (4 * tiles), 8, a.k_blocks / 2});
    int s = 1;
    while (2LL * s <= fit) s *= 2;
    return s;
}

// The split-K wgmma GEMM where it splits (wg_splits > 1), unless ROTOR_GEMM_SPLITK=0.
bool use_split(const rotor_gemm_args& a) {
    static const bool off = [] {
        const char* e = getenv("ROTOR_GEMM_SPLITK");
        return e != nullptr && strcmp(e, "0") == 0;
    }();
    return !off && g_bulk && wg_splits(a) > 1;
}

// 33 <= m <= 64 on sm_90a: the 128 x 64 wgmma tile or the GEMVs. From 49 rows the tile beat every GEMV on all five
// BitNet shapes; below, it still wins where the GEMV's x traffic (n * k_blocks * m, x read through L1 for every 16
// weight rows) is large, or where K is no multiple of 16 blocks (the GEMV's steps carry guards), and loses to the wide
// GEMV's whole two-block steps on small matrices with such K (every path forced at m = 33, 40 and 48:
// docs/BENCHMARKS-cuda.md).
bool wgmma_over_gemv(const rotor_gemm_args& a) {
    if (a.m > 48) return true;
    return a.k_blocks % 16 != 0 || (long long)a.n * a.k_blocks * a.m >= 5000000LL;
}

// m > 64 (and ROTOR_PATH_TILED).
int choose_gemm(const rotor_gemm_args& a) {
    if (!g_wgmma) {
        // mma.sync: 128 x 128 tiles once there are 3.5 of them a multiprocessor, where their operand reuse pays; below
        // that the 64 x 128 tiles keep more multiprocessors busy.
        return gemm_tiles(a, kMma128x128) * 2 >= 7LL * g_sms ? kMma128x128 : kMma64x128;
    }
    // Few tiles: the K blocks of a tile shared out among a cluster's CTAs.
    if (use_split(a)) return kWg128x64k;
    // wgmma: the configuration whose busiest multiprocessor finishes first (tile height against waves).
    int best = kWg128x128;
    for (int cfg = kWg128x128 + 1; cfg < kGemmConfigs; cfg++)
        if (gemm_cost(a, cfg) < gemm_cost(a, best)) best = cfg;
    return best;
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
    if (path < ROTOR_PATH_AUTO || (path > ROTOR_PATH_GEMV_SK && (path < ROTOR_PATH_TILED_CFG0 || path >= ROTOR_PATH_TILED_CFG0 + kGemmConfigs)))
        return fail(ROTOR_CUDA_EINVAL, "gemm: unknown path %d", path);
    return 0;
}

int launch_gemm(const rotor_gemm_args& a, int path, cudaStream_t s) {
    if (path == ROTOR_PATH_GEMV_BULK) return launch_gemv_bulk(a, s);
    if (path == ROTOR_PATH_GEMV_SK) return launch_gemv_sk(a, s);
    if (path == ROTOR_PATH_GEMV) return launch_gemv(a, s);
    // 33 <= m <= 64 on the wgmma devices: one 64-row activation tile of the 128 x 64 wgmma kernel (split where it
    // splits) reads every weight byte once on the tensor cores; the GEMVs' work grows with m (wgmma_over_gemv).
    if (path == ROTOR_PATH_AUTO && a.m > 32 && a.m <= 64 && g_wgmma && wgmma_over_gemv(a))
        return launch_wgmma(a, use_split(a) ? kWg128x64k : kWg128x64, s);
    if (path == ROTOR_PATH_AUTO && a.m <= 64) {
        switch (choose_gemv(a)) {
            case Gemv::Bulk: return launch_gemv_bulk(a, s);
            case Gemv::SplitK: return launch_gemv_sk(a, s);
            default: return launch_gemv(a, s);  // the register or wide GEMV, by m
        }
    }
    const int cfg = path >= ROTOR_PATH_TILED_CFG0 ? path - ROTOR_PATH_TILED_CFG0 : choose_gemm(a);
    return kGemm[cfg].family == GemmFamily::Mma ? launch_mma(a, cfg, s) : launch_wgmma(a, cfg, s);
}

}  // namespace rotor

using namespace rotor;

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
    g_pdl = p.major >= 9;
    int r;
    if ((r = gemv_init(p)) != 0) return r;  // first: it says so where the library has no image for this device
    if ((r = mma_init(p)) != 0) return r;
    return wgmma_init(p);
}

ROTOR_API int rotor_cuda_path_supported(int path) {
    if (path == ROTOR_PATH_GEMV_BULK || path == ROTOR_PATH_GEMV_SK) return g_bulk ? 1 : 0;
    if (path >= ROTOR_PATH_TILED_CFG0 && path < ROTOR_PATH_TILED_CFG0 + kGemmConfigs) {
        switch (kGemm[path - ROTOR_PATH_TILED_CFG0].family) {
            case GemmFamily::Mma: return 1;
            case GemmFamily::Wgmma: return g_wgmma && (g_bulk || !kGemm[path - ROTOR_PATH_TILED_CFG0].split) ? 1 : 0;
            default: return g_ws ? 1 : 0;
        }
    }
    return path == ROTOR_PATH_AUTO || path == ROTOR_PATH_GEMV || path == ROTOR_PATH_TILED ? 1 : 0;
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
    return allocate(d_ptr, bytes, [](void** p, size_t b) { return cudaMalloc(p, b); }, "cudaMalloc");
}
ROTOR_API int rotor_cuda_free(void* d_ptr) {
    USE_DEVICE();
    CK(cudaFree(d_ptr));
    return 0;
}
ROTOR_API int rotor_cuda_host_alloc(void** h_ptr, size_t bytes) {
    USE_DEVICE();
    return allocate(h_ptr, bytes, [](void** p, size_t b) { return cudaMallocHost(p, b); }, "cudaMallocHost");
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
    return launch_pack_i2(d_trits, rows, cols, d_packed, row_bytes, d_invalid, as_stream(stream));
}

ROTOR_API int rotor_cuda_unpack_i2(const uint8_t* d_packed, int rows, int cols, int row_bytes, int8_t* d_trits,
                                   void* stream) {
    USE_DEVICE();
    if (rows <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: %dx%d, dimensions must be positive", rows, cols);
    if (row_bytes < (cols + 255) / 256 * 64) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: row_bytes = %d too small for %d columns", row_bytes, cols);
    if (d_trits == nullptr || d_packed == nullptr) return fail(ROTOR_CUDA_EINVAL, "unpack_i2: NULL pointer");
    return launch_unpack_i2(d_packed, rows, cols, row_bytes, d_trits, as_stream(stream));
}

ROTOR_API int rotor_cuda_quantize(const float* d_x, int m, int cols, int x_stride, int8_t* d_q, int q_stride,
                                  float* d_scale, int32_t* d_sum, void* stream) {
    USE_DEVICE();
    if (m <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "quantize: m = %d, cols = %d must be positive", m, cols);
    if (x_stride < cols || q_stride < cols || q_stride % 4 != 0)
        return fail(ROTOR_CUDA_EINVAL, "quantize: x_stride = %d, q_stride = %d for %d columns (q_stride a multiple of 4)", x_stride, q_stride, cols);
    if (d_x == nullptr || d_q == nullptr || d_scale == nullptr || d_sum == nullptr) return fail(ROTOR_CUDA_EINVAL, "quantize: NULL pointer");
    return launch_quantize(d_x, m, cols, x_stride, d_q, q_stride, d_scale, reinterpret_cast<int*>(d_sum), as_stream(stream));
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
    return launch_gemm_f32(d_w, row_bytes, k_blocks, n, d_x, cols, x_stride, m, d_w_scale, w_scale_stride, d_bias, d_y, y_stride,
                           act, as_stream(stream));
}

ROTOR_API int rotor_cuda_activation(const float* d_x, float* d_y, int64_t count, int act, void* stream) {
    USE_DEVICE();
    if (count <= 0 || act < ROTOR_ACT_NONE || act > ROTOR_ACT_SIGN) return fail(ROTOR_CUDA_EINVAL, "activation: count = %lld, act = %d", (long long)count, act);
    return launch_activation(d_x, d_y, count, act, as_stream(stream));
}

ROTOR_API int rotor_cuda_softmax(const float* d_x, float* d_y, int rows, int cols, void* stream) {
    USE_DEVICE();
    if (rows <= 0 || cols <= 0) return fail(ROTOR_CUDA_EINVAL, "softmax: %dx%d", rows, cols);
    return launch_softmax(d_x, d_y, rows, cols, as_stream(stream));
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

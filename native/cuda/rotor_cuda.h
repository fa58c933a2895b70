// rotor_cuda: CUDA kernels for Rotor's ternary formats, reached from C# through P/Invoke (src/Rotor/Cuda/Native.cs).
//
// Every function returns 0 on success, a CUDA error code (> 0) or ROTOR_CUDA_EINVAL (-1) for bad arguments; the
// message of the calling thread's last failure is read with rotor_cuda_last_error. Pointers named d_* are device
// pointers, h_* host pointers; a stream of NULL is the legacy default stream.
//
// Weight layout: I2_256 exactly as src/Rotor/Core/TernaryMatrix.cs defines it. Each row is row_bytes = k_blocks * 64
// bytes; block b of a row covers columns 256b..256b+255 in bytes 64b..64b+63, and byte j holds the codes (w + 1) of
// columns 256b+j, +64, +128, +192 in bit pairs 0-1, 2-3, 4-5, 6-7. Padding columns hold w = 0 (code 1).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ROTOR_API __declspec(dllexport)
#else
#define ROTOR_API __attribute__((visibility("default")))
#endif

#define ROTOR_CUDA_ABI 5        // bumped on any change of a signature or struct below
#define ROTOR_CUDA_EINVAL (-1)  // an argument was out of range; see rotor_cuda_last_error

enum rotor_act { ROTOR_ACT_NONE = 0, ROTOR_ACT_RELU = 1, ROTOR_ACT_SIGN = 2 };
// Product kernels. AUTO: a GEMV for m <= 64 (register loads, bulk copies, or split-K on clusters), else the wgmma
// kernels where the device has them (compute capability 9.0 and the library's sm_90a code), else the mma.sync tiled
// kernel, each in the configuration that suits the shape (native/cuda/rotor_cuda.cu, choose_gemv and choose_gemm).
// GEMV forces the register-load GEMVs (m <= 64); TILED the tiled kernels' choice for any m. TILED_CFG0 + i forces
// configuration i, weight rows x activation rows: mma.sync 0: 128x128, 1: 64x128; wgmma (see
// rotor_cuda_path_supported) 2: 128x128, 3: 128x96, 4: 128x64, 5: 128x80; warp-specialized wgmma (TMA, persistent;
// CUDA 12 or newer) 6: 256x128, 7: 256x80, 8: 256x96, 9: 128x128. GEMV_BULK forces the GEMV whose weights come by bulk
// copies (m <= 8, k_blocks <= 47, compute capability 9.0 or newer), GEMV_SK the split-K cluster GEMV (m <= 64,
// k_blocks <= 32, compute capability 9.0 or newer, CUDA 12). The forced paths serve tests and benchmarks.
enum rotor_path { ROTOR_PATH_AUTO = 0, ROTOR_PATH_GEMV = 1, ROTOR_PATH_TILED = 2, ROTOR_PATH_GEMV_BULK = 3,
                  ROTOR_PATH_GEMV_SK = 4, ROTOR_PATH_TILED_CFG0 = 16 };

// One ternary x int8 product, the epilogue of src/Rotor/Kernels/GemmArgs.cs with an activation after it:
//   y[i, r] = act((float)(sum_j code[r, j] * x[i, j] - x_sum[i]) * x_scale[i] * w_scale[r * w_scale_stride] + bias[r])
// computed with one IEEE rounding per operation in that order, so results equal the CPU's bit for bit.
// Shapes: w (n, k_blocks * 256) as row_bytes-byte rows; x (m, k_blocks * 256) int8 with row stride x_stride bytes
// (a multiple of 16, the padding columns zero); y (m, n) float with row stride y_stride. bias is NULL or n floats.
typedef struct rotor_gemm_args {
    const uint8_t* w;
    const int8_t* x;
    const float* x_scale;
    const int32_t* x_sum;
    const float* w_scale;
    const float* bias;
    float* y;
    int32_t row_bytes;
    int32_t k_blocks;
    int32_t n;
    int32_t x_stride;
    int32_t m;
    int32_t w_scale_stride;  // 0: one scale for the whole matrix, 1: one a row
    int32_t y_stride;
    int32_t act;             // rotor_act
} rotor_gemm_args;           // 88 bytes on 64-bit targets; mirrored by GemmArgsNative in Native.cs

// Library and device.
ROTOR_API int rotor_cuda_abi(void);
ROTOR_API int rotor_cuda_last_error(char* buf, int len);
ROTOR_API int rotor_cuda_device_count(int* count);
// 1 when rotor_cuda_gemm can run `path` on the device chosen by rotor_cuda_init, else 0.
ROTOR_API int rotor_cuda_path_supported(int path);
// Selects the device and prepares the kernels; name gets up to name_len bytes (NUL-terminated).
ROTOR_API int rotor_cuda_init(int device, char* name, int name_len, int* cc_major, int* cc_minor, int* sms,
                              int64_t* global_mem, int* driver_version, int* runtime_version);

// Programmatic dependent launch (sm_90 and newer): each kernel may start while the previous one on its stream
// finishes, streaming weights meanwhile. On where supported from rotor_cuda_init on; turned off and on again here
// (benchmarks). Returns 1 when on, 0 when off (asked, or unsupported), or an error.
ROTOR_API int rotor_cuda_set_pdl(int on);

// Memory, streams, events, graphs.
ROTOR_API int rotor_cuda_malloc(void** d_ptr, size_t bytes);
ROTOR_API int rotor_cuda_free(void* d_ptr);
ROTOR_API int rotor_cuda_host_alloc(void** h_ptr, size_t bytes);  // page-locked
ROTOR_API int rotor_cuda_host_free(void* h_ptr);
ROTOR_API int rotor_cuda_memcpy_h2d(void* d_dst, const void* h_src, size_t bytes, void* stream);
ROTOR_API int rotor_cuda_memcpy_d2h(void* h_dst, const void* d_src, size_t bytes, void* stream);
ROTOR_API int rotor_cuda_memcpy_d2d(void* d_dst, const void* d_src, size_t bytes, void* stream);
ROTOR_API int rotor_cuda_memset(void* d_ptr, int value, size_t bytes, void* stream);
ROTOR_API int rotor_cuda_stream_create(void** stream);
ROTOR_API int rotor_cuda_stream_destroy(void* stream);
ROTOR_API int rotor_cuda_stream_sync(void* stream);
ROTOR_API int rotor_cuda_event_create(void** event);
ROTOR_API int rotor_cuda_event_destroy(void* event);
ROTOR_API int rotor_cuda_event_record(void* event, void* stream);
ROTOR_API int rotor_cuda_event_elapsed_ms(void* start, void* end, float* ms);  // waits for end
ROTOR_API int rotor_cuda_graph_begin(void* stream);                // starts capturing the stream's work
ROTOR_API int rotor_cuda_graph_end(void* stream, void** graph_exec);  // ends it and instantiates the graph
ROTOR_API int rotor_cuda_graph_launch(void* graph_exec, void* stream);
ROTOR_API int rotor_cuda_graph_destroy(void* graph_exec);

// Formats. pack: trits (rows, cols) row-major int8 in {-1, 0, +1} -> I2_256 rows (row_bytes each, padding w = 0);
// *d_invalid (device int) is incremented once per value outside {-1, 0, +1} (such values are stored as 0).
ROTOR_API int rotor_cuda_pack_i2(const int8_t* d_trits, int rows, int cols, uint8_t* d_packed, int row_bytes,
                                 int* d_invalid, void* stream);
// unpack: I2_256 rows -> trits (rows, cols) row-major; code 3 (invalid) decodes to +2.
ROTOR_API int rotor_cuda_unpack_i2(const uint8_t* d_packed, int rows, int cols, int row_bytes, int8_t* d_trits,
                                   void* stream);

// Activation quantization, as src/Rotor/Quantization/QuantizedActivations.cs: per row amax = max |x|,
// scale = amax / 127, q = clamp(round_half_even(x * (127 / amax)), -127, 127), sum = sum q; rows of zeros give
// scale 0. x (m, cols) with row stride x_stride floats; q (m, q_stride) with columns cols..q_stride-1 zeroed.
ROTOR_API int rotor_cuda_quantize(const float* d_x, int m, int cols, int x_stride, int8_t* d_q, int q_stride,
                                  float* d_scale, int32_t* d_sum, void* stream);

// The int8 product (see rotor_gemm_args). path: a rotor_path; ROTOR_PATH_AUTO picks the kernel.
ROTOR_API int rotor_cuda_gemm(const rotor_gemm_args* args, int path, void* stream);

// The float product: y[i, r] = act(w_scale[r * w_scale_stride] * sum_j w[r, j] * x[i, j] + bias[r]) with x (m, cols)
// float, row stride x_stride floats (only the first cols values of a row are read).
ROTOR_API int rotor_cuda_gemm_f32(const uint8_t* d_w, int row_bytes, int k_blocks, int n, const float* d_x, int cols,
                                  int x_stride, int m, const float* d_w_scale, int w_scale_stride, const float* d_bias,
                                  float* d_y, int y_stride, int act, void* stream);

// Elementwise y = act(x) over count floats (in place allowed); row softmax over (rows, cols).
ROTOR_API int rotor_cuda_activation(const float* d_x, float* d_y, int64_t count, int act, void* stream);
ROTOR_API int rotor_cuda_softmax(const float* d_x, float* d_y, int rows, int cols, void* stream);

// Timing: runs the product `inner` times inside one CUDA graph, replays it `reps` times and writes each replay's
// time divided by inner (microseconds) to us[0..reps). The graph removes launch overhead from the figure.
ROTOR_API int rotor_cuda_bench_gemm(const rotor_gemm_args* args, int path, int inner, int reps, float* us,
                                    void* stream);
// The same with launch k of the graph running args[k % count]: products over `count` copies of the weights that
// together exceed the L2 cache read every weight byte from DRAM ("cold").
ROTOR_API int rotor_cuda_bench_gemm_many(const rotor_gemm_args* args, int count, int path, int inner, int reps,
                                         float* us, void* stream);
// The L2 cache size of the device in bytes.
ROTOR_API int rotor_cuda_l2_bytes(int64_t* bytes);
// Device-to-device copy of `bytes` bytes, `reps` times; writes the median bandwidth counting bytes read and written.
ROTOR_API int rotor_cuda_bench_copy(size_t bytes, int reps, double* gbps, void* stream);

#ifdef __cplusplus
}
#endif

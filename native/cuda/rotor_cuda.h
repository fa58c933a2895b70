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

#define ROTOR_CUDA_ABI 10       // bumped on any change of a signature or struct below
#define ROTOR_CUDA_EINVAL (-1)  // an argument was out of range; see rotor_cuda_last_error

enum rotor_act { ROTOR_ACT_NONE = 0, ROTOR_ACT_RELU = 1, ROTOR_ACT_SIGN = 2 };
// Product kernels. AUTO: a GEMV for m <= 64 (register loads, bulk copies, or split-K on clusters), else the wgmma
// kernels where the device has them (compute capability 9.0 and the library's sm_90a code), else the mma.sync tiled
// kernel, each in the configuration that suits the shape (native/cuda/rotor_cuda.cu, choose_gemv and choose_gemm).
// GEMV forces the register-load GEMVs (m <= 64); TILED the tiled kernels' choice for any m. TILED_CFG0 + i forces
// configuration i, weight rows x activation rows: mma.sync 0: 128x128, 1: 64x128; wgmma (see
// rotor_cuda_path_supported) 2: 128x128, 3: 128x96, 4: 128x64, 5: 128x80; warp-specialized wgmma (TMA, persistent;
// CUDA 12 or newer) 6: 256x128, 7: 256x80, 8: 256x96, 9: 128x128; wgmma 10: 128x64 split-K (a tile's K blocks shared
// out among the CTAs of a cluster; CUDA 12; AUTO's choice for m > 64 on grids of few tiles unless
// ROTOR_GEMM_SPLITK=0; ROTOR_GEMM_SPLITS=n sets the CTAs a tile). GEMV_BULK forces the GEMV whose weights come by bulk
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

// ---------------------------------------------------------------------------------------------------------------
// Language-model kernels (lm.cu): the steps of a decoder around the ternary products, shapes and pointers only.
// Legend: m rows (tokens of a step), D columns, hd head size. Integer arrays (tokens, pos, slot) are int32 on the
// device. Key/value caches: a layer's keys (and values) of sequence slot s at position p, column c, are element
// s * slot_stride + p * kv_heads * hd + c of d_k_cache (d_v_cache), float or f16 (cache_type).
// ---------------------------------------------------------------------------------------------------------------

enum rotor_lm_type { ROTOR_LM_F32 = 0, ROTOR_LM_F16 = 1, ROTOR_LM_I8 = 2 };        // dense element types
enum rotor_lm_act { ROTOR_LM_SILU = 0, ROTOR_LM_RELU2 = 1 };                       // gate activations
enum rotor_lm_rope { ROTOR_LM_ROPE_INTERLEAVED = 0, ROTOR_LM_ROPE_HALF = 1 };      // rotary pairings

// Sampling of one row (rotor_lm_sample). temperature <= 0 or top_k == 1: the argmax (first among equals). Else
// top_k in 2..1024 (0 and larger k are not done on the device): the k largest (ties by lower id), softmax with
// temperature over them, the smallest prefix reaching top_p (1: all), min_p relative to the best (0: off), one
// uniform draw from (seed, the row's position).
typedef struct rotor_lm_sampling {
    float temperature;
    float top_p;
    float min_p;
    int32_t top_k;
    uint64_t seed;
} rotor_lm_sampling;  // 24 bytes; mirrored by LmSamplingNative in Native.cs

// x[i] = row tokens[i] of the table (vocab rows of row_stride bytes, type; int8 rows times d_scales[row]) as float.
ROTOR_API int rotor_lm_embed(const void* d_table, int type, int row_stride, const float* d_scales, int vocab,
                             const int32_t* d_tokens, int m, int dim, float* d_x, int x_stride, void* stream);
// One row at a time: v = x[i] (+ add[i], written back to x: the residual add), or with up != NULL the gated product
// v = act(x[i]) * up[i]; then, when norm, RMSNorm v = v / sqrt(mean(v^2) + eps) (* weight when not NULL); then v to
// y (when not NULL) and quantized to int8 as rotor_cuda_quantize does into q/q_scale/q_sum (when q is not NULL).
ROTOR_API int rotor_lm_norm(float* d_x, int m, int cols, int x_stride, const float* d_add, int add_stride,
                            const float* d_up, int up_stride, int act, int norm, const float* d_weight, float eps,
                            float* d_y, int y_stride, int8_t* d_q, int q_stride, float* d_q_scale, int32_t* d_q_sum,
                            void* stream);
// Row i of qkv holds q (heads * hd), k and v (kv_heads * hd each): q and k rotated in place by position pos[i]
// (tables (positions, hd / 2) of cos and sin), k and v written to the caches of sequence slot[i] at pos[i].
ROTOR_API int rotor_lm_rope_kv(float* d_qkv, int m, int qkv_stride, int heads, int kv_heads, int head_dim, int style,
                               const float* d_cos, const float* d_sin, const int32_t* d_pos, const int32_t* d_slot,
                               void* d_k_cache, void* d_v_cache, int cache_type, int64_t slot_stride, void* stream);
// The split of the context for caches of `capacity` positions and the workspace rotor_lm_attention needs for m rows.
ROTOR_API int rotor_lm_attention_plan(int capacity, int m, int heads, int head_dim, int* split_len, int* splits,
                                      int64_t* workspace_bytes);
// Attention of row i's query heads (q (m, q_stride), rotated) over positions 0..pos[i] of sequence slot[i]'s cache,
// grouped-query (heads a multiple of kv_heads), scores times scale, softmax: split over the context (CTAs of
// split_len positions, then a combine), then as rotor_lm_norm from v = the heads' outputs (norm, weight, y, q8).
ROTOR_API int rotor_lm_attention(const float* d_q, int m, int q_stride, int heads, int kv_heads, int head_dim,
                                 const void* d_k_cache, const void* d_v_cache, int cache_type, int64_t slot_stride,
                                 const int32_t* d_pos, const int32_t* d_slot, float scale, int split_len, int splits,
                                 void* d_workspace, int norm, const float* d_weight, float eps, float* d_y, int y_stride,
                                 int8_t* d_q8, int q8_stride, float* d_q8_scale, int32_t* d_q8_sum, void* stream);
// y (m, n) = x (m, cols) W^T, W (n, cols) of type with rows of row_stride bytes (a multiple of 16). F32/F16: float x
// (16-byte aligned, x_stride a multiple of 4); f16 with m > 8, cols a multiple of 16 and d_half_ws (m * cols f16) runs
// tensor-core tiles, else a GEMV per 8 rows. I8: x given quantized (xq (m, xq_stride) with zeroed padding to a multiple
// of 256 columns, x_scale), y = (float)dot * x_scale[i] * w_scale[r].
ROTOR_API int rotor_lm_dense(const void* d_w, int type, int row_stride, const float* d_w_scale, int n, int cols,
                             const float* d_x, int x_stride, const int8_t* d_xq, int xq_stride, const float* d_x_scale,
                             int m, float* d_y, int y_stride, void* d_half_ws, void* stream);
// A ternary product of m <= 8 rows with the work around it fused in (a decode step's layers; gemv_fused.cu):
//   input     g.x/x_scale/x_sum as rotor_cuda_gemm takes them, or, with src given, made from the float rows src
//             (m, src_stride) of `cols` columns as rotor_lm_norm makes q8 (RMSNorm when norm, times norm_weight when not
//             NULL, then int8; g.x, x_scale and x_sum are not read);
//   epilogue  ROTOR_LM_STORE: y = the product (g.act applied); ROTOR_LM_ADD: y += the product (the residual stream);
//             ROTOR_LM_GATED: the weights are gate rows [0, n/2) then up rows [n/2, n), and y (m, n/2) = act(gate) * up
//             (act: rotor_lm_act); ROTOR_LM_ROPE: the weights are q (heads * head_dim rows), k and v (kv_heads *
//             head_dim each), and y (m, y_stride) gets the product with q and k rotated by position pos[i] (tables
//             rope_cos/rope_sin (positions, head_dim / 2), pairing rope_style), k and v also written to the caches of
//             sequence slot[i] at pos[i] (float, or f16 where cache_type is 1): rotor_lm_rope_kv's work on the result.
// g.bias must be NULL.
enum rotor_lm_epilogue { ROTOR_LM_STORE = 0, ROTOR_LM_ADD = 1, ROTOR_LM_GATED = 2, ROTOR_LM_ROPE = 3 };
typedef struct rotor_lm_linear_args {
    rotor_gemm_args g;
    const float* src;
    const float* norm_weight;
    int32_t src_stride;
    int32_t cols;
    int32_t norm;
    float eps;
    int32_t epilogue;  // rotor_lm_epilogue
    int32_t act;       // rotor_lm_act, for ROTOR_LM_GATED
    // ROTOR_LM_ROPE only (else ignored): the rotary tables, positions, slots and a layer's caches as rotor_lm_rope_kv
    // takes them.
    const float* rope_cos;
    const float* rope_sin;
    const int32_t* pos;
    const int32_t* slot;
    void* k_cache;
    void* v_cache;
    int64_t slot_stride;
    int32_t heads;
    int32_t kv_heads;
    int32_t head_dim;
    int32_t rope_style;  // rotor_lm_rope
    int32_t cache_type;  // 0 float, 1 f16
    int32_t reserved;
} rotor_lm_linear_args;  // 208 bytes on 64-bit targets; mirrored by LmLinearNative in Native.cs
ROTOR_API int rotor_lm_linear(const rotor_lm_linear_args* args, void* stream);
// The layers of a one-row decode step of a BitNet-style model in one persistent kernel (decode.cu): every product
// ternary (I2_256 rows of row_bytes >= k_blocks * 64 bytes, a multiple of 16, 16-byte aligned), pre-norms before q/k/v
// and gate/up, optional sub-norms before the output and down projections, gated FFN (gate rows then up rows),
// rotary embeddings and grouped-query attention over the cache (addressed as rotor_lm_rope_kv does: layer l's keys at
// kv + 2 l capacity kvd elements, its values capacity kvd after them, slot s at s * slot_stride). x holds the embedded
// token on entry and the residual stream after the last layer on return (the final norm and the head are not run).
// Needs compute capability 9.0 (bulk copies) and one CTA a multiprocessor resident (a cooperative launch).
typedef struct rotor_lm_decode_layer {
    const uint8_t* w[4];       // q/k/v (q rows, k rows, v rows), output, gate/up, down
    const float* w_scale[4];
    const float* norm[4];      // attn_norm, attn_sub_norm (or NULL), ffn_norm, ffn_sub_norm (or NULL)
    int32_t row_bytes[4];
    int32_t w_scale_stride[4]; // 0: one scale, 1: one a row
} rotor_lm_decode_layer;       // 128 bytes; mirrored by LmDecodeLayerNative in Native.cs
typedef struct rotor_lm_decode_args {
    const rotor_lm_decode_layer* d_layers;  // (layers), device memory
    float* x;                  // (dim)
    float* q;                  // (heads * head_dim) scratch
    float* o;                  // (heads * head_dim) scratch
    float* h;                  // (ffn) scratch
    float* ws;                 // workspace_bytes of rotor_lm_decode_plan
    uint32_t* sync;            // sync_count of rotor_lm_decode_plan, zero before the first call (they return to zero)
    void* kv;                  // float (cache_type 0) or half (1) cache
    const float* cos_t;        // (capacity, head_dim / 2)
    const float* sin_t;
    const int32_t* pos;        // the row's position (one int32, device memory)
    const int32_t* slot;       // its sequence slot
    int64_t slot_stride;
    int32_t layers, dim, heads, kv_heads, head_dim, ffn;
    int32_t capacity, cache_type, rope_style, act;  // rotor_lm_rope, rotor_lm_act
    float eps, scale;          // norm epsilon, attention scale
} rotor_lm_decode_args;        // 152 bytes; mirrored by LmDecodeArgsNative in Native.cs
// Checks a shape (EINVAL with the reason where the kernel cannot run it), prepares the kernel, and tells the CTAs,
// the workspace bytes and the sync counters (uint32) it needs.
ROTOR_API int rotor_lm_decode_plan(const rotor_lm_decode_args* args, int32_t* ctas, int64_t* workspace_bytes, int32_t* sync_count);
ROTOR_API int rotor_lm_decode(const rotor_lm_decode_args* args, void* stream);
// out[i] = a token drawn from logits row i (m rows of `stride` floats, vocab used) per params[i] (rotor_lm_sampling).
// d_workspace: NULL, or m * 64 * 8 bytes for the greedy rows' argmax over 64 CTAs a row (else one CTA a row).
ROTOR_API int rotor_lm_sample(const float* d_logits, int m, int vocab, int stride, const rotor_lm_sampling* d_params,
                              const int32_t* d_pos, void* d_workspace, int32_t* d_out, void* stream);

#ifdef __cplusplus
}
#endif

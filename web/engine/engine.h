// pocketlm's WebAssembly CPU engine: shared types and the kernel interface.
//
// Layout of this directory (kernels apart from the model step, the step apart from the
// loader):
//   runtime.c          memory (a bump allocator over the imported memory), math (expf, tanhf)
//   threads.c          a pool of threads sharing the memory; jobs split by rows
//   kernels/act.c      float activations -> int8 blocks (symmetric, scale amax/127)
//   kernels/qmatmul.c  4- and 8-bit weight blocks x int8 activations; scalar reference + SIMD
//   kernels/vec.c      RMSNorm, RoPE, activations, softmax (scalar; cheap next to the matmuls)
//   kernels/attention.c attention of new tokens over the paged KV cache
//   loader.c           pointers into the weight region, hyper-parameters (set from JS)
//   model.c            Config, Weights, RunState; forward() reads top to bottom
//
// Weights stay as stored in model.onnx.data (MatMulNBits blocks, float16 scales); see
// docs/model-folder.md for the names and shapes.
#pragma once
#include <stdint.h>
#include <stddef.h>

#define EXPORT(name) __attribute__((export_name(#name)))

// ---- runtime.c ------------------------------------------------------------------------
void *mem_alloc(size_t bytes);  // 64-byte aligned, zeroed, never freed; traps when memory is exhausted
void mem_zero(void *p, size_t bytes);
void mem_copy(void *dst, const void *src, size_t bytes);
float expf_(float x);
float tanhf_(float x);
static inline float sqrtf_(float x) { return __builtin_sqrtf(x); }

static inline float f16_to_f32(uint16_t h) {
  // Place the half's exponent and mantissa in a float's, then rescale the exponent bias
  // (2^112 = 2^(127-15)); exact for normal and subnormal halves.
  union { uint32_t u; float f; } m = {(uint32_t)(h & 0x7fff) << 13};
  union { float f; uint32_t u; } r = {m.f * 0x1p112f};
  r.u |= (uint32_t)(h & 0x8000) << 16;
  return r.f;
}

// ---- quantized linear layers ----------------------------------------------------------
// W[n, k] as com.microsoft.MatMulNBits blocks: y[n] = sum_k x[k] * W[n, k] (+ bias[n]).
// W[n, k] = scale[n, b] * (code[n, k] - zp[n, b]) (+ min[b, n] for GGUF Q4_1 and the
// K-quants Q2_K / Q4_K / Q5_K), b = k / bs. Scales and minima are float16, or float32 where
// float16 cannot hold them exactly (K-quant block scales d * sc).
typedef struct {
  int bits, bs, n, k, kb;   // kb = k / bs blocks a row
  const uint8_t *q;         // [n][kb][bs * bits / 8], 4-bit codes low nibble first
  const uint16_t *scales;   // float16 [n][kb], or NULL when scales32 is set
  const uint8_t *zp;        // 4-bit only: packed [n][(kb + 1) / 2], or NULL (zero point 8)
  const uint16_t *mins;     // float16 [kb][n], or NULL
  const float *bias;        // [n] or NULL
  const float *scales32;    // float32 [n][kb], or NULL
  const float *mins32;      // float32 [kb][n], or NULL
} QLinear;

// Bit flags of engine_set_linear / engine_set_embedding: which tables are float32.
#define SCALES_F32 1
#define MINS_F32 2

static inline float qlinear_scale(const QLinear *w, size_t i) {
  return w->scales32 ? w->scales32[i] : f16_to_f32(w->scales[i]);
}
static inline float qlinear_min(const QLinear *w, size_t i) {
  return w->mins32 ? w->mins32[i] : f16_to_f32(w->mins[i]);
}
static inline int qlinear_has_mins(const QLinear *w) { return w->mins || w->mins32; }

// Activations x[m][k] quantized per block of bs: x ~ scale[b] * q, q in -127..127 (int8,
// as native MatMulNBits at accuracy_level 4) or -32639..32639 (int16: float-like accuracy;
// 32639 = 127 * 257, the largest magnitude whose two signed bytes both fit int8).
#define ACT16_MAX 32639
// For 4-bit weights each 32-value chunk is stored even positions first, then odd ones,
// matching the weights' two nibbles of a byte. Arrays are padded to whole groups of 4
// blocks with zeros.
typedef struct {
  int m, k, bs, kb, kbpad, kpad, nibble_order;
  int bits;        // 8: q holds the codes; 16: q16 does (scale amax / 32767)
  int8_t *q;       // [m][kpad] int8 codes; with bits 16: the high bytes of q16 (see below)
  int16_t *q16;    // [m][kpad]
  int8_t *qlo;     // [m][kpad] with bits 16: q16 = 256 * q + qlo, both int8 (|q16| <= 32639)
  float *scale;    // [m][kbpad]
  int32_t *isum;   // [m][kbpad] sum of q over each block
  float *fsum;     // [m][kbpad] sum of x over each block (for Q4_1's minima)
} QAct;

// Where value i of a quantized activation row lands (see QAct).
static inline int act_slot(int i, int nibble_order) {
  if (!nibble_order) return i;
  int c = i & ~31, j = i & 31;
  return c + ((j & 1) ? 16 + (j >> 1) : (j >> 1));
}

// kernels/act.c
void quantize_act(QAct *a, const float *x, int m, int k, int bs, int nibble_order);
void quantize_act_ref(QAct *a, const float *x, int m, int k, int bs, int nibble_order);
void quantize_act16(QAct *a, const float *x, int m, int k, int bs, int nibble_order);

// kernels/qmatmul.c: y[t * ldy + j] for rows j in [n0, n1) and tokens t < a->m.
// Bias and Q4_1 minima are included.
void qmatmul(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1);
void qmatmul_ref(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1);

// ---- kernels/vec.c -------------------------------------------------------------------
void rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void rope(float *x, int heads, int head_dim, int rot, const float *cos, const float *sin);
void silu_mul(float *gate, const float *up, int n);
void gelu_tanh_mul(float *gate, const float *up, int n);
float dot_f32(const float *a, const float *b, int n);
void axpy_f32(float *y, float a, const float *x, int n);
void add_f32(float *y, const float *x, int n);

// ---- kernels/attention.c -------------------------------------------------------------
void attend(float *out, const float *q, float *const *pages, int kv_head, int kv_heads, int page_size,
            int head_dim, int start, int end, float scale, float softcap, float *scores);

// ---- threads.c -----------------------------------------------------------------------
typedef void (*JobFn)(void *arg, int tid, int nthreads);
void run_job(JobFn fn, void *arg);  // every thread calls fn(arg, tid, n); returns when all are done
int thread_count(void);

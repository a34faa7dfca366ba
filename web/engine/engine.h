// pocketlm's WebAssembly CPU engine: shared types and the kernel interface.
//
// Layout of this directory (kernels apart from the model step, the step apart from the
// loader):
//   runtime.c          memory (a bump allocator over the imported memory), math (expf, tanhf)
//   threads.c          a pool of threads sharing the memory; jobs split by rows
//   kernels/act.c      float activations -> int8 blocks (symmetric, scale amax/127)
//   kernels/qmatmul.c  4- and 8-bit weight blocks x int8/int16 activations (decode); scalar reference + SIMD
//   kernels/gemm.c     the same weights x float32 activations for chunks of tokens (prefill)
//   kernels/gemm16.c   the same weights x int16 activation blocks for chunks of tokens (prefill)
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
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

// ---- runtime.c ------------------------------------------------------------------------
void *mem_alloc(size_t bytes);  // 64-byte aligned, zeroed, never freed; traps when memory is exhausted
void mem_zero(void *p, size_t bytes);
void mem_copy(void *dst, const void *src, size_t bytes);
float expf_(float x);
float tanhf_(float x);
static inline float sqrtf_(float x) { return __builtin_sqrtf(x); }

// expf_ on 4 lanes, the same operations in the same order (the same results).
static inline v128_t expf4(v128_t x) {
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693145751953125f))),
                            wasm_f32x4_mul(n, wasm_f32x4_splat(1.428606765330187e-06f)));
  static const float c[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
  v128_t p = wasm_f32x4_splat(c[0]);
  for (int i = 1; i < 8; i++) p = wasm_f32x4_add(wasm_f32x4_splat(c[i]), wasm_f32x4_mul(r, p));
  v128_t e = wasm_i32x4_trunc_sat_f32x4(n);
  v128_t e1 = wasm_i32x4_shr(wasm_i32x4_sub(e, wasm_i32x4_shr(e, 31)), 1);  // e / 2, toward zero
  v128_t e2 = wasm_i32x4_sub(e, e1);
  v128_t bias = wasm_i32x4_splat(127);
  p = wasm_f32x4_mul(wasm_f32x4_mul(p, wasm_i32x4_shl(wasm_i32x4_add(e1, bias), 23)),
                     wasm_i32x4_shl(wasm_i32x4_add(e2, bias), 23));
  p = wasm_v128_bitselect(wasm_f32x4_splat(__builtin_inff()), p, wasm_f32x4_gt(x, wasm_f32x4_splat(88.0f)));
  return wasm_v128_andnot(p, wasm_f32x4_lt(x, wasm_f32x4_splat(-103.0f)));
}

// acc + a * b: fused (f32x4.relaxed_madd) in the relaxed build, multiply then add in the
// plain one.
static inline v128_t f32x4_madd(v128_t a, v128_t b, v128_t acc) {
#ifdef __wasm_relaxed_simd__
  return wasm_f32x4_relaxed_madd(a, b, acc);
#else
  return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b));
#endif
}

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
  const uint8_t *zp;        // 4-bit only: packed [n][(kb + 1) / 2], or NULL (every zero point zp_all)
  int zp_all;               // the zero point when zp is NULL: 8, or 0 (the loader drops all-zero zero points)
  const uint16_t *mins;     // float16 [kb][n] (Q4_1), or NULL
  const float *bias;        // [n] or NULL
  const float *scales32;    // float32 [n][kb], or NULL
  const float *mins32;      // float32 [kb][n], or NULL
} QLinear;

// Bit flags of engine_set_linear / engine_set_embedding: which tables are float32.
#define SCALES_F32 1
#define MINS_F32 2
#define TEST_GEMM16 4  // engine_test_matmul only: int16 activations through qgemm_i16

static inline float qlinear_scale(const QLinear *w, size_t i) {
  return w->scales32 ? w->scales32[i] : f16_to_f32(w->scales[i]);
}
static inline float qlinear_min(const QLinear *w, size_t i) {
  return w->mins32 ? w->mins32[i] : f16_to_f32(w->mins[i]);
}
static inline int qlinear_has_mins(const QLinear *w) { return w->mins || w->mins32; }
// The zero point of block b of row n: 128 for 8-bit codes, else the packed 4-bit one (two a
// byte, low nibble first) or the one shared by the whole matrix.
static inline int qlinear_zp(const QLinear *w, int n, int b) {
  if (w->bits == 8) return 128;
  if (!w->zp) return w->zp_all;
  int byte = w->zp[(size_t)n * ((w->kb + 1) / 2) + b / 2];
  return (b & 1) ? byte >> 4 : byte & 15;
}

// Activations x[m][k] quantized per block of bs: x ~ scale[b] * q, q in -127..127 (int8,
// as native MatMulNBits at accuracy_level 4) or -32639..32639 (int16: float-like accuracy;
// 32639 = 127 * 257, the largest magnitude whose two signed bytes both fit int8).
#define ACT16_MAX 32639
// For 4-bit weights each 32-value chunk is stored even positions first, then odd ones,
// matching the weights' two nibbles of a byte; so is it for 8-bit weights with int16
// activations, matching the low and high bytes of the codes' 16-bit lanes (see
// act_order). Arrays are padded to whole groups of 4 blocks with zeros.
typedef struct {
  int m, k, bs, kb, kbpad, kpad, nibble_order;
  int bits;        // 8: q holds the codes; 16: q16 does (scale amax / 32767)
  int halves;      // with bits 16: q and qlo are written too (the decode kernels read them)
  int8_t *q;       // [m][kpad] int8 codes; with bits 16: the high bytes of q16 (see below)
  int16_t *q16;    // [m][kpad]
  int8_t *qlo;     // [m][kpad] with bits 16: q16 = 256 * q + qlo, both int8 (|q16| <= 32639)
  float *scale;    // [m][kbpad]
  int32_t *isum;   // [m][kbpad] sum of q over each block
  float *fsum;     // [m][kbpad] sum of x over each block (for Q4_1's minima)
} QAct;

// The slot order (act_slot's nibble_order) activations quantized for bits-bit weight blocks
// of bs take: even positions first for 4-bit blocks, and for 8-bit ones with int16
// activations (act_bits 16), when bs is a multiple of 32.
static inline int act_order(int bits, int bs, int act_bits) {
  return bs % 32 == 0 && (bits == 4 || (bits == 8 && act_bits == 16));
}

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
void quantize_act16_ref(QAct *a, const float *x, int m, int k, int bs, int nibble_order);
// quantize_act16 in two steps, so a chunk's tokens can be quantized by several threads
// (bs a multiple of 32): the layout for m tokens, then tokens [t0, t1) of x [m][k]. Without
// halves only q16, scale, isum and fsum are written (what the prefill GEMM reads).
void quantize_act16_layout(QAct *a, int m, int k, int bs, int nibble_order, int halves);
void quantize_act16_tokens(QAct *a, const float *x, int t0, int t1);

// kernels/qmatmul.c: y[t * ldy + j] for rows j in [n0, n1) and tokens t < a->m.
// Bias and Q4_1 minima are included.
void qmatmul(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1);
void qmatmul_ref(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1);

// kernels/gemm.c: the same rows for float32 activations x [m][k] (prefill chunks): each
// row dequantized once into tile (room for GEMM_TILE_ROWS * k floats) and used for all m
// tokens. Bias and Q4_1 minima are included.
#ifndef GEMM_TILE_ROWS
#define GEMM_TILE_ROWS 2
#endif
void qgemm_f32(const QLinear *w, const float *x, int m, float *y, int ldy, int n0, int n1, float *tile);
void qgemm_f32_ref(const QLinear *w, const float *x, int m, float *y, int ldy, int n0, int n1, float *tile);

// kernels/gemm16.c: the same rows for int16 activation blocks (quantize_act16, w's block
// size, either slot order) over chunks of tokens: GEMM16_ROWS rows unpacked once into tile
// (qgemm_i16_tile_bytes) and used for all a->m tokens. Bias and minima included; the
// scalar reference is qmatmul_ref. Blocks of 32, 64 or 128 (qgemm_i16_supported).
#define GEMM16_ROWS 8  // rows a tile (two vectors of 4)
int qgemm_i16_supported(const QLinear *w);
size_t qgemm_i16_tile_bytes(int k, int bs);
void qgemm_i16(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1, void *tile);

// ---- kernels/vec.c -------------------------------------------------------------------
void rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void rope(float *x, int heads, int head_dim, int rot, const float *cos, const float *sin);
void silu_mul(float *gate, const float *up, int n);
void gelu_tanh_mul(float *gate, const float *up, int n);
void add_f32(float *y, const float *x, int n);

// ---- kernels/attention.c -------------------------------------------------------------
void attend(float *out, const float *q, float *const *pages, int kv_head, int kv_heads, int page_size,
            int head_dim, int start, int end, float scale, float softcap, float *scores);

// ---- threads.c -----------------------------------------------------------------------
// A job is cut into `chunks` parts: fn(arg, chunk, chunks, tid) runs part `chunk` on
// thread tid (for per-thread scratch); which thread runs which part varies from run to run.
typedef void (*JobFn)(void *arg, int chunk, int chunks, int tid);
void run_job(JobFn fn, void *arg);  // returns when every chunk is done
int thread_count(void);

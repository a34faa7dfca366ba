// Prefill GEMM: 4- or 8-bit weight blocks x float32 activations, for chunks of tokens.
// y[t][n] = sum_k x[t][k] * W[n][k] (+ bias[n]), W[n][k] = scale[n][b] * (code - zp[n][b])
// (+ min[b][n] for GGUF Q4_1 and K-quants), b = k / bs: what MatMulNBits computes at
// accuracy_level 0. Scales and minima are float16, or float32 (K-quant exports).
//
// Each weight row is dequantized once into a float32 tile (GEMM_ROWS rows, in L1) and used
// for every token of the chunk: the unpacking is amortized over the chunk, and the inner
// loop is nothing but multiply-adds of float vectors (GEMM_ROWS x GEMM_TOKENS accumulators,
// one horizontal sum each at the end of a row). The relaxed build uses f32x4.relaxed_madd
// (fused where the CPU has FMA); the plain build multiplies then adds.
//
// qgemm_f32_ref is the scalar reference: the same dequantized value per weight, summed
// in order.
#include "../engine.h"
#include <wasm_simd128.h>

static inline int code_at(const QLinear *w, const uint8_t *row, int k) {
  if (w->bits == 8) return row[k];
  return (k & 1) ? row[k / 2] >> 4 : row[k / 2] & 15;
}

static inline int zero_point(const QLinear *w, int n, int b) {
  if (w->bits == 8) return 128;
  if (!w->zp) return w->zp_all;
  int byte = w->zp[(size_t)n * ((w->kb + 1) / 2) + b / 2];
  return (b & 1) ? byte >> 4 : byte & 15;
}

// W[n][k] for every k of row n, scalar.
static void dequantize_row_ref(const QLinear *w, int n, float *out) {
  const uint8_t *row = w->q + (size_t)n * w->kb * w->bs * w->bits / 8;
  for (int b = 0; b < w->kb; b++) {
    float s = qlinear_scale(w, (size_t)n * w->kb + b);
    float min = qlinear_has_mins(w) ? qlinear_min(w, (size_t)b * w->n + n) : 0.0f;
    int zp = zero_point(w, n, b);
    for (int i = 0; i < w->bs; i++) {
      int k = b * w->bs + i;
      out[k] = s * (float)(code_at(w, row, k) - zp) + min;
    }
  }
}

void qgemm_f32_ref(const QLinear *w, const float *x, int m, float *y, int ldy, int n0, int n1, float *tile) {
  for (int n = n0; n < n1; n++) {
    dequantize_row_ref(w, n, tile);
    for (int t = 0; t < m; t++) {
      const float *xt = x + (size_t)t * w->k;
      float acc = 0.0f;
      for (int k = 0; k < w->k; k++) acc += xt[k] * tile[k];
      y[(size_t)t * ldy + n] = acc + (w->bias ? w->bias[n] : 0.0f);
    }
  }
}

// ---- SIMD ------------------------------------------------------------------------------

// 16 codes (u8) -> 4 x f32x4, each (code - zp) * s + min = code * s + (min - zp * s).
static inline void store16(float *out, v128_t codes, v128_t s, v128_t off) {
  v128_t lo = wasm_u16x8_extend_low_u8x16(codes), hi = wasm_u16x8_extend_high_u8x16(codes);
  v128_t c[4] = {wasm_u32x4_extend_low_u16x8(lo), wasm_u32x4_extend_high_u16x8(lo),
                 wasm_u32x4_extend_low_u16x8(hi), wasm_u32x4_extend_high_u16x8(hi)};
  for (int j = 0; j < 4; j++)
    wasm_v128_store(out + 4 * j, wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_convert_i32x4(c[j]), s), off));
}

// Block b of row n as code * vs + off: off = min - zero_point * scale (every lane alike).
static inline void block_affine(const QLinear *w, int n, int b, v128_t *vs, v128_t *off) {
  float s = qlinear_scale(w, (size_t)n * w->kb + b);
  float min = qlinear_has_mins(w) ? qlinear_min(w, (size_t)b * w->n + n) : 0.0f;
  *vs = wasm_f32x4_splat(s);
  *off = wasm_f32x4_splat(min - (float)zero_point(w, n, b) * s);
}

// As dequantize_row_ref, 16 values at a time: blocks of 16 (GGUF Q2_K, Q3_K, Q6_K).
static void dequantize_row16(const QLinear *w, int n, float *out) {
  const int per_block = w->bs / 16;
  const uint8_t *row = w->q + (size_t)n * w->kb * w->bs * w->bits / 8;
  for (int b = 0; b < w->kb; b++) {
    v128_t vs, off;
    block_affine(w, n, b, &vs, &off);
    for (int c = 0; c < per_block; c++) {
      int k = b * w->bs + 16 * c;
      if (w->bits == 4) {
        v128_t v = wasm_v128_load64_zero(row + k / 2);
        v128_t even = wasm_v128_and(v, wasm_i8x16_splat(15)), odd = wasm_u8x16_shr(v, 4);
        store16(out + k, wasm_i8x16_shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), vs, off);
      } else {
        store16(out + k, wasm_v128_load(row + k), vs, off);
      }
    }
  }
}

// As dequantize_row_ref, 32 values at a time (bs a multiple of 32).
static void dequantize_row(const QLinear *w, int n, float *out) {
  if (w->bs % 32) {
    dequantize_row16(w, n, out);
    return;
  }
  const int per_block = w->bs / 32;
  const uint8_t *row = w->q + (size_t)n * w->kb * w->bs * w->bits / 8;
  for (int b = 0; b < w->kb; b++) {
    v128_t vs, off;
    block_affine(w, n, b, &vs, &off);
    for (int c = 0; c < per_block; c++) {
      int k = b * w->bs + 32 * c;
      float *o = out + k;
      if (w->bits == 4) {
        // Byte j holds code 2j (low nibble) and 2j + 1 (high): interleave back to k order.
        v128_t v = wasm_v128_load(row + k / 2);
        v128_t even = wasm_v128_and(v, wasm_i8x16_splat(15)), odd = wasm_u8x16_shr(v, 4);
        store16(o, wasm_i8x16_shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), vs, off);
        store16(o + 16, wasm_i8x16_shuffle(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                vs, off);
      } else {
        store16(o, wasm_v128_load(row + k), vs, off);
        store16(o + 16, wasm_v128_load(row + k + 16), vs, off);
      }
    }
  }
}

static inline float hsum(v128_t v) {
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

#define GEMM_ROWS GEMM_TILE_ROWS
#ifndef GEMM_TOKENS
#define GEMM_TOKENS 4
#endif

// y[t][n0 + r] for R rows (dequantized in tile, k floats apart) and T tokens from t0.
static inline __attribute__((always_inline)) void micro(const float *tile, const float *x, int k, float *y, int ldy,
                                                        const int R, const int T) {
  v128_t acc[GEMM_ROWS][GEMM_TOKENS];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) acc[r][t] = wasm_f32x4_splat(0.0f);
  for (int i = 0; i < k; i += 4) {
    v128_t wv[GEMM_ROWS];
    for (int r = 0; r < R; r++) wv[r] = wasm_v128_load(tile + (size_t)r * k + i);
    for (int t = 0; t < T; t++) {
      v128_t xv = wasm_v128_load(x + (size_t)t * k + i);
      for (int r = 0; r < R; r++) acc[r][t] = f32x4_madd(xv, wv[r], acc[r][t]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) y[(size_t)t * ldy + r] = hsum(acc[r][t]);
}

// The chunk's last tokens (T < GEMM_TOKENS), unrolled for each T.
static void micro_tokens(const float *tile, const float *x, int k, float *y, int ldy, int T) {
  switch (T) {
    case 1: micro(tile, x, k, y, ldy, GEMM_ROWS, 1); break;
    case 2: micro(tile, x, k, y, ldy, GEMM_ROWS, 2); break;
    case 3: micro(tile, x, k, y, ldy, GEMM_ROWS, 3); break;
    case 4: micro(tile, x, k, y, ldy, GEMM_ROWS, 4); break;
    case 5: micro(tile, x, k, y, ldy, GEMM_ROWS, 5); break;
    case 6: micro(tile, x, k, y, ldy, GEMM_ROWS, 6); break;
    case 7: micro(tile, x, k, y, ldy, GEMM_ROWS, 7); break;
  }
}

// A range's last rows (R < GEMM_ROWS), one row and one token at a time.
static void micro_rows(const float *tile, const float *x, int k, float *y, int ldy, int R, int T) {
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++) micro(tile + (size_t)r * k, x + (size_t)t * k, k, y + (size_t)t * ldy + r, ldy, 1, 1);
}

// tile: room for GEMM_ROWS * k floats.
void qgemm_f32(const QLinear *w, const float *x, int m, float *y, int ldy, int n0, int n1, float *tile) {
  const int k = w->k;
  for (int n = n0; n < n1; n += GEMM_ROWS) {
    int rows = n1 - n < GEMM_ROWS ? n1 - n : GEMM_ROWS;
    for (int r = 0; r < rows; r++) dequantize_row(w, n + r, tile + (size_t)r * k);
    int t = 0;
    if (rows == GEMM_ROWS)
      for (; t + GEMM_TOKENS <= m; t += GEMM_TOKENS)
        micro(tile, x + (size_t)t * k, k, y + (size_t)t * ldy + n, ldy, GEMM_ROWS, GEMM_TOKENS);
    if (rows < GEMM_ROWS) micro_rows(tile, x, k, y + n, ldy, rows, m);
    else if (t < m) micro_tokens(tile, x + (size_t)t * k, k, y + (size_t)t * ldy + n, ldy, m - t);
    if (w->bias)
      for (int tt = 0; tt < m; tt++)
        for (int r = 0; r < rows; r++) y[(size_t)tt * ldy + n + r] += w->bias[n + r];
  }
}

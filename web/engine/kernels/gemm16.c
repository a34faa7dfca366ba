// Prefill GEMM over int16 activation blocks: 4- or 8-bit weight blocks (bs a multiple of
// 32) x activations quantized per block to int16 (quantize_act16: scale max|x| / 32639),
// for chunks of tokens. For block b of row n and token t:
//   y[t][n] += wscale[n][b] * ascale[t][b] * sum_i (code[i] - zp[n][b]) * aq[t][i]
// (+ min[b][n] * sum of x over the block for Q4_1 and K-quants, + bias[n]): the sums of
// qmatmul_ref, which is this kernel's scalar reference.
//
// Rows go 8 at a time. Their codes minus zero points are unpacked once per chunk into an
// int16 tile laid out by pairs of activation slots: for each pair p two vectors, the first
// holding for rows r = 0..3 the two weights that meet slots 2p and 2p + 1 ([r0 2p,
// r0 2p+1, r1 2p, r1 2p+1, ...]), the second the same for rows 4..7. The inner loop
// broadcasts a token's two int16 activations of slots 2p, 2p + 1 (one 32-bit load-splat)
// and multiplies them with both vectors by i32x4.dot_i16x8_s (pmaddwd: 8 multiplies, 4
// sums): the lanes are rows, so a block ends with one conversion to float and one
// multiply-add by the rows' scales (no horizontal sums at all), and the lanes go straight
// to y[t][n .. n + 7]. Tokens go GEMM16_TOKENS (4) at a time, each pair of tile vectors
// shared by them: per pair 2 weight loads, 4 load-splats, 8 pmaddwd and 8 adds, 64
// multiply-adds in 22 instructions (4 rows x 6 tokens took 19 for 48). 8 accumulators and
// the two weight vectors fit x64's 16 SIMD registers; 5 or 6 tokens spill (V8), and run at
// a half or less. Plain SIMD128 only: both builds run the same code.
//
// Exactness: a block's int32 lane sums bs / 2 pairs of products of at most
// 128 * 32639 (8-bit) or 15 * 32639 (4-bit): at most 2^29 for bs = 128, no overflow.
#include "../engine.h"
#include <wasm_simd128.h>

#define GEMM16_ROWS 8  // two vectors of 4 rows
#ifndef GEMM16_TOKENS
#define GEMM16_TOKENS 4
#endif

int qgemm_i16_supported(const QLinear *w) { return w->bs % 32 == 0 && w->bs <= 128; }

size_t qgemm_i16_tile_bytes(int k, int bs) {
  return (size_t)GEMM16_ROWS * k * sizeof(int16_t) + (size_t)(k / bs) * 2 * GEMM16_ROWS * sizeof(float);
}

// 4x4 transpose of 32-bit lanes.
static inline void transpose4(v128_t *a, v128_t *b, v128_t *c, v128_t *d) {
  v128_t t0 = wasm_i32x4_shuffle(*a, *b, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(*a, *b, 2, 6, 3, 7);
  v128_t t2 = wasm_i32x4_shuffle(*c, *d, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(*c, *d, 2, 6, 3, 7);
  *a = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5), *b = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  *c = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5), *d = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

// Rows n .. n + rows - 1 (rows <= 4; the missing ones as zeros) into the tile: k / 2
// vectors of pairs (see above), then per block the 4 rows' scales and minima (float32).
// nibble_order: the activations' slot order (act_slot, act_order): even positions first.
static void unpack_rows(const QLinear *w, int n, int rows, int nibble_order, int16_t *tile) {
  const int kb = w->kb, bs = w->bs;
  const size_t row_bytes = (size_t)kb * bs * w->bits / 8;
  float *scales = (float *)(tile + (size_t)GEMM16_ROWS * w->k), *mins = scales + (size_t)kb * GEMM16_ROWS;
  const int has_mins = qlinear_has_mins(w);
  for (int b = 0; b < kb; b++) {
    for (int r = 0; r < GEMM16_ROWS; r++) {
      int live = r < rows;
      scales[b * GEMM16_ROWS + r] = live ? qlinear_scale(w, (size_t)(n + r) * kb + b) : 0.0f;
      mins[b * GEMM16_ROWS + r] = live && has_mins ? qlinear_min(w, (size_t)b * w->n + n + r) : 0.0f;
    }
    for (int c = 0; c < bs; c += 32) {
      for (int h = 0; h < 2; h++) {
        v128_t v[4][4];  // 32 weights (code - zp) a row, in slot order, as int16
        for (int r = 0; r < 4; r++) {
          int row = 4 * h + r;
          if (row >= rows) {
            for (int j = 0; j < 4; j++) v[r][j] = wasm_i16x8_splat(0);
            continue;
          }
          const uint8_t *p = w->q + (size_t)(n + row) * row_bytes + ((size_t)b * bs + c) * w->bits / 8;
          v128_t zp = wasm_i16x8_splat((int16_t)qlinear_zp(w, n + row, b));
          v128_t lo, hi;
          if (w->bits == 4) {
            v128_t bytes = wasm_v128_load(p);
            v128_t even = wasm_v128_and(bytes, wasm_i8x16_splat(15)), odd = wasm_u8x16_shr(bytes, 4);
            if (nibble_order) {
              lo = even, hi = odd;
            } else {
              lo = wasm_i8x16_shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
              hi = wasm_i8x16_shuffle(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            }
          } else {
            lo = wasm_v128_load(p), hi = wasm_v128_load(p + 16);
            if (nibble_order) {  // even codes first, as act_order puts 8-bit blocks' activations
              v128_t even = wasm_i8x16_shuffle(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
              hi = wasm_i8x16_shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
              lo = even;
            }
          }
          v[r][0] = wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(lo), zp);
          v[r][1] = wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(lo), zp);
          v[r][2] = wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(hi), zp);
          v[r][3] = wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(hi), zp);
        }
        // Vector j of a row holds pairs 4j .. 4j + 3 (one pair a 32-bit lane): transposing
        // the 4 rows' vectors j gives pairs 4j .. 4j + 3 with the rows as lanes; pair p's
        // two vectors (rows 0-3, rows 4-7) lie side by side.
        int16_t *out = tile + ((size_t)b * bs + c) * GEMM16_ROWS;
        for (int j = 0; j < 4; j++) {
          transpose4(&v[0][j], &v[1][j], &v[2][j], &v[3][j]);
          for (int r = 0; r < 4; r++) wasm_v128_store(out + (size_t)((4 * j + r) * 2 + h) * 8, v[r][j]);
        }
      }
    }
  }
}

// y[t0 + t][n .. n + rows) for T tokens from the unpacked tile. BS: the block size.
static inline __attribute__((always_inline)) void micro16(const QLinear *w, const int16_t *tile, const QAct *a,
                                                           int t0, float *y, int ldy, int n, int rows, const int T,
                                                           const int BS) {
  const int kb = w->kb;
  const float *scales = (const float *)(tile + (size_t)GEMM16_ROWS * w->k), *mins = scales + (size_t)kb * GEMM16_ROWS;
  const int has_mins = qlinear_has_mins(w);
  v128_t facc[GEMM16_TOKENS][2];
  const int16_t *xq[GEMM16_TOKENS];
  for (int t = 0; t < T; t++) {
    facc[t][0] = facc[t][1] = wasm_f32x4_splat(0.0f);
    xq[t] = a->q16 + (size_t)(t0 + t) * a->kpad;
  }
  for (int b = 0; b < kb; b++) {
    v128_t iacc[GEMM16_TOKENS][2];
    for (int t = 0; t < T; t++) iacc[t][0] = iacc[t][1] = wasm_i32x4_splat(0);
    const int16_t *wt = tile + (size_t)b * BS * GEMM16_ROWS;
    // Left rolled: clang's full unrolling hoists every load and V8's register allocator
    // then spills; rolled, V8 unrolls it itself (docs/cpu-engine.md, the prefill GEMM).
#pragma clang loop unroll(disable)
    for (int p = 0; p < BS / 2; p++) {
      v128_t w0 = wasm_v128_load(wt + 16 * p), w1 = wasm_v128_load(wt + 16 * p + 8);
      for (int t = 0; t < T; t++) {
        v128_t x = wasm_v128_load32_splat(xq[t] + b * BS + 2 * p);
        iacc[t][0] = wasm_i32x4_add(iacc[t][0], wasm_i32x4_dot_i16x8(w0, x));
        iacc[t][1] = wasm_i32x4_add(iacc[t][1], wasm_i32x4_dot_i16x8(w1, x));
      }
    }
    for (int h = 0; h < 2; h++) {
      v128_t ws = wasm_v128_load(scales + b * GEMM16_ROWS + 4 * h);
      for (int t = 0; t < T; t++) {
        v128_t s = wasm_f32x4_mul(ws, wasm_f32x4_splat(a->scale[(size_t)(t0 + t) * a->kbpad + b]));
        facc[t][h] = wasm_f32x4_add(facc[t][h], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(iacc[t][h]), s));
      }
      if (has_mins) {
        v128_t mv = wasm_v128_load(mins + b * GEMM16_ROWS + 4 * h);
        for (int t = 0; t < T; t++)
          facc[t][h] = wasm_f32x4_add(facc[t][h], wasm_f32x4_mul(mv, wasm_f32x4_splat(a->fsum[(size_t)(t0 + t) * a->kbpad + b])));
      }
    }
  }
  for (int t = 0; t < T; t++) {
    float *yt = y + (size_t)(t0 + t) * ldy + n;
    if (rows == GEMM16_ROWS) {
      for (int h = 0; h < 2; h++) {
        v128_t v = facc[t][h];
        if (w->bias) v = wasm_f32x4_add(v, wasm_v128_load(w->bias + n + 4 * h));
        wasm_v128_store(yt + 4 * h, v);
      }
    } else {
      float lanes[8];
      wasm_v128_store(lanes, facc[t][0]);
      wasm_v128_store(lanes + 4, facc[t][1]);
      for (int r = 0; r < rows; r++) yt[r] = lanes[r] + (w->bias ? w->bias[n + r] : 0.0f);
    }
  }
}

static inline __attribute__((always_inline)) void rows16(const QLinear *w, const QAct *a, float *y, int ldy,
                                                          int n, int rows, const int16_t *tile, const int BS) {
  int t = 0;
  for (; t + GEMM16_TOKENS <= a->m; t += GEMM16_TOKENS) micro16(w, tile, a, t, y, ldy, n, rows, GEMM16_TOKENS, BS);
  switch (a->m - t) {
    case 1: micro16(w, tile, a, t, y, ldy, n, rows, 1, BS); break;
    case 2: micro16(w, tile, a, t, y, ldy, n, rows, 2, BS); break;
    case 3: micro16(w, tile, a, t, y, ldy, n, rows, 3, BS); break;
#if GEMM16_TOKENS > 4
    case 4: micro16(w, tile, a, t, y, ldy, n, rows, 4, BS); break;
    case 5: micro16(w, tile, a, t, y, ldy, n, rows, 5, BS); break;
#endif
#if GEMM16_TOKENS > 6
    case 6: micro16(w, tile, a, t, y, ldy, n, rows, 6, BS); break;
    case 7: micro16(w, tile, a, t, y, ldy, n, rows, 7, BS); break;
#endif
    default: break;
  }
}

// y[t * ldy + j] for rows j in [n0, n1) and every token of a (int16 blocks of w's block
// size, in either slot order); tile: qgemm_i16_tile_bytes(w->k, w->bs) bytes, 16-aligned.
// Requires qgemm_i16_supported(w).
void qgemm_i16(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1, void *tile) {
  int16_t *t16 = tile;
  for (int n = n0; n < n1; n += GEMM16_ROWS) {
    int rows = n1 - n < GEMM16_ROWS ? n1 - n : GEMM16_ROWS;
    unpack_rows(w, n, rows, a->nibble_order, t16);
    if (w->bs == 32) rows16(w, a, y, ldy, n, rows, t16, 32);
    else if (w->bs == 64) rows16(w, a, y, ldy, n, rows, t16, 64);
    else rows16(w, a, y, ldy, n, rows, t16, 128);
  }
}

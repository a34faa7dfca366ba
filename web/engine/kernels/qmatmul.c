// Quantized linear layers: 4- or 8-bit weight blocks x int8 or int16 activation blocks,
// float32 accumulation: decode (one token), and prefill in the int8 mode or for chunks too
// short for the float GEMM of gemm.c. For block b of row n and token t:
//   y[t][n] += wscale[n][b] * ascale[t][b] * (sum_i code[i] * aq[i] - zp[n][b] * sum_i aq[i])
// which is the exact integer image of (code - zp) * aq; Q4_1's minima add
// min[b][n] * (sum of the float activations over block b).
//
// qmatmul_ref is the scalar reference. qmatmul is the SIMD kernel: with relaxed SIMD the
// 4-bit codes (0..15) are the 7-bit operand of i32x4.relaxed_dot_i8x16_i7x16_add; plain
// SIMD128 widens with i16x8.extmul; int16 activations: see dot32_q4_split. One token takes
// DECODE_ROWS rows a pass; several tokens reuse each unpacked group of 4 weight blocks.
#include "../engine.h"
#include <wasm_simd128.h>

static void add_minima_and_bias_ref(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1) {
  for (int t = 0; t < a->m; t++) {
    for (int n = n0; n < n1; n++) {
      float acc = 0.0f;
      if (qlinear_has_mins(w))
        for (int b = 0; b < w->kb; b++) acc += qlinear_min(w, (size_t)b * w->n + n) * a->fsum[t * a->kbpad + b];
      if (w->bias) acc += w->bias[n];
      y[(size_t)t * ldy + n] += acc;
    }
  }
}

void qmatmul_ref(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1) {
  int bs = w->bs, kb = w->kb;
  size_t row_bytes = (size_t)kb * bs * w->bits / 8;
  for (int t = 0; t < a->m; t++) {
    const int8_t *aq = a->q + (size_t)t * a->kpad;
    for (int n = n0; n < n1; n++) {
      const uint8_t *row = w->q + (size_t)n * row_bytes;
      float acc = 0.0f;
      for (int b = 0; b < kb; b++) {
        int zp = qlinear_zp(w, n, b), dot = 0;
        for (int i = 0; i < bs; i++) {
          int k = b * bs + i;
          int code = w->bits == 8 ? row[k] : (k & 1) ? row[k / 2] >> 4 : row[k / 2] & 15;
          int slot = b * bs + act_slot(i, a->nibble_order);
          dot += (code - zp) * (a->bits == 16 ? a->q16[(size_t)t * a->kpad + slot] : aq[slot]);
        }
        acc += qlinear_scale(w, (size_t)n * kb + b) * a->scale[t * a->kbpad + b] * (float)dot;
      }
      y[(size_t)t * ldy + n] = acc;
    }
  }
  add_minima_and_bias_ref(w, a, y, ldy, n0, n1);
}

// ---- SIMD ------------------------------------------------------------------------------

static inline v128_t f16x4(const uint16_t *p) {
  v128_t h = wasm_u32x4_load16x4(p);
  v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
  v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(0x1p112f));
  return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
}

// The scales of blocks i .. i + 3 (past a row's end: the next row's or the region's slack,
// masked by the callers).
static inline v128_t scales4(const QLinear *w, size_t i) {
  return w->scales32 ? wasm_v128_load(w->scales32 + i) : f16x4(w->scales + i);
}

// The minima of rows i .. i + 3 of one block ([kb][n] layout).
static inline v128_t mins4(const QLinear *w, size_t i) {
  return w->mins32 ? wasm_v128_load(w->mins32 + i) : f16x4(w->mins + i);
}

// The 4-bit zero points of 4 blocks from their 2 packed bytes: lane j = nibble j. The
// second byte may lie past the row (a tail group); its lanes then meet activation sums of 0.
static inline v128_t zp4(const uint8_t *p) {
  uint16_t pair;
  __builtin_memcpy(&pair, p, 2);
  v128_t v = wasm_i32x4_mul(wasm_i32x4_splat(pair), wasm_i32x4_make(1 << 12, 1 << 8, 1 << 4, 1));
  return wasm_v128_and(wasm_u32x4_shr(v, 12), wasm_i32x4_splat(15));
}

// [sum(d0), sum(d1), sum(d2), sum(d3)]
static inline v128_t hsum4(v128_t d0, v128_t d1, v128_t d2, v128_t d3) {
  v128_t t0 = wasm_i32x4_add(wasm_i32x4_shuffle(d0, d1, 0, 4, 1, 5), wasm_i32x4_shuffle(d0, d1, 2, 6, 3, 7));
  v128_t t1 = wasm_i32x4_add(wasm_i32x4_shuffle(d2, d3, 0, 4, 1, 5), wasm_i32x4_shuffle(d2, d3, 2, 6, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}

static inline float hsumf(v128_t v) {
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

// 32 codes (lo: even positions, hi: odd ones; 0..15) . 32 int8 activations, added to acc.
static inline v128_t dot32_q4(v128_t lo, v128_t hi, const int8_t *aq, v128_t acc) {
  v128_t a0 = wasm_v128_load(aq), a1 = wasm_v128_load(aq + 16);
#ifdef __wasm_relaxed_simd__
  acc = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(a0, lo, acc);
  return wasm_i32x4_relaxed_dot_i8x16_i7x16_add(a1, hi, acc);
#else
  // Each i16 lane sums 4 products of at most 15 * 127: no overflow.
  v128_t p = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(lo, a0), wasm_i16x8_extmul_high_i8x16(lo, a0));
  p = wasm_i16x8_add(p, wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(hi, a1), wasm_i16x8_extmul_high_i8x16(hi, a1)));
  return wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(p));
#endif
}

// 32 signed codes (code - 128) . 32 int8 activations, added to acc.
static inline v128_t dot32_q8(v128_t w0, v128_t w1, const int8_t *aq, v128_t acc) {
  v128_t a0 = wasm_v128_load(aq), a1 = wasm_v128_load(aq + 16);
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w0), wasm_i16x8_extend_low_i8x16(a0)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w0), wasm_i16x8_extend_high_i8x16(a0)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w1), wasm_i16x8_extend_low_i8x16(a1)));
  return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w1), wasm_i16x8_extend_high_i8x16(a1)));
}

// int16 activations: codes widened to int16, i32x4.dot_i16x8_s (the same in both builds).
static inline v128_t dot32_q4_16(v128_t lo, v128_t hi, const int16_t *aq, v128_t acc) {
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(lo), wasm_v128_load(aq)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(lo), wasm_v128_load(aq + 8)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(hi), wasm_v128_load(aq + 16)));
  return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(hi), wasm_v128_load(aq + 24)));
}

// 32 codes as stored (0..255; w0: codes 0..15, w1: 16..31) . 32 int16 activations in slot
// order (act_order): the even codes are the low bytes of the 16-bit lanes and meet slots
// 0..15, the odd ones the high bytes and slots 16..31, so no widening or sign flip is
// needed; the caller subtracts 128 * sum(aq). Each i32 lane sums 8 products of at most
// 255 * 32639: no overflow.
static inline v128_t dot32_u8_16(v128_t w0, v128_t w1, const int16_t *aq, v128_t acc) {
  const v128_t low = wasm_i16x8_splat(0xff);
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_v128_and(w0, low), wasm_v128_load(aq)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_v128_and(w1, low), wasm_v128_load(aq + 8)));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_shr(w0, 8), wasm_v128_load(aq + 16)));
  return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_shr(w1, 8), wasm_v128_load(aq + 24)));
}

// 32 codes . 32 int16 activations given as high and low signed bytes (a = 256 hi + lo):
// two int8 dot products, so the relaxed build keeps its one-instruction dot product.
static inline v128_t dot32_q4_split(v128_t lo, v128_t hi, const int8_t *ahi, const int8_t *alo, v128_t acc) {
#ifdef __wasm_relaxed_simd__
  // i16x8.relaxed_dot: each i16 lane sums 2 products of at most 127 * 15, and two of them
  // added stay below 2^15 (no saturation, so every implementation agrees); one
  // i32x4.dot_i16x8_s a half then weighs the high bytes by 256.
  v128_t dh = wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(wasm_v128_load(ahi), lo),
                             wasm_i16x8_relaxed_dot_i8x16_i7x16(wasm_v128_load(ahi + 16), hi));
  v128_t dl = wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(wasm_v128_load(alo), lo),
                             wasm_i16x8_relaxed_dot_i8x16_i7x16(wasm_v128_load(alo + 16), hi));
  acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(dh, wasm_i16x8_splat(256)));
  return wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(dl));
#else
  (void)alo;
  return acc;  // not used: the plain build reads q16
#endif
}

#ifdef __wasm_relaxed_simd__
#define SPLIT16 1
#else
#define SPLIT16 0
#endif

#define TOKENS_A_TILE 8

// CB: 32-value chunks a block (bs / 32); BITS: 4 or 8. Constants at every call site, so
// each (CB, BITS) gets its own unrolled body.
static inline __attribute__((always_inline)) void rows_simd(const QLinear *w, const QAct *a, float *y, int ldy,
                                                            int n0, int n1, const int CB, const int BITS) {
  const int kb = w->kb, full = kb / 4, groups = (kb + 3) / 4;
  const size_t block_bytes = (size_t)CB * 32 * BITS / 8, row_bytes = (size_t)kb * block_bytes;
  const int zp_row = (kb + 1) / 2;
  const int tail = kb - full * 4;
  const v128_t tail_mask = wasm_i32x4_make(tail > 0 ? -1 : 0, tail > 1 ? -1 : 0, tail > 2 ? -1 : 0, 0);
  for (int n = n0; n < n1; n++) {
    const uint8_t *row = w->q + (size_t)n * row_bytes;
    const size_t srow = (size_t)n * kb;
    const uint8_t *zrow = w->zp ? w->zp + (size_t)n * zp_row : 0;
    for (int t0 = 0; t0 < a->m; t0 += TOKENS_A_TILE) {
      int tokens = a->m - t0 < TOKENS_A_TILE ? a->m - t0 : TOKENS_A_TILE;
      v128_t acc[TOKENS_A_TILE];
      for (int i = 0; i < TOKENS_A_TILE; i++) acc[i] = wasm_f32x4_splat(0.0f);
      for (int g = 0; g < groups; g++) {
        v128_t ws = scales4(w, srow + 4 * g);
        if (g == full) ws = wasm_v128_and(ws, tail_mask);
        v128_t zp;
        if (BITS == 8) zp = wasm_i32x4_splat(0);
        else if (zrow) zp = zp4(zrow + 2 * g);
        else zp = wasm_i32x4_splat(w->zp_all);
        v128_t lo[4 * CB], hi[4 * CB];
        for (int j = 0; j < 4 * CB; j++) {
          const uint8_t *p = row + (size_t)(4 * g) * block_bytes + (size_t)j * 32 * BITS / 8;
          if (BITS == 4) {
            v128_t v = wasm_v128_load(p);
            lo[j] = wasm_v128_and(v, wasm_i8x16_splat(0x0f));
            hi[j] = wasm_u8x16_shr(v, 4);
          } else {
            lo[j] = wasm_v128_xor(wasm_v128_load(p), wasm_i8x16_splat((int8_t)0x80));
            hi[j] = wasm_v128_xor(wasm_v128_load(p + 16), wasm_i8x16_splat((int8_t)0x80));
          }
        }
        for (int tt = 0; tt < tokens; tt++) {
          int t = t0 + tt;
          const int8_t *aq = a->q + (size_t)t * a->kpad + (size_t)(4 * g) * CB * 32;
          v128_t d[4];
          for (int j = 0; j < 4; j++) {
            d[j] = wasm_i32x4_splat(0);
            for (int c = 0; c < CB; c++) {
              int idx = j * CB + c;
              d[j] = BITS == 4 ? dot32_q4(lo[idx], hi[idx], aq + idx * 32, d[j]) : dot32_q8(lo[idx], hi[idx], aq + idx * 32, d[j]);
            }
          }
          v128_t di = hsum4(d[0], d[1], d[2], d[3]);
          if (BITS == 4) di = wasm_i32x4_sub(di, wasm_i32x4_mul(zp, wasm_v128_load(a->isum + t * a->kbpad + 4 * g)));
          v128_t s = wasm_f32x4_mul(ws, wasm_v128_load(a->scale + t * a->kbpad + 4 * g));
          acc[tt] = wasm_f32x4_add(acc[tt], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(di), s));
        }
      }
      for (int tt = 0; tt < tokens; tt++) y[(size_t)(t0 + tt) * ldy + n] = hsumf(acc[tt]);
    }
  }
}

#ifndef DECODE_ROWS
#define DECODE_ROWS 4
#endif

// One token (decode): DECODE_ROWS rows at a time share every activation load.
// ABITS: activation bits (8 or 16).
static inline __attribute__((always_inline)) void rows_simd_1(const QLinear *w, const QAct *a, float *y,
                                                              int n0, int n1, const int CB, const int BITS,
                                                              const int ABITS) {
  const int kb = w->kb, full = kb / 4, groups = (kb + 3) / 4;
  const size_t block_bytes = (size_t)CB * 32 * BITS / 8, row_bytes = (size_t)kb * block_bytes;
  const int zp_row = (kb + 1) / 2;
  const int tail = kb - full * 4;
  const v128_t tail_mask = wasm_i32x4_make(tail > 0 ? -1 : 0, tail > 1 ? -1 : 0, tail > 2 ? -1 : 0, 0);
  for (int n = n0; n < n1; n += DECODE_ROWS) {
    const int rows = n1 - n < DECODE_ROWS ? n1 - n : DECODE_ROWS;
    v128_t acc[DECODE_ROWS];
    for (int r = 0; r < DECODE_ROWS; r++) acc[r] = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < groups; g++) {
      const int8_t *aq = a->q + (size_t)(4 * g) * CB * 32;
      const int16_t *aq16 = a->q16 + (size_t)(4 * g) * CB * 32;
      const int8_t *alo = a->qlo + (size_t)(4 * g) * CB * 32;
      v128_t as = wasm_v128_load(a->scale + 4 * g);
      v128_t isum = wasm_v128_load(a->isum + 4 * g);
      for (int r = 0; r < DECODE_ROWS; r++) {
        if (r == rows) break;
        const size_t row = (size_t)(n + r);
        const uint8_t *wq = w->q + row * row_bytes + (size_t)(4 * g) * block_bytes;
        v128_t ws = scales4(w, row * kb + 4 * g);
        if (g == full) ws = wasm_v128_and(ws, tail_mask);
        v128_t d[4];
        for (int j = 0; j < 4; j++) {
          d[j] = wasm_i32x4_splat(0);
          for (int c = 0; c < CB; c++) {
            const uint8_t *p = wq + (size_t)(j * CB + c) * 32 * BITS / 8;
            const int8_t *ap = aq + (j * CB + c) * 32;
            const int16_t *ap16 = aq16 + (j * CB + c) * 32;
            if (BITS == 4) {
              v128_t v = wasm_v128_load(p);
              v128_t lo = wasm_v128_and(v, wasm_i8x16_splat(0x0f)), hi = wasm_u8x16_shr(v, 4);
              d[j] = ABITS == 8 ? dot32_q4(lo, hi, ap, d[j])
                     : SPLIT16 ? dot32_q4_split(lo, hi, ap, alo + (j * CB + c) * 32, d[j])
                               : dot32_q4_16(lo, hi, ap16, d[j]);
            } else if (ABITS == 8) {
              v128_t w0 = wasm_v128_xor(wasm_v128_load(p), wasm_i8x16_splat((int8_t)0x80));
              v128_t w1 = wasm_v128_xor(wasm_v128_load(p + 16), wasm_i8x16_splat((int8_t)0x80));
              d[j] = dot32_q8(w0, w1, ap, d[j]);
            } else {
              d[j] = dot32_u8_16(wasm_v128_load(p), wasm_v128_load(p + 16), ap16, d[j]);
            }
          }
        }
        v128_t di = hsum4(d[0], d[1], d[2], d[3]);
        if (BITS == 4) {
          if (w->zp) di = wasm_i32x4_sub(di, wasm_i32x4_mul(zp4(w->zp + row * zp_row + 2 * g), isum));
          else if (w->zp_all) di = wasm_i32x4_sub(di, wasm_i32x4_mul(wasm_i32x4_splat(w->zp_all), isum));
        } else if (ABITS == 16) {
          di = wasm_i32x4_sub(di, wasm_i32x4_shl(isum, 7));
        }
        acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(di), wasm_f32x4_mul(ws, as)));
      }
    }
    for (int r = 0; r < rows; r++) y[n + r] = hsumf(acc[r]);
  }
}

// As rows_simd, with int16 activations. Each i32 lane of a block's dot sums 8 products of
// at most 15 * 32639 (4-bit) or 255 * 32639 (8-bit codes as stored): no overflow.
static inline __attribute__((always_inline)) void rows_simd16(const QLinear *w, const QAct *a, float *y, int ldy,
                                                              int n0, int n1, const int CB, const int BITS) {
  const int kb = w->kb, full = kb / 4, groups = (kb + 3) / 4;
  const size_t block_bytes = (size_t)CB * 32 * BITS / 8, row_bytes = (size_t)kb * block_bytes;
  const int zp_row = (kb + 1) / 2;
  const int tail = kb - full * 4;
  const v128_t tail_mask = wasm_i32x4_make(tail > 0 ? -1 : 0, tail > 1 ? -1 : 0, tail > 2 ? -1 : 0, 0);
  for (int n = n0; n < n1; n++) {
    const uint8_t *row = w->q + (size_t)n * row_bytes;
    const size_t srow = (size_t)n * kb;
    const uint8_t *zrow = w->zp ? w->zp + (size_t)n * zp_row : 0;
    for (int t0 = 0; t0 < a->m; t0 += TOKENS_A_TILE) {
      int tokens = a->m - t0 < TOKENS_A_TILE ? a->m - t0 : TOKENS_A_TILE;
      v128_t acc[TOKENS_A_TILE];
      for (int i = 0; i < TOKENS_A_TILE; i++) acc[i] = wasm_f32x4_splat(0.0f);
      for (int g = 0; g < groups; g++) {
        v128_t ws = scales4(w, srow + 4 * g);
        if (g == full) ws = wasm_v128_and(ws, tail_mask);
        v128_t zp = BITS == 8 ? wasm_i32x4_splat(128) : zrow ? zp4(zrow + 2 * g) : wasm_i32x4_splat(w->zp_all);
        v128_t lo[4 * CB], hi[4 * CB];
        for (int j = 0; j < 4 * CB; j++) {
          const uint8_t *p = row + (size_t)(4 * g) * block_bytes + (size_t)j * 32 * BITS / 8;
          if (BITS == 4) {
            v128_t v = wasm_v128_load(p);
            lo[j] = wasm_v128_and(v, wasm_i8x16_splat(0x0f));
            hi[j] = wasm_u8x16_shr(v, 4);
          } else {
            lo[j] = wasm_v128_load(p);
            hi[j] = wasm_v128_load(p + 16);
          }
        }
        for (int tt = 0; tt < tokens; tt++) {
          int t = t0 + tt;
          const int16_t *aq = a->q16 + (size_t)t * a->kpad + (size_t)(4 * g) * CB * 32;
          const int8_t *ahi = a->q + (size_t)t * a->kpad + (size_t)(4 * g) * CB * 32;
          const int8_t *alo = a->qlo + (size_t)t * a->kpad + (size_t)(4 * g) * CB * 32;
          v128_t d[4];
          for (int j = 0; j < 4; j++) {
            d[j] = wasm_i32x4_splat(0);
            for (int c = 0; c < CB; c++) {
              int idx = j * CB + c;
              d[j] = BITS == 8 ? dot32_u8_16(lo[idx], hi[idx], aq + idx * 32, d[j])
                     : SPLIT16 ? dot32_q4_split(lo[idx], hi[idx], ahi + idx * 32, alo + idx * 32, d[j])
                               : dot32_q4_16(lo[idx], hi[idx], aq + idx * 32, d[j]);
            }
          }
          v128_t di = hsum4(d[0], d[1], d[2], d[3]);
          di = wasm_i32x4_sub(di, wasm_i32x4_mul(zp, wasm_v128_load(a->isum + t * a->kbpad + 4 * g)));
          v128_t s = wasm_f32x4_mul(ws, wasm_v128_load(a->scale + t * a->kbpad + 4 * g));
          acc[tt] = wasm_f32x4_add(acc[tt], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(di), s));
        }
      }
      for (int tt = 0; tt < tokens; tt++) y[(size_t)(t0 + tt) * ldy + n] = hsumf(acc[tt]);
    }
  }
}

// 8-bit blocks of 16 (GGUF Q6_K): one 16-byte vector a block, 4 blocks a group, int8 or
// int16 activations (the same dot product in both builds). Each i32 lane sums 4 products of
// at most 128 * 32767: no overflow.
static void rows_bs16_q8(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1) {
  const int kb = w->kb, full = kb / 4, groups = (kb + 3) / 4, tail = kb - full * 4;
  const v128_t tail_mask = wasm_i32x4_make(tail > 0 ? -1 : 0, tail > 1 ? -1 : 0, tail > 2 ? -1 : 0, 0);
  const v128_t flip = wasm_i8x16_splat((int8_t)0x80);
  for (int n = n0; n < n1; n++) {
    const uint8_t *row = w->q + (size_t)n * kb * 16;
    for (int t0 = 0; t0 < a->m; t0 += TOKENS_A_TILE) {
      int tokens = a->m - t0 < TOKENS_A_TILE ? a->m - t0 : TOKENS_A_TILE;
      v128_t acc[TOKENS_A_TILE];
      for (int i = 0; i < TOKENS_A_TILE; i++) acc[i] = wasm_f32x4_splat(0.0f);
      for (int g = 0; g < groups; g++) {
        v128_t ws = scales4(w, (size_t)n * kb + 4 * g);
        if (g == full) ws = wasm_v128_and(ws, tail_mask);
        v128_t lo[4], hi[4];
        for (int j = 0; j < 4; j++) {
          v128_t c = wasm_v128_xor(wasm_v128_load(row + (size_t)(4 * g + j) * 16), flip);
          lo[j] = wasm_i16x8_extend_low_i8x16(c);
          hi[j] = wasm_i16x8_extend_high_i8x16(c);
        }
        for (int tt = 0; tt < tokens; tt++) {
          int t = t0 + tt;
          size_t at = (size_t)t * a->kpad + (size_t)(4 * g) * 16;
          v128_t d[4];
          for (int j = 0; j < 4; j++) {
            v128_t a0, a1;
            if (a->bits == 16) {
              a0 = wasm_v128_load(a->q16 + at + 16 * j);
              a1 = wasm_v128_load(a->q16 + at + 16 * j + 8);
            } else {
              v128_t v = wasm_v128_load(a->q + at + 16 * j);
              a0 = wasm_i16x8_extend_low_i8x16(v);
              a1 = wasm_i16x8_extend_high_i8x16(v);
            }
            d[j] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo[j], a0), wasm_i32x4_dot_i16x8(hi[j], a1));
          }
          v128_t di = hsum4(d[0], d[1], d[2], d[3]);
          v128_t s = wasm_f32x4_mul(ws, wasm_v128_load(a->scale + t * a->kbpad + 4 * g));
          acc[tt] = wasm_f32x4_add(acc[tt], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(di), s));
        }
      }
      for (int tt = 0; tt < tokens; tt++) y[(size_t)(t0 + tt) * ldy + n] = hsumf(acc[tt]);
    }
  }
}

static void add_minima_and_bias(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1) {
  for (int t = 0; t < a->m; t++) {
    float *yt = y + (size_t)t * ldy;
    if (qlinear_has_mins(w)) {
      // 8 rows at a time, summed over the blocks in registers.
      const float *fs = a->fsum + t * a->kbpad;
      int n = n0;
      for (; n + 8 <= n1; n += 8) {
        v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = wasm_f32x4_splat(0.0f);
        for (int b = 0; b < w->kb; b++) {
          const size_t mb = (size_t)b * w->n + n;
          v128_t vfs = wasm_f32x4_splat(fs[b]);
          acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(mins4(w, mb), vfs));
          acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(mins4(w, mb + 4), vfs));
        }
        wasm_v128_store(yt + n, wasm_f32x4_add(wasm_v128_load(yt + n), acc0));
        wasm_v128_store(yt + n + 4, wasm_f32x4_add(wasm_v128_load(yt + n + 4), acc1));
      }
      for (; n < n1; n++)
        for (int b = 0; b < w->kb; b++) yt[n] += qlinear_min(w, (size_t)b * w->n + n) * fs[b];
    }
    if (w->bias)
      for (int n = n0; n < n1; n++) yt[n] += w->bias[n];
  }
}

void qmatmul(const QLinear *w, const QAct *a, float *y, int ldy, int n0, int n1) {
  if (n1 <= n0) return;
  if (w->bs == 16 && w->bits == 8 && !a->nibble_order) {
    rows_bs16_q8(w, a, y, ldy, n0, n1);
    add_minima_and_bias(w, a, y, ldy, n0, n1);
    return;
  }
  if (w->bs % 32 || act_order(w->bits, w->bs, a->bits) != (a->nibble_order != 0)) {
    qmatmul_ref(w, a, y, ldy, n0, n1);
    return;
  }
  int cb = w->bs / 32;
  if (a->m == 1 && cb == 1) {
    if (a->bits == 16) w->bits == 4 ? rows_simd_1(w, a, y, n0, n1, 1, 4, 16) : rows_simd_1(w, a, y, n0, n1, 1, 8, 16);
    else w->bits == 4 ? rows_simd_1(w, a, y, n0, n1, 1, 4, 8) : rows_simd_1(w, a, y, n0, n1, 1, 8, 8);
  } else if (a->bits == 16) {
    if (cb == 1) w->bits == 4 ? rows_simd16(w, a, y, ldy, n0, n1, 1, 4) : rows_simd16(w, a, y, ldy, n0, n1, 1, 8);
    else if (cb == 2) w->bits == 4 ? rows_simd16(w, a, y, ldy, n0, n1, 2, 4) : rows_simd16(w, a, y, ldy, n0, n1, 2, 8);
    else if (cb == 4) w->bits == 4 ? rows_simd16(w, a, y, ldy, n0, n1, 4, 4) : rows_simd16(w, a, y, ldy, n0, n1, 4, 8);
    else { qmatmul_ref(w, a, y, ldy, n0, n1); return; }
  } else if (w->bits == 4) {
    if (cb == 1) rows_simd(w, a, y, ldy, n0, n1, 1, 4);
    else if (cb == 2) rows_simd(w, a, y, ldy, n0, n1, 2, 4);
    else if (cb == 4) rows_simd(w, a, y, ldy, n0, n1, 4, 4);
    else { qmatmul_ref(w, a, y, ldy, n0, n1); return; }
  } else {
    if (cb == 1) rows_simd(w, a, y, ldy, n0, n1, 1, 8);
    else if (cb == 2) rows_simd(w, a, y, ldy, n0, n1, 2, 8);
    else if (cb == 4) rows_simd(w, a, y, ldy, n0, n1, 4, 8);
    else { qmatmul_ref(w, a, y, ldy, n0, n1); return; }
  }
  add_minima_and_bias(w, a, y, ldy, n0, n1);
}

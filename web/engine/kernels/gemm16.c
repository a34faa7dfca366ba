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
// to y[t][n .. n + 7]. Tokens go GEMM16_TOKENS (3) at a time, each pair of tile vectors
// shared by them: per pair 2 weight loads, 3 load-splats, 6 pmaddwd and 6 adds, 48
// multiply-adds in 17 instructions (4 rows x 6 tokens took 19). 6 integer and 6 float
// accumulators, the two weight vectors and a splat fit the 15 SIMD registers V8 gives on
// x64. 4 tokens (64 in 22) keep 19 vectors live: as fast in node 20, but they rely on the
// register allocator spilling the float sums well, which Chromium 156's V8 did worse at
// (docs/cpu-engine.md); 5 or 6 tokens spill in both. Plain SIMD128 only: both builds run
// the same code.
//
// Exactness: a block's int32 lane sums bs / 2 pairs of products of at most
// 128 * 32639 (8-bit) or 15 * 32639 (4-bit): at most 2^29 for bs = 128, no overflow.
#include "../engine.h"
#include <wasm_simd128.h>

#define GEMM16_TOKENS 3  // at most 4 (rows16's tails)

int qgemm_i16_supported(const QLinear *w) { return w->bs % 32 == 0 && w->bs <= 128; }

size_t qgemm_i16_tile_bytes(int k, int bs) {
  return (size_t)GEMM16_ROWS * k * sizeof(int16_t) + (size_t)(k / bs) * 2 * GEMM16_ROWS * sizeof(float);
}

// Four float16 values (the low halves of 32-bit lanes) to float32, as f16_to_f32.
static inline v128_t halves_to_f32(v128_t u) {
  v128_t mag = wasm_f32x4_mul(wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x7fff)), 13), wasm_f32x4_splat(0x1p112f));
  return wasm_v128_or(mag, wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x8000)), 16));
}

// The tile's scales and minima: [kb][8] float32 each, rows past `rows` 0 (minima only when
// the layer has them). A row's float16 scales are contiguous: 8 blocks are converted at a
// time; the minima of a block ([kb][n]) are contiguous over the 8 rows.
static void block_params(const QLinear *w, int n, int rows, float *scales, float *mins) {
  const int kb = w->kb;
  for (int r = 0; r < GEMM16_ROWS; r++) {
    int b = 0;
    if (r < rows && !w->scales32) {
      const uint16_t *h = w->scales + (size_t)(n + r) * kb;
      for (; b + 8 <= kb; b += 8) {
        v128_t v = wasm_v128_load(h + b);
        float f[8];
        wasm_v128_store(f, halves_to_f32(wasm_u32x4_extend_low_u16x8(v)));
        wasm_v128_store(f + 4, halves_to_f32(wasm_u32x4_extend_high_u16x8(v)));
        for (int j = 0; j < 8; j++) scales[(b + j) * GEMM16_ROWS + r] = f[j];
      }
    }
    for (; b < kb; b++) scales[b * GEMM16_ROWS + r] = r < rows ? qlinear_scale(w, (size_t)(n + r) * kb + b) : 0.0f;
  }
  if (!qlinear_has_mins(w)) return;
  for (int b = 0; b < kb; b++) {
    if (rows == GEMM16_ROWS && !w->mins32) {
      v128_t v = wasm_v128_load(w->mins + (size_t)b * w->n + n);
      wasm_v128_store(mins + b * GEMM16_ROWS, halves_to_f32(wasm_u32x4_extend_low_u16x8(v)));
      wasm_v128_store(mins + b * GEMM16_ROWS + 4, halves_to_f32(wasm_u32x4_extend_high_u16x8(v)));
      continue;
    }
    for (int r = 0; r < GEMM16_ROWS; r++)
      mins[b * GEMM16_ROWS + r] = r < rows ? qlinear_min(w, (size_t)b * w->n + n + r) : 0.0f;
  }
}

// Row n's 32 codes of block b from column c, as bytes in slot order: slots 0..15 in *lo,
// 16..31 in *hi. nibble_order: the activations' slot order (act_slot, act_order): even
// positions first.
static inline void codes32(const QLinear *w, size_t row_bytes, int n, int b, int c, int nibble_order, v128_t *lo,
                           v128_t *hi) {
  const uint8_t *p = w->q + (size_t)n * row_bytes + ((size_t)b * w->bs + c) * w->bits / 8;
  if (w->bits == 4) {
    v128_t bytes = wasm_v128_load(p);
    v128_t even = wasm_v128_and(bytes, wasm_i8x16_splat(15)), odd = wasm_u8x16_shr(bytes, 4);
    if (nibble_order) {
      *lo = even, *hi = odd;
    } else {
      *lo = wasm_i8x16_shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      *hi = wasm_i8x16_shuffle(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    }
    return;
  }
  *lo = wasm_v128_load(p), *hi = wasm_v128_load(p + 16);
  if (nibble_order) {  // even codes first, as act_order puts 8-bit blocks' activations
    v128_t even = wasm_i8x16_shuffle(*lo, *hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *hi = wasm_i8x16_shuffle(*lo, *hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *lo = even;
  }
}

// 4 rows' codes of 16 slots (bytes, one vector a row) to the tile's vectors of pairs
// p0 .. p0 + 7 for those rows (out: the tile at pair p0, the half's offset added). A pair
// is a 16-bit lane of a row's vector; transposing the 4 rows' 16-bit lanes puts pair p of
// rows 0..3 in 8 bytes, which widen to the int16 vector [r0 2p, r0 2p+1, r1 2p, ...].
static inline void pairs16(const v128_t *r, v128_t zp, int16_t *out) {
  v128_t a = wasm_i16x8_shuffle(r[0], r[1], 0, 8, 1, 9, 2, 10, 3, 11), b = wasm_i16x8_shuffle(r[0], r[1], 4, 12, 5, 13, 6, 14, 7, 15);
  v128_t c = wasm_i16x8_shuffle(r[2], r[3], 0, 8, 1, 9, 2, 10, 3, 11), d = wasm_i16x8_shuffle(r[2], r[3], 4, 12, 5, 13, 6, 14, 7, 15);
  v128_t t[4] = {wasm_i32x4_shuffle(a, c, 0, 4, 1, 5), wasm_i32x4_shuffle(a, c, 2, 6, 3, 7),
                 wasm_i32x4_shuffle(b, d, 0, 4, 1, 5), wasm_i32x4_shuffle(b, d, 2, 6, 3, 7)};
  for (int j = 0; j < 4; j++) {  // pairs 2j and 2j + 1
    wasm_v128_store(out + (size_t)(2 * j) * 2 * 8, wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(t[j]), zp));
    wasm_v128_store(out + (size_t)(2 * j + 1) * 2 * 8, wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(t[j]), zp));
  }
}

// Rows n .. n + rows - 1 (rows <= 8; the missing ones as zeros) into the tile: for each
// pair of slots two vectors of int16 (code - zp), rows 0-3 then rows 4-7, then per block
// the 8 rows' scales and minima (float32, block_params).
static void unpack_rows(const QLinear *w, int n, int rows, int nibble_order, int16_t *tile) {
  const int kb = w->kb, bs = w->bs;
  const size_t row_bytes = (size_t)kb * bs * w->bits / 8;
  float *scales = (float *)(tile + (size_t)GEMM16_ROWS * w->k), *mins = scales + (size_t)kb * GEMM16_ROWS;
  block_params(w, n, rows, scales, mins);
  const int shared_zp = w->bits == 8 || !w->zp;  // one zero point for the whole matrix
  const v128_t zp_all = wasm_i16x8_splat((int16_t)(w->bits == 8 ? 128 : w->zp_all));
  for (int b = 0; b < kb; b++) {
    for (int h = 0; h < 2; h++) {
      v128_t zp = zp_all;
      if (!shared_zp) {
        int z[4];
        for (int r = 0; r < 4; r++) z[r] = 4 * h + r < rows ? qlinear_zp(w, n + 4 * h + r, b) : 0;
        zp = wasm_i16x8_make(z[0], z[0], z[1], z[1], z[2], z[2], z[3], z[3]);
      }
      for (int c = 0; c < bs; c += 32) {
        v128_t lo[4], hi[4];  // rows 4h .. 4h + 3: codes of slots 0..15 and 16..31
        for (int r = 0; r < 4; r++) {
          if (4 * h + r < rows) codes32(w, row_bytes, n + 4 * h + r, b, c, nibble_order, &lo[r], &hi[r]);
          else lo[r] = hi[r] = wasm_i8x16_splat(0);
        }
        int16_t *out = tile + ((size_t)b * bs + c) * GEMM16_ROWS + h * 8;
        pairs16(lo, zp, out);
        pairs16(hi, zp, out + (size_t)8 * 2 * 8);
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
#if GEMM16_TOKENS > 3
    case 3: micro16(w, tile, a, t, y, ldy, n, rows, 3, BS); break;
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

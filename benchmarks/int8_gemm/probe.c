// Prefill GEMM, the kernel alone: 4-bit weight blocks x activation blocks quantized to int16
// (the engine's kernel, web/engine/kernels/gemm16.c) against the same weights x activation
// blocks quantized to int8. The int16 kernel multiplies with i32x4.dot_i16x8_s (8
// multiply-adds an instruction); the int8 one with i16x8.relaxed_dot_i8x16_i7x16 (pmaddubsw:
// 16 an instruction), so its rate is the multiply-add rate an int8-activation prefill would
// have. Driven by probe.mjs (python -m benchmarks.int8_gemm).
//
// Layouts (blocks of 32, one scale and zero point a block and row, K a multiple of 32,
// N a multiple of 4):
//   q[n][K/2]        4-bit codes packed as MatMulNBits does: code 2j in the low nibble of byte j
//   zp[n][kb]        zero points 0..15 (one byte each); wscale[n][kb] float
//   a16[t][K], a8[t][K]  activations; within each 32-block in "nibble order": slot s < 16
//                    meets code 2s, slot s >= 16 meets code 2(s - 16) + 1
//   ascale[t][kb]    activation scales; asum8[t][kb] the sum of a8 over the block
//   y[t][n]          = sum_b wscale[n][b] * ascale[t][b] * sum_i (code_i - zp[n][b]) * a[t][i]
// Rows go 4 (or 8: the engine's int16 tile) at a time: their codes are unpacked once into a
// tile shared by T tokens.
//   int16 tile: K/2 vectors; vector p holds, for rows r = 0..3, the (code - zp) that meet
//     slots 2p, 2p + 1 (lanes [r0 2p, r0 2p+1, r1 2p, ...]), then kb*4 float scales.
//     8-row tile (gemm16_r8t4, the engine's): for each p two such vectors, rows 0-3 then
//     rows 4-7, then kb*8 float scales.
//   int8 tile: K/4 vectors; vector p holds row r's codes (unsigned, zero point not
//     subtracted) of slots 4p .. 4p + 3 in bytes 4r .. 4r + 3, then kb*4 float scales,
//     then kb*4 int32 zero points.
// In both the 4 lanes of a vector are the 4 rows: a block ends with one conversion to float
// and one multiply-add by the rows' scales, no horizontal sums.
//
// Exactness: the int8 kernel takes the codes (0..15) as the 7-bit operand and the
// activations (-127..127) as the signed one, sums 8 steps of a 32-block in int16 lanes (each
// lane two products a step): at most 8 x 2 x 15 x 127 = 30480 < 32767, no overflow and no
// saturation. It subtracts the zero point once a block as zp * sum(a8). Both kernels' block
// sums are exact int32, and the scalar references below add the same floats in the same
// order, so the outputs must match bit for bit.
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))
#define BS 32     // block size
#define ROWS 4    // rows a tile
#define MAXT 6    // most tokens a tile
#define ROWS8 8   // rows of the 8-row int16 tile

extern unsigned char __heap_base;
static size_t heap_top;

// Bump allocator, 64-byte aligned; grows the memory as needed. Nothing is freed.
EXPORT(alloc) void *alloc(size_t bytes) {
  if (!heap_top) heap_top = (size_t)&__heap_base;
  heap_top = (heap_top + 63) & ~(size_t)63;
  void *p = (void *)heap_top;
  heap_top += bytes;
  size_t need = (heap_top + 65535) / 65536, have = __builtin_wasm_memory_size(0);
  if (need > have) __builtin_wasm_memory_grow(0, need - have);
  return p;
}

typedef struct {
  int n, k, kb, m;  // rows, inputs, blocks a row (k / 32), tokens
  const uint8_t *q, *zp;
  const float *wscale;
  const int16_t *a16;
  const int8_t *a8;
  const float *ascale;
  const int32_t *asum8;
  float *y;
} Prob;

// 4x4 transpose of 32-bit lanes.
INLINE void transpose4(v128_t *a, v128_t *b, v128_t *c, v128_t *d) {
  v128_t t0 = wasm_i32x4_shuffle(*a, *b, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(*a, *b, 2, 6, 3, 7);
  v128_t t2 = wasm_i32x4_shuffle(*c, *d, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(*c, *d, 2, 6, 3, 7);
  *a = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5), *b = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  *c = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5), *d = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

// ----------------------------------------------------------------------------
// 4-bit x int16

// rows (4, or 8: two 4-row halves side by side for each pair, the engine's tile) from row n.
static void unpack16_rows(const Prob *P, int n, int16_t *tile, const int rows) {
  float *scales = (float *)(tile + (size_t)rows * P->k);
  for (int b = 0; b < P->kb; b++)
    for (int h = 0; h < rows / ROWS; h++) {
      v128_t v[ROWS][4];  // row 4h + r's 32 (code - zp) in slot order, as int16
      for (int r = 0; r < ROWS; r++) {
        size_t wb = (size_t)(n + 4 * h + r) * P->kb + b;
        scales[b * rows + 4 * h + r] = P->wscale[wb];
        v128_t bytes = wasm_v128_load(P->q + (size_t)(n + 4 * h + r) * (P->k / 2) + b * BS / 2);
        v128_t even = wasm_v128_and(bytes, wasm_i8x16_splat(15)), odd = wasm_u8x16_shr(bytes, 4);
        v128_t zp = wasm_i16x8_splat(P->zp[wb]);
        v[r][0] = wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(even), zp);
        v[r][1] = wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(even), zp);
        v[r][2] = wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(odd), zp);
        v[r][3] = wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(odd), zp);
      }
      // vector j of a row holds pairs 4j .. 4j + 3, one a 32-bit lane: transposing the rows'
      // vectors j gives pairs 4j .. 4j + 3 with the rows as lanes
      int16_t *out = tile + (size_t)b * BS * rows;
      for (int j = 0; j < 4; j++) {
        transpose4(&v[0][j], &v[1][j], &v[2][j], &v[3][j]);
        for (int r = 0; r < ROWS; r++) wasm_v128_store(out + (size_t)((4 * j + r) * (rows / ROWS) + h) * 8, v[r][j]);
      }
    }
}

// y[t0 .. t0 + T)[n .. n + 4) from the tile.
INLINE void micro16(const Prob *P, const int16_t *tile, int t0, int n, const int T) {
  const int kb = P->kb;
  const float *scales = (const float *)(tile + (size_t)ROWS * P->k);
  v128_t facc[MAXT];
  const int16_t *x[MAXT];
  for (int t = 0; t < T; t++) {
    facc[t] = wasm_f32x4_splat(0.0f);
    x[t] = P->a16 + (size_t)(t0 + t) * P->k;
  }
  for (int b = 0; b < kb; b++) {
    v128_t iacc[MAXT];
    for (int t = 0; t < T; t++) iacc[t] = wasm_i32x4_splat(0);
    const int16_t *wt = tile + (size_t)b * BS * ROWS;
#pragma clang loop unroll(disable)
    for (int p = 0; p < BS / 2; p++) {
      v128_t wv = wasm_v128_load(wt + 8 * p);
      for (int t = 0; t < T; t++)  // a token's slots 2p, 2p + 1 against the 4 rows' pairs
        iacc[t] = wasm_i32x4_add(iacc[t], wasm_i32x4_dot_i16x8(wv, wasm_v128_load32_splat(x[t] + b * BS + 2 * p)));
    }
    v128_t ws = wasm_v128_load(scales + b * ROWS);
    for (int t = 0; t < T; t++) {
      v128_t s = wasm_f32x4_mul(ws, wasm_f32x4_splat(P->ascale[(size_t)(t0 + t) * kb + b]));
      facc[t] = wasm_f32x4_add(facc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(iacc[t]), s));
    }
  }
  for (int t = 0; t < T; t++) wasm_v128_store(P->y + (size_t)(t0 + t) * P->n + n, facc[t]);
}

// y[t0 .. t0 + T)[n .. n + 8) from the 8-row tile.
INLINE void micro16_r8(const Prob *P, const int16_t *tile, int t0, int n, const int T) {
  const int kb = P->kb;
  const float *scales = (const float *)(tile + (size_t)ROWS8 * P->k);
  v128_t facc[4][2];
  const int16_t *x[4];
  for (int t = 0; t < T; t++) {
    facc[t][0] = facc[t][1] = wasm_f32x4_splat(0.0f);
    x[t] = P->a16 + (size_t)(t0 + t) * P->k;
  }
  for (int b = 0; b < kb; b++) {
    v128_t iacc[4][2];
    for (int t = 0; t < T; t++) iacc[t][0] = iacc[t][1] = wasm_i32x4_splat(0);
    const int16_t *wt = tile + (size_t)b * BS * ROWS8;
#pragma clang loop unroll(disable)
    for (int p = 0; p < BS / 2; p++) {
      v128_t w0 = wasm_v128_load(wt + 16 * p), w1 = wasm_v128_load(wt + 16 * p + 8);
      for (int t = 0; t < T; t++) {
        v128_t xv = wasm_v128_load32_splat(x[t] + b * BS + 2 * p);
        iacc[t][0] = wasm_i32x4_add(iacc[t][0], wasm_i32x4_dot_i16x8(w0, xv));
        iacc[t][1] = wasm_i32x4_add(iacc[t][1], wasm_i32x4_dot_i16x8(w1, xv));
      }
    }
    for (int h = 0; h < 2; h++) {
      v128_t ws = wasm_v128_load(scales + b * ROWS8 + 4 * h);
      for (int t = 0; t < T; t++) {
        v128_t s = wasm_f32x4_mul(ws, wasm_f32x4_splat(P->ascale[(size_t)(t0 + t) * kb + b]));
        facc[t][h] = wasm_f32x4_add(facc[t][h], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(iacc[t][h]), s));
      }
    }
  }
  for (int t = 0; t < T; t++)
    for (int h = 0; h < 2; h++) wasm_v128_store(P->y + (size_t)(t0 + t) * P->n + n + 4 * h, facc[t][h]);
}

// ----------------------------------------------------------------------------
// 4-bit x int8

static void unpack8(const Prob *P, int n, int8_t *tile) {
  float *scales = (float *)(tile + (size_t)ROWS * P->k);
  int32_t *zps = (int32_t *)(scales + (size_t)ROWS * P->kb);
  for (int b = 0; b < P->kb; b++) {
    v128_t even[ROWS], odd[ROWS];  // row r's codes of slots 0..15 and 16..31
    for (int r = 0; r < ROWS; r++) {
      size_t wb = (size_t)(n + r) * P->kb + b;
      scales[b * ROWS + r] = P->wscale[wb];
      zps[b * ROWS + r] = P->zp[wb];
      v128_t bytes = wasm_v128_load(P->q + (size_t)(n + r) * (P->k / 2) + b * BS / 2);
      even[r] = wasm_v128_and(bytes, wasm_i8x16_splat(15));
      odd[r] = wasm_u8x16_shr(bytes, 4);
    }
    transpose4(&even[0], &even[1], &even[2], &even[3]);
    transpose4(&odd[0], &odd[1], &odd[2], &odd[3]);
    int8_t *out = tile + (size_t)b * BS * ROWS;
    for (int j = 0; j < 4; j++) {
      wasm_v128_store(out + 16 * j, even[j]);
      wasm_v128_store(out + 64 + 16 * j, odd[j]);
    }
  }
}

INLINE void micro8(const Prob *P, const int8_t *tile, int t0, int n, const int T) {
  const int kb = P->kb;
  const float *scales = (const float *)(tile + (size_t)ROWS * P->k);
  const int32_t *zps = (const int32_t *)(scales + (size_t)ROWS * kb);
  const v128_t ones = wasm_i16x8_splat(1);
  v128_t facc[MAXT];
  const int8_t *x[MAXT];
  for (int t = 0; t < T; t++) {
    facc[t] = wasm_f32x4_splat(0.0f);
    x[t] = P->a8 + (size_t)(t0 + t) * P->k;
  }
  for (int b = 0; b < kb; b++) {
    v128_t acc[MAXT];  // int16 lanes 2r, 2r + 1: row r
    for (int t = 0; t < T; t++) acc[t] = wasm_i16x8_splat(0);
    const int8_t *wt = tile + (size_t)b * BS * ROWS;
#pragma clang loop unroll(disable)
    for (int p = 0; p < BS / 4; p++) {
      v128_t wv = wasm_v128_load(wt + 16 * p);
      for (int t = 0; t < T; t++)  // a token's slots 4p .. 4p + 3 against the 4 rows' codes
        acc[t] = wasm_i16x8_add(acc[t], wasm_i16x8_relaxed_dot_i8x16_i7x16(wasm_v128_load32_splat(x[t] + b * BS + 4 * p), wv));
    }
    v128_t ws = wasm_v128_load(scales + b * ROWS), zv = wasm_v128_load(zps + b * ROWS);
    for (int t = 0; t < T; t++) {
      size_t ab = (size_t)(t0 + t) * kb + b;
      v128_t i = wasm_i32x4_dot_i16x8(acc[t], ones);  // widen: row r's two lanes summed
      i = wasm_i32x4_sub(i, wasm_i32x4_mul(zv, wasm_i32x4_splat(P->asum8[ab])));
      v128_t s = wasm_f32x4_mul(ws, wasm_f32x4_splat(P->ascale[ab]));
      facc[t] = wasm_f32x4_add(facc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), s));
    }
  }
  for (int t = 0; t < T; t++) wasm_v128_store(P->y + (size_t)(t0 + t) * P->n + n, facc[t]);
}

// ----------------------------------------------------------------------------
// GEMMs: rows 4 (or 8) at a time, unpacked once; tokens T at a time, the rest one at a time.
// tile: 8 * K * 2 + kb * 32 bytes covers every tile.

INLINE void gemm16_r8(const Prob *P, int16_t *tile, const int T) {
  for (int n = 0; n < P->n; n += ROWS8) {
    unpack16_rows(P, n, tile, ROWS8);
    int t = 0;
    for (; t + T <= P->m; t += T) micro16_r8(P, tile, t, n, T);
    for (; t < P->m; t++) micro16_r8(P, tile, t, n, 1);
  }
}
EXPORT(gemm16_r8t3) void gemm16_r8t3(const Prob *P, int16_t *tile) { gemm16_r8(P, tile, 3); }
EXPORT(gemm16_r8t4) void gemm16_r8t4(const Prob *P, int16_t *tile) { gemm16_r8(P, tile, 4); }

EXPORT(gemm16_t6) void gemm16_t6(const Prob *P, int16_t *tile) {
  for (int n = 0; n < P->n; n += ROWS) {
    unpack16_rows(P, n, tile, ROWS);
    int t = 0;
    for (; t + 6 <= P->m; t += 6) micro16(P, tile, t, n, 6);
    for (; t < P->m; t++) micro16(P, tile, t, n, 1);
  }
}

INLINE void gemm8(const Prob *P, int8_t *tile, const int T) {
  for (int n = 0; n < P->n; n += ROWS) {
    unpack8(P, n, tile);
    int t = 0;
    for (; t + T <= P->m; t += T) micro8(P, tile, t, n, T);
    for (; t < P->m; t++) micro8(P, tile, t, n, 1);
  }
}
EXPORT(gemm8_t4) void gemm8_t4(const Prob *P, int8_t *tile) { gemm8(P, tile, 4); }
EXPORT(gemm8_t6) void gemm8_t6(const Prob *P, int8_t *tile) { gemm8(P, tile, 6); }

// ----------------------------------------------------------------------------
// Scalar references: the same exact int32 block sums, then per block and in the kernels'
// order y += float(isum) * (wscale * ascale) (separate statements: no fused multiply-add).

static int code_at(const Prob *P, int n, int b, int s) {
  int j = s < 16 ? 2 * s : 2 * (s - 16) + 1;  // the code slot s meets
  uint8_t byte = P->q[(size_t)n * (P->k / 2) + b * BS / 2 + j / 2];
  return j & 1 ? byte >> 4 : byte & 15;
}

static void reference(const Prob *P, int int16_acts) {
  for (int t = 0; t < P->m; t++)
    for (int n = 0; n < P->n; n++) {
      float f = 0.0f;
      for (int b = 0; b < P->kb; b++) {
        int zp = P->zp[(size_t)n * P->kb + b];
        int32_t isum = 0;
        for (int s = 0; s < BS; s++) {
          size_t ai = (size_t)t * P->k + b * BS + s;
          isum += (code_at(P, n, b, s) - zp) * (int16_acts ? P->a16[ai] : P->a8[ai]);
        }
        float scale = P->wscale[(size_t)n * P->kb + b] * P->ascale[(size_t)t * P->kb + b];
        float term = (float)isum * scale;
        f += term;
      }
      P->y[(size_t)t * P->n + n] = f;
    }
}
EXPORT(ref16) void ref16(const Prob *P) { reference(P, 1); }
EXPORT(ref8) void ref8(const Prob *P) { reference(P, 0); }

// ----------------------------------------------------------------------------
// Peaks: the micro-kernels' inner loops alone, over a tile and activations that stay in L1
// (no unpacking, no block scales, no stores): the most multiply-adds a second that the code
// the engine compiles to reaches for each instruction. Each loop step loads a weight vector,
// then for each of 6 tokens splats 4 bytes of activations and multiply-adds into the token's
// accumulator, as micro16 and micro8 do. Sums wrap (the values are not checked).
#define PEAK_STEPS 256  // weight vectors in the tile (4 KB)

#define PEAK_LOOP(ACC_T, INIT, STEP)                                            \
  ACC_T acc[MAXT];                                                               \
  for (int t = 0; t < MAXT; t++) acc[t] = INIT;                                  \
  for (int r = 0; r < reps; r++)                                                 \
    _Pragma("clang loop unroll(disable)") for (int p = 0; p < PEAK_STEPS; p++) { \
      v128_t wv = wasm_v128_load(w + 16 * p);                                    \
      for (int t = 0; t < MAXT; t++) {                                           \
        v128_t xv = wasm_v128_load32_splat(x + t * 4 * PEAK_STEPS + 4 * p);      \
        acc[t] = STEP;                                                           \
      }                                                                          \
    }                                                                            \
  v128_t s = acc[0];                                                             \
  for (int t = 1; t < MAXT; t++) s = wasm_v128_xor(s, acc[t]);                   \
  return wasm_i32x4_extract_lane(s, 0);

// w: PEAK_STEPS * 16 bytes; x: MAXT * PEAK_STEPS * 4 bytes. Multiply-adds: reps * PEAK_STEPS
// * MAXT * (8, 16, 4, 4) for peak16, peak8, peak_f32, peak_fma.
EXPORT(peak16) int peak16(const uint8_t *w, const uint8_t *x, int reps) {
  PEAK_LOOP(v128_t, wasm_i32x4_splat(0), wasm_i32x4_add(acc[t], wasm_i32x4_dot_i16x8(wv, xv)))
}
EXPORT(peak8) int peak8(const uint8_t *w, const uint8_t *x, int reps) {
  PEAK_LOOP(v128_t, wasm_i16x8_splat(0), wasm_i16x8_add(acc[t], wasm_i16x8_relaxed_dot_i8x16_i7x16(xv, wv)))
}
EXPORT(peak_f32) int peak_f32(const uint8_t *w, const uint8_t *x, int reps) {
  PEAK_LOOP(v128_t, wasm_f32x4_splat(0), wasm_f32x4_add(acc[t], wasm_f32x4_mul(wv, xv)))
}
// The 8-row int16 tile's loop: two weight vectors, then for each of T tokens a splat and
// two multiply-adds. Multiply-adds: reps * PEAK_STEPS / 2 * T * 2 * 8.
INLINE int peak16_r8(const uint8_t *w, const uint8_t *x, int reps, const int T) {
  v128_t acc[8];
  for (int t = 0; t < 8; t++) acc[t] = wasm_i32x4_splat(0);
  for (int r = 0; r < reps; r++)
#pragma clang loop unroll(disable)
    for (int p = 0; p < PEAK_STEPS / 2; p++) {
      v128_t w0 = wasm_v128_load(w + 32 * p), w1 = wasm_v128_load(w + 32 * p + 16);
      for (int t = 0; t < T; t++) {
        v128_t xv = wasm_v128_load32_splat(x + t * 4 * PEAK_STEPS + 4 * p);
        acc[2 * t] = wasm_i32x4_add(acc[2 * t], wasm_i32x4_dot_i16x8(w0, xv));
        acc[2 * t + 1] = wasm_i32x4_add(acc[2 * t + 1], wasm_i32x4_dot_i16x8(w1, xv));
      }
    }
  v128_t s = acc[0];
  for (int t = 1; t < 2 * T; t++) s = wasm_v128_xor(s, acc[t]);
  return wasm_i32x4_extract_lane(s, 0);
}
EXPORT(peak16_r8t3) int peak16_r8t3(const uint8_t *w, const uint8_t *x, int reps) { return peak16_r8(w, x, reps, 3); }
EXPORT(peak16_r8t4) int peak16_r8t4(const uint8_t *w, const uint8_t *x, int reps) { return peak16_r8(w, x, reps, 4); }
EXPORT(peak_fma) int peak_fma(const uint8_t *w, const uint8_t *x, int reps) {
  PEAK_LOOP(v128_t, wasm_f32x4_splat(0), wasm_f32x4_relaxed_madd(wv, xv, acc[t]))
}

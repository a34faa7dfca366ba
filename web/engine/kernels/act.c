// Float activations -> int8 blocks, as native MatMulNBits does at accuracy_level 4:
// per block of bs values, scale = max|x| / 127, q = round(x / scale).
// The SIMD variant and the scalar reference give identical codes.
#include "../engine.h"
#include <wasm_simd128.h>

static void alloc_act(QAct *a, int m, int k, int bs, int nibble_order) {
  int kb = k / bs;
  a->m = m, a->k = k, a->bs = bs, a->kb = kb, a->nibble_order = nibble_order, a->bits = 8;
  a->kbpad = (kb + 3) & ~3;
  a->kpad = a->kbpad * bs;
  // The caller gives scratch through the pointers already set (see model.c act_scratch).
}

static void pad_tail(QAct *a, int t) {
  for (int b = a->kb; b < a->kbpad; b++) {
    a->scale[t * a->kbpad + b] = 0.0f;
    a->isum[t * a->kbpad + b] = 0;
    a->fsum[t * a->kbpad + b] = 0.0f;
  }
  mem_zero(a->q + (size_t)t * a->kpad + a->k, (size_t)(a->kpad - a->k));
}

void quantize_act_ref(QAct *a, const float *x, int m, int k, int bs, int nibble_order) {
  alloc_act(a, m, k, bs, nibble_order);
  for (int t = 0; t < m; t++) {
    const float *row = x + (size_t)t * k;
    int8_t *q = a->q + (size_t)t * a->kpad;
    for (int b = 0; b < a->kb; b++) {
      const float *xb = row + b * bs;
      float amax = 0.0f, sum = 0.0f;
      for (int i = 0; i < bs; i++) {
        float v = __builtin_fabsf(xb[i]);
        amax = v > amax ? v : amax;
        sum += xb[i];
      }
      float scale = amax / 127.0f;
      float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int isum = 0;
      for (int i = 0; i < bs; i++) {
        int v = (int)__builtin_nearbyintf(xb[i] * inv);
        q[b * bs + act_slot(i, nibble_order)] = (int8_t)v;
        isum += v;
      }
      a->scale[t * a->kbpad + b] = scale;
      a->isum[t * a->kbpad + b] = isum;
      a->fsum[t * a->kbpad + b] = sum;
    }
    pad_tail(a, t);
  }
}

void quantize_act(QAct *a, const float *x, int m, int k, int bs, int nibble_order) {
  if (bs % 32) {
    quantize_act_ref(a, x, m, k, bs, nibble_order);
    return;
  }
  alloc_act(a, m, k, bs, nibble_order);
  for (int t = 0; t < m; t++) {
    const float *row = x + (size_t)t * k;
    int8_t *q = a->q + (size_t)t * a->kpad;
    for (int b = 0; b < a->kb; b++) {
      const float *xb = row + b * bs;
      v128_t vmax = wasm_f32x4_splat(0.0f), vsum = wasm_f32x4_splat(0.0f);
      for (int i = 0; i < bs; i += 4) {
        v128_t v = wasm_v128_load(xb + i);
        vmax = wasm_f32x4_max(vmax, wasm_f32x4_abs(v));
        vsum = wasm_f32x4_add(vsum, v);
      }
      float amax = wasm_f32x4_extract_lane(vmax, 0);
      for (int l = 1; l < 4; l++) {
        float v = l == 1 ? wasm_f32x4_extract_lane(vmax, 1) : l == 2 ? wasm_f32x4_extract_lane(vmax, 2) : wasm_f32x4_extract_lane(vmax, 3);
        amax = v > amax ? v : amax;
      }
      float sum = 0.0f;
      for (int i = 0; i < bs; i++) sum += xb[i];  // same order as the reference: exact match
      (void)vsum;
      float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      v128_t vinv = wasm_f32x4_splat(inv);
      v128_t isum = wasm_i32x4_splat(0);
      for (int c = 0; c < bs; c += 32) {
        // 32 values -> 32 int8 in 8 lanes of 4, narrowed in two steps.
        v128_t w[8];
        for (int j = 0; j < 8; j++) {
          v128_t v = wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + c + 4 * j), vinv));
          w[j] = wasm_i32x4_trunc_sat_f32x4(v);
          isum = wasm_i32x4_add(isum, w[j]);
        }
        v128_t h0 = wasm_i16x8_narrow_i32x4(w[0], w[1]), h1 = wasm_i16x8_narrow_i32x4(w[2], w[3]);
        v128_t h2 = wasm_i16x8_narrow_i32x4(w[4], w[5]), h3 = wasm_i16x8_narrow_i32x4(w[6], w[7]);
        v128_t lo = wasm_i8x16_narrow_i16x8(h0, h1), hi = wasm_i8x16_narrow_i16x8(h2, h3);
        if (nibble_order) {
          v128_t even = wasm_i8x16_shuffle(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
          v128_t odd = wasm_i8x16_shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
          lo = even, hi = odd;
        }
        wasm_v128_store(q + b * bs + c, lo);
        wasm_v128_store(q + b * bs + c + 16, hi);
      }
      a->scale[t * a->kbpad + b] = amax / 127.0f;
      a->isum[t * a->kbpad + b] = wasm_i32x4_extract_lane(isum, 0) + wasm_i32x4_extract_lane(isum, 1) +
                                  wasm_i32x4_extract_lane(isum, 2) + wasm_i32x4_extract_lane(isum, 3);
      a->fsum[t * a->kbpad + b] = sum;
    }
    pad_tail(a, t);
  }
}

// int16 blocks: scale = max|x| / ACT16_MAX; also split into high and low signed bytes
// (v = 256 hi + lo, both int8). Scalar reference; quantize_act16 below is the SIMD variant.
void quantize_act16_ref(QAct *a, const float *x, int m, int k, int bs, int nibble_order) {
  alloc_act(a, m, k, bs, nibble_order);
  a->bits = 16;
  a->halves = 1;
  for (int t = 0; t < m; t++) {
    const float *row = x + (size_t)t * k;
    int16_t *q = a->q16 + (size_t)t * a->kpad;
    int8_t *hi8 = a->q + (size_t)t * a->kpad, *lo8 = a->qlo + (size_t)t * a->kpad;
    for (int b = 0; b < a->kb; b++) {
      const float *xb = row + b * bs;
      float amax = 0.0f, sum = 0.0f;
      for (int i = 0; i < bs; i++) {
        float v = __builtin_fabsf(xb[i]);
        amax = v > amax ? v : amax;
        sum += xb[i];
      }
      float inv = amax > 0.0f ? (float)ACT16_MAX / amax : 0.0f;
      int isum = 0;
      for (int i = 0; i < bs; i++) {
        int v = (int)__builtin_nearbyintf(xb[i] * inv);
        int slot = b * bs + act_slot(i, nibble_order);
        int lo = ((v + 128) & 255) - 128;
        q[slot] = (int16_t)v;
        hi8[slot] = (int8_t)((v - lo) >> 8);
        lo8[slot] = (int8_t)lo;
        isum += v;
      }
      a->scale[t * a->kbpad + b] = amax / (float)ACT16_MAX;
      a->isum[t * a->kbpad + b] = isum;
      a->fsum[t * a->kbpad + b] = sum;
    }
    for (int b = a->kb; b < a->kbpad; b++) {
      a->scale[t * a->kbpad + b] = 0.0f;
      a->isum[t * a->kbpad + b] = 0;
      a->fsum[t * a->kbpad + b] = 0.0f;
    }
    mem_zero(q + a->k, sizeof(int16_t) * (size_t)(a->kpad - a->k));
    mem_zero(hi8 + a->k, (size_t)(a->kpad - a->k));
    mem_zero(lo8 + a->k, (size_t)(a->kpad - a->k));
  }
}

// As quantize_act16_ref, 32 values at a time (bs a multiple of 32): the same codes; the
// block sums of x (for Q4_1's minima) are added 4 lanes at a time.
void quantize_act16(QAct *a, const float *x, int m, int k, int bs, int nibble_order) {
  if (bs % 32) {
    quantize_act16_ref(a, x, m, k, bs, nibble_order);
    return;
  }
  quantize_act16_layout(a, m, k, bs, nibble_order, 1);
  quantize_act16_tokens(a, x, 0, m);
}

void quantize_act16_layout(QAct *a, int m, int k, int bs, int nibble_order, int halves) {
  alloc_act(a, m, k, bs, nibble_order);
  a->bits = 16;
  a->halves = halves;
}

void quantize_act16_tokens(QAct *a, const float *x, int t0, int t1) {
  const int k = a->k, bs = a->bs, nibble_order = a->nibble_order, halves = a->halves;
  for (int t = t0; t < t1; t++) {
    const float *row = x + (size_t)t * k;
    int16_t *q = a->q16 + (size_t)t * a->kpad;
    int8_t *hi8 = a->q + (size_t)t * a->kpad, *lo8 = a->qlo + (size_t)t * a->kpad;
    for (int b = 0; b < a->kb; b++) {
      const float *xb = row + b * bs;
      v128_t vmax = wasm_f32x4_splat(0.0f), vsum = wasm_f32x4_splat(0.0f);
      for (int i = 0; i < bs; i += 4) {
        v128_t v = wasm_v128_load(xb + i);
        vmax = wasm_f32x4_max(vmax, wasm_f32x4_abs(v));
        vsum = wasm_f32x4_add(vsum, v);
      }
      vmax = wasm_f32x4_max(vmax, wasm_i32x4_shuffle(vmax, vmax, 2, 3, 0, 1));
      vmax = wasm_f32x4_max(vmax, wasm_i32x4_shuffle(vmax, vmax, 1, 0, 3, 2));
      float amax = wasm_f32x4_extract_lane(vmax, 0);
      v128_t vinv = wasm_f32x4_splat(amax > 0.0f ? (float)ACT16_MAX / amax : 0.0f);
      v128_t isum = wasm_i32x4_splat(0);
      for (int c = 0; c < bs; c += 32) {
        v128_t h[4];  // the 32 codes as int16, in k order
        for (int j = 0; j < 4; j++) {
          v128_t v0 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + c + 8 * j), vinv)));
          v128_t v1 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + c + 8 * j + 4), vinv)));
          isum = wasm_i32x4_add(isum, wasm_i32x4_add(v0, v1));
          h[j] = wasm_i16x8_narrow_i32x4(v0, v1);
        }
        if (nibble_order) {  // slots: even positions first, then odd ones
          v128_t e0 = wasm_i16x8_shuffle(h[0], h[1], 0, 2, 4, 6, 8, 10, 12, 14);
          v128_t e1 = wasm_i16x8_shuffle(h[2], h[3], 0, 2, 4, 6, 8, 10, 12, 14);
          v128_t o0 = wasm_i16x8_shuffle(h[0], h[1], 1, 3, 5, 7, 9, 11, 13, 15);
          v128_t o1 = wasm_i16x8_shuffle(h[2], h[3], 1, 3, 5, 7, 9, 11, 13, 15);
          h[0] = e0, h[1] = e1, h[2] = o0, h[3] = o1;
        }
        for (int j = 0; j < 4; j++) wasm_v128_store(q + b * bs + c + 8 * j, h[j]);
        if (!halves) continue;
        v128_t hi[4], lo[4];
        for (int j = 0; j < 4; j++) {
          lo[j] = wasm_i16x8_sub(wasm_v128_and(wasm_i16x8_add(h[j], wasm_i16x8_splat(128)), wasm_i16x8_splat(255)),
                                 wasm_i16x8_splat(128));
          hi[j] = wasm_i16x8_shr(wasm_i16x8_sub(h[j], lo[j]), 8);
        }
        wasm_v128_store(hi8 + b * bs + c, wasm_i8x16_narrow_i16x8(hi[0], hi[1]));
        wasm_v128_store(hi8 + b * bs + c + 16, wasm_i8x16_narrow_i16x8(hi[2], hi[3]));
        wasm_v128_store(lo8 + b * bs + c, wasm_i8x16_narrow_i16x8(lo[0], lo[1]));
        wasm_v128_store(lo8 + b * bs + c + 16, wasm_i8x16_narrow_i16x8(lo[2], lo[3]));
      }
      a->scale[t * a->kbpad + b] = amax / (float)ACT16_MAX;
      a->isum[t * a->kbpad + b] = wasm_i32x4_extract_lane(isum, 0) + wasm_i32x4_extract_lane(isum, 1) +
                                  wasm_i32x4_extract_lane(isum, 2) + wasm_i32x4_extract_lane(isum, 3);
      a->fsum[t * a->kbpad + b] = wasm_f32x4_extract_lane(vsum, 0) + wasm_f32x4_extract_lane(vsum, 1) +
                                  wasm_f32x4_extract_lane(vsum, 2) + wasm_f32x4_extract_lane(vsum, 3);
    }
    for (int b = a->kb; b < a->kbpad; b++) {
      a->scale[t * a->kbpad + b] = 0.0f;
      a->isum[t * a->kbpad + b] = 0;
      a->fsum[t * a->kbpad + b] = 0.0f;
    }
    mem_zero(q + a->k, sizeof(int16_t) * (size_t)(a->kpad - a->k));
    if (!halves) continue;
    mem_zero(hi8 + a->k, (size_t)(a->kpad - a->k));
    mem_zero(lo8 + a->k, (size_t)(a->kpad - a->k));
  }
}

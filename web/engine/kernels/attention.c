// Attention of one query head over the cached positions [start, end] of its KV head, as
// com.microsoft.GroupQueryAttention computes it: scores = scale * q.k, optional soft-cap
// cap * tanh(scores / cap), softmax, weighted sum of the values. The cache is paged:
// position p of a layer lives in page p / page_size.
#include "../engine.h"

// q . k over head_dim values (two accumulators: the adds of a head overlap). The multiply-adds
// below are fused in the relaxed build (f32x4_madd).
static inline float dot(const float *q, const float *k, int n) {
  v128_t a0 = wasm_f32x4_splat(0.0f), a1 = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(q + i), wasm_v128_load(k + i)));
    a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(q + i + 4), wasm_v128_load(k + i + 4)));
  }
  v128_t a = wasm_f32x4_add(a0, a1);
  float s = wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 2) +
            wasm_f32x4_extract_lane(a, 3);
  for (; i < n; i++) s += q[i] * k[i];
  return s;
}

static inline void axpy(float *y, float a, const float *x, int n) {
  v128_t va = wasm_f32x4_splat(a);
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
  for (; i < n; i++) y[i] += a * x[i];
}

// [sum(a0), sum(a1), sum(a2), sum(a3)]
static inline v128_t hsum4f(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  v128_t t0 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
  v128_t t1 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
  return wasm_f32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}

// scores[i] = scale * q . k[i] for n keys head_dim apart (one page's run of positions).
static void scores_of(float *scores, const float *q, const float *k, int n, int head_dim, float scale) {
  int i = 0;
  if (head_dim % 4 == 0) {
    for (; i + 4 <= n; i += 4) {
      const float *k0 = k + (size_t)i * head_dim;
      v128_t a[4] = {wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f)};
      for (int d = 0; d < head_dim; d += 4) {
        v128_t qv = wasm_v128_load(q + d);
        for (int j = 0; j < 4; j++) a[j] = f32x4_madd(qv, wasm_v128_load(k0 + (size_t)j * head_dim + d), a[j]);
      }
      wasm_v128_store(scores + i, wasm_f32x4_mul(hsum4f(a[0], a[1], a[2], a[3]), wasm_f32x4_splat(scale)));
    }
  }
  for (; i < n; i++) scores[i] = dot(q, k + (size_t)i * head_dim, head_dim) * scale;
}

void attend(float *out, const float *q, float *const *pages, int kv_head, int kv_heads, int page_size,
            int head_dim, int start, int end, float scale, float softcap, float *scores) {
  // Positions page by page: [p, stop) lie in page p / page_size.
  for (int p = start; p <= end;) {
    int page = p / page_size, stop = (page + 1) * page_size < end + 1 ? (page + 1) * page_size : end + 1;
    const float *k = pages[page] + ((size_t)kv_head * page_size + p % page_size) * head_dim;
    scores_of(scores + (p - start), q, k, stop - p, head_dim, scale);
    p = stop;
  }
  int count = end - start + 1;
  float best = -3.0e38f;
  for (int i = 0; i < count; i++) {
    if (softcap > 0.0f) scores[i] = softcap * tanhf_(scores[i] / softcap);
    best = scores[i] > best ? scores[i] : best;
  }
  int i = 0;
  v128_t vsum = wasm_f32x4_splat(0.0f), vbest = wasm_f32x4_splat(best);
  for (; i + 4 <= count; i += 4) {
    v128_t e = expf4(wasm_f32x4_sub(wasm_v128_load(scores + i), vbest));
    wasm_v128_store(scores + i, e);
    vsum = wasm_f32x4_add(vsum, e);
  }
  float sum = wasm_f32x4_extract_lane(vsum, 0) + wasm_f32x4_extract_lane(vsum, 1) +
              wasm_f32x4_extract_lane(vsum, 2) + wasm_f32x4_extract_lane(vsum, 3);
  for (; i < count; i++) {
    float e = expf_(scores[i] - best);
    scores[i] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  size_t v_offset = (size_t)kv_heads * page_size * head_dim;
  if (head_dim % 16) {
    mem_zero(out, (size_t)head_dim * sizeof(float));
    for (int p = start; p <= end; p++) {
      const float *v = pages[p / page_size] + v_offset + ((size_t)kv_head * page_size + p % page_size) * head_dim;
      axpy(out, scores[p - start] * inv, v, head_dim);
    }
    return;
  }
  // 16 output values at a time, summed in registers over the positions.
  for (int d = 0; d < head_dim; d += 16) {
    v128_t acc[4] = {wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f)};
    for (int p = start; p <= end;) {
      int page = p / page_size, stop = (page + 1) * page_size < end + 1 ? (page + 1) * page_size : end + 1;
      const float *v = pages[page] + v_offset + ((size_t)kv_head * page_size + p % page_size) * head_dim + d;
      for (; p < stop; p++, v += head_dim) {
        v128_t w = wasm_f32x4_splat(scores[p - start]);
        for (int j = 0; j < 4; j++) acc[j] = f32x4_madd(w, wasm_v128_load(v + 4 * j), acc[j]);
      }
    }
    v128_t vinv = wasm_f32x4_splat(inv);
    for (int j = 0; j < 4; j++) wasm_v128_store(out + d + 4 * j, wasm_f32x4_mul(acc[j], vinv));
  }
}

// Attention of one query head over the cached positions [start, end] of its KV head, as
// com.microsoft.GroupQueryAttention computes it: scores = scale * q.k, optional soft-cap
// cap * tanh(scores / cap), softmax, weighted sum of the values. The cache is paged:
// position p of a layer lives in page p / page_size.
#include "../engine.h"

void attend(float *out, const float *q, float *const *pages, int kv_head, int kv_heads, int page_size,
            int head_dim, int start, int end, float scale, float softcap, float *scores) {
  float best = -3.0e38f;
  for (int p = start; p <= end; p++) {
    const float *k = pages[p / page_size] + ((size_t)kv_head * page_size + p % page_size) * head_dim;
    float s = dot_f32(q, k, head_dim) * scale;
    if (softcap > 0.0f) s = softcap * tanhf_(s / softcap);
    scores[p - start] = s;
    best = s > best ? s : best;
  }
  float sum = 0.0f;
  for (int p = start; p <= end; p++) {
    float e = expf_(scores[p - start] - best);
    scores[p - start] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  mem_zero(out, (size_t)head_dim * sizeof(float));
  size_t v_offset = (size_t)kv_heads * page_size * head_dim;
  for (int p = start; p <= end; p++) {
    const float *v = pages[p / page_size] + v_offset + ((size_t)kv_head * page_size + p % page_size) * head_dim;
    axpy_f32(out, scores[p - start] * inv, v, head_dim);
  }
}

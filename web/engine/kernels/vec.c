// Small vector kernels of the decoder step. They touch hidden-size vectors, a few
// thousand values a token, next to the matmuls' hundreds of thousands of weights.
#include "../engine.h"
#include <wasm_simd128.h>

// RMSNorm (ONNX SimplifiedLayerNormalization): out = x / sqrt(mean(x^2) + eps) * w.
void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
  float ss = 0.0f;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  float inv = 1.0f / sqrtf_(ss / (float)n + eps);
  for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

// Rotary embedding, non-interleaved (the first rot/2 dims of a head pair with the next
// rot/2; dims past rot unchanged), as com.microsoft.RotaryEmbedding with interleaved=0.
// cos/sin: the table rows of this token's position, rot/2 values each.
void rope(float *x, int heads, int head_dim, int rot, const float *cos, const float *sin) {
  int half = rot / 2;
  for (int h = 0; h < heads; h++) {
    float *v = x + h * head_dim;
    for (int i = 0; i < half; i++) {
      float x1 = v[i], x2 = v[i + half];
      v[i] = x1 * cos[i] - x2 * sin[i];
      v[i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

// gate <- silu(gate) * up, silu(x) = x * sigmoid(x).
void silu_mul(float *gate, const float *up, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t g = wasm_v128_load(gate + i);
    v128_t sig = wasm_f32x4_add(wasm_f32x4_splat(1.0f), expf4(wasm_f32x4_neg(g)));
    wasm_v128_store(gate + i, wasm_f32x4_mul(wasm_f32x4_div(g, sig), wasm_v128_load(up + i)));
  }
  for (; i < n; i++) {
    float g = gate[i];
    gate[i] = g / (1.0f + expf_(-g)) * up[i];
  }
}

// gate <- gelu(gate) * up with the tanh approximation (com.microsoft.FastGelu):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void gelu_tanh_mul(float *gate, const float *up, int n) {
  for (int i = 0; i < n; i++) {
    float g = gate[i];
    float t = tanhf_(0.7978845608028654f * (g + 0.044715f * g * g * g));
    gate[i] = 0.5f * g * (1.0f + t) * up[i];
  }
}

void add_f32(float *y, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += x[i];
}

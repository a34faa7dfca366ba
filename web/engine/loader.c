// The loader's side of the engine: JS (cpu_engine.js) allocates the weight region, streams
// model.onnx.data into it, then names every tensor's address and the hyper-parameters
// through these calls, reading pocketlm.json. Nothing is copied: the model's pointers point
// into the region.
#include "model.h"

enum { C_VOCAB, C_HIDDEN, C_FFN, C_LAYERS, C_HEADS, C_KV_HEADS, C_HEAD_DIM, C_ROT_DIM, C_CONTEXT,
       C_SLIDING_WINDOW, C_GELU, C_SANDWICH, C_ACT_BITS };
enum { F_EPS, F_Q_SCALE, F_ATTN_SOFTCAP, F_FINAL_SOFTCAP, F_EMBED_SCALE };
enum { V_ATTN_NORM, V_FFN_NORM, V_POST_ATTN_NORM, V_POST_FFN_NORM, V_Q_NORM, V_K_NORM, V_FINAL_NORM,
       V_COS, V_SIN, V_COS_LOCAL, V_SIN_LOCAL };
enum { L_Q, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN, L_HEAD };

// A zeroed, 64-byte aligned region of `bytes` (plus slack the SIMD kernels may read past a
// tensor's end): the weight region, stacks, buffers.
EXPORT(engine_alloc) void *engine_alloc(int bytes) { return mem_alloc((size_t)(unsigned)bytes + 256); }

EXPORT(engine_config_int) int engine_config_int(int key, int value) {
  Config *c = &config;
  int *fields[] = {&c->vocab, &c->hidden, &c->ffn, &c->layers, &c->heads, &c->kv_heads, &c->head_dim,
                   &c->rot_dim, &c->context, &c->sliding_window, &c->gelu, &c->sandwich, &c->act_bits};
  if (key < 0 || key >= (int)(sizeof fields / sizeof *fields)) return -1;
  if (key == C_LAYERS && value > MAX_LAYERS) return -1;
  if (key == C_ACT_BITS && value != 8 && value != 16) return -1;
  *fields[key] = value;
  return 0;
}

EXPORT(engine_config_float) int engine_config_float(int key, float value) {
  Config *c = &config;
  float *fields[] = {&c->eps, &c->q_scale, &c->attn_softcap, &c->final_softcap, &c->embed_scale};
  if (key < 0 || key >= (int)(sizeof fields / sizeof *fields)) return -1;
  *fields[key] = value;
  return 0;
}

EXPORT(engine_set_sliding) void engine_set_sliding(int layer, int sliding) { config.sliding[layer] = (uint8_t)sliding; }

EXPORT(engine_set_vector) int engine_set_vector(int kind, int layer, const float *p) {
  if (layer < 0 || layer >= MAX_LAYERS) return -1;
  Layer *L = &weights.layers[layer];
  switch (kind) {
    case V_ATTN_NORM: L->attn_norm = p; break;
    case V_FFN_NORM: L->ffn_norm = p; break;
    case V_POST_ATTN_NORM: L->post_attn_norm = p; break;
    case V_POST_FFN_NORM: L->post_ffn_norm = p; break;
    case V_Q_NORM: L->q_norm = p; break;
    case V_K_NORM: L->k_norm = p; break;
    case V_FINAL_NORM: weights.final_norm = p; break;
    case V_COS: weights.cos[0] = p; break;
    case V_SIN: weights.sin[0] = p; break;
    case V_COS_LOCAL: weights.cos[1] = p; break;
    case V_SIN_LOCAL: weights.sin[1] = p; break;
    default: return -1;
  }
  return 0;
}

// f32: SCALES_F32 / MINS_F32 flags, the tables given as float32 instead of float16.
static int fill_linear(QLinear *w, int bits, int bs, int n, int k, const uint8_t *q, const void *scales,
                       const uint8_t *zp, const void *mins, const float *bias, int f32) {
  if ((bits != 4 && bits != 8) || bs < 16 || bs & (bs - 1) || k % bs || (bits == 8 && zp)) return -1;
  if (f32 & ~(SCALES_F32 | MINS_F32)) return -1;
  *w = (QLinear){.bits = bits, .bs = bs, .n = n, .k = k, .kb = k / bs, .q = q, .zp = zp, .zp_all = 8, .bias = bias};
  if (f32 & SCALES_F32) w->scales32 = scales;
  else w->scales = scales;
  if (f32 & MINS_F32) w->mins32 = mins;
  else w->mins = mins;
  // Zero points that are all 0 (GGUF Q4_1, K-quants with minima: codes and block minima)
  // are dropped: the kernels then skip the zero-point term.
  if (zp) {
    size_t bytes = (size_t)n * ((k / bs + 1) / 2), i = 0;
    while (i < bytes && !zp[i]) i++;
    if (i == bytes) w->zp = 0, w->zp_all = 0;
  }
  return 0;
}

EXPORT(engine_set_linear) int engine_set_linear(int kind, int layer, int bits, int bs, int n, int k,
                                                const uint8_t *q, const void *scales, const uint8_t *zp,
                                                const void *mins, const float *bias, int f32) {
  if (layer < 0 || layer >= MAX_LAYERS) return -1;
  Layer *L = &weights.layers[layer];
  QLinear *targets[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &weights.head};
  if (kind < 0 || kind > L_HEAD) return -1;
  return fill_linear(targets[kind], bits, bs, n, k, q, scales, zp, mins, bias, f32);
}

// zp: one a byte, or NULL: 0 for 4-bit blocks with minima (w = d * q + m: GGUF Q4_1,
// Q2_K, Q4_K, whose zero points the export does not store), else 2^(bits-1) (8-bit Q5_K
// blocks with minima too: w = d * (q - 128) + m).
EXPORT(engine_set_embedding) int engine_set_embedding(int bits, int bs, const uint8_t *q, const void *scales,
                                                      const uint8_t *zp, const void *mins, int f32) {
  if ((bits != 4 && bits != 8) || bs < 2 || (f32 & ~(SCALES_F32 | MINS_F32))) return -1;
  weights.embed = (Embedding){.bits = bits, .bs = bs, .q = q, .zp = zp, .zp_all = bits == 4 && mins ? 0 : 1 << (bits - 1)};
  if (f32 & SCALES_F32) weights.embed.scales32 = scales;
  else weights.embed.scales = scales;
  if (f32 & MINS_F32) weights.embed.mins32 = mins;
  else weights.embed.mins = mins;
  return 0;
}

EXPORT(engine_init) int engine_init(void) {
  Config *c = &config;
  if (c->heads % c->kv_heads || c->rot_dim > c->head_dim || c->rot_dim % 2) return -1;
  if (!c->act_bits) c->act_bits = 8;
  if (!weights.cos[1]) weights.cos[1] = weights.cos[0], weights.sin[1] = weights.sin[0];
  return model_init();
}

// ---- running ---------------------------------------------------------------------------

static int32_t *io;
static int io_capacity;

// Room for n token ids followed by n position ids (int32), reused between calls.
EXPORT(engine_io) int32_t *engine_io(int n) {
  if (n > io_capacity) {
    io_capacity = n < 256 ? 256 : n;
    io = mem_alloc(sizeof(int32_t) * 2 * (size_t)io_capacity);
  }
  return io;
}

// n tokens (ids and positions in engine_io) after `past` cached positions; returns the
// logits of the last token ([vocab] float32).
EXPORT(engine_forward) float *engine_forward(int n, int past) {
  forward(io, io + n, n, past, 0);
  return state.logits;
}

// As engine_forward, with the logits of every token written to out [n][vocab] (evaluation).
EXPORT(engine_forward_all) void engine_forward_all(int n, int past, float *out) {
  forward(io, io + n, n, past, out);
}

// 1 in the relaxed-SIMD build, 0 in the plain SIMD128 one.
EXPORT(engine_relaxed_simd) int engine_relaxed_simd(void) {
#ifdef __wasm_relaxed_simd__
  return 1;
#else
  return 0;
#endif
}

// Which prefill GEMM runs chunks in the int16 mode: 1 over int16 activation blocks
// (qgemm_i16), 0 over float32 activations (qgemm_f32). For the benchmark's side-by-side
// figures; the default is PREFILL_INT16.
EXPORT(engine_set_prefill_int16) void engine_set_prefill_int16(int on) { state.prefill_int16 = on != 0; }

EXPORT(engine_activation_bits) int engine_activation_bits(void) { return config.act_bits; }

EXPORT(engine_cached) int engine_cached(void) { return state.cached; }

// ---- kernels, for tests and the benchmark ----------------------------------------------

// y [m][n] = x [m][k] @ W.T through the SIMD kernels (ref = 0) or the scalar references
// (ref = 1), activations quantized to act_bits (8: by the matching quantizer; 32: float
// activations through the prefill GEMM, qgemm_f32); `reps`
// repeats for timing.
EXPORT(engine_test_matmul) int engine_test_matmul(int ref, int act_bits, int reps, int bits, int bs, int n, int k,
                                                  const uint8_t *q, const void *scales, const uint8_t *zp,
                                                  const void *mins, const float *bias, const float *x, int m,
                                                  float *y, void *scratch, int f32) {
  QLinear w;
  int gemm16 = f32 & TEST_GEMM16;
  if (fill_linear(&w, bits, bs, n, k, q, scales, zp, mins, bias, f32 & ~TEST_GEMM16)) return -1;
  if (act_bits == 32) {  // float activations: the prefill GEMM; scratch is its tile
    for (int r = 0; r < reps; r++) (ref ? qgemm_f32_ref : qgemm_f32)(&w, x, m, y, n, 0, n, scratch);
    return 0;
  }
  int kbpad = (k / bs + 3) & ~3;
  uint8_t *p = scratch;
  QAct a;
  a.q = (int8_t *)p, p += (size_t)m * kbpad * bs;
  a.q16 = (int16_t *)p, p += (size_t)m * kbpad * bs * 2;
  a.qlo = (int8_t *)p, p += (size_t)m * kbpad * bs;
  a.scale = (float *)p, p += sizeof(float) * m * kbpad;
  a.isum = (int32_t *)p, p += sizeof(int32_t) * m * kbpad;
  a.fsum = (float *)p, p += sizeof(float) * m * kbpad;
  void *tile = (void *)(((uintptr_t)p + 15) & ~(uintptr_t)15);
  if (gemm16 && (act_bits != 16 || !qgemm_i16_supported(&w))) return -1;
  int nibbles = act_order(bits, bs, act_bits);
  for (int r = 0; r < reps; r++) {
    if (act_bits == 16) (ref ? quantize_act16_ref : quantize_act16)(&a, x, m, k, bs, nibbles);
    else if (ref) quantize_act_ref(&a, x, m, k, bs, nibbles);
    else quantize_act(&a, x, m, k, bs, nibbles);
    if (ref) qmatmul_ref(&w, &a, y, n, 0, n);
    else if (gemm16) qgemm_i16(&w, &a, y, n, 0, n, tile);
    else qmatmul(&w, &a, y, n, 0, n);
  }
  return 0;
}

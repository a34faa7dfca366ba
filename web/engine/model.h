// The model: Config (hyper-parameters), Weights (pointers into the weight region),
// RunState (scratch and the KV cache). Filled by loader.c, run by model.c.
#pragma once
#include "engine.h"

#define MAX_LAYERS 128
#define CHUNK 128         // most tokens a forward pass over the weights (prefill chunk)
#define KV_PAGE 64        // positions a KV cache page
#define GEMM_MIN_TOKENS 4 // chunks of at least this many tokens run the float GEMM (int16 mode)
#define MAX_THREADS 16
// The prefill GEMM of the int16 mode, by measurement (docs/cpu-engine.md): over int16
// blocks in both builds (a little faster than fused multiply-adds over float32 in the relaxed
// build, clearly faster than the plain build's separate multiply and add).
#ifndef PREFILL_INT16
#define PREFILL_INT16 1
#endif

typedef struct {
  int vocab, hidden, ffn, layers, heads, kv_heads, head_dim, rot_dim, context;
  float eps;             // RMSNorm epsilon
  float q_scale;         // 1/sqrt(query_pre_attn_scalar or head_dim)
  float attn_softcap;    // 0: none; scores <- cap * tanh(scores / cap)
  float final_softcap;   // 0: none; logits <- cap * tanh(logits / cap)
  float embed_scale;     // 1, or sqrt(hidden) (gemma3)
  int sliding_window;    // local_window_size of GroupQueryAttention: 0 none
  uint8_t sliding[MAX_LAYERS];
  int gelu;              // 1: tanh-GELU gated MLP (gemma3); 0: SiLU
  int sandwich;          // gemma3: norms after attention and after the MLP too
  int act_bits;          // activations quantized to int8 (8) or int16 (16) per block
} Config;

typedef struct {
  const float *attn_norm, *ffn_norm, *post_attn_norm, *post_ffn_norm, *q_norm, *k_norm;
  QLinear q, k, v, o, gate, up, down;
} Layer;

typedef struct {
  int bits, bs;
  const uint8_t *q;          // [vocab][hidden / bs][bs * bits / 8]
  const uint16_t *scales;    // float16 [vocab][hidden / bs], or NULL when scales32 is set
  const float *scales32;     // float32 [vocab][hidden / bs], or NULL
  const uint8_t *zp;         // one a byte [vocab][hidden / bs], or NULL (zp_all)
  int zp_all;                // the zero point when zp is NULL: 2^(bits-1), or 0 (4-bit with minima)
  const uint16_t *mins;      // float16 [hidden / bs][vocab] (GGUF Q4_1, K-quants), or NULL
  const float *mins32;       // float32 [hidden / bs][vocab], or NULL
} Embedding;

typedef struct {
  Layer layers[MAX_LAYERS];
  Embedding embed;
  QLinear head;                          // tied: the embedding's blocks
  const float *final_norm;
  const float *cos[2], *sin[2];          // [0] global, [1] sliding layers: [context][rot/2]
} Weights;

typedef struct {
  float *x, *xb, *q, *k, *v, *att, *gate, *up, *logits;  // [CHUNK][...] scratch
  float *scores;                 // [threads][context] attention weights
  QAct act[2];                   // quantized inputs of the current linears
  float *tiles;                  // [threads][tile_floats] unpacked weight rows (prefill GEMMs)
  int tile_floats;               // floats a thread's tile
  int prefill_int16;             // 1: prefill chunks run qgemm_i16 (int16 blocks), 0: qgemm_f32
  float **pages;                 // [layers][context / KV_PAGE] -> [2][kv_heads][KV_PAGE][head_dim]
  int pages_allocated;           // pages allocated a layer
  int cached;                    // positions in the cache
} RunState;

extern Config config;
extern Weights weights;
extern RunState state;

int model_init(void);
void forward(const int32_t *ids, const int32_t *positions, int n, int past, float *all_logits);

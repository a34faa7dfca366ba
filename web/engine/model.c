// The decoder step. forward() reads top to bottom: embed -> per layer (RMSNorm, q/k/v,
// [q/k norm], RoPE, cache, attention, output projection, [post norm], residual, RMSNorm,
// gated MLP, [post norm], residual) -> final norm -> LM head -> [soft-cap].
// It mirrors model_export/graph.py, which builds the ONNX graph of the same step.
#include "model.h"

Config config;
Weights weights;
RunState state;

static int max3(int a, int b, int c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

int model_init(void) {
  Config *c = &config;
  RunState *s = &state;
  int qdim = c->heads * c->head_dim, kvdim = c->kv_heads * c->head_dim;
  int widest = max3(c->hidden, c->ffn, qdim);
  s->x = mem_alloc(sizeof(float) * CHUNK * c->hidden);
  s->xb = mem_alloc(sizeof(float) * CHUNK * widest);
  s->q = mem_alloc(sizeof(float) * CHUNK * qdim);
  s->k = mem_alloc(sizeof(float) * CHUNK * kvdim);
  s->v = mem_alloc(sizeof(float) * CHUNK * kvdim);
  s->att = mem_alloc(sizeof(float) * CHUNK * qdim);
  s->gate = mem_alloc(sizeof(float) * CHUNK * c->ffn);
  s->up = mem_alloc(sizeof(float) * CHUNK * c->ffn);
  s->logits = mem_alloc(sizeof(float) * c->vocab);
  s->scores = mem_alloc(sizeof(float) * 16 * (c->context + 4));
  int kpad = ((widest / 16 + 3) & ~3) * 16 + 128;  // room for the smallest block size, padded
  for (int i = 0; i < 2; i++) {
    s->act[i].q = mem_alloc((size_t)CHUNK * kpad);
    s->act[i].q16 = mem_alloc(sizeof(int16_t) * CHUNK * kpad);
    s->act[i].qlo = mem_alloc((size_t)CHUNK * kpad);
    s->act[i].scale = mem_alloc(sizeof(float) * CHUNK * (kpad / 16));
    s->act[i].isum = mem_alloc(sizeof(int32_t) * CHUNK * (kpad / 16));
    s->act[i].fsum = mem_alloc(sizeof(float) * CHUNK * (kpad / 16));
  }
  size_t tile16 = (qgemm_i16_tile_bytes(widest, 32) + sizeof(float) - 1) / sizeof(float);
  s->tile_floats = GEMM_TILE_ROWS * widest > (int)tile16 ? GEMM_TILE_ROWS * widest : (int)tile16;
  s->tile_floats = (s->tile_floats + 15) & ~15;  // each thread's tile 64-byte aligned
  s->tiles = mem_alloc(sizeof(float) * MAX_THREADS * s->tile_floats);
  int pages = (c->context + KV_PAGE - 1) / KV_PAGE;
  s->pages = mem_alloc(sizeof(float *) * c->layers * pages);
  s->pages_allocated = 0;
  s->cached = 0;
  s->prefill_int16 = PREFILL_INT16;
  return 0;
}

// The cache grows with the sequence: a page of every layer when a position needs it.
static void ensure_cache(int positions) {
  Config *c = &config;
  int per_layer = (c->context + KV_PAGE - 1) / KV_PAGE;
  int need = (positions + KV_PAGE - 1) / KV_PAGE;
  size_t page_floats = (size_t)2 * c->kv_heads * KV_PAGE * c->head_dim;
  while (state.pages_allocated < need) {
    for (int l = 0; l < c->layers; l++)
      state.pages[l * per_layer + state.pages_allocated] = mem_alloc(sizeof(float) * page_floats);
    state.pages_allocated++;
  }
}

static float *const *layer_pages(int l) {
  return state.pages + l * ((config.context + KV_PAGE - 1) / KV_PAGE);
}

// ---- jobs split over threads -------------------------------------------------------------

// Up to three linears over the same input (q/k/v, gate/up): the rows of all of them,
// side by side, split evenly over the threads.
typedef struct {
  int count;
  const QLinear *w[3];
  const QAct *a[3];   // quantized input, or
  const float *x;     // the float input [m][k] (prefill GEMM over float activations)
  int gemm16;         // a[] holds int16 blocks for the prefill GEMM over them (qgemm_i16)
  int gated;          // gate and up of a gated MLP: y[0] <- act(y[0]) * y[1] in the job
  int m;
  float *y[3];
} MatJob;

// Rows [n0, n1) of linear i of the job, by thread tid.
static void job_rows(const MatJob *job, int i, int n0, int n1, int tid) {
  const QLinear *w = job->w[i];
  if (n0 >= n1) return;
  if (job->x) qgemm_f32(w, job->x, job->m, job->y[i], w->n, n0, n1, state.tiles + (size_t)tid * state.tile_floats);
  else if (job->gemm16) qgemm_i16(w, job->a[i], job->y[i], w->n, n0, n1, state.tiles + (size_t)tid * state.tile_floats);
  else qmatmul(w, job->a[i], job->y[i], w->n, n0, n1);
}

// Rows a thread's share is a multiple of: the prefill GEMM over int16 blocks takes 8 rows a
// tile (a share of 4 mod 8 would end in a half-empty tile), the other kernels 4.
static int job_tile(const MatJob *job) { return job->gemm16 ? GEMM16_ROWS : 4; }

// Gate and up: each thread takes the same rows of both (tile multiples) and applies the
// gated activation to its columns of every token, so no serial pass follows the job.
static void gated_job(MatJob *job, int chunk, int chunks, int tid) {
  int n = job->w[0]->n, tile = job_tile(job);
  int share = ((n + chunks - 1) / chunks + tile - 1) / tile * tile;
  int n0 = chunk * share, n1 = n0 + share < n ? n0 + share : n;
  if (n0 >= n1) return;
  job_rows(job, 0, n0, n1, tid);
  job_rows(job, 1, n0, n1, tid);
  for (int t = 0; t < job->m; t++) {
    float *gate = job->y[0] + (size_t)t * n + n0;
    const float *up = job->y[1] + (size_t)t * n + n0;
    if (config.gelu) gelu_tanh_mul(gate, up, n1 - n0);
    else silu_mul(gate, up, n1 - n0);
  }
}

// The rows of the job's linears side by side, cut into equal chunks (tile multiples).
static void matmul_job(void *arg, int chunk, int chunks, int tid) {
  MatJob *job = arg;
  if (job->gated) {
    gated_job(job, chunk, chunks, tid);
    return;
  }
  int total = 0;
  for (int i = 0; i < job->count; i++) total += job->w[i]->n;
  int share = (total + chunks - 1) / chunks, tile = job_tile(job);
  share = (share + tile - 1) / tile * tile;
  int lo = chunk * share, hi = lo + share < total ? lo + share : total;
  int base = 0;
  for (int i = 0; i < job->count; i++) {
    const QLinear *w = job->w[i];
    int n0 = lo - base, n1 = hi - base;
    n0 = n0 < 0 ? 0 : n0;
    n1 = n1 > w->n ? w->n : n1;
    job_rows(job, i, n0, n1, tid);
    base += w->n;
  }
}

typedef struct {
  QAct *a;
  const float *x;
} ActJob;

// Tokens of a chunk quantized to int16 blocks, a share of them a thread.
static void act16_job(void *arg, int chunk, int chunks, int tid) {
  const ActJob *job = arg;
  int m = job->a->m, share = (m + chunks - 1) / chunks;
  int t0 = chunk * share, t1 = t0 + share < m ? t0 + share : m;
  if (t0 < t1) quantize_act16_tokens(job->a, job->x, t0, t1);
}

// Quantizes x [m][k] for w (one QAct a block format: slot 0, or 1 when a second format is
// needed for the same input). gemm16: for the prefill GEMM, which reads only the int16
// codes, so the chunk's tokens are quantized by all threads and without the int8 halves.
static const QAct *quantized_for(const QLinear *w, const float *x, int m, int slot_hint, int gemm16) {
  QAct *a = &state.act[slot_hint];
  int nibbles = act_order(w->bits, w->bs, config.act_bits);
  if (config.act_bits == 16 && gemm16) {  // qgemm_i16_supported: bs a multiple of 32
    quantize_act16_layout(a, m, w->k, w->bs, nibbles, 0);
    ActJob job = {a, x};
    run_job(act16_job, &job);
  } else if (config.act_bits == 16) quantize_act16(a, x, m, w->k, w->bs, nibbles);
  else quantize_act(a, x, m, w->k, w->bs, nibbles);
  return a;
}

static int same_format(const QLinear *a, const QLinear *b) {
  return a->bs == b->bs && act_order(a->bits, a->bs, config.act_bits) == act_order(b->bits, b->bs, config.act_bits);
}

// y_i = x @ W_i.T for up to three linears sharing their input x [m][k]. With int16
// activations (the float-like mode) a chunk of GEMM_MIN_TOKENS or more runs a prefill
// GEMM: over int16 blocks (qgemm_i16) where state.prefill_int16 says so and the block
// size allows, else over x kept in float32 (qgemm_f32).
// gated (count 2, gate then up, the same row count): y0 <- act(y0) * y1 in the same job.
static void linears_ex(const float *x, int m, int count, const QLinear *w0, float *y0, const QLinear *w1,
                       float *y1, const QLinear *w2, float *y2, int gated) {
  MatJob job = {count, {w0, w1, w2}, {0, 0, 0}, 0, 0, gated, m, {y0, y1, y2}};
  if (config.act_bits == 16 && m >= GEMM_MIN_TOKENS) {
    int int16 = state.prefill_int16;
    for (int i = 0; i < count; i++) int16 = int16 && qgemm_i16_supported(job.w[i]);
    if (!int16) {
      job.x = x;
      run_job(matmul_job, &job);
      return;
    }
    job.gemm16 = 1;
  }
  job.a[0] = quantized_for(w0, x, m, 0, job.gemm16);
  for (int i = 1; i < count; i++) {
    if (same_format(job.w[i], w0)) job.a[i] = job.a[0];
    else {
      for (int j = 1; j < i; j++) if (same_format(job.w[i], job.w[j])) job.a[i] = job.a[j];
      if (!job.a[i]) job.a[i] = quantized_for(job.w[i], x, m, 1, job.gemm16);
    }
  }
  run_job(matmul_job, &job);
}

static void linears(const float *x, int m, int count, const QLinear *w0, float *y0,
                    const QLinear *w1, float *y1, const QLinear *w2, float *y2) {
  linears_ex(x, m, count, w0, y0, w1, y1, w2, y2, 0);
}

typedef struct {
  int first, m, past, layer;  // the queries of tokens [first, m) of the chunk
} AttnJob;

static void attention_job(void *arg, int chunk, int chunks, int tid) {
  AttnJob *job = arg;
  Config *c = &config;
  int qdim = c->heads * c->head_dim, group = c->heads / c->kv_heads;
  int window = c->sliding[job->layer] ? c->sliding_window : 0;
  float *scores = state.scores + (size_t)tid * (c->context + 4);
  int items = (job->m - job->first) * c->heads;
  for (int i = chunk; i < items; i += chunks) {
    int t = job->first + i / c->heads, h = i % c->heads;
    int end = job->past + t;  // this token's cache position
    // A window of W: each query sees itself and the W - 1 positions before it.
    int start = window > 0 && end - window + 1 > 0 ? end - window + 1 : 0;
    attend(state.att + (size_t)t * qdim + h * c->head_dim, state.q + (size_t)t * qdim + h * c->head_dim,
           layer_pages(job->layer), h / group, c->kv_heads, KV_PAGE, c->head_dim, start, end, c->q_scale,
           c->attn_softcap, scores);
  }
}

// ---- the step ----------------------------------------------------------------------------

static void embed(float *out, int id) {
  const Embedding *e = &weights.embed;
  int kb = config.hidden / e->bs;
  size_t block_bytes = (size_t)e->bs * e->bits / 8;
  for (int b = 0; b < kb; b++) {
    const uint8_t *codes = e->q + ((size_t)id * kb + b) * block_bytes;
    size_t at = (size_t)id * kb + b, min_at = (size_t)b * config.vocab + id;
    float scale = e->scales32 ? e->scales32[at] : f16_to_f32(e->scales[at]);
    float min = e->mins32 ? e->mins32[min_at] : e->mins ? f16_to_f32(e->mins[min_at]) : 0.0f;
    int zp = e->zp ? e->zp[at] : e->zp_all;
    for (int i = 0; i < e->bs; i++) {
      int code = e->bits == 8 ? codes[i] : (i & 1) ? codes[i / 2] >> 4 : codes[i / 2] & 15;
      out[b * e->bs + i] = ((float)(code - zp) * scale + min) * config.embed_scale;
    }
  }
}

// One chunk of at most CHUNK tokens at cache positions [past, past + m).
// Logits: of the last token into state.logits (want_logits), or of every token into
// all_logits [m][vocab] when it is given.
static void forward_chunk(const int32_t *ids, const int32_t *positions, int m, int past, int want_logits,
                          float *all_logits) {
  Config *c = &config;
  RunState *s = &state;
  int H = c->hidden, hd = c->head_dim, qdim = c->heads * hd, kvdim = c->kv_heads * hd;
  ensure_cache(past + m);

  for (int t = 0; t < m; t++) embed(s->x + t * H, ids[t]);

  for (int l = 0; l < c->layers; l++) {
    const Layer *L = &weights.layers[l];
    int local = c->sliding[l];
    float *const *pages = layer_pages(l);
    // Tokens before `first` need only their keys and values from this layer on: in the
    // last layer of a prompt chunk, every token but the one whose logits are wanted (all
    // of them when none are) has its K and V cached and nothing more.
    int first = l == c->layers - 1 && !all_logits && m > 1 ? (want_logits ? m - 1 : m) : 0;

    // attention
    for (int t = 0; t < m; t++) rmsnorm(s->xb + t * H, s->x + t * H, L->attn_norm, H, c->eps);
    if (first == 0) linears(s->xb, m, 3, &L->q, s->q, &L->k, s->k, &L->v, s->v);
    else {
      linears(s->xb, m, 2, &L->k, s->k, &L->v, s->v, 0, 0);
      if (first < m) linears(s->xb + first * H, m - first, 1, &L->q, s->q + first * qdim, 0, 0, 0, 0);
    }
    for (int t = 0; t < m; t++) {
      float *q = s->q + t * qdim, *k = s->k + t * kvdim, *v = s->v + t * kvdim;
      int query = t >= first;
      if (L->q_norm) {
        if (query)
          for (int h = 0; h < c->heads; h++) rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, c->eps);
        for (int h = 0; h < c->kv_heads; h++) rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, c->eps);
      }
      size_t row = (size_t)positions[t] * (c->rot_dim / 2);
      if (query) rope(q, c->heads, hd, c->rot_dim, weights.cos[local] + row, weights.sin[local] + row);
      rope(k, c->kv_heads, hd, c->rot_dim, weights.cos[local] + row, weights.sin[local] + row);
      int p = past + t;
      float *page = pages[p / KV_PAGE];
      for (int h = 0; h < c->kv_heads; h++) {
        mem_copy(page + ((size_t)h * KV_PAGE + p % KV_PAGE) * hd, k + h * hd, sizeof(float) * hd);
        mem_copy(page + ((size_t)(c->kv_heads + h) * KV_PAGE + p % KV_PAGE) * hd, v + h * hd, sizeof(float) * hd);
      }
    }
    if (first == m) break;  // nothing of this layer is read but its cache
    int rows = m - first;
    AttnJob aj = {first, m, past, l};
    run_job(attention_job, &aj);
    linears(s->att + first * qdim, rows, 1, &L->o, s->xb + first * H, 0, 0, 0, 0);
    for (int t = first; t < m; t++) {
      if (c->sandwich) rmsnorm(s->xb + t * H, s->xb + t * H, L->post_attn_norm, H, c->eps);
      add_f32(s->x + t * H, s->xb + t * H, H);
    }

    // MLP
    for (int t = first; t < m; t++) rmsnorm(s->xb + t * H, s->x + t * H, L->ffn_norm, H, c->eps);
    linears_ex(s->xb + first * H, rows, 2, &L->gate, s->gate + first * c->ffn, &L->up, s->up + first * c->ffn, 0, 0,
               1);  // gate <- act(gate) * up
    linears(s->gate + first * c->ffn, rows, 1, &L->down, s->xb + first * H, 0, 0, 0, 0);
    for (int t = first; t < m; t++) {
      if (c->sandwich) rmsnorm(s->xb + t * H, s->xb + t * H, L->post_ffn_norm, H, c->eps);
      add_f32(s->x + t * H, s->xb + t * H, H);
    }
  }

  if (all_logits) {
    for (int t = 0; t < m; t++) rmsnorm(s->xb + t * H, s->x + t * H, weights.final_norm, H, c->eps);
    linears(s->xb, m, 1, &weights.head, all_logits, 0, 0, 0, 0);
    if (c->final_softcap > 0.0f)
      for (size_t i = 0; i < (size_t)m * c->vocab; i++) all_logits[i] = c->final_softcap * tanhf_(all_logits[i] / c->final_softcap);
    return;
  }
  if (!want_logits) return;
  float *last = s->xb;
  rmsnorm(last, s->x + (m - 1) * H, weights.final_norm, H, c->eps);
  linears(last, 1, 1, &weights.head, s->logits, 0, 0, 0, 0);
  if (c->final_softcap > 0.0f)
    for (int i = 0; i < c->vocab; i++) s->logits[i] = c->final_softcap * tanhf_(s->logits[i] / c->final_softcap);
}

// n tokens at cache positions [past, past + n); the logits of the last one in state.logits.
// With all_logits ([n][vocab]) the logits of every token go there instead (evaluation).
void forward(const int32_t *ids, const int32_t *positions, int n, int past, float *all_logits) {
  // Chunks of equal size (195 tokens: 98 and 97, not 128 and 67).
  int chunks = (n + CHUNK - 1) / CHUNK, size = (n + chunks - 1) / chunks;
  for (int done = 0; done < n; done += size) {
    int m = n - done < size ? n - done : size;
    forward_chunk(ids + done, positions + done, m, past + done, done + m == n,
                  all_logits ? all_logits + (size_t)done * config.vocab : 0);
  }
  state.cached = past + n;
}

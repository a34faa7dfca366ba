// Memory and math without libc. Memory: a bump allocator over the imported (shared)
// memory, growing it on demand; only the main thread allocates. Math: expf and tanhf
// (the activations and softmax need nothing else; sqrt is a WebAssembly instruction).
#include "engine.h"

extern unsigned char __heap_base;
static uintptr_t heap_top;

void *mem_alloc(size_t bytes) {
  if (!heap_top) heap_top = (uintptr_t)&__heap_base;
  uintptr_t start = (heap_top + 63) & ~(uintptr_t)63;
  uintptr_t end = start + bytes;
  if (end < start) __builtin_trap();
  size_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have) {
    size_t pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
  }
  heap_top = end;
  mem_zero((void *)start, bytes);  // grown memory is zero, reused scratch is not
  return (void *)start;
}

// Every byte the engine handed out (weights, scratch, KV cache): info.bytes in JS.
EXPORT(engine_heap_top) uintptr_t engine_heap_top(void) { return heap_top; }

void mem_zero(void *p, size_t bytes) { __builtin_memset(p, 0, bytes); }
void mem_copy(void *dst, const void *src, size_t bytes) { __builtin_memcpy(dst, src, bytes); }

float expf_(float x) {
  // exp(x) = 2^n * exp(r), x = n ln2 + r, |r| <= ln2/2; Taylor to r^7 (error < 2e-7 relative).
  if (x > 88.0f) return __builtin_inff();
  if (x < -103.0f) return 0.0f;
  float n = __builtin_nearbyintf(x * 1.44269504088896341f);
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
  int e = (int)n;
  // 2^e in two steps so that e down to -149 stays representable.
  int e1 = e / 2, e2 = e - e1;
  union { uint32_t u; float f; } s1 = {(uint32_t)(e1 + 127) << 23}, s2 = {(uint32_t)(e2 + 127) << 23};
  return p * s1.f * s2.f;
}

float tanhf_(float x) {
  float ax = __builtin_fabsf(x);
  if (ax > 9.0f) return x > 0 ? 1.0f : -1.0f;
  if (ax < 0.0625f) {  // series: avoids the cancellation of 1 - 2/(e^2x + 1)
    float x2 = x * x;
    return x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315))));
  }
  float e = expf_(2.0f * ax);
  float t = 1.0f - 2.0f / (e + 1.0f);
  return x > 0 ? t : -t;
}

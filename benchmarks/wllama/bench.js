// wllama's side of benchmarks/browser_bench.py, a module file (the site's CSP runs no inline script).
// Files next to this page, copied by the benchmark from node_modules/@wllama/wllama and the
// model's source GGUF: nothing is fetched from another origin.
import { Wllama, LoggerWithoutDebug } from './esm/index.js';

/** @type {Wllama | null} */
let wllama = null;

/** Load the GGUF on `threads` threads (multi-thread build when cross-origin isolated). */
window.loadWllama = async (threads) => {
  const started = performance.now();
  wllama = new Wllama({ default: new URL('./esm/wasm/wllama.wasm', import.meta.url).href },
                      { logger: LoggerWithoutDebug, suppressNativeLog: true });
  await wllama.loadModelFromUrl(new URL('./model.gguf', import.meta.url).href,
                                { n_threads: threads, n_ctx: 1024, n_batch: 512, useCache: false });
  return { seconds: (performance.now() - started) / 1000, threads: wllama.getNumThreads(),
           multithread: wllama.isMultithread(), crossOriginIsolated };
};

/**
 * One greedy completion of `prompt` (no prompt cache, EOS ignored): time to the first streamed
 * token as this page sees it, and llama.cpp's own prompt and generation rates.
 */
window.completeWllama = async (prompt, maxTokens) => {
  const started = performance.now();
  let first = 0;
  let timings = null;
  await wllama.createCompletion({
    prompt, max_tokens: maxTokens, temperature: 0, top_k: 1, ignore_eos: true,
    cache_prompt: false, stream: true,
    onData: (chunk) => {
      if (!first && chunk.choices?.length) first = performance.now();
      if (chunk.timings) timings = chunk.timings;
    },
  });
  return { timeToFirstToken: (first - started) / 1000, timings };
};

window.tabMemory = async () => (await performance.measureUserAgentSpecificMemory()).bytes;
window.ready = true;

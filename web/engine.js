// pocketlm's engine for any page: a language model running in a worker, offline.
//
//   import { createEngine } from './engine.js';
//   const engine = await createEngine({ onProgress: (p) => console.log(p.loaded, p.total) });
//   const result = await engine.generate('Once upon a time', { maxNewTokens: 32 }, (text) => out.append(text));
//   console.log(result.text, result.timing.decodeTokensPerSecond, engine.backend.name);
//
// The page's URL can force a backend for tests and benchmarks, overriding the options:
// `?backend=wasm&threads=1` (the CPU engine; `&simd=plain` for its plain-SIMD build),
// `?backend=webgpu`, `?backend=ort-wasm` (onnxruntime-web's WASM build). Everything heavy
// (Pyodide, the CPU engine or onnxruntime-web, the model) lives in worker.js; this module
// only sends it messages.

import { Messenger } from './messenger.js';

/**
 * @typedef {object} EngineOptions
 * @property {string} [model] which bundled model (site.json `models[].id`; default: the first)
 * @property {string} [modelUrl] a model folder to load instead of the bundled one (same origin)
 * @property {'wasm' | 'webgpu' | 'ort-wasm'} [backend] force a backend (default: WebGPU when
 *   a one-token step runs faster there, else `wasm`, the CPU engine)
 * @property {'relaxed' | 'plain'} [simd] force the CPU engine's build (default: relaxed SIMD
 *   where the browser validates it)
 * @property {number} [threads] CPU threads (default: min(cores, 4) when cross-origin isolated)
 * @property {(progress: Progress) => void} [onProgress] loading progress, in bytes
 * @property {(backend: Backend) => void} [onBackendChange] the GPU failed and the model moved
 *   to WASM (the answer in progress goes on there)
 * @property {boolean} [urlParameters] read `backend` / `threads` from the page URL (default true)
 *
 * @typedef {object} Progress
 * @property {number} loaded bytes read so far
 * @property {number} total bytes of the whole bundle (manifest.json)
 * @property {string} message what is happening
 *
 * @typedef {object} GenerateOptions
 * @property {number} [maxNewTokens] default 256
 * @property {number} [temperature] 0 = greedy (default)
 * @property {number} [topK] keep the k most likely tokens; default 50, 0 = off
 * @property {number} [topP] nucleus mass in (0, 1]; default 1 (off)
 * @property {number} [repetitionPenalty] > 1 discourages tokens already seen; default 1 (off)
 * @property {number} [seed] seed of the draws: the same seed gives the same answer
 * @property {string[]} [stop] stop strings; the earliest match ends the answer
 * @property {boolean} [chat] apply the chat template (default: true for messages, false for text)
 * @property {number} [maxPromptTokens] refuse longer prompts (a site's cap), like the context
 * @property {AbortSignal} [signal] aborting it stops the answer, even before it has reached
 *   the worker (the answer then ends with stopReason "stopped" and no text)
 *
 * @typedef {{role: string, content: string}} ChatMessage
 *
 * @typedef {object} Timing
 * @property {number} promptTokens
 * @property {number} reusedTokens prompt tokens already in the KV cache (earlier chat turns)
 * @property {number} newTokens
 * @property {number} timeToFirstToken seconds
 * @property {number} prefillTokensPerSecond
 * @property {number} decodeTokensPerSecond
 * @property {number} pythonShare share of a decode step spent outside session.run (0..1)
 * @property {number} pythonMsPerStep
 * @property {number} ortMsPerStep
 * @property {number} promptRuns model runs that read the prompt (its chunks)
 * @property {number} promptRunSeconds seconds inside those runs (the rest of the time to first
 *   token is tokenizing, the chat template, Python and sampling)
 *
 * @typedef {object} Result
 * @property {string} text
 * @property {number[]} tokens
 * @property {string} stopReason eos, max_tokens, context, stop_string or stopped
 * @property {Timing} timing
 *
 * @typedef {import('./backends.js').BackendInfo} Backend
 */

export class Engine {
  /**
   * @param {Worker} worker
   * @param {Messenger} messenger
   * @param {{backend: Backend, model: Record<string, any>, loadSeconds: number,
   *   loadSteps: Record<string, number>}} loaded
   * @param {Int32Array | null} stopFlag shared with the worker, when cross-origin isolated:
   *   [0] the number of the answer to stop, [1] 1 when the draft being read is not wanted
   * @param {(backend: Backend) => void} [onBackendChange]
   */
  constructor(worker, messenger, loaded, stopFlag, onBackendChange) {
    this.worker = worker;
    this.messenger = messenger;
    this.stopFlag = stopFlag;
    /** The number of the latest answer asked for; a stop names the answer it stops, so a
     *  stop that comes late never stops the next one. */
    this.answers = 0;
    this.onBackendChange = onBackendChange;
    /** Which backend runs the model: name, threads, crossOriginIsolated, reason. */
    this.backend = loaded.backend;
    /** The model's name, architecture, quantization, context length. */
    this.model = loaded.model;
    this.loadSeconds = loaded.loadSeconds;
    /** When each loading step ended, in seconds from the start (ortFetched, modelFetched, ...). */
    this.loadSteps = loaded.loadSteps;
  }

  /**
   * Answer a prompt (plain text) or a conversation (messages, through the chat template).
   * Chat turns reuse the KV cache of the earlier turns.
   * @param {string | ChatMessage[]} prompt
   * @param {GenerateOptions} [options]
   * @param {(text: string) => void} [onToken] receives the text as it streams
   * @returns {Promise<Result>}
   */
  async generate(prompt, options = {}, onToken) {
    const { chat, signal, ...sampling } = options;
    const answer = ++this.answers;
    if (this.stopFlag) Atomics.store(this.stopFlag, 1, 1); // an answer is wanted: stop reading the draft
    // The worker runs beside this thread: a stop asked before the request goes out must be
    // in place before it, or the worker may read the prompt before it sees the stop.
    const abort = () => { this.stopAnswer(answer); };
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
    let raw;
    try {
      raw = await this.messenger.request('generate', { prompt, options: sampling, chat, answer }, onToken);
    } finally {
      signal?.removeEventListener('abort', abort);
    }
    const { text, tokens, stop_reason: stopReason, ...figures } = raw;
    return { text, tokens, stopReason, timing: /** @type {Timing} */ (camelKeys(figures)) };
  }

  /**
   * Feed the settled part of a prompt while it is still being typed (all but its last
   * word), so that `generate` on the finished prompt has less left to read. Call it as the
   * text changes; it does nothing while an answer runs.
   * @param {string | ChatMessage[]} prompt the prompt so far, or the chat with the draft last
   * @param {{chat?: boolean}} [options]
   * @returns {Promise<{fed: number}>} the tokens fed now
   */
  prefill(prompt, options = {}) {
    if (this.stopFlag) Atomics.store(this.stopFlag, 1, 1); // the draft read before is stale
    return this.messenger.request('prefill', { prompt, chat: options.chat });
  }

  /**
   * Stop reading a draft (the text was deleted, or the chat is being reset); what was read
   * stays in the cache. Resolves once the worker has stopped reading.
   * @returns {Promise<{cancelled: boolean}>}
   */
  cancelDraft() {
    if (this.stopFlag) Atomics.store(this.stopFlag, 1, 1);
    return this.messenger.request('cancelDraft');
  }

  /** Stop the latest answer after the token being computed (or before it starts). */
  stop() {
    return this.stopAnswer(this.answers);
  }

  /**
   * Stop answer number `answer` (see `answers`); a later answer is not touched.
   * @param {number} answer
   * @returns {Promise<{stopping: boolean}>}
   */
  stopAnswer(answer) {
    // Through shared memory the worker sees it at the next token; the message is for
    // pages without cross-origin isolation (seen within 0.1 s) and for the reply.
    if (this.stopFlag) Atomics.store(this.stopFlag, 0, answer);
    return this.messenger.request('stop', { answer });
  }

  /**
   * The worker moved the model from WebGPU to WASM (the GPU failed during generation).
   * @param {Backend} backend
   */
  moved(backend) {
    this.backend = { ...backend, ortVersion: this.backend.ortVersion };
    this.onBackendChange?.(this.backend);
  }

  /** Forget the conversation (the KV cache), stopping an answer or draft being read. */
  newChat() {
    if (this.stopFlag) {
      Atomics.store(this.stopFlag, 0, this.answers);
      Atomics.store(this.stopFlag, 1, 1);
    }
    return this.messenger.request('newChat', { answer: this.answers });
  }

  /**
   * Whether the worker still answers within `timeoutMs` (a terminated or crashed worker
   * never does). The worker answers between two steps, so an answer being written is fine.
   * @param {number} [timeoutMs]
   * @returns {Promise<boolean>}
   */
  async ping(timeoutMs = 3000) {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    try {
      return await Promise.race([this.messenger.request('ping').then(() => true, () => false), late]) === true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** End the worker and free its memory. */
  terminate() {
    this.worker.terminate();
    this.messenger.failAll(new Error('the engine was terminated'));
  }
}

/**
 * Why this browser cannot run the engine, or null when it can. The Python runtime blocks
 * on onnxruntime-web's promises through WebAssembly JavaScript Promise Integration (JSPI).
 * @returns {string | null}
 */
export function unsupportedReason() {
  if (typeof Worker === 'undefined') return 'this browser has no Web Workers';
  if (typeof WebAssembly === 'undefined' || !('Suspending' in WebAssembly)) {
    return 'this browser lacks WebAssembly JavaScript Promise Integration (JSPI); use Chrome or Edge 137 or newer';
  }
  return null;
}

/**
 * Start the worker and load everything; resolves when the engine can answer.
 * @param {EngineOptions} [options]
 * @returns {Promise<Engine>}
 */
export async function createEngine(options = {}) {
  const { onProgress, onBackendChange, urlParameters = true, ...rest } = options;
  const forced = urlParameters ? fromUrl(new URLSearchParams(self.location?.search ?? '')) : {};
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'pocketlm' });
  const messenger = new Messenger(worker, (event) => {
    if (event.type === 'progress') onProgress?.(/** @type {any} */ (event));
    else if (event.type === 'log') console.error(`pocketlm worker: ${event.message}`);
    else if (event.type === 'backend' && engine) engine.moved(/** @type {any} */ (event).backend);
  });
  /** @type {Engine | null} */
  let engine = null;
  const stopFlag = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(8)) : null;
  try {
    const loaded = await messenger.request('init', { options: { ...rest, ...forced }, stopFlag });
    engine = new Engine(worker, messenger, loaded, stopFlag, onBackendChange);
    return engine;
  } catch (error) {
    worker.terminate();
    throw error;
  }
}

/**
 * Where the model runs, for people: "WASM (CPU engine, relaxed SIMD), 2 threads".
 * @param {Backend} backend
 */
export function describeBackend(backend) {
  const threads = `${backend.threads} thread${backend.threads === 1 ? '' : 's'}`;
  if (backend.name === 'webgpu') return `WebGPU (${backend.adapter})`;
  if (backend.name === 'ort-wasm') return `WASM (onnxruntime-web), ${threads}`;
  return `WASM (CPU engine, ${backend.simd ?? 'relaxed'} SIMD), ${threads}`;
}

/**
 * `backend`, `simd` and `threads` from the page URL, when present.
 * @param {URLSearchParams} params
 * @returns {{backend?: string, simd?: string, threads?: number}}
 */
export function fromUrl(params) {
  /** @type {{backend?: string, simd?: string, threads?: number}} */
  const forced = {};
  const name = params.get('backend');
  if (name) forced.backend = name;
  const simd = params.get('simd');
  if (simd) forced.simd = simd;
  const threads = params.get('threads');
  if (threads) forced.threads = Number(threads);
  return forced;
}

/**
 * @param {Record<string, any>} figures
 * @returns {Record<string, any>}
 */
function camelKeys(figures) {
  return Object.fromEntries(Object.entries(figures).map(([key, value]) => [
    key.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase()), value,
  ]));
}

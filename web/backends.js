// Which runtime runs the model, chosen in the worker:
// - `wasm`: pocketlm's CPU engine (web/engine/): WebAssembly SIMD kernels over the model's
//   4-bit blocks, threads sharing its memory when the page is cross-origin isolated;
// - `webgpu`: onnxruntime-web's WebGPU backend (ort_backend.js), when the browser has an
//   adapter and a decode step runs faster there than on the CPU engine;
// - `ort-wasm`: onnxruntime-web's own WASM build, only when asked for (`?backend=ort-wasm`),
//   as an in-page reference.
// A WebGPU failure, at load or during an answer, moves the model to the CPU engine.

import * as ortBackend from './ort_backend.js';
import { ModelBackend } from './model_backend.js';

/** @typedef {'wasm' | 'webgpu' | 'ort-wasm'} BackendName */
/**
 * @typedef {object} BackendInfo
 * @property {BackendName} name
 * @property {number} threads CPU threads (1 unless cross-origin isolated)
 * @property {boolean} crossOriginIsolated
 * @property {string} reason why this backend: forced, step timings, or a fallback error
 * @property {string} [simd] the CPU engine's build: `relaxed` or `plain` SIMD
 * @property {string} [adapter] the WebGPU adapter, when one exists
 * @property {string} [ortVersion] onnxruntime-web's version, when it was loaded
 */
/**
 * What loading the model needs from the worker.
 * @typedef {object} Loader
 * @property {any} config the model's pocketlm.json
 * @property {{relaxed: string, plain: string, module: string}} engine URLs of the CPU engine
 * @property {{module: string, glue: string, wasm: string}} ort URLs of onnxruntime-web
 * @property {(url: string) => Promise<ReadableStream<Uint8Array>>} stream the model's weights, as
 *   they arrive (counted in the loading progress)
 * @property {(url: string) => Promise<Uint8Array>} bytes a whole file
 * @property {(name: string) => string} modelFile URL of a file of the model folder
 * @property {(message: string) => void} say loading progress message
 */

export const BACKENDS = /** @type {const} */ (['wasm', 'webgpu', 'ort-wasm']);

/** CPU threads to use: min(cores, 4) when cross-origin isolated, else 1. */
export function defaultThreads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
}

/** @returns {Promise<string | null>} the WebGPU adapter's description, or null without one */
export async function webgpuAdapter() {
  const gpu = /** @type {any} */ (navigator).gpu;
  if (!gpu) return null;
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return null;
    const info = adapter.info || {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown GPU';
    return adapter.isFallbackAdapter || info.isFallbackAdapter ? `${name} (software)` : name;
  } catch {
    return null;
  }
}

/**
 * Load the model on the chosen runtime.
 * @param {Loader} loader
 * @param {{forced?: string | null, simd?: string | null, threads: number}} options
 * @param {(info: BackendInfo) => void} onMove told when a WebGPU failure moves the model
 * @returns {Promise<{backend: ModelBackend, info: BackendInfo}>}
 */
export async function loadBackend(loader, { forced, simd, threads }, onMove) {
  if (forced && !BACKENDS.includes(/** @type {any} */ (forced))) {
    throw new Error(`unknown backend ${JSON.stringify(forced)}; use backend=${BACKENDS.join(', backend=')}`);
  }
  if (simd && simd !== 'plain' && simd !== 'relaxed') {
    throw new Error(`unknown simd ${JSON.stringify(simd)}; use simd=relaxed or simd=plain`);
  }
  const base = { threads, crossOriginIsolated: self.crossOriginIsolated };
  const engine = () => loadEngine(loader, simd ?? null, threads);
  const unsupported = engineCannotRun(loader.config);
  if (forced === 'ort-wasm' || (unsupported && forced !== 'webgpu')) {
    const ortVersion = await loadOrt(loader, threads);
    await ortBackend.createSession('wasm', await ortSpec(loader));
    const reason = forced === 'ort-wasm' ? 'forced' : unsupported;
    return { backend: new ModelBackend(ortBackend), info: { ...base, name: 'ort-wasm', ortVersion, reason } };
  }
  const adapter = forced === 'wasm' ? null : await webgpuAdapter();
  if (!adapter) {
    const reason = forced === 'wasm' ? 'forced' : forced === 'webgpu' ? 'WebGPU forced but no adapter' : 'no WebGPU adapter';
    const cpu = await engine();
    return { backend: new ModelBackend(cpu.runtime), info: { ...base, name: 'wasm', simd: cpu.simd, reason } };
  }
  // A WebGPU adapter: its session, then (unless forced) the CPU engine, timed side by side.
  /** @type {BackendInfo} */
  let info = { ...base, name: 'webgpu', adapter, reason: 'forced' };
  try {
    info.ortVersion = await loadOrt(loader, threads);
    loader.say('preparing the model (WebGPU)');
    await ortBackend.createSession('webgpu', await ortSpec(loader));
  } catch (error) {
    const cpu = await engine();
    const reason = `WebGPU failed (${firstLine(error)}); using the CPU engine`;
    return { backend: new ModelBackend(cpu.runtime), info: { ...base, name: 'wasm', simd: cpu.simd, adapter, reason } };
  }
  if (!forced) {
    const gpuMs = await timeStep(ortBackend, loader.config);
    const cpu = await engine();
    const cpuMs = await timeStep(cpu.runtime, loader.config);
    const figures = `one-token step: WebGPU ${gpuMs.toFixed(1)} ms, CPU engine ${cpuMs.toFixed(1)} ms`;
    if (cpuMs <= gpuMs) {
      await ortBackend.releaseSession();
      return { backend: new ModelBackend(cpu.runtime), info: { ...base, name: 'wasm', simd: cpu.simd, adapter, reason: figures } };
    }
    cpu.runtime.release();
    info = { ...info, reason: figures };
  }
  const moveToCpu = async (/** @type {string} */ why) => {
    await ortBackend.releaseSession();
    const cpu = await engine();
    onMove({ ...base, name: 'wasm', simd: cpu.simd, adapter,
      reason: `WebGPU failed during generation (${why}); using the CPU engine` });
    return cpu.runtime;
  };
  return { backend: new ModelBackend(ortBackend, moveToCpu), info };
}

/**
 * Why the CPU engine cannot run this model folder, or '' when it can: it runs quantized
 * exports in the MatMulNBits layout (`pocketlm export --layout nbits`, the default), whose
 * pocketlm.json indexes the tensors of model.onnx.data.
 * @param {any} config the model's pocketlm.json
 */
export function engineCannotRun(config) {
  const layout = config.export_options?.layout;
  if (!config.tensors || layout !== 'nbits' || !['q4', 'q8', 'exact'].includes(config.quantization)) {
    return `the CPU engine runs 4- and 8-bit exports in the nbits layout; this model is ${config.quantization}`
      + `${layout ? ` in the ${layout} layout` : ''}: using onnxruntime-web's WASM build`;
  }
  return '';
}

/**
 * The CPU engine, its weights streamed straight into its memory.
 * @param {Loader} loader
 * @param {string | null} simd forced build, or null to pick by feature detection
 * @param {number} threads
 */
async function loadEngine(loader, simd, threads) {
  const { createCpuEngine, relaxedSimdSupported } = await import(loader.engine.module);
  const kind = simd ?? (relaxedSimdSupported() ? 'relaxed' : 'plain');
  loader.say(`preparing the model (CPU engine, ${kind} SIMD)`);
  const config = loader.config;
  const runtime = await createCpuEngine({
    wasm: kind === 'relaxed' ? loader.engine.relaxed : loader.engine.plain,
    config,
    data: await loader.stream(loader.modelFile(config.external_data)),
    threads,
  });
  return { runtime, simd: kind };
}

/**
 * @param {Loader} loader
 * @param {number} threads
 */
async function loadOrt(loader, threads) {
  return ortBackend.loadOrt({ ...loader.ort, threads });
}

/** @param {Loader} loader */
async function ortSpec(loader) {
  const config = loader.config;
  const [model, external] = await Promise.all([
    loader.bytes(loader.modelFile(config.model_file)),
    config.external_data ? loader.bytes(loader.modelFile(config.external_data)) : null,
  ]);
  return {
    model,
    externalData: external ? [{ path: config.external_data, data: external }] : undefined,
    // Session config entries the export asks every runtime to set (as native.py does).
    config: { ...(config.session_config ?? {}) },
    kv: { ...config.kv_cache, past_names: pastNames(config.kv_cache) },
    inputs: { input_ids: 'input_ids', attention_mask: 'attention_mask', position_ids: 'position_ids', ...config.inputs },
    logits: config.outputs?.logits ?? 'logits',
  };
}

/**
 * KV input names from the model folder's printf-style templates (docs/model-folder.md).
 * @param {{num_layers: number, past_key: string, past_value: string}} kv
 */
export function pastNames(kv) {
  const names = [];
  for (let i = 0; i < kv.num_layers; i++) {
    names.push(kv.past_key.replace('%d', String(i)), kv.past_value.replace('%d', String(i)));
  }
  return names;
}

/**
 * Median milliseconds of a one-token step with an empty cache (after a warm-up run), the
 * logits read back, so a GPU has finished the step.
 * @param {import('./model_backend.js').Runtime} runtime
 * @param {any} config the model's pocketlm.json
 */
async function timeStep(runtime, config) {
  const inputs = { input_ids: 'input_ids', attention_mask: 'attention_mask', position_ids: 'position_ids', ...config.inputs };
  const past = pastNames(config.kv_cache);
  runtime.setFeedNames([inputs.input_ids, inputs.attention_mask, inputs.position_ids, ...past]);
  const names = runtime.outputNames();
  const logitsAt = names.indexOf(config.outputs?.logits ?? 'logits');
  const one = (/** @type {number} */ value) => runtime.int64(new Uint8Array(BigInt64Array.of(BigInt(value)).buffer), [1, 1]);
  const times = [];
  for (let i = 0; i < 4; i++) {
    const feeds = Int32Array.from([one(0), one(1), one(0), ...past.map(() => runtime.emptyKV())]);
    const started = performance.now();
    const out = await runtime.run(feeds);
    if (!out) throw new Error('the runtime failed while being timed');
    await runtime.logitsRow(out[logitsAt]);
    if (i > 0) times.push(performance.now() - started);
    runtime.dispose(feeds);
    runtime.dispose(out);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** @param {unknown} error */
function firstLine(error) {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}

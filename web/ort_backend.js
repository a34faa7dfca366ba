// The only module that touches onnxruntime-web. It loads the ORT build named in
// site.json (the JSPI build: one WebAssembly file serving both the WebGPU and the WASM
// execution providers), creates the session, and gives Python (through model_backend.js)
// the few helpers it calls: run, int64, emptyKV, logitsRow, dispose. The page loads it only
// for WebGPU, or when onnxruntime-web's WASM build is asked for (`?backend=ort-wasm`).

import { errorText } from './messenger.js';

/** @typedef {import('onnxruntime-web').InferenceSession} InferenceSession */
/** @typedef {import('onnxruntime-web').InferenceSession.SessionOptions} SessionOptions */
/** @typedef {import('onnxruntime-web').Tensor} Tensor */
/** @typedef {'wasm' | 'webgpu'} BackendName onnxruntime-web's execution providers */

/** @type {typeof import('onnxruntime-web')} */
let ort;

/**
 * Import ORT and configure it: local files only (the default wasmPaths is a CDN). ORT
 * fetches the .wasm itself, so the browser compiles it while it streams in and keeps the
 * compiled code for the next visit.
 * @param {{module: string, glue: string, wasm: string, threads: number}} files URLs
 */
export async function loadOrt({ module, glue, wasm, threads }) {
  ort = await import(module);
  ort.env.wasm.wasmPaths = { mjs: glue, wasm };
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  return ort.env.versions?.web ?? '';
}

/**
 * @param {BackendName} name
 * @param {Record<string, string>} [config] session config entries, e.g.
 *   `session.qdq_matmulnbits_accuracy_level` (as the native session sets them)
 * @returns {SessionOptions}
 */
function sessionOptions(name, config = {}) {
  /** @type {SessionOptions} */
  const options = {
    executionProviders: [name], graphOptimizationLevel: 'all', logSeverityLevel: 3, extra: config,
    // The arena keeps its high-water mark for the life of the tab; a decode step's tensors
    // are small, so plain allocations cost little and keep the tab's memory down.
    enableCpuMemArena: false,
  };
  // Outputs stay on the GPU (KV cache); pick reads back only the logits it needs.
  if (name === 'webgpu') options.preferredOutputLocation = 'gpu-buffer';
  return options;
}

/** @type {InferenceSession | null} */
let session = null;
/** Whether the session runs on WebGPU (whose failures are reported, not thrown). */
let onGpu = false;
/** Why the WebGPU device was lost, once it is. @type {string | null} */
let gpuLost = null;
/** @type {{type: 'float32' | 'float16', dims: number[]}} */
let kvLayout = { type: 'float32', dims: [1, 1, 0, 1] };

/**
 * @typedef {{model: Uint8Array, externalData?: {path: string, data: Uint8Array}[]}} ModelBytes
 */

/**
 * Create the model's session on `name`. On WebGPU, one step must run and give finite
 * logits, or this throws (the caller then uses another runtime). A WebGPU session that
 * fails later (device lost, a step throws) answers `undefined` from `run`/`logitsRow`: the
 * caller's tensors are gone and it moves the model elsewhere (model_backend.js).
 * @param {BackendName} name
 * @param {ModelBytes & {
 *   config: Record<string, string>,
 *   kv: {dtype: string, num_kv_heads: number, head_dim: number, past_names: string[]},
 *   inputs: {input_ids: string, attention_mask: string, position_ids: string}, logits: string}} spec
 */
export async function createSession(name, spec) {
  kvLayout = {
    type: spec.kv.dtype === 'float16' ? 'float16' : 'float32',
    dims: [1, spec.kv.num_kv_heads, 0, spec.kv.head_dim],
  };
  const options = { ...sessionOptions(name, spec.config), ...(spec.externalData ? { externalData: spec.externalData } : {}) };
  session = await ort.InferenceSession.create(spec.model, options);
  onGpu = name === 'webgpu';
  if (!onGpu) return;
  try {
    await checkOneStep(spec);
    watchDevice(await ort.env.webgpu.device);
  } catch (error) {
    await releaseSession();
    throw error;
  }
}

/** Free the session (and its GPU buffers). */
export async function releaseSession() {
  const old = session;
  session = null;
  onGpu = false;
  for (const handle of [...table.keys()]) dispose(Int32Array.of(handle));
  await old?.release().catch(() => undefined);
}

/** Remember when the device goes away, so the next step moves to WASM. @param {any} device */
function watchDevice(device) {
  device?.lost?.then((/** @type {{message?: string, reason?: string}} */ info) => {
    gpuLost = info?.message || `the GPU device was lost (${info?.reason ?? 'unknown'})`;
  });
}

/** For tests: lose the WebGPU device, as a driver reset or a sleeping laptop would. */
export async function loseGpuDevice() {
  if (!onGpu) throw new Error('the model is not running on WebGPU');
  (await ort.env.webgpu.device).destroy();
}

/**
 * After a WebGPU failure: answer undefined (Python sees None: its tensors are gone and the
 * model moves to another runtime), or rethrow a failure that is not the GPU's.
 * @param {unknown} error
 * @returns {undefined}
 */
function recover(error) {
  if (!onGpu) throw error;
  console.warn(`WebGPU failed: ${gpuLost ?? errorText(error).split('\n')[0]}`);
  return undefined;
}


/**
 * One token through the graph with an empty cache: throws unless the logits are finite.
 * @param {{kv: {past_names: string[]}, inputs: {input_ids: string, attention_mask: string,
 *   position_ids: string}, logits: string}} spec
 */
async function checkOneStep(spec) {
  const scalar = (/** @type {bigint} */ value) => new ort.Tensor('int64', BigInt64Array.of(value), [1, 1]);
  /** @type {Record<string, Tensor>} */
  const feeds = {
    [spec.inputs.input_ids]: scalar(0n),
    [spec.inputs.attention_mask]: scalar(1n),
    [spec.inputs.position_ids]: scalar(0n),
  };
  for (const name of spec.kv.past_names) feeds[name] = emptyKVTensor();
  const outputs = await runTensors(feeds);
  const logits = /** @type {Tensor} */ (outputs.get(spec.logits));
  const data = /** @type {Float32Array} */ (await logits.getData());
  const finite = data.every(Number.isFinite);
  for (const tensor of outputs.values()) tensor.dispose();
  if (!finite) throw new Error('the logits are not finite numbers');
}

// ---- helpers called from Python (pocketlm_runtime/browser.py) ------------------------
//
// Python holds tensors as integer handles into this table, so a step crosses the
// Python/JS boundary with a few typed arrays instead of one proxy per KV tensor.

/** @type {Map<number, Tensor>} */
const table = new Map();
let nextHandle = 1;
/** @type {string[]} */
let feedNames = [];

/** @param {Tensor} tensor */
function keep(tensor) {
  const handle = nextHandle++;
  table.set(handle, tensor);
  return handle;
}

/** @param {number} handle */
function tensorOf(handle) {
  const tensor = table.get(handle);
  if (!tensor) throw new Error(`tensor handle ${handle} was released or never existed`);
  return tensor;
}

/** The session's output names, in the order `run` returns their handles. */
export function outputNames() {
  if (!session) throw new Error('the model session is not created yet');
  return [...session.outputNames];
}

/**
 * Name the feeds of the following `run` calls (Python sends them when they change).
 * @param {ArrayLike<string>} names
 */
export function setFeedNames(names) {
  feedNames = Array.from(names);
}

/**
 * Run the session on tensors given by handle, in `setFeedNames` order; returns the
 * handles of every output, in `outputNames` order.
 * @param {Int32Array} handles
 * @returns {Promise<Int32Array | undefined>} undefined when a WebGPU failure moved the model
 *   to WASM: the caller's tensors are gone, and it feeds its tokens again
 */
export async function run(handles) {
  if (gpuLost !== null && onGpu) return recover(new Error(gpuLost));
  /** @type {Record<string, Tensor>} */
  const feeds = {};
  feedNames.forEach((name, i) => { feeds[name] = tensorOf(handles[i]); });
  let outputs;
  try {
    outputs = await runTensors(feeds);
  } catch (error) {
    return recover(error); // undefined: Python feeds its tokens again on the new session
  }
  return Int32Array.from(outputNames(), (name) => keep(/** @type {Tensor} */ (outputs.get(name))));
}

/**
 * @param {Record<string, Tensor>} feeds
 * @returns {Promise<Map<string, Tensor>>}
 */
async function runTensors(feeds) {
  if (!session) throw new Error('the model session is not created yet');
  return new Map(Object.entries(await session.run(feeds)));
}

/**
 * An int64 tensor from little-endian int64 bytes (Python packs them with array('q')).
 * @param {Uint8Array} bytes
 * @param {ArrayLike<number>} dims
 */
export function int64(bytes, dims) {
  const values = new BigInt64Array(bytes.byteLength / 8);
  new Uint8Array(values.buffer).set(bytes);
  return keep(new ort.Tensor('int64', values, Array.from(dims)));
}

/** A past key/value tensor with zero cached positions. */
export function emptyKV() {
  return keep(emptyKVTensor());
}

function emptyKVTensor() {
  const data = kvLayout.type === 'float16' ? new Uint16Array(0) : new Float32Array(0);
  return new ort.Tensor(kvLayout.type, data, kvLayout.dims);
}

/**
 * Free tensors: GPU buffers on WebGPU, the table entry everywhere.
 * @param {Int32Array} handles
 */
export function dispose(handles) {
  for (const handle of handles) {
    try {
      table.get(handle)?.dispose();
    } catch {
      // a GPU buffer of a lost device: nothing left to free
    }
    table.delete(handle);
  }
}

/** How many tensors Python holds (a leak check for tests). */
export function liveTensors() {
  return table.size;
}

/**
 * The last position's logits as a Float32Array (a view where they already are float32).
 * Synchronous for logits in CPU memory; a promise when they must be read back from the
 * GPU first (undefined then if the device was lost, as from run()).
 * @param {number} handle the logits tensor
 * @returns {Float32Array | Promise<Float32Array | undefined>}
 */
export function logitsRow(handle) {
  const logits = tensorOf(handle);
  const vocab = logits.dims[logits.dims.length - 1];
  if (logits.location === 'cpu') return lastRow(/** @type {any} */ (logits.data), vocab);
  return logits.getData().then((data) => lastRow(/** @type {any} */ (data), vocab), recover);
}

/** @typedef {ArrayLike<number> & {subarray: (start: number) => ArrayLike<number>}} TypedRow e.g. Float16Array */

/**
 * The last `vocab` values as float32 (float16 logits arrive as Float16Array, or as raw
 * 16-bit words in a Uint16Array where the browser has no Float16Array).
 * @param {Float32Array | Uint16Array | TypedRow} data
 * @param {number} vocab
 * @returns {Float32Array}
 */
function lastRow(data, vocab) {
  const start = data.length - vocab;
  if (data instanceof Float32Array) return data.subarray(start);
  if (!(data instanceof Uint16Array)) return Float32Array.from(data.subarray(start));
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) row[i] = halfToFloat(data[start + i]);
  return row;
}

/** @param {number} h */
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

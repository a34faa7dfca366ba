// pocketlm's WebAssembly CPU engine, as the session backend Python drives
// (pocketlm_runtime/browser.py): the same calls as web/ort_backend.js, over the engine
// built from web/engine/*.c. Runs in browsers' Web Workers and in node 20 (worker_threads;
// relaxed SIMD needs --experimental-wasm-relaxed-simd).
//
// The weights stay in their quantized blocks: one region of the engine's memory the size
// of model.onnx.data, filled straight from the fetched bytes; pocketlm.json's `tensors`
// index gives every tensor's place in it. The KV cache lives in the engine: the KV handles
// run() takes and returns are placeholders, and the past length is attention_mask's length
// minus the new tokens.

const PAGE = 65536;
const INITIAL_PAGES = 256; // the modules are linked with --initial-memory=16 MiB
const STACK_BYTES = 1 << 20;

// Keys of engine_config_int / engine_config_float / engine_set_vector / engine_set_linear
// (enums in loader.c).
const INT = { vocab: 0, hidden: 1, ffn: 2, layers: 3, heads: 4, kvHeads: 5, headDim: 6, rotDim: 7,
  context: 8, slidingWindow: 9, gelu: 10, sandwich: 11, actBits: 12 };
const FLOAT = { eps: 0, qScale: 1, attnSoftcap: 2, finalSoftcap: 3, embedScale: 4 };
const VECTOR = { attn_norm: 0, ffn_norm: 1, post_attn_norm: 2, post_ffn_norm: 3, q_norm: 4, k_norm: 5 };
const LINEAR = { q: 0, k: 1, v: 2, o: 3, gate: 4, up: 5, down: 6 };
const HEAD = 7;

/**
 * @typedef {{offset: number, length: number, dtype: string, shape: number[]}} TensorEntry
 * @typedef {{ids: Int32Array, values: Float32Array}} TopK
 * @typedef {{simd: 'relaxed' | 'plain', threads: number, bytes: number, activations: number}} EngineInfo
 * @typedef {{kind: 'int64', values: BigInt64Array, dims: number[]}
 *   | {kind: 'kv', positions: number}
 *   | {kind: 'logits', row: Float32Array}} Entry
 */

const isNode = !!(/** @type {any} */ (globalThis).process?.versions?.node);

/**
 * Whether relaxed SIMD works here: the tiny module below validates and its
 * i32x4.relaxed_dot_i8x16_i7x16_add_s gives the right sum. (Node 20's baseline compiler,
 * Liftoff in V8 11.3, doubles the products and drops the addend; run node with
 * --no-liftoff, or the plain SIMD128 build is chosen.)
 */
export function relaxedSimdSupported() {
  // (func (export "f") (result i32)
  //   (i32x4.extract_lane 0 (i32x4.relaxed_dot_i8x16_i7x16_add_s
  //     (v128.const i8x16 1 ...) (v128.const i8x16 2 ...) (v128.const i32x4 3 3 3 3))))
  const ones = Array(16).fill(1), twos = Array(16).fill(2), threes = [3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0];
  const bytes = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0,
    10, 64, 1, 62, 0, 253, 12, ...ones, 253, 12, ...twos, 253, 12, ...threes, 253, 147, 2, 253, 27, 0, 11,
  ]);
  if (!WebAssembly.validate(bytes)) return false;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    return /** @type {any} */ (instance.exports).f() === 4 * 1 * 2 + 3;
  } catch {
    return false;
  }
}

/**
 * @param {URL | string | BufferSource} wasm
 * @returns {Promise<WebAssembly.Module>}
 */
async function compile(wasm) {
  if (wasm instanceof ArrayBuffer || ArrayBuffer.isView(wasm)) return WebAssembly.compile(wasm);
  const url = String(wasm);
  if (isNode && !/^https?:/.test(url)) {
    const fs = await import(/** @type {any} */ ('node:fs/promises'));
    const path = url.startsWith('file:') ? new URL(url) : url;
    return WebAssembly.compile(await fs.readFile(path));
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch the engine ${url}: HTTP ${response.status}`);
  return WebAssembly.compileStreaming(response);
}

/**
 * Start `count` worker threads on the engine's memory; resolves when all wait for jobs.
 * @param {WebAssembly.Module} module
 * @param {WebAssembly.Memory} memory
 * @param {any} exports
 * @param {number} count
 * @returns {Promise<{terminate: () => void}[]>}
 */
async function startWorkers(module, memory, exports, count) {
  const url = new URL('./cpu_engine_worker.js', import.meta.url);
  /** @type {{terminate: () => void}[]} */
  const workers = [];
  for (let tid = 1; tid <= count; tid++) {
    const stackTop = exports.engine_thread_stack(STACK_BYTES);
    const message = { module, memory, tid, stackTop };
    if (isNode) {
      const { Worker } = await import(/** @type {any} */ ('node:worker_threads'));
      const worker = new Worker(url, { workerData: message });
      worker.unref();
      workers.push(worker);
    } else {
      const worker = new Worker(url, { type: 'module' });
      worker.postMessage(message);
      workers.push(worker);
    }
  }
  const deadline = Date.now() + 30000;
  while (exports.engine_threads_ready() < count) {
    if (Date.now() > deadline) throw new Error('the engine worker threads did not start');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return workers;
}

/**
 * Fill `target` from `data`; returns the bytes written.
 * @param {ReadableStream<Uint8Array> | Uint8Array} data
 * @param {() => Uint8Array} target a view of the weight region (fetched again after any growth)
 * @param {((loaded: number, total: number) => void) | undefined} onProgress
 */
async function receive(data, target, onProgress) {
  const region = target();
  if (data instanceof Uint8Array) {
    if (data.byteLength > region.byteLength) throw new Error('model.onnx.data is larger than its tensors index says');
    region.set(data);
    onProgress?.(data.byteLength, region.byteLength);
    return data.byteLength;
  }
  const reader = data.getReader();
  let at = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.byteLength > region.byteLength) throw new Error('model.onnx.data is larger than its tensors index says');
    region.set(value, at);
    at += value.byteLength;
    onProgress?.(at, region.byteLength);
  }
  return at;
}

/**
 * Load a model into a new engine.
 * @param {{wasm: URL | string | BufferSource, config: any, data: ReadableStream<Uint8Array> | Uint8Array,
 *   threads?: number, activations?: 8 | 16, onProgress?: (loaded: number, total: number) => void}} options
 *   wasm: the chosen build (engine-relaxed.wasm where relaxedSimdSupported(), else engine-simd.wasm);
 *   config: the parsed pocketlm.json; data: model.onnx.data; threads: 1 unless cross-origin isolated;
 *   activations: bits the activations are quantized to per block before each matmul, 16
 *   (default: logits within float rounding of float activations) or 8 (as onnxruntime's
 *   MatMulNBits at accuracy_level 4: faster, but it moves this model's top-1 on 7% of tokens)
 */
export async function createCpuEngine({ wasm, config, data, threads = 1, activations = 16, onProgress }) {
  const tensors = /** @type {Record<string, TensorEntry> | undefined} */ (config.tensors);
  if (!tensors) throw new Error('pocketlm.json has no "tensors" index: export the model again with this pocketlm');
  if (!tensors['L0/q/qweight']) {
    throw new Error('the CPU engine runs MatMulNBits weights only: export with --layout nbits and --quant q4, q8 or exact');
  }
  const module = await compile(wasm);
  const memory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: 65536, shared: true });
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const x = /** @type {any} */ (instance.exports);

  let total = 0;
  for (const t of Object.values(tensors)) total = Math.max(total, t.offset + t.length);
  const base = x.engine_alloc(total) >>> 0;
  const received = await receive(data, () => new Uint8Array(memory.buffer, base, total), onProgress);
  if (received !== total) throw new Error(`model.onnx.data has ${received} bytes, its tensors index needs ${total}`);

  configure(x, config, tensors, base);
  if (x.engine_config_int(INT.actBits, activations) !== 0) throw new Error(`activations must be 8 or 16 bits, not ${activations}`);
  if (x.engine_init() !== 0) throw new Error('the engine rejected the model configuration');

  const count = Math.max(1, Math.floor(threads));
  const workers = count > 1 ? await startWorkers(module, memory, x, count - 1) : [];
  x.engine_set_threads(count);
  return new CpuEngine(x, memory, config, workers);
}

/**
 * Hyper-parameters from pocketlm.json's model_config, tensor addresses from its index.
 * @param {any} x the engine's exports
 * @param {any} config
 * @param {Record<string, TensorEntry>} tensors
 * @param {number} base where model.onnx.data starts in memory
 */
function configure(x, config, tensors, base) {
  const mc = config.model_config;
  const arch = config.architecture;
  const gemma = arch === 'gemma3';
  /** @param {string} name */
  const at = (name) => (tensors[name] ? base + tensors[name].offset : 0);
  const need = (/** @type {string} */ name) => {
    if (!tensors[name]) throw new Error(`model.onnx.data has no tensor ${name}`);
    return base + tensors[name].offset;
  };
  const setInt = (/** @type {number} */ key, /** @type {number} */ value) => {
    if (x.engine_config_int(key, value) !== 0) throw new Error(`the engine cannot take ${value} (key ${key})`);
  };
  setInt(INT.vocab, mc.vocab_size);
  setInt(INT.hidden, mc.hidden_size);
  setInt(INT.ffn, mc.intermediate_size);
  setInt(INT.layers, mc.num_layers);
  setInt(INT.heads, mc.num_heads);
  setInt(INT.kvHeads, mc.num_kv_heads);
  setInt(INT.headDim, mc.head_dim);
  setInt(INT.rotDim, mc.rotary_dim || mc.head_dim);
  setInt(INT.context, mc.context_length);
  setInt(INT.slidingWindow, mc.sliding_window || 0);
  setInt(INT.gelu, gemma ? 1 : 0);
  setInt(INT.sandwich, gemma ? 1 : 0);
  x.engine_config_float(FLOAT.eps, mc.norm_eps);
  x.engine_config_float(FLOAT.qScale, 1 / Math.sqrt(mc.query_pre_attn_scalar || mc.head_dim));
  x.engine_config_float(FLOAT.attnSoftcap, mc.attn_logit_softcap || 0);
  x.engine_config_float(FLOAT.finalSoftcap, mc.final_logit_softcap || 0);
  x.engine_config_float(FLOAT.embedScale, gemma ? Math.fround(Math.sqrt(mc.hidden_size)) : 1);
  (mc.sliding_layers || []).forEach((/** @type {boolean} */ s, /** @type {number} */ i) => x.engine_set_sliding(i, s ? 1 : 0));

  x.engine_set_vector(6, 0, need('final_norm'));
  x.engine_set_vector(7, 0, need('rope/global/cos'));
  x.engine_set_vector(8, 0, need('rope/global/sin'));
  if (tensors['rope/local/cos']) {
    x.engine_set_vector(9, 0, need('rope/local/cos'));
    x.engine_set_vector(10, 0, need('rope/local/sin'));
  }

  const hidden = mc.hidden_size;
  const inputs = { q: hidden, k: hidden, v: hidden, o: mc.num_heads * mc.head_dim, gate: hidden, up: hidden,
    down: mc.intermediate_size };
  /**
   * @param {number} kind @param {number} layer @param {string} path @param {number} k
   * @param {{q?: string, scales?: string, zp?: string, mins?: string}} [names] tensor names other than path/...
   */
  const linear = (kind, layer, path, k, names = {}) => {
    const q = tensors[names.q ?? `${path}/qweight`];
    if (!q) throw new Error(`model.onnx.data has no tensor ${path}/qweight`);
    const [n, kb, blob] = q.shape;
    const bs = k / kb;
    const bits = (blob * 8) / bs;
    const bias = arch === 'qwen2' || tensors[`${path}_bias`] ? at(`${path}_bias`) : 0;
    const scales = names.scales ?? `${path}/scales`;
    const mins = names.mins ?? `${path}/block_mins`;
    const flags = floatFlags(tensors[scales], tensors[mins]);
    const rc = x.engine_set_linear(kind, layer, bits, bs, n, k, need(names.q ?? `${path}/qweight`),
      need(scales), at(names.zp ?? `${path}/zero_points`), at(mins), bias, flags);
    if (rc !== 0) throw new Error(`the engine cannot run ${path} (${bits}-bit blocks of ${bs})`);
  };
  for (let i = 0; i < mc.num_layers; i++) {
    for (const [name, kind] of Object.entries(VECTOR)) {
      const p = at(`L${i}/${name}`);
      if (p) x.engine_set_vector(kind, i, p);
    }
    for (const [name, kind] of Object.entries(LINEAR)) {
      linear(kind, i, `L${i}/${name}`, inputs[/** @type {keyof typeof inputs} */ (name)]);
    }
  }
  const embed = tensors['embed/qweight'];
  if (!embed) throw new Error('model.onnx.data has no tensor embed/qweight');
  const [, kb, blob] = embed.shape;
  const bs = hidden / kb;
  if (x.engine_set_embedding((blob * 8) / bs, bs, need('embed/qweight'), need('embed/scales'), at('embed/zero_points'),
    at('embed/block_mins'), floatFlags(tensors['embed/scales'], tensors['embed/block_mins'])) !== 0) {
    throw new Error('the engine cannot read the embedding');
  }
  if (tensors['lm_head/qweight']) linear(HEAD, 0, 'lm_head', hidden);
  else {
    linear(HEAD, 0, 'lm_head', hidden,
      { q: 'embed/qweight', scales: 'embed/scales', zp: 'lm_head/zero_points', mins: 'embed/block_mins' });
  }
}

/**
 * engine_set_linear's flags: 1 when the block scales are float32, 2 when the minima are
 * (K-quant scales d * sc are not float16 numbers; the others are stored as float16).
 * @param {TensorEntry | undefined} scales @param {TensorEntry | undefined} mins
 */
function floatFlags(scales, mins) {
  return (scales?.dtype === 'float32' ? 1 : 0) | (mins?.dtype === 'float32' ? 2 : 0);
}

class CpuEngine {
  /**
   * @param {any} exports @param {WebAssembly.Memory} memory @param {any} config
   * @param {{terminate: () => void}[]} workers
   */
  constructor(exports, memory, config, workers) {
    this.x = exports;
    this.memory = memory;
    this.workers = workers;
    this.vocab = config.model_config.vocab_size;
    const kv = config.kv_cache;
    const layers = [...Array(kv.num_layers).keys()];
    /** @type {string[]} */
    this.pastNames = layers.flatMap((i) => [kv.past_key.replace('%d', i), kv.past_value.replace('%d', i)]);
    /** @type {string[]} */
    this.presentNames = layers.flatMap((i) => [kv.present_key.replace('%d', i), kv.present_value.replace('%d', i)]);
    this.names = { ids: config.inputs.input_ids, mask: config.inputs.attention_mask, positions: config.inputs.position_ids };
    this.logitsName = config.outputs.logits;
    /** @type {Map<number, Entry>} */
    this.table = new Map();
    this.nextHandle = 1;
    /** @type {string[]} */
    this.feedNames = [];
    /** @type {EngineInfo} */
    this.info = { simd: exports.engine_relaxed_simd() ? 'relaxed' : 'plain', threads: workers.length + 1, bytes: 0,
      activations: exports.engine_activation_bits() };
    this.refreshInfo();
  }

  refreshInfo() {
    this.info.bytes = this.memory.buffer.byteLength;
  }

  /** @param {Entry} entry */
  keep(entry) {
    const handle = this.nextHandle++;
    this.table.set(handle, entry);
    return handle;
  }

  /** @param {number} handle */
  entry(handle) {
    const entry = this.table.get(handle);
    if (!entry) throw new Error(`tensor handle ${handle} was released or never existed`);
    return entry;
  }

  /** Output names, in the order run() returns their handles: logits, then present KV. */
  outputNames() {
    return [this.logitsName, ...this.presentNames];
  }

  /** @param {ArrayLike<string>} names the feeds of the following run() calls, in order */
  setFeedNames(names) {
    this.feedNames = Array.from(names);
  }

  /**
   * One step: the new tokens through the model, synchronously.
   * @param {Int32Array | ArrayLike<number>} handles feeds in setFeedNames order
   * @returns {Int32Array} handles in outputNames() order
   */
  run(handles) {
    /** @type {Record<string, Entry>} */
    const feeds = {};
    this.feedNames.forEach((name, i) => { feeds[name] = this.entry(handles[i]); });
    const ids = int64Feed(feeds[this.names.ids], this.names.ids);
    const mask = int64Feed(feeds[this.names.mask], this.names.mask);
    const positions = int64Feed(feeds[this.names.positions], this.names.positions);
    const n = ids.values.length;
    const total = mask.values.length;
    const past = total - n;
    if (n < 1 || positions.values.length !== n || past < 0) {
      throw new Error(`run: ${n} input ids, ${positions.values.length} positions and an attention mask of ${total}`);
    }
    let kvPositions = -1;
    for (const name of this.pastNames) {
      const kv = feeds[name];
      if (!kv || kv.kind !== 'kv') throw new Error(`run: feed ${name} must be a KV handle of this engine`);
      if (kvPositions >= 0 && kv.positions !== kvPositions) throw new Error('run: the KV feeds disagree on their length');
      kvPositions = kv.positions;
    }
    if (kvPositions !== past) {
      throw new Error(`run: the KV feeds hold ${kvPositions} positions, the attention mask says ${past}`);
    }
    if (past > this.x.engine_cached()) throw new Error(`run: the engine holds ${this.x.engine_cached()} positions, not ${past}`);
    const io = this.x.engine_io(n) >>> 0;
    const view = new Int32Array(this.memory.buffer, io, 2 * n);
    for (let i = 0; i < n; i++) {
      view[i] = Number(ids.values[i]);
      view[n + i] = Number(positions.values[i]);
    }
    const logits = this.x.engine_forward(n, past) >>> 0;
    const row = new Float32Array(this.memory.buffer, logits, this.vocab).slice();
    this.refreshInfo();
    const out = new Int32Array(1 + this.presentNames.length);
    out[0] = this.keep({ kind: 'logits', row });
    for (let i = 1; i < out.length; i++) out[i] = this.keep({ kind: 'kv', positions: total });
    return out;
  }

  /**
   * An int64 tensor from little-endian int64 bytes (Python packs them with array('q')).
   * @param {Uint8Array} bytes @param {ArrayLike<number>} dims
   */
  int64(bytes, dims) {
    const values = new BigInt64Array(bytes.byteLength / 8);
    new Uint8Array(values.buffer).set(bytes);
    return this.keep({ kind: 'int64', values, dims: Array.from(dims) });
  }

  /** A KV handle with zero cached positions: feeding it starts a new sequence. */
  emptyKV() {
    return this.keep({ kind: 'kv', positions: 0 });
  }

  /** @param {number} handle logits @returns {Float32Array} the last position's row [vocab] */
  logitsRow(handle) {
    const entry = this.entry(handle);
    if (entry.kind !== 'logits') throw new Error(`tensor handle ${handle} is not logits`);
    return entry.row;
  }

  /**
   * The k highest logits of the last position, best first; ties go to the lower id.
   * k <= 0 means all of them.
   * @param {number} handle @param {number} k @returns {TopK}
   */
  topK(handle, k) {
    return best(this.logitsRow(handle), k);
  }

  /** @param {Int32Array | ArrayLike<number>} handles */
  dispose(handles) {
    for (const handle of Array.from(handles)) this.table.delete(handle);
  }

  /** How many tensors the caller holds (a leak check for tests). */
  liveTensors() {
    return this.table.size;
  }

  /** Stop the worker threads and drop every tensor; the engine is unusable afterwards. */
  release() {
    if (this.workers.length) {
      this.x.engine_stop_threads(this.workers.length);
      for (const worker of this.workers) worker.terminate();
      this.workers = [];
    }
    this.table.clear();
  }
}

/**
 * @param {Entry | undefined} entry @param {string} name
 * @returns {{kind: 'int64', values: BigInt64Array, dims: number[]}}
 */
function int64Feed(entry, name) {
  if (!entry || entry.kind !== 'int64') throw new Error(`run: feed ${name} is missing or not an int64 tensor`);
  return entry;
}

/** @param {Float32Array} row @param {number} k @returns {TopK} */
function best(row, k) {
  const vocab = row.length;
  if (k <= 0 || k >= vocab) {
    const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
    return { ids: Int32Array.from(order), values: Float32Array.from(order, (i) => row[i]) };
  }
  const ids = new Int32Array(k).fill(-1);
  const values = new Float32Array(k).fill(-Infinity);
  let filled = 0;
  for (let i = 0; i < vocab; i++) {
    const v = row[i];
    if (filled === k && !(v > values[k - 1])) continue;
    let j = filled < k ? filled++ : k - 1;
    while (j > 0 && v > values[j - 1]) {
      values[j] = values[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    values[j] = v;
    ids[j] = i;
  }
  return { ids: ids.subarray(0, filled), values: values.subarray(0, filled) };
}

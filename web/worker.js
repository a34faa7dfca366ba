// The engine's worker: Pyodide runs pocketlm's Python runtime here, and the runtime drives
// onnxruntime-web through ort_backend.js. The page only renders; every request it sends
// ({id, type, ...}) gets a reply or an error (messenger.js).
//
// Loading runs three branches at once: Pyodide + the Python packages; onnxruntime-web +
// the backend choice + the model's session; the tokenizer. Bytes read are reported as
// `progress` events.

import { errorText, serve } from './messenger.js';
import * as backend from './ort_backend.js';
import { PRELOAD, dropSnapshot, readSnapshot, saveSnapshot } from './python_snapshot.js';

/** @typedef {import('./ort_backend.js').BackendInfo} BackendInfo */
/**
 * @typedef {object} SiteConfig site.json, written by `pocketlm build`
 * @property {{module: string, glue: string, wasm: string}} ort
 * @property {{index: string, files: string[]}} pyodide
 * @property {{archive: string}} python
 * @property {{model: string, shape: number[]}} probe
 * @property {{config: string, files: Record<string, string>}} model
 */

const base = new URL('./', self.location.href);
/** @param {string} path */
const siteUrl = (path) => new URL(path, base).href;

const state = {
  /** @type {any} the Python BrowserModel (a PyProxy) */
  model: null,
  /** @type {Promise<unknown> | null} */
  generating: null,
  /** @type {Promise<unknown> | null} a prompt being fed ahead of its answer */
  prefilling: null,
  stopRequested: false,
  /** the draft being read ahead is no longer wanted (the text changed, Send, New chat) */
  draftCancelled: false,
  /** @type {Int32Array | null} [0]: 1 after the page's engine.stop(); [1]: 1 when the page
   *  cancels the draft being read (shared memory, when cross-origin isolated) */
  stopFlag: null,
};

// ---- progress -----------------------------------------------------------------------

const progress = {
  loaded: 0,
  total: 0,
  message: '',
  last: 0,
  /** @param {number} bytes @param {string} [message] */
  add(bytes, message) {
    this.loaded += bytes;
    if (message) this.message = message;
    const now = performance.now();
    if (now - this.last > 100 || message) {
      this.last = now;
      self.postMessage({ type: 'progress', loaded: this.loaded, total: this.total, message: this.message });
    }
  },
  /** @param {string} message */
  say(message) {
    this.add(0, message);
  },
};

/**
 * Fetch a file whole, reporting bytes as they arrive (unless `report` is false).
 * @param {string} url
 * @param {boolean} [report]
 * @returns {Promise<Uint8Array>}
 */
async function fetchBytes(url, report = true) {
  const response = await fetch(url);
  if (!response.ok || !response.body) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  const length = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  /** @type {Uint8Array[]} */
  const chunks = [];
  let size = 0;
  let whole = length ? new Uint8Array(length) : null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (whole && size + value.length <= whole.length) whole.set(value, size);
    else chunks.push(value);
    size += value.length;
    if (report) progress.add(value.length);
  }
  if (whole && size === whole.length && chunks.length === 0) return whole;
  whole = new Uint8Array(size); // no or wrong Content-Length: join the pieces
  let at = 0;
  for (const chunk of chunks) {
    whole.set(chunk, at);
    at += chunk.length;
  }
  return whole;
}

/** @param {string} url */
async function fetchText(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  return response.text();
}

/** @param {string} url */
async function fetchJson(url) {
  return JSON.parse(await fetchText(url));
}

// ---- loading ------------------------------------------------------------------------

/**
 * Load everything: three branches at once (Python; ORT + backend + model session; the
 * tokenizer), then the Python model over the session.
 * @param {{modelUrl?: string, backend?: string, threads?: number}} options
 */
async function init(options) {
  if (state.model) throw new Error('the engine is already loaded');
  if (!('Suspending' in WebAssembly)) {
    throw new Error('this browser lacks WebAssembly JavaScript Promise Integration (JSPI), '
      + 'which the Python runtime needs; use Chrome or Edge 137 or newer');
  }
  const started = performance.now();
  /** @type {Record<string, number>} seconds from the start at which each step ended */
  const steps = {};
  const mark = (/** @type {string} */ name) => { steps[name] = (performance.now() - started) / 1000; };

  /** @type {SiteConfig} */
  const site = await fetchJson(siteUrl('site.json'));
  const manifest = await fetchJson(siteUrl('manifest.json'));
  /** @type {Map<string, number>} */
  const sizes = new Map(manifest.files.map((/** @type {{path: string, size: number}} */ f) => [f.path, f.size]));
  progress.total = [...sizes.values()].reduce((a, b) => a + b, 0);

  // The bundled model (hashed file names from site.json), or a model folder at modelUrl.
  const modelBase = options.modelUrl ? new URL(options.modelUrl.replace(/\/?$/, '/'), base) : null;
  /** @param {string} name a file name inside the model folder */
  const modelFile = (name) => {
    if (modelBase) return new URL(name, modelBase).href;
    const path = site.model.files[name];
    if (!path) throw new Error(`the model file ${name} is not in this build; rebuild with \`pocketlm build\``);
    return siteUrl(path);
  };
  const configText = await fetchText(modelFile('pocketlm.json'));
  const threads = chooseThreads(options.threads);

  const [browser, session, tokenizerText] = await Promise.all([
    loadPython(site, sizes, String(manifest.build_id), mark),
    prepareSession(site, sizes, JSON.parse(configText), modelFile, options.backend, threads, mark),
    fetchBytes(modelFile('tokenizer.json')).then((bytes) => new TextDecoder().decode(bytes)),
  ]);
  progress.say('reading the tokenizer');
  state.model = browser.load_model(configText, tokenizerText, backend);
  mark('modelReady');
  progress.say('ready');
  return {
    backend: session,
    model: state.model.describe(),
    loadSeconds: (performance.now() - started) / 1000,
    loadSteps: steps,
  };
}

/**
 * onnxruntime-web, the backend choice, and the model's session.
 * @param {SiteConfig} site
 * @param {Map<string, number>} sizes
 * @param {any} config the model's pocketlm.json
 * @param {(name: string) => string} modelFile
 * @param {string | undefined} forced
 * @param {{count: number, note: string}} threads
 * @param {(step: string) => void} mark
 */
async function prepareSession(site, sizes, config, modelFile, forced, threads, mark) {
  const bytes = modelBytes(config, modelFile, true); // downloads while ORT starts
  const ortVersion = await backend.loadOrt({
    module: siteUrl(site.ort.module), glue: siteUrl(site.ort.glue), wasm: siteUrl(site.ort.wasm),
    threads: threads.count,
  });
  const probe = { model: await fetchBytes(siteUrl(site.probe.model)), shape: site.probe.shape };
  progress.say('choosing a backend');
  let chosen = await backend.chooseBackend({ forced, threads: threads.count, probe });
  if (threads.note) chosen = { ...chosen, reason: `${chosen.reason}; ${threads.note}` };
  mark('backendChosen');
  const spec = {
    ...(await bytes),
    // Session config entries the export asks every runtime to set (as native.py does).
    config: { ...(config.session_config ?? {}) },
    kv: { ...config.kv_cache, past_names: pastNames(config.kv_cache) },
    inputs: { input_ids: 'input_ids', attention_mask: 'attention_mask', position_ids: 'position_ids', ...config.inputs },
    logits: config.outputs?.logits ?? 'logits',
  };
  mark('modelFetched');
  progress.say(`preparing the model (${chosen.name})`);
  // Should WebGPU fail later, the WASM session reads the model again (from the cache).
  chosen = await backend.createSession(chosen, spec, () => modelBytes(config, modelFile, false));
  mark('sessionCreated');
  progress.add(sizes.get(site.ort.wasm) ?? 0); // ORT fetched its .wasm itself
  return { ...chosen, ortVersion };
}

/**
 * The graph and its external weights, fetched side by side.
 * @param {any} config the model's pocketlm.json
 * @param {(name: string) => string} modelFile
 * @param {boolean} report count the bytes in the loading progress
 * @returns {Promise<import('./ort_backend.js').ModelBytes>}
 */
async function modelBytes(config, modelFile, report) {
  const model = fetchBytes(modelFile(config.model_file), report);
  const external = config.external_data ? fetchBytes(modelFile(config.external_data), report) : null;
  return {
    model: await model,
    externalData: external ? [{ path: config.external_data, data: await external }] : undefined,
  };
}

/** @param {number | undefined} wanted */
function chooseThreads(wanted) {
  const fallback = backend.defaultThreads();
  if (!self.crossOriginIsolated) {
    const note = 'not cross-origin isolated (COOP/COEP headers missing): WASM runs on 1 thread';
    return { count: 1, note };
  }
  if (wanted === undefined || wanted === null || Number.isNaN(wanted)) return { count: fallback, note: '' };
  if (!Number.isInteger(wanted) || wanted < 1) throw new Error(`threads must be a whole number >= 1, got ${wanted}`);
  return { count: wanted, note: '' };
}

/**
 * KV input names from the model folder's printf-style templates (docs/model-folder.md).
 * @param {{num_layers: number, past_key: string, past_value: string}} kv
 */
function pastNames(kv) {
  const names = [];
  for (let i = 0; i < kv.num_layers; i++) {
    names.push(kv.past_key.replace('%d', String(i)), kv.past_value.replace('%d', String(i)));
  }
  return names;
}

/**
 * Pyodide, then the bundled packages (pocketlm_runtime, jinja2, markupsafe) unpacked into
 * site-packages. Resolves to the pocketlm_runtime.browser module. Python starts from this
 * browser's saved start-up image when there is one (python_snapshot.js); otherwise it
 * starts afresh and the image is saved for the next visit.
 * @param {SiteConfig} site
 * @param {Map<string, number>} sizes
 * @param {string} buildId
 * @param {(step: string) => void} mark
 */
async function loadPython(site, sizes, buildId, mark) {
  const { loadPyodide } = await import(siteUrl(`${site.pyodide.index}pyodide.mjs`));
  const start = (/** @type {Uint8Array | null} */ image) => loadPyodide({
    indexURL: siteUrl(site.pyodide.index),
    stdout: (/** @type {string} */ line) => console.log(line),
    stderr: (/** @type {string} */ line) => console.warn(line),
    ...(image ? { _loadSnapshot: image } : { _makeSnapshot: true }),
  });
  const image = await readSnapshot(buildId);
  let pyodide = null;
  if (image) {
    try {
      pyodide = await start(image);
    } catch (error) {
      console.warn(`Python's saved start-up image did not load (${errorText(error)}); starting afresh`);
      await dropSnapshot(buildId);
    }
  }
  const restored = pyodide !== null;
  pyodide ??= await start(null);
  mark(restored ? 'pythonRestored' : 'pythonStarted');
  // Pyodide fetches its own files; count them once it has them.
  progress.add(site.pyodide.files.reduce((sum, path) => sum + (sizes.get(path) ?? 0), 0), 'Python started');
  const archive = await fetchBytes(siteUrl(site.python.archive));
  const sitePackages = pyodide.runPython('import sysconfig; sysconfig.get_path("purelib")');
  pyodide.unpackArchive(archive, 'zip', { extractDir: sitePackages });
  if (restored) {
    pyodide.runPython('import importlib; importlib.invalidate_caches()');
  } else {
    pyodide.runPython(PRELOAD);
    await saveSnapshot(buildId, pyodide.makeMemorySnapshot());
  }
  const module = pyodide.pyimport('pocketlm_runtime.browser');
  mark('pythonLoaded');
  return module;
}

// ---- generation ---------------------------------------------------------------------

const yielder = new MessageChannel();
/** @type {(() => void)[]} */
const yieldQueue = [];
yielder.port1.onmessage = () => yieldQueue.shift()?.();

/** Resolve after one turn of the event loop (no timer clamping), so messages get in. */
function nextTurn() {
  return new Promise((resolve) => {
    yieldQueue.push(() => resolve(undefined));
    yielder.port2.postMessage(null);
  });
}

/**
 * @param {{prompt: string | {role: string, content: string}[], options?: Record<string, any>,
 *   chat?: boolean}} message
 * @param {(data: any) => void} stream
 */
async function generate(message, stream) {
  if (!state.model) throw new Error('the engine is not loaded yet; wait for init');
  if (state.generating) throw new Error('already generating; stop the current answer first');
  await cancelDraft();
  state.stopRequested = false;
  // Python calls post() for each piece of text, stopped() before each step, and now and
  // then awaits pause(), which lets a stop message in (pages without shared memory).
  const post = (/** @type {string} */ text) => stream(text);
  const stopped = () => state.stopRequested || (state.stopFlag !== null && Atomics.load(state.stopFlag, 0) === 1);
  const pause = async () => {
    await nextTurn();
    return stopped();
  };
  const options = Object.fromEntries(Object.entries(message.options ?? {}).filter(([, v]) => v != null));
  const method = state.model.generate; // a PyProxy of the bound method: destroyed below
  const run = method.callPromising(message.prompt, options, post, stopped, pause, message.chat);
  state.generating = run;
  try {
    return await run;
  } finally {
    state.generating = null;
    method.destroy();
  }
}

/**
 * Feed the settled part of a prompt still being typed, so its answer starts sooner. A draft
 * still being read is cancelled first (the text changed); skipped (fed: 0) while an answer
 * runs. Cancelled itself, between two chunks, by cancelDraft().
 * @param {{prompt: string | {role: string, content: string}[], chat?: boolean}} message
 */
async function prefill(message) {
  if (!state.model) throw new Error('the engine is not loaded yet; wait for init');
  await cancelDraft();
  if (state.generating || state.prefilling) return { fed: 0 };
  const cancelled = () => state.draftCancelled || (state.stopFlag !== null && Atomics.load(state.stopFlag, 1) === 1);
  const pause = async () => {
    await nextTurn();
    return cancelled();
  };
  const method = state.model.prefill;
  const run = method.callPromising(message.prompt, message.chat, cancelled, pause);
  state.prefilling = run;
  try {
    return { fed: await run };
  } finally {
    state.prefilling = null;
    method.destroy();
  }
}

/**
 * Stop reading the draft (at the next chunk) and wait until it has stopped; clears the
 * request afterwards, so the next draft or answer runs.
 * @returns {Promise<{cancelled: boolean}>}
 */
async function cancelDraft() {
  const running = state.prefilling;
  if (running) {
    state.draftCancelled = true;
    await running.catch(() => undefined);
  }
  state.draftCancelled = false;
  if (state.stopFlag) Atomics.store(state.stopFlag, 1, 0);
  return { cancelled: running !== null };
}

async function stop() {
  const running = state.generating !== null;
  state.stopRequested = running;
  return { stopping: running };
}

async function newChat() {
  if (state.generating) {
    state.stopRequested = true;
    await state.generating.catch(() => undefined);
  }
  await cancelDraft();
  state.model?.new_chat();
  return { cleared: true };
}

serve({
  init: (message) => {
    state.stopFlag = message.stopFlag ?? null;
    return init(message.options ?? {});
  },
  generate: (message, stream) => generate(/** @type {any} */ (message), stream),
  prefill: (message) => prefill(/** @type {any} */ (message)),
  cancelDraft,
  stop,
  newChat,
  ping: () => ({ alive: true }), // the page checks the worker still answers
  liveTensors: () => backend.liveTensors(), // a leak check for tests
  loseGpuDevice: () => backend.loseGpuDevice(), // for tests of the move to WASM
}, self);

// The model moved from WebGPU to WASM during generation: the page shows the new backend.
backend.onBackendChange((info) => self.postMessage({ type: 'backend', backend: info }));

self.addEventListener('unhandledrejection', (event) => {
  self.postMessage({ type: 'log', level: 'error', message: errorText(event.reason) });
});

// The engine's worker: Pyodide runs pocketlm's Python runtime here, and the runtime drives
// the model through backends.js (pocketlm's CPU engine, or onnxruntime-web on WebGPU). The
// page only renders; every request it sends ({id, type, ...}) gets a reply or an error
// (messenger.js).
//
// Loading runs three branches at once: Pyodide + the Python packages; the backend choice +
// the model's weights; the tokenizer. Bytes read are reported as `progress` events.

import { defaultThreads, loadBackend } from './backends.js';
import { errorText, serve } from './messenger.js';
import { PRELOAD, dropSnapshot, readSnapshot, saveSnapshot } from './python_snapshot.js';

/** @typedef {import('./backends.js').BackendInfo} BackendInfo */
/**
 * @typedef {object} SiteConfig site.json, written by `pocketlm build`
 * @property {{module: string, relaxed: string, plain: string}} engine the CPU engine
 * @property {{module: string, glue: string, wasm: string}} ort
 * @property {{index: string, files: string[]}} pyodide
 * @property {{archive: string}} python
 * @property {SiteModel[]} models the bundled models, the first listed first
 */
/**
 * @typedef {object} SiteModel one bundled model (site.json `models`)
 * @property {string} id
 * @property {string} name
 * @property {string | null} license
 * @property {number} bytes what choosing it downloads
 * @property {string} config
 * @property {Record<string, string>} files name in the model folder -> path in the site
 * @property {string} cache the browser cache that holds its files (model_cache.js)
 */

const base = new URL('./', self.location.href);
/** @param {string} path */
const siteUrl = (path) => new URL(path, base).href;

const state = {
  /** @type {any} the Python BrowserModel (a PyProxy) */
  model: null,
  /** @type {import('./model_backend.js').ModelBackend | null} what Python drives */
  backend: null,
  /** @type {Promise<unknown> | null} */
  generating: null,
  /** @type {Promise<unknown> | null} a prompt being fed ahead of its answer */
  prefilling: null,
  /** the page's number of the answer being written, and of the last answer it stopped */
  answer: 0,
  stopped: 0,
  /** the draft being read ahead is no longer wanted (the text changed, Send, New chat) */
  draftCancelled: false,
  /** @type {Int32Array | null} [0]: the number of the answer the page stopped; [1]: 1 when
   *  the page cancels the draft being read (shared memory, when cross-origin isolated) */
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

/**
 * A file's body as a stream, its bytes counted in the loading progress as they pass.
 * @param {string} url
 * @returns {Promise<ReadableStream<Uint8Array>>}
 */
async function fetchStream(url) {
  const response = await fetch(url);
  if (!response.ok || !response.body) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  return response.body.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      progress.add(chunk.length);
      controller.enqueue(chunk);
    },
  }));
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
 * @param {{model?: string, modelUrl?: string, backend?: string, threads?: number}} options
 *   model: the id of a bundled model (default: the first)
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
  const bundled = options.model === undefined ? site.models[0] : site.models.find((m) => m.id === options.model);
  if (!bundled) throw new Error(`this site has no model ${options.model}; its models: ${site.models.map((m) => m.id).join(', ')}`);
  /** @type {Map<string, number>} */
  const sizes = new Map(manifest.files.map((/** @type {{path: string, size: number}} */ f) => [f.path, f.size]));
  // Lazy files (onnxruntime-web) are counted only if this page ends up loading them; of the
  // models, only the one loaded.
  progress.total = manifest.files.reduce((/** @type {number} */ sum, /** @type {{size: number, lazy?: boolean, model?: string}} */ f) =>
    sum + (f.lazy || (f.model !== undefined && f.model !== bundled.id) ? 0 : f.size), 0);

  // The bundled model (hashed file names from site.json), or a model folder at modelUrl.
  const modelBase = options.modelUrl ? new URL(options.modelUrl.replace(/\/?$/, '/'), base) : null;
  /** @param {string} name a file name inside the model folder */
  const modelFile = (name) => {
    if (modelBase) return new URL(name, modelBase).href;
    const path = bundled.files[name];
    if (!path) throw new Error(`the model file ${name} is not in this build; rebuild with \`pocketlm build\``);
    return siteUrl(path);
  };
  const configText = await fetchText(modelFile('pocketlm.json'));
  const threads = chooseThreads(options.threads);

  const [browser, chosen, tokenizerText] = await Promise.all([
    loadPython(site, sizes, String(manifest.build_id), mark),
    prepareBackend(site, JSON.parse(configText), modelFile, options, threads, mark),
    fetchBytes(modelFile('tokenizer.json')).then((bytes) => new TextDecoder().decode(bytes)),
  ]);
  progress.say('reading the tokenizer');
  state.backend = chosen.backend;
  state.model = browser.load_model(configText, tokenizerText, chosen.backend);
  mark('modelReady');
  progress.say('ready');
  return {
    backend: chosen.info,
    model: state.model.describe(),
    loadSeconds: (performance.now() - started) / 1000,
    loadSteps: steps,
  };
}

/**
 * The backend choice and the model's weights (backends.js).
 * @param {SiteConfig} site
 * @param {any} config the model's pocketlm.json
 * @param {(name: string) => string} modelFile
 * @param {{backend?: string, simd?: string}} options
 * @param {{count: number, note: string}} threads
 * @param {(step: string) => void} mark
 */
async function prepareBackend(site, config, modelFile, options, threads, mark) {
  progress.say('choosing a backend');
  const loader = {
    config,
    modelFile,
    engine: { module: siteUrl(site.engine.module), relaxed: siteUrl(site.engine.relaxed), plain: siteUrl(site.engine.plain) },
    ort: { module: siteUrl(site.ort.module), glue: siteUrl(site.ort.glue), wasm: siteUrl(site.ort.wasm) },
    stream: fetchStream,
    bytes: (/** @type {string} */ url) => fetchBytes(url),
    say: (/** @type {string} */ message) => progress.say(message),
  };
  const onMove = (/** @type {BackendInfo} */ info) => self.postMessage({ type: 'backend', backend: info });
  const chosen = await loadBackend(loader, { forced: options.backend, simd: options.simd, threads: threads.count }, onMove);
  if (threads.note) chosen.info.reason = `${chosen.info.reason}; ${threads.note}`;
  mark('backendReady');
  return chosen;
}

/** @param {number | undefined} wanted */
function chooseThreads(wanted) {
  const fallback = defaultThreads();
  if (!self.crossOriginIsolated) {
    const note = 'not cross-origin isolated (COOP/COEP headers missing): the CPU runs 1 thread';
    return { count: 1, note };
  }
  if (wanted === undefined || wanted === null || Number.isNaN(wanted)) return { count: fallback, note: '' };
  if (!Number.isInteger(wanted) || wanted < 1) throw new Error(`threads must be a whole number >= 1, got ${wanted}`);
  return { count: wanted, note: '' };
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
 *   chat?: boolean, answer: number}} message `answer`: the page's number for it (Engine.answers)
 * @param {(data: any) => void} stream
 */
async function generate(message, stream) {
  if (!state.model) throw new Error('the engine is not loaded yet; wait for init');
  if (state.generating) throw new Error('already generating; stop the current answer first');
  await cancelDraft();
  const answer = message.answer;
  state.answer = answer;
  // Python calls post() for each piece of text, stopped() before each step, and now and
  // then awaits pause(), which lets a stop message in (pages without shared memory).
  const post = (/** @type {string} */ text) => stream(text);
  const stopped = () => state.stopped === answer || (state.stopFlag !== null && Atomics.load(state.stopFlag, 0) === answer);
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

/**
 * Stop answer number `answer`, whether it runs now or its request is still on its way.
 * @param {{answer: number}} message
 */
async function stop(message) {
  state.stopped = Math.max(state.stopped, message.answer);
  return { stopping: state.generating !== null && state.answer === message.answer };
}

/** @param {{answer: number}} message the latest answer the page asked for, stopped too */
async function newChat(message) {
  await stop(message);
  if (state.generating) await state.generating.catch(() => undefined);
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
  stop: (message) => stop(/** @type {any} */ (message)),
  newChat: (message) => newChat(/** @type {any} */ (message)),
  ping: () => ({ alive: true }), // the page checks the worker still answers
  liveTensors: () => state.backend?.liveTensors() ?? 0, // a leak check for tests
  loseGpuDevice: async () => (await import('./ort_backend.js')).loseGpuDevice(), // tests of the move to the CPU
}, self);

self.addEventListener('unhandledrejection', (event) => {
  self.postMessage({ type: 'log', level: 'error', message: errorText(event.reason) });
});

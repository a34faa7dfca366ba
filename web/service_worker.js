// pocketlm's service worker: the whole site, precached, so the page works offline.
//
// This file is a template: `pocketlm build` writes it as sw.js with the line marked
// `pocketlm:build` replaced by the build's file list (from manifest.json). One cache per
// build, named after the build id:
// - install: every file goes into the new build's cache, checked against its size and
//   sha256 (size only for big content-hashed files: their name pins their content). Files
//   whose sha256 is unchanged are copied from an older build's cache instead of downloaded,
//   and a cache left half-filled by an interrupted install is resumed, not restarted.
// - activate (only once no page uses the old build): older builds' caches are deleted.
// - fetch: cache first, network for anything not in the build. Lazy files (onnxruntime-web,
//   which only WebGPU machines use) are not precached: they go into the cache when first
//   fetched, so such a page works offline after its first visit too.
// - models: not precached either. The page downloads the model the visitor chose into a
//   cache of its own (model_cache.js; its name changes with the model's files), and the
//   fetch handler answers a model's files from that cache. Activate keeps the caches of this
//   build's models, so a rebuild does not download an unchanged model again.
// Progress goes to pages on the BroadcastChannel `pocketlm-sw`.

/** @type {{build_id: string, files: [path: string, size: number, sha256: string][], lazy: string[], models: Record<string, string>}} */
const BUILD = { build_id: 'dev', files: [], lazy: [], models: {} }; // pocketlm:build

const PREFIX = 'pocketlm-';
const CACHE = PREFIX + BUILD.build_id;
const MANIFEST = 'manifest.json';
const VERIFY_LIMIT = 64 * 1024 * 1024; // sha256 checked below this size
const PARALLEL = 4;
const LAZY = new Set(BUILD.lazy);
/** a model file's path -> the cache that holds its model */
const MODEL_FILES = new Map(Object.entries(BUILD.models));
const KEEP = new Set([CACHE, ...MODEL_FILES.values()]);
const sw = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
const channel = new BroadcastChannel('pocketlm-sw');

sw.addEventListener('install', (event) => event.waitUntil(precache().catch((error) => {
  channel.postMessage({ type: 'precache', build_id: BUILD.build_id, error: String(error) });
  throw error; // the install fails; the page keeps working online
})));

sw.addEventListener('activate', (event) => event.waitUntil((async () => {
  for (const name of await caches.keys()) {
    if (name.startsWith(PREFIX) && !KEEP.has(name)) await caches.delete(name);
  }
  await sw.clients.claim(); // first visit: take over the page that installed us
})()));

sw.addEventListener('message', (event) => {
  if (event.data?.type === 'skipWaiting') sw.skipWaiting(); // the page reloads right after
});

sw.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== location.origin) return;
  event.respondWith(cacheFirst(request, url));
});

/**
 * @param {Request} request
 * @param {URL} url
 */
async function cacheFirst(request, url) {
  const cache = await caches.open(CACHE);
  const scope = new URL(sw.registration.scope);
  // The page itself, with or without ?backend=... parameters.
  const key = request.mode === 'navigate' && url.pathname === scope.pathname ? 'index.html' : request;
  const hit = await cache.match(key, { ignoreSearch: request.mode === 'navigate' });
  if (hit) return hit;
  const path = url.pathname.startsWith(scope.pathname) ? url.pathname.slice(scope.pathname.length) : '';
  const modelCache = MODEL_FILES.get(path);
  if (modelCache) return (await caches.match(path, { cacheName: modelCache })) ?? fetch(request);
  if (!LAZY.has(path)) return fetch(request);
  const response = await fetch(request);
  if (response.ok && response.status === 200 && response.type === 'basic') {
    // Stored decoded, with the plain file's headers (as download() does).
    const headers = new Headers(response.headers);
    headers.delete('content-encoding');
    headers.delete('content-length');
    const init = { status: 200, statusText: response.statusText, headers };
    await cache.put(path, new Response(await response.clone().arrayBuffer(), init)).catch(() => undefined);
  }
  return response;
}

async function precache() {
  const cache = await caches.open(CACHE);
  const total = BUILD.files.reduce((sum, [, size]) => sum + size, 0);
  let loaded = 0;
  let lastReport = 0;
  const report = (/** @type {boolean} */ done = false) => {
    const now = Date.now();
    if (done || now - lastReport > 100) {
      lastReport = now;
      channel.postMessage({ type: 'precache', build_id: BUILD.build_id, loaded, total, done });
    }
  };
  const manifest = await fetchOk(MANIFEST);
  const text = await manifest.clone().text();
  if (JSON.parse(text).build_id !== BUILD.build_id) {
    throw new Error(`${MANIFEST} is from another build than sw.js; the site changed while installing`);
  }
  const older = await olderCaches();
  const queue = [...BUILD.files];
  let failed = false;
  const worker = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      if (failed) return;
      const [path, size, sha256] = file;
      if (!(await cache.match(path)) && !(await copyFromOlder(older, cache, file))) {
        await cache.put(path, await download(path, size, sha256, (bytes) => { loaded += bytes; report(); }));
        loaded -= size; // download() counted the bytes already
      }
      loaded += size;
      report();
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, () => worker().catch((error) => {
    failed = true; // the other downloads stop at their next file
    throw error;
  })));
  await cache.put(MANIFEST, manifest); // last: a cache holding its manifest is complete
  report(true);
}

/** Older builds' caches with their file hashes (from the manifest each one stored). */
async function olderCaches() {
  const found = [];
  for (const name of await caches.keys()) {
    if (!name.startsWith(PREFIX) || name === CACHE) continue;
    const cache = await caches.open(name);
    const manifest = await cache.match(MANIFEST);
    if (!manifest) continue;
    /** @type {{files: {path: string, sha256: string}[]}} */
    const data = await manifest.json();
    found.push({ cache, hashes: new Map(data.files.map((f) => [f.path, f.sha256])) });
  }
  return found;
}

/**
 * @param {{cache: Cache, hashes: Map<string, string>}[]} older
 * @param {Cache} cache
 * @param {[string, number, string]} file
 */
async function copyFromOlder(older, cache, [path, , sha256]) {
  for (const old of older) {
    if (old.hashes.get(path) !== sha256) continue;
    const response = await old.cache.match(path);
    if (response) {
      await cache.put(path, response);
      return true;
    }
  }
  return false;
}

/** @param {string} path */
async function fetchOk(path) {
  const response = await fetch(path, { cache: 'no-cache' });
  if (!response.ok || response.status !== 200 || response.type !== 'basic') {
    throw new Error(`cannot precache ${path}: HTTP ${response.status}`);
  }
  return response;
}

/**
 * Fetch one file; the response returned is complete and checked.
 * @param {string} path
 * @param {number} size
 * @param {string} sha256
 * @param {(bytes: number) => void} onBytes
 */
async function download(path, size, sha256, onBytes) {
  const response = await fetchOk(path);
  // The body read below is already decoded (servers send gzip copies): store the headers
  // of the plain file, not of what came over the wire.
  const headers = new Headers(response.headers);
  headers.delete('content-encoding');
  headers.set('content-length', String(size));
  const init = { status: response.status, statusText: response.statusText, headers };
  if (size <= VERIFY_LIMIT) {
    const body = await response.arrayBuffer();
    onBytes(body.byteLength);
    const digest = hex(await crypto.subtle.digest('SHA-256', body));
    if (body.byteLength !== size || digest !== sha256) {
      throw new Error(`${path} does not match the build (size ${body.byteLength}, expected ${size})`);
    }
    return new Response(body, init);
  }
  // Big files: streamed into the cache; an incomplete body errors the stream, so the
  // cache.put fails and nothing partial is stored.
  let seen = 0;
  const check = new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      onBytes(chunk.byteLength);
      controller.enqueue(chunk);
    },
    flush() {
      if (seen !== size) throw new Error(`${path} is ${seen} bytes, expected ${size}`);
    },
  });
  return new Response(/** @type {ReadableStream} */ (response.body).pipeThrough(check), init);
}

/** @param {ArrayBuffer} buffer */
function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

// A memory image of Python taken right after it started and imported the runtime (Pyodide's
// memory snapshot), kept per browser in the build's own cache. Later visits restore it
// instead of starting Python again: on the 2-core test machine Python is ready in ~0.4 s
// instead of ~2 s. The image is made here, never downloaded: it belongs to this build's
// Pyodide and Python files, and the service worker deletes it with the build's cache.

/** The service worker's cache for a build (sw.js: PREFIX + build id). */
const cacheName = (/** @type {string} */ buildId) => `pocketlm-${buildId}`;
const KEY = new URL('python-snapshot.bin', new URL('./', self.location.href)).href;

/**
 * Python code run before the image is taken: imports only, nothing that touches JavaScript
 * (a snapshot cannot hold references to JS objects; `pocketlm_runtime.browser` imports `js`,
 * so it is imported after the restore).
 */
export const PRELOAD = [
  'import importlib; importlib.invalidate_caches()',
  'import pocketlm_runtime.pipeline, pocketlm_runtime.model_info, pocketlm_runtime.sampling',
  'import pocketlm_runtime.session, pocketlm_runtime.tokenizer, pocketlm_runtime.chat',
  'import jinja2, jinja2.ext, jinja2.sandbox',
].join('\n');

/**
 * @param {string} buildId
 * @returns {Promise<Uint8Array | null>} the saved image, or null (none yet, or no Cache API)
 */
export async function readSnapshot(buildId) {
  if (!('caches' in self)) return null;
  try {
    if (!(await caches.has(cacheName(buildId)))) return null;
    const hit = await (await caches.open(cacheName(buildId))).match(KEY);
    return hit ? new Uint8Array(await hit.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

/**
 * Keep `bytes` for the next visit; a failure (quota, no Cache API) only costs that speed-up.
 * @param {string} buildId
 * @param {Uint8Array} bytes
 */
export async function saveSnapshot(buildId, bytes) {
  if (!('caches' in self)) return;
  try {
    const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) };
    await (await caches.open(cacheName(buildId))).put(KEY, new Response(/** @type {Uint8Array<ArrayBuffer>} */ (bytes), { headers }));
  } catch (error) {
    console.warn(`could not keep Python's start-up image: ${String(error)}`);
  }
}

/** Forget a saved image that failed to restore. @param {string} buildId */
export async function dropSnapshot(buildId) {
  if (!('caches' in self)) return;
  try {
    await (await caches.open(cacheName(buildId))).delete(KEY);
  } catch {
    // nothing kept, nothing to drop
  }
}

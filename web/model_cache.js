// A site's models, each kept in a browser cache of its own (site.json `models[].cache`). The
// page downloads the chosen model into it; the service worker answers the model's files
// from it (service_worker.js). Every model file has its content hash in its name, so a
// rebuild of the site downloads only the files that changed; files of older builds are
// dropped from the cache once the new ones are in.

/** @typedef {import('./worker.js').SiteModel} SiteModel */
/** @typedef {{path: string, size: number, sha256: string}} SiteFile a manifest.json entry */

const VERIFY_LIMIT = 64 * 1024 * 1024; // sha256 checked below this size, the size above

/** Whether models can be kept here: a service worker serves this site from its caches
 *  (it may still be installing on a first visit). */
export function cachingAvailable() {
  return 'caches' in self && 'serviceWorker' in navigator && self.isSecureContext;
}

/**
 * @param {SiteModel} model
 * @returns {Promise<'cached' | 'partial' | 'absent'>}
 */
export async function modelState(model) {
  if (!('caches' in self) || !(await caches.has(model.cache))) return 'absent';
  const cache = await caches.open(model.cache);
  const held = await Promise.all(Object.values(model.files).map((path) => cache.match(path)));
  return held.every(Boolean) ? 'cached' : 'partial';
}

/**
 * Download the model's files into its cache, each checked against manifest.json. Files
 * already there (an interrupted download, an earlier build) are not fetched again; files
 * no longer part of the model are deleted at the end.
 * @param {SiteModel} model
 * @param {SiteFile[]} files manifest.json's entries
 * @param {(loaded: number, total: number) => void} [onProgress] bytes
 */
export async function downloadModel(model, files, onProgress) {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const paths = Object.values(model.files);
  const entries = paths.map((path) => {
    const entry = byPath.get(path);
    if (!entry) throw new Error(`${path} is not in this build's manifest; rebuild the site`);
    return entry;
  });
  const total = entries.reduce((sum, f) => sum + f.size, 0);
  let loaded = 0;
  const cache = await caches.open(model.cache);
  for (const entry of entries) {
    if (!(await cache.match(entry.path))) {
      await cache.put(entry.path, await download(entry, (bytes) => { loaded += bytes; onProgress?.(loaded, total); }));
      loaded -= entry.size; // counted as it came
    }
    loaded += entry.size;
    onProgress?.(loaded, total);
  }
  const wanted = new Set(paths.map((path) => new URL(path, location.href).href));
  for (const request of await cache.keys()) {
    if (!wanted.has(request.url)) await cache.delete(request);
  }
}

/**
 * Delete the model's cache; the next time it is chosen it downloads again.
 * @param {SiteModel} model
 * @returns {Promise<boolean>} whether there was one
 */
export function deleteModel(model) {
  return caches.delete(model.cache);
}

/**
 * One file, complete and checked, as a response to store.
 * @param {SiteFile} entry
 * @param {(bytes: number) => void} onBytes
 */
async function download({ path, size, sha256 }, onBytes) {
  const response = await fetch(path, { cache: 'no-cache' });
  if (!response.ok || response.status !== 200 || !response.body) {
    throw new Error(`cannot download ${path}: HTTP ${response.status}`);
  }
  // The body is decoded already (servers may send gzip): store the plain file's headers.
  const headers = new Headers(response.headers);
  headers.delete('content-encoding');
  headers.set('content-length', String(size));
  if (size <= VERIFY_LIMIT) {
    const body = await response.arrayBuffer();
    onBytes(body.byteLength);
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', body)),
      (b) => b.toString(16).padStart(2, '0')).join('');
    if (body.byteLength !== size || digest !== sha256) {
      throw new Error(`${path} does not match the build (size ${body.byteLength}, expected ${size})`);
    }
    return new Response(body, { status: 200, headers });
  }
  // Big files (content-hashed names) are streamed; a short body errors the stream, so
  // nothing partial is stored.
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
  return new Response(response.body.pipeThrough(check), { status: 200, headers });
}

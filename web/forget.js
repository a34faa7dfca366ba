// "Forget this site": deletes everything the site keeps in this browser: the service
// worker's caches (the model, the runtime and Python's start-up image live there), the
// service worker itself, and the storage of this origin. The conversation is the page's
// to clear.

/**
 * Delete this origin's caches, service workers and local/session storage.
 * @returns {Promise<{caches: number, workers: number}>} how many were deleted
 */
export async function forgetSite() {
  let cacheCount = 0;
  if ('caches' in self) {
    for (const name of await caches.keys()) {
      if (await caches.delete(name)) cacheCount += 1;
    }
  }
  let workers = 0;
  if ('serviceWorker' in navigator) {
    for (const registration of await navigator.serviceWorker.getRegistrations()) {
      if (await registration.unregister()) workers += 1;
    }
  }
  localStorage.clear();
  sessionStorage.clear();
  return { caches: cacheCount, workers };
}

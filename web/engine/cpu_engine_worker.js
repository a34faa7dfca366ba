// One worker thread of the CPU engine: its own instance of the engine module on the shared
// memory, with a stack of its own, waiting for jobs in engine_thread_main until released.
// Started by cpu_engine.js (a Web Worker in browsers, a worker_threads Worker in node).

/** @param {{module: WebAssembly.Module, memory: WebAssembly.Memory, tid: number, stackTop: number}} message */
async function run({ module, memory, tid, stackTop }) {
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const x = /** @type {any} */ (instance.exports);
  x.__stack_pointer.value = stackTop;
  x.engine_thread_main(tid);
}

const isNode = !!(/** @type {any} */ (globalThis).process?.versions?.node);
if (isNode) {
  const { workerData } = await import(/** @type {any} */ ('node:worker_threads'));
  await run(workerData);
} else {
  self.onmessage = (/** @type {MessageEvent} */ event) => { void run(event.data); };
}
export {};

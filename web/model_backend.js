// The one object Python drives (pocketlm_runtime/browser.py): it runs the model on pocketlm's
// CPU engine (web/engine/, the weights stay in their 4-bit blocks) or on onnxruntime-web
// (ort_backend.js: WebGPU, or its own WASM build as a reference), and can move the model
// from one to the other. Python holds integer handles; this module maps them onto the
// handles of whichever runtime owns the tensor, so a handle of a runtime that was dropped
// is never mistaken for one of its successor. The next token is chosen here, over the whole
// logits row of whichever runtime holds it (sampler.js).

import * as sampler from './sampler.js';

/**
 * The helpers every runtime gives Python (ort_backend.js, engine/cpu_engine.js).
 * @typedef {object} Runtime
 * @property {(names: ArrayLike<string>) => void} setFeedNames
 * @property {(handles: Int32Array) => Int32Array | undefined | Promise<Int32Array | undefined>} run
 *   undefined: the runtime failed and its tensors are gone (the caller feeds its tokens again)
 * @property {() => string[]} outputNames
 * @property {(bytes: Uint8Array, dims: ArrayLike<number>) => number} int64
 * @property {() => number} emptyKV
 * @property {(handle: number) => Float32Array | Promise<Float32Array | undefined>} logitsRow the last
 *   position's logits (a promise where they must be read back from a GPU; undefined when it failed)
 * @property {(handles: Int32Array) => void} dispose
 * @property {() => number} liveTensors
 */

/** @typedef {{runtime: Runtime, handle: number}} Owned */

export class ModelBackend {
  /**
   * @param {Runtime} runtime
   * @param {(reason: string) => Promise<Runtime>} [replace] called when `runtime` fails
   *   during generation: resolves to the runtime that takes over (e.g. the CPU engine after
   *   a lost WebGPU device)
   */
  constructor(runtime, replace) {
    this.runtime = runtime;
    this.replace = replace;
    /** @type {Map<number, Owned>} */
    this.table = new Map();
    this.next = 1;
    /** @type {string[]} */
    this.feedNames = [];
  }

  /** @param {number} handle */
  keep(handle) {
    const mine = this.next++;
    this.table.set(mine, { runtime: this.runtime, handle });
    return mine;
  }

  /** @param {number} mine */
  owned(mine) {
    const entry = this.table.get(mine);
    if (!entry) throw new Error(`tensor handle ${mine} was released or never existed`);
    return entry;
  }

  /**
   * The runtime failed: its tensors are gone. Move to the replacement, if there is one.
   * @param {unknown} error
   * @returns {Promise<undefined>}
   */
  async fail(error) {
    const replace = this.replace;
    if (!replace) throw error;
    this.replace = undefined; // one move; a second failure is an error
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    this.runtime = await replace(reason);
    this.runtime.setFeedNames(this.feedNames);
    return undefined;
  }

  /** @param {ArrayLike<string>} names */
  setFeedNames(names) {
    this.feedNames = Array.from(names);
    this.runtime.setFeedNames(this.feedNames);
  }

  outputNames() {
    return this.runtime.outputNames();
  }

  /**
   * @param {Int32Array} handles feeds in `setFeedNames` order
   * @returns {Int32Array | undefined | Promise<Int32Array | undefined>} synchronous for the
   *   CPU engine, a promise for onnxruntime-web
   */
  run(handles) {
    const runtime = this.runtime;
    const theirs = Int32Array.from(handles, (mine) => {
      const entry = this.owned(mine);
      if (entry.runtime !== runtime) throw new Error(`tensor handle ${mine} belongs to a runtime that was replaced`);
      return entry.handle;
    });
    const wrap = (/** @type {Int32Array | undefined} */ out) => {
      if (out === undefined) return this.fail(new Error('the runtime lost its state'));
      return Int32Array.from(out, (handle) => this.keep(handle));
    };
    let result;
    try {
      result = runtime.run(theirs);
    } catch (error) {
      return this.fail(error);
    }
    if (result instanceof Promise) return result.then(wrap, (error) => this.fail(error));
    return wrap(result);
  }

  /** @param {Uint8Array} bytes @param {ArrayLike<number>} dims */
  int64(bytes, dims) {
    return this.keep(this.runtime.int64(bytes, dims));
  }

  emptyKV() {
    return this.keep(this.runtime.emptyKV());
  }

  /**
   * The last position's logits row of a logits tensor, or undefined after a failure that
   * moved the model (the caller's tensors are gone then).
   * @param {number} mine
   * @returns {Float32Array | Promise<Float32Array | undefined>}
   */
  row(mine) {
    const entry = this.owned(mine);
    const row = entry.runtime.logitsRow(entry.handle);
    if (row instanceof Promise) return row.then((value) => value ?? this.fail(new Error('read-back failed')));
    return row;
  }

  /**
   * The next token id: the logits processors and the draw over the whole row
   * (pocketlm_runtime/session.py's `pick`).
   * @param {number} mine the logits tensor
   * @param {sampler.SamplingSettings} settings
   * @param {Int32Array} previous every token id of the sequence so far
   * @param {number} uniform in [0, 1)
   * @returns {number | Promise<number | undefined>}
   */
  pick(mine, settings, previous, uniform) {
    const row = this.row(mine);
    if (row instanceof Float32Array) return sampler.pick(row, settings, previous, uniform);
    return row.then((r) => (r === undefined ? undefined : sampler.pick(r, settings, previous, uniform)));
  }

  /**
   * The kept (ids, probabilities) after the processors, most likely first (for tests).
   * @param {number} mine the logits tensor
   * @param {sampler.SamplingSettings} settings
   * @param {Int32Array} previous
   */
  async distribution(mine, settings, previous) {
    const row = await this.row(mine);
    return row === undefined ? undefined : sampler.distribution(row, settings, previous);
  }

  /** @param {Int32Array} handles */
  dispose(handles) {
    /** @type {Map<Runtime, number[]>} */
    const byRuntime = new Map();
    for (const mine of handles) {
      const entry = this.table.get(mine);
      if (!entry) continue;
      this.table.delete(mine);
      if (entry.runtime !== this.runtime) continue; // a dropped runtime's tensors are gone
      const list = byRuntime.get(entry.runtime) ?? [];
      list.push(entry.handle);
      byRuntime.set(entry.runtime, list);
    }
    for (const [runtime, list] of byRuntime) runtime.dispose(Int32Array.from(list));
  }

  /** Tensors Python holds (a leak check for tests): this table and the runtime's agree. */
  liveTensors() {
    return this.table.size;
  }
}

// Drives web/engine/cpu_engine.js for the Python tests and the benchmark: one JSON request
// a line on stdin, one JSON answer a line on stdout. Methods mirror the engine's API
// (init, setFeedNames, run, outputNames, int64, emptyKV, topK, logitsRow, dispose,
// liveTensors, info, release) plus `evaluate` (logits of every position of text windows),
// `kernel` (SIMD kernel vs scalar reference on random blocks; zero_points: true for random
// ones, 'zeros' for all 0; gemm16: int16 activations through the prefill GEMM qgemm_i16) and `time`.
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createCpuEngine, relaxedSimdSupported } from '../../web/engine/cpu_engine.js';
import * as sampler from '../../web/sampler.js';

let engine = null;

async function init({ wasm, model_dir, threads, activations }) {
  const config = JSON.parse(readFileSync(`${model_dir}/pocketlm.json`, 'utf8'));
  const data = new Uint8Array(readFileSync(`${model_dir}/model.onnx.data`));
  const started = performance.now();
  engine = await createCpuEngine({ wasm, config, data, threads, activations });
  statsAt = 0;
  return { ...engine.info, load_ms: performance.now() - started, outputs: engine.outputNames().length };
}

// Logits of every position of each window, each window from an empty cache. Returns, per
// window, the top-1 id of every position and the summed negative log-likelihood of
// `targets`; with `dump`, all logits are written there as float32 [positions, vocab].
function evaluate({ windows, targets, dump }) {
  const x = engine.x;
  const vocab = engine.vocab;
  const out = [];
  const dumped = [];
  for (let w = 0; w < windows.length; w++) {
    const ids = windows[w];
    const n = ids.length;
    const io = x.engine_io(n) >>> 0;
    const buf = x.engine_alloc(n * vocab * 4) >>> 0;  // scratch: freed with the engine only
    const view = new Int32Array(engine.memory.buffer, io, 2 * n);
    for (let i = 0; i < n; i++) { view[i] = ids[i]; view[n + i] = i; }
    x.engine_forward_all(n, 0, buf);
    const logits = new Float32Array(engine.memory.buffer, buf, n * vocab);
    const top = [];
    let nll = 0;
    for (let i = 0; i < n; i++) {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      let best = 0;
      for (let j = 1; j < vocab; j++) if (row[j] > row[best]) best = j;
      top.push(best);
      if (i < targets[w].length) {
        let z = 0;
        for (let j = 0; j < vocab; j++) z += Math.exp(row[j] - row[best]);
        nll += Math.log(z) + row[best] - row[targets[w][i]];
      }
    }
    if (dump) dumped.push(logits.slice());
    out.push({ top, nll });
  }
  if (dump) {
    const all = new Float32Array(dumped.reduce((s, a) => s + a.length, 0));
    let at = 0;
    for (const a of dumped) { all.set(a, at); at += a.length; }
    writeFileSync(dump, all);
  }
  return out;
}

// Greedy generation through the engine's API, as the page's loop calls it: the prompt in
// one run (prefill; or in runs of prompt_chunks tokens, the last one taking the rest), then
// one token a run. Times both (ms) and returns the tokens.
function generate({ prompt_ids, new_tokens, prompt_chunks = 0 }) {
  const e = engine;
  const names = ['input_ids', 'attention_mask', 'position_ids', ...e.pastNames];
  e.setFeedNames(names);
  const int64 = (values) => e.int64(new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer), [1, values.length]);
  let kv = e.pastNames.map(() => e.emptyKV());
  const tokens = [];
  let cached = 0;
  const step = (ids) => {
    const total = cached + ids.length;
    const feeds = [int64(ids), int64(Array(total).fill(1)), int64(ids.map((_, i) => cached + i))];
    const out = e.run(Int32Array.from([...feeds, ...kv]));
    e.dispose(Int32Array.from([...feeds, ...kv]));
    kv = Array.from(out.subarray(1));
    const next = e.topK(out[0], 1).ids[0];
    e.dispose(out.subarray(0, 1));
    cached = total;
    return next;
  };
  const cpuMs = (/** @type {any} */ since) => { const u = process.cpuUsage(since); return (u.user + u.system) / 1000; };
  let t0 = performance.now();
  let c0 = process.cpuUsage();
  // prompt_chunks: a size for every run, or a list of sizes (the last one repeated)
  const sizes = Array.isArray(prompt_chunks) ? prompt_chunks : [prompt_chunks > 0 ? prompt_chunks : prompt_ids.length];
  let first = 0;
  for (let at = 0, i = 0; at < prompt_ids.length; i++) {
    const size = sizes[Math.min(i, sizes.length - 1)];
    first = step(prompt_ids.slice(at, at + size));
    at += size;
  }
  tokens.push(first);
  const prefill_ms = performance.now() - t0;
  const prefill_cpu_ms = cpuMs(c0);
  t0 = performance.now();
  c0 = process.cpuUsage();
  threadStats(true);
  while (tokens.length < new_tokens) tokens.push(step([tokens[tokens.length - 1]]));
  const decode_ms = performance.now() - t0;
  const decode_cpu_ms = cpuMs(c0);
  const stats = threadStats(false);
  e.dispose(Int32Array.from(kv));
  // CPU time counts every thread of the process: with n threads it is up to n x the wall time.
  return { tokens, prefill_ms, decode_ms, prefill_cpu_ms, decode_cpu_ms, bytes: e.info.bytes,
    decode_jobs: stats[0], decode_sleeps_main: stats[1], decode_sleeps_workers: stats[2],
    decode_joins: stats[3], generation: stats[4] };
}

// The pool's counters (threads.c engine_thread_stats): [jobs, sleeps of the calling
// thread, sleeps of the workers, jobs joined by workers] since the last reset, and the
// pool's generation (older builds leave the last two 0).
let statsAt = 0;  // 5 int32 of engine memory, allocated once an engine
function threadStats(reset) {
  const x = engine.x;
  if (!x.engine_thread_stats) return [0, 0, 0, 0, 0];  // a build without the counters (benchmark baselines)
  if (!statsAt) statsAt = x.engine_alloc(20) >>> 0;
  x.engine_thread_stats(statsAt, reset ? 1 : 0);
  return Array.from(new Int32Array(engine.memory.buffer, statsAt, 5));
}

// ---- kernels ---------------------------------------------------------------------------

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function toHalf(v) {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  const mant = (u >>> 13) & 0x3ff;
  if (exp <= 0) return sign;
  return sign | (exp << 10) | mant;
}

function fromHalf(h) {
  const exp = (h >> 10) & 0x1f, frac = h & 0x3ff, sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// Random blocks of one kind in a fresh engine instance; SIMD kernel, scalar reference and
// a float computation here (dequantized weights . the activations as the kernels quantize
// them: an independent check of the integer arithmetic).
// float32: scales and minima as float32 tables (K-quant exports) instead of float16.
async function kernel({ wasm, bits, bs, n, k, m, zero_points, mins, bias, seed, reps, act_bits = 8, float32 = false,
  gemm16 = false }) {
  const { instance, memory } = await bare(wasm);
  const x = instance.exports;
  const rand = rng(seed);
  const kb = k / bs;
  const qBytes = n * kb * bs * bits / 8;
  const alloc = (bytes) => x.engine_alloc(bytes) >>> 0;
  const tableBytes = float32 ? 4 : 2;
  const pq = alloc(qBytes), ps = alloc(n * kb * tableBytes), pz = zero_points ? alloc(n * Math.ceil(kb / 2)) : 0;
  const pm = mins ? alloc(kb * n * tableBytes) : 0, pb = bias ? alloc(n * 4) : 0, px = alloc(m * k * 4);
  const py = alloc(m * n * 4), pr = alloc(m * n * 4), scratch = alloc(m * (k + 256) * 16 + 16 * k + 4096);
  const u8 = () => new Uint8Array(memory.buffer);
  const q = new Uint8Array(memory.buffer, pq, qBytes);
  for (let i = 0; i < qBytes; i++) q[i] = Math.floor(rand() * 256);
  // Float32 tables get values no float16 holds (products of a half and a 6-bit integer).
  const table = (p, count, size) => {
    if (!float32) {
      const h = new Uint16Array(memory.buffer, p, count);
      for (let i = 0; i < count; i++) h[i] = toHalf((rand() * 2 - 1) * size);
      return (i) => fromHalf(h[i]);
    }
    const f = new Float32Array(memory.buffer, p, count);
    for (let i = 0; i < count; i++) f[i] = Math.fround(fromHalf(toHalf((rand() * 2 - 1) * size / 63)) * (1 + Math.floor(rand() * 63)));
    return (i) => f[i];
  };
  const scaleAt = table(ps, n * kb, 0.02);
  if (pz && zero_points !== 'zeros') { const z = new Uint8Array(memory.buffer, pz, n * Math.ceil(kb / 2)); for (let i = 0; i < z.length; i++) z[i] = Math.floor(rand() * 256); }
  const minAt = pm ? table(pm, kb * n, 0.1) : () => 0;
  if (pb) { const b = new Float32Array(memory.buffer, pb, n); for (let i = 0; i < n; i++) b[i] = rand() - 0.5; }
  const xs = new Float32Array(memory.buffer, px, m * k);
  for (let i = 0; i < xs.length; i++) xs[i] = (rand() * 2 - 1) * (i % 7 === 0 ? 4 : 1);
  void u8;
  const args = [bits, bs, n, k, pq, ps, pz, pm, pb, px, m];
  const flags = (float32 ? (1 | (pm ? 2 : 0)) : 0) | (gemm16 ? 4 : 0);
  x.engine_test_matmul(0, act_bits, 1, ...args, py, scratch, flags);  // warm-up
  let started = performance.now();
  const cpu = process.cpuUsage();
  if (x.engine_test_matmul(0, act_bits, reps, ...args, py, scratch, flags) !== 0) throw new Error('kernel rejected the shape');
  const simdMs = (performance.now() - started) / reps;
  const used = process.cpuUsage(cpu);
  const cpuMs = (used.user + used.system) / 1000 / reps;
  started = performance.now();
  x.engine_test_matmul(1, act_bits, 1, ...args, pr, scratch, flags);
  const refMs = performance.now() - started;
  const y = new Float32Array(memory.buffer, py, m * n), r = new Float32Array(memory.buffer, pr, m * n);
  // Float check: W dequantized here, activations quantized here the same way (round half even).
  const zpOf = (row, b) => {
    if (bits === 8) return 128;
    if (!pz) return 8;
    const byte = new Uint8Array(memory.buffer, pz)[row * Math.ceil(kb / 2) + (b >> 1)];
    return b & 1 ? byte >> 4 : byte & 15;
  };
  let maxSimd = 0, maxRef = 0, scale = 0;
  const rowsChecked = Math.min(n, 64);
  for (let t = 0; t < m; t++) {
    const xa = xs.subarray(t * k, (t + 1) * k);
    const aq = new Float32Array(k);
    const asc = new Float32Array(kb), fsum = new Float32Array(kb);
    for (let b = 0; b < kb; b++) {
      let amax = 0;
      for (let i = 0; i < bs; i++) { amax = Math.max(amax, Math.abs(xa[b * bs + i])); fsum[b] += xa[b * bs + i]; }
      if (act_bits === 32) {  // float activations: used as they are
        asc[b] = 1;
        for (let i = 0; i < bs; i++) aq[b * bs + i] = xa[b * bs + i];
        continue;
      }
      const top = act_bits === 16 ? 32639 : 127;
      asc[b] = Math.fround(amax / top);
      const inv = amax > 0 ? Math.fround(top / amax) : 0;
      for (let i = 0; i < bs; i++) {
        const v = Math.fround(xa[b * bs + i] * inv);
        let r0 = Math.round(v);
        if (Math.abs(v % 1) === 0.5 && r0 % 2 !== 0) r0 -= 1;  // ties to even
        aq[b * bs + i] = r0;
      }
    }
    for (let row = 0; row < rowsChecked; row++) {
      let acc = 0;
      for (let b = 0; b < kb; b++) {
        const ws = scaleAt(row * kb + b);
        const zp = zpOf(row, b);
        let dot = 0;
        for (let i = 0; i < bs; i++) {
          const kk = b * bs + i;
          const byte = q[row * kb * bs * bits / 8 + (bits === 8 ? kk : kk >> 1)];
          const code = bits === 8 ? byte : kk & 1 ? byte >> 4 : byte & 15;
          dot += (code - zp) * aq[kk];
        }
        acc += ws * asc[b] * dot;
        if (pm) acc += minAt(b * n + row) * fsum[b];
      }
      if (pb) acc += new Float32Array(memory.buffer, pb)[row];
      maxSimd = Math.max(maxSimd, Math.abs(y[t * n + row] - acc));
      maxRef = Math.max(maxRef, Math.abs(r[t * n + row] - acc));
      scale = Math.max(scale, Math.abs(acc));
    }
  }
  let maxSimdRef = 0;
  for (let i = 0; i < m * n; i++) maxSimdRef = Math.max(maxSimdRef, Math.abs(y[i] - r[i]));
  const finite = y.every(Number.isFinite);
  return { max_simd_vs_ref: maxSimdRef, max_simd_vs_float: maxSimd, max_ref_vs_float: maxRef, scale, finite,
    simd_ms: simdMs, ref_ms: refMs, gmacs: (m * n * k) / (simdMs * 1e6), cpu_gmacs: (m * n * k) / (cpuMs * 1e6), relaxed: x.engine_relaxed_simd() };
}

async function bare(wasm) {
  const bytes = readFileSync(wasm);
  const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true });
  const { instance } = await WebAssembly.instantiate(bytes, { env: { memory } });
  return { instance, memory };
}

const methods = {
  init,
  evaluate,
  generate,
  kernel,
  relaxedSimdSupported: () => relaxedSimdSupported(),
  setFeedNames: ({ names }) => engine.setFeedNames(names),
  outputNames: () => engine.outputNames(),
  int64: ({ values, dims }) => engine.int64(new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer), dims),
  emptyKV: () => engine.emptyKV(),
  run: ({ handles }) => Array.from(engine.run(Int32Array.from(handles))),
  topK: ({ handle, k }) => { const t = engine.topK(handle, k); return { ids: Array.from(t.ids), values: Array.from(t.values) }; },
  logitsRow: ({ handle }) => Array.from(engine.logitsRow(handle)),
  // The page's sampler over the engine's row, as web/model_backend.js runs it.
  pick: ({ handle, settings, previous, uniform }) => sampler.pick(engine.logitsRow(handle), settings, Int32Array.from(previous), uniform),
  distribution: ({ handle, settings, previous }) => {
    const kept = sampler.distribution(engine.logitsRow(handle), settings, Int32Array.from(previous));
    return { ids: Array.from(kept.ids), probs: Array.from(kept.probs) };
  },
  dispose: ({ handles }) => engine.dispose(Int32Array.from(handles)),
  liveTensors: () => engine.liveTensors(),
  info: () => engine.info,
  // The prefill GEMM of the int16 mode: true over int16 blocks, false over float32 activations.
  setPrefillInt16: ({ on }) => { engine.x.engine_set_prefill_int16(on ? 1 : 0); return null; },
  release: () => { engine?.release(); engine = null; return null; },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { method, params } = JSON.parse(line);
  let reply;
  try {
    reply = { result: (await methods[method](params ?? {})) ?? null };
  } catch (error) {
    reply = { error: String(error?.stack ?? error) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
engine?.release();

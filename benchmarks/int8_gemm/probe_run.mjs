// The probe's run, in node (probe.mjs) or in a browser page (python -m benchmarks.int8_gemm
// --browser): random 4-bit weights and int16 / int8 activations; every kernel checked bit for
// bit against its scalar reference, then timed alternating with the others, best of ROUNDS
// rounds. bytes: probe.wasm; log: one line of output.

const KERNELS = [
  ['gemm16_r8t3', 'ref16', 'int16: i32x4.dot_i16x8_s, 8 rows x 3 tokens a tile (the engine\'s)'],
  ['gemm16_r8t4', 'ref16', 'int16: i32x4.dot_i16x8_s, 8 rows x 4 tokens a tile'],
  ['gemm16_t6', 'ref16', 'int16: i32x4.dot_i16x8_s, 4 rows x 6 tokens a tile'],
  ['gemm8_t4', 'ref8', 'int8: i16x8.relaxed_dot_i8x16_i7x16, 4 tokens a tile'],
  ['gemm8_t6', 'ref8', 'int8: i16x8.relaxed_dot_i8x16_i7x16, 6 tokens a tile'],
];
const SHAPES = [[1536, 576], [576, 1536]];  // N x K: output rows x inputs
const BS = 32, M = 64, ROUNDS = 5, SECONDS = 0.3;  // SECONDS: a kernel's time a round

export async function runProbe(bytes, log) {
  const { instance } = await WebAssembly.instantiate(bytes);
  const X = instance.exports;

  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const fill = (View, ptr, n, f) => new View(X.memory.buffer, ptr, n).forEach((_, i, a) => (a[i] = f()));

  function setup(N, K) {
    const kb = K / BS;
    const q = X.alloc(N * K / 2), zp = X.alloc(N * kb), ws = X.alloc(N * kb * 4);
    const a16 = X.alloc(M * K * 2), a8 = X.alloc(M * K), as = X.alloc(M * kb * 4), asum = X.alloc(M * kb * 4);
    const y = X.alloc(M * N * 4), tile = X.alloc(8 * K * 2 + kb * 32), P = X.alloc(48);
    fill(Uint8Array, q, N * K / 2, () => (rnd() * 256) | 0);
    fill(Uint8Array, zp, N * kb, () => (rnd() * 16) | 0);
    fill(Float32Array, ws, N * kb, () => 0.001 + rnd() * 0.01);
    fill(Int16Array, a16, M * K, () => Math.round((rnd() * 2 - 1) * 32639));
    fill(Int8Array, a8, M * K, () => Math.round((rnd() * 2 - 1) * 127));
    fill(Float32Array, as, M * kb, () => 0.0001 + rnd() * 0.01);
    const a8v = new Int8Array(X.memory.buffer, a8, M * K), sums = new Int32Array(X.memory.buffer, asum, M * kb);
    for (let t = 0; t < M; t++)
      for (let b = 0; b < kb; b++) for (let i = 0; i < BS; i++) sums[t * kb + b] += a8v[t * K + b * BS + i];
    new Int32Array(X.memory.buffer, P, 12).set([N, K, kb, M, q, zp, ws, a16, a8, as, asum, y]);
    return { P, tile, y, n: N * M };
  }

  function check(s, kernel, ref) {
    const y = () => new Float32Array(X.memory.buffer, s.y, s.n);
    X[ref](s.P);
    const want = y().slice();
    y().fill(NaN);
    X[kernel](s.P, s.tile);
    const got = y();
    for (let i = 0; i < s.n; i++)
      if (!Object.is(got[i], want[i])) throw new Error(`${kernel}: y[${i}] = ${got[i]}, reference ${want[i]}`);
  }

  const time = (s, kernel, reps) => {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) X[kernel](s.P, s.tile);
    return (performance.now() - t0) / 1e3 / reps;
  };

  const rate = {};  // kernel -> GMAC/s a shape
  for (const [N, K] of SHAPES) {
    const s = setup(N, K);
    for (const [kernel, ref] of KERNELS) check(s, kernel, ref);
    const reps = {};
    for (const [kernel] of KERNELS) {
      let r = 1, total;
      while ((total = time(s, kernel, r) * r) < 0.05) r *= 2;
      reps[kernel] = Math.max(1, Math.round(r * SECONDS / total));
    }
    const best = {};
    for (let round = 0; round < ROUNDS; round++)
      for (const [kernel] of KERNELS) best[kernel] = Math.min(best[kernel] ?? Infinity, time(s, kernel, reps[kernel]));
    for (const [kernel] of KERNELS) (rate[kernel] ??= []).push(N * K * M / best[kernel] / 1e9);
  }

  const shapes = SHAPES.map(([N, K]) => `${N}x${K}`);
  log(`${M} tokens, blocks of 32, 4-bit weights; NxK = output rows x inputs; outputs checked ` +
    `exact against scalar references; best of ${ROUNDS} rounds\n`);
  log(`| kernel | ${shapes.map((s) => `GMAC/s at ${s}`).join(' | ')} | ratio to the int16 kernel (${shapes.join(', ')}) |`);
  log(`|---|${shapes.map(() => '---:|').join('')}---:|`);
  const base = rate[KERNELS[0][0]];
  for (const [kernel, , label] of KERNELS)
    log(`| ${label} | ${rate[kernel].map((r) => r.toFixed(2)).join(' | ')} | ` +
      `${rate[kernel].map((r, i) => (r / base[i]).toFixed(2)).join(', ')} |`);

  // The inner loops alone (probe.c's peaks): the ceiling each instruction gives the kernels.
  // [export, multiply-adds a rep, label]
  const STEPS = 256, TOKENS = 6;
  const PEAKS = [
    ['peak16_r8t3', STEPS / 2 * 3 * 16, 'i32x4.dot_i16x8_s + i32x4.add, 2 weight vectors x 3 tokens (the int16 kernel)'],
    ['peak16_r8t4', STEPS / 2 * 4 * 16, 'i32x4.dot_i16x8_s + i32x4.add, 2 weight vectors x 4 tokens'],
    ['peak16', STEPS * TOKENS * 8, 'i32x4.dot_i16x8_s + i32x4.add, 1 weight vector x 6 tokens'],
    ['peak8', STEPS * TOKENS * 16, 'i16x8.relaxed_dot_i8x16_i7x16 + i16x8.add (the int8 kernel)'],
    ['peak_fma', STEPS * TOKENS * 4, 'f32x4.relaxed_madd (fused multiply-add)'],
    ['peak_f32', STEPS * TOKENS * 4, 'f32x4.mul + f32x4.add'],
  ];
  const w = X.alloc(STEPS * 16), x = X.alloc(TOKENS * STEPS * 4);
  fill(Float32Array, w, STEPS * 4, () => 0.5 + rnd());  // floats for the float loops; any bits do for the integer ones
  fill(Float32Array, x, TOKENS * STEPS, () => 0.5 + rnd());
  const peakTime = (kernel, reps) => {
    const t0 = performance.now();
    X[kernel](w, x, reps);
    return (performance.now() - t0) / 1e3;
  };
  const peakReps = {}, peakBest = {};
  for (const [kernel] of PEAKS) {
    let r = 16, total;
    while ((total = peakTime(kernel, r)) < 0.05) r *= 2;
    peakReps[kernel] = Math.max(1, Math.round(r * SECONDS / total));
  }
  for (let round = 0; round < ROUNDS; round++)
    for (const [kernel] of PEAKS) peakBest[kernel] = Math.min(peakBest[kernel] ?? Infinity, peakTime(kernel, peakReps[kernel]));
  log(`\nThe inner loops alone (weight vectors, then each token's splat and multiply-adds, ` +
    `all in L1; no unpacking or scales; best of ${ROUNDS} rounds)\n`);
  log('| loop | GMAC/s | share of the int16 kernel\'s loop |');
  log('|---|---:|---:|');
  const peakRate = Object.fromEntries(PEAKS.map(([kernel, macs]) =>
    [kernel, (peakReps[kernel] * macs) / peakBest[kernel] / 1e9]));
  for (const [kernel, , label] of PEAKS)
    log(`| ${label} | ${peakRate[kernel].toFixed(2)} | ${(peakRate[kernel] / peakRate.peak16_r8t3).toFixed(2)} |`);
}

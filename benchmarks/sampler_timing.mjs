// Times web/sampler.js `pick` on rows given as JSON on stdin ({rows, settings, previous});
// prints {name: milliseconds per call} as JSON. Used by benchmarks/sampling_bench.py.
import { readFileSync } from 'node:fs';

const source = readFileSync(new URL('../web/sampler.js', import.meta.url), 'utf8');
const sampler = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
const input = JSON.parse(readFileSync(0, 'utf8'));
const rows = input.rows.map((/** @type {number[]} */ r) => Float32Array.from(r));
const previous = Int32Array.from(input.previous);
/** @type {Record<string, number>} */
const out = {};
for (const [name, settings] of Object.entries(input.settings)) {
  for (let i = 0; i < 20; i++) sampler.pick(rows[i % rows.length], settings, previous, 0.5); // warm-up
  const calls = 200;
  const started = performance.now();
  for (let i = 0; i < calls; i++) sampler.pick(rows[i % rows.length], settings, previous, (i * 0.37) % 1);
  out[name] = (performance.now() - started) / calls;
}
process.stdout.write(JSON.stringify(out));

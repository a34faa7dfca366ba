// Runs web/sampler.js in node for tests/runtime/test_sampling.py: reads
// {rows: [[...float32...]], cases: [{row, settings, previous, uniform}]} as JSON on stdin
// and prints, per case, the kept ids/probabilities (most likely first) and the pick.
import { readFileSync } from 'node:fs';

const source = readFileSync(new URL('../../web/sampler.js', import.meta.url), 'utf8');
const sampler = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
const input = JSON.parse(readFileSync(0, 'utf8'));
const rows = input.rows.map((/** @type {number[]} */ r) => Float32Array.from(r));
const out = input.cases.map((/** @type {any} */ c) => {
  const row = rows[c.row];
  const previous = Int32Array.from(c.previous);
  const kept = sampler.distribution(row, c.settings, previous);
  return { ids: Array.from(kept.ids), probs: Array.from(kept.probs),
    pick: sampler.pick(row, c.settings, previous, c.uniform) };
});
process.stdout.write(JSON.stringify(out));

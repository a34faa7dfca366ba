// Runs web/sampler.js in node for tests/runtime/test_sampling.py: reads
// {rows: [[...float32...]], cases: [{row, settings, previous, uniform}]} as JSON on stdin
// and prints, per case, the kept ids/probabilities (most likely first), the pick, and
// whether the row is unchanged after both calls.
import { readFileSync } from 'node:fs';

const source = readFileSync(new URL('../../web/sampler.js', import.meta.url), 'utf8');
const sampler = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
const input = JSON.parse(readFileSync(0, 'utf8'));
const rows = input.rows.map((/** @type {number[]} */ r) => Float32Array.from(r));
const out = input.cases.map((/** @type {any} */ c) => {
  const row = rows[c.row];
  const previous = Int32Array.from(c.previous);
  const before = row.slice();
  const kept = sampler.distribution(row, c.settings, previous);
  const pick = sampler.pick(row, c.settings, previous, c.uniform);
  return { ids: Array.from(kept.ids), probs: Array.from(kept.probs), pick,
    unchanged: row.every((x, i) => Object.is(x, before[i])) };
});
process.stdout.write(JSON.stringify(out));

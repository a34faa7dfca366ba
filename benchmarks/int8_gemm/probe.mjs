// node --experimental-wasm-relaxed-simd --no-liftoff probe.mjs PROBE.wasm (see probe_run.mjs)
import { readFileSync } from 'node:fs';
import { runProbe } from './probe_run.mjs';

if (process.argv.length < 3) throw new Error('usage: probe.mjs PROBE.wasm');
await runProbe(readFileSync(process.argv[2]), console.log);

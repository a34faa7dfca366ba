// Runs pocketlm_runtime's tokenizer under the Pyodide Python (the pinned npm package), as the
// page does. Usage: node pyodide_tokenize.mjs JOB.json  (JOB: {runtime_dir, tokenizer_json,
// texts}); prints {"python": version, "unicode": unicodedata version, "ids": [[...], ...]}.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadPyodide } from 'pyodide';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const pyodide = await loadPyodide();
const target = '/home/pyodide/pocketlm_runtime';
pyodide.FS.mkdirTree(target);
for (const name of readdirSync(job.runtime_dir)) {
  if (name.endsWith('.py')) {
    pyodide.FS.writeFile(join(target, name), readFileSync(join(job.runtime_dir, name)));
  }
}
pyodide.FS.writeFile('/home/pyodide/tokenizer.json', readFileSync(job.tokenizer_json));
pyodide.globals.set('job_json', JSON.stringify(job));
const out = pyodide.runPython(`
import json, sys, time, unicodedata
from pocketlm_runtime.tokenizer import Tokenizer
job = json.loads(job_json)
tok = Tokenizer.from_file("/home/pyodide/tokenizer.json")
start = time.perf_counter()
ids = [tok.encode(text, add_special_tokens=False) for text in job["texts"]]
json.dumps({"python": sys.version.split()[0], "unicode": unicodedata.unidata_version, "ids": ids,
            "encode_seconds": time.perf_counter() - start})
`);
process.stdout.write(out);

// Runs a Python file under the Pyodide Python (the pinned npm package) with a runtime package
// folder copied into its filesystem, as the page does. Usage:
//   node benchmarks/pyodide_python.mjs SCRIPT.py PACKAGE_DIR [DATA_FILE ...]
// The package folder lands in /home/pyodide/<its name>, each data file in /home/pyodide/;
// the script's last expression is not used: it prints (stdout is passed through).
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadPyodide } from 'pyodide';

const [script, packageDir, ...dataFiles] = process.argv.slice(2);
const pyodide = await loadPyodide({ stdout: (line) => console.log(line) });
const target = join('/home/pyodide', basename(packageDir));
pyodide.FS.mkdirTree(target);
for (const name of readdirSync(packageDir)) {
  if (name.endsWith('.py')) pyodide.FS.writeFile(join(target, name), readFileSync(join(packageDir, name)));
}
for (const file of dataFiles) pyodide.FS.writeFile(join('/home/pyodide', basename(file)), readFileSync(file));
pyodide.runPython(readFileSync(script, 'utf8'));

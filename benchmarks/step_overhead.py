"""Python's share of a decode step, alone: pocketlm_runtime.browser's generation loop under
the Pyodide Python (node + the pinned npm package) over a model backend that answers at once.

    python -m benchmarks.step_overhead --model EXPORTED_FOLDER [--against OTHER_RUNTIME]
        [--tokens 200] [--repeats 5] [--profile]

The backend (JavaScript, in the script below) keeps a handle table like web/model_backend.js,
returns a logits row of the model's vocabulary size from ``run`` and picks its argmax over the
whole row, as the page's greedy sampler does; the picked ids walk through the tokenized
held-out text, so detokenizing and streaming see real tokens. What is left is what the page
pays per token besides the engine's step: the loop, the calls across to JS, the pick,
detokenizing and streaming. The page's own figure (with the real engine, noisier) is
``browser_bench --sampling-cost``'s "Python ms/step".

``--against`` times another pocketlm_runtime folder (e.g. an older checkout's) in alternating
node processes, so both rows share the machine's state. Prints the median ms per decode step
over ``--repeats`` answers of ``--tokens`` tokens, greedy and with the page's repetition
penalty (which sends the sequence so far with every pick), and with ``--profile`` the
functions that take the most time (cProfile, this checkout's runtime).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r'''
import cProfile, io, json, pstats, sys, time
import js
from pyodide.ffi import create_proxy, to_js
sys.path.insert(0, "/home/pyodide")
job = json.load(open("/home/pyodide/job.json"))
js.eval("""
globalThis.quickBackend = (vocab) => {
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) row[i] = Math.sin(i * 7.1);
  const table = new Map();
  let next = 1, picks = 0, ids = [0];
  return {
    setIds(list) { ids = list; },
    setFeedNames(names) {},
    outputNames() { return job.outputs; },
    run(handles) {
      const out = new Int32Array(job.outputs.length);
      for (let i = 0; i < out.length; i++) { out[i] = next; table.set(next++, i === 0 ? row : null); }
      return out;
    },
    int64(bytes, dims) { table.set(next, bytes); return next++; },
    emptyKV() { table.set(next, null); return next++; },
    pick(handle, settings, previous, uniform) {
      const r = table.get(handle);
      let best = 0;
      for (let i = 1; i < r.length; i++) if (r[i] > r[best]) best = i;
      return ids[(best + picks++) % ids.length];
    },
    distribution() { throw new Error('not used'); },
    dispose(handles) { for (const h of handles) table.delete(h); },
  };
};
""")
from pocketlm_runtime import browser
browser.StopSignal.PAUSE_EVERY = float("inf")  # no JSPI in node: the stop check stays a plain call
config = open("/home/pyodide/pocketlm.json").read()
tokenizer = open("/home/pyodide/tokenizer.json").read()
js.job = to_js({"outputs": job["outputs"]}, dict_converter=js.Object.fromEntries)
backend = js.quickBackend(job["vocab"])
model = browser.load_model(config, tokenizer, backend)
backend.setIds(to_js(model.model.tokenizer.encode(job["text"], add_special_tokens=False)))
post, stopped, pause = create_proxy(lambda text: None), create_proxy(lambda: False), create_proxy(lambda: None)
settings = {"greedy": {"temperature": 0},
            "penalty": {"temperature": 0, "repetitionPenalty": 1.1}}
model.generate("Once upon a time", to_js({"maxNewTokens": job["tokens"]}, dict_converter=js.Object.fromEntries),
               post, stopped, pause, False)  # warm-up: JIT, imports, caches
out = {}
for label, options in settings.items():
    options = to_js({**options, "maxNewTokens": job["tokens"]}, dict_converter=js.Object.fromEntries)
    model.new_chat()
    start = time.perf_counter()
    model.generate("Once upon a time", options, post, stopped, pause, False)
    out[label] = (time.perf_counter() - start) * 1000 / job["tokens"]
if job["profile"]:
    profile = cProfile.Profile()
    model.new_chat()
    profile.enable()
    model.generate("Once upon a time", to_js({"temperature": 0, "maxNewTokens": job["tokens"]},
                   dict_converter=js.Object.fromEntries), post, stopped, pause, False)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
    out["profile"] = text.getvalue()
print(json.dumps(out))
'''


def measure(runtime: Path, model: Path, folder: Path) -> dict[str, object]:
    done = subprocess.run(["node", str(ROOT / "benchmarks/pyodide_python.mjs"), str(folder / "measure.py"),
                           str(runtime), str(folder / "job.json"), str(model / "pocketlm.json"),
                           str(model / "tokenizer.json")],
                          check=False, text=True, capture_output=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the Pyodide run of {runtime} failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--against", type=Path, help="another pocketlm_runtime folder, timed alternately")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if not (args.model / "pocketlm.json").is_file():
        raise SystemExit(f"{args.model} has no pocketlm.json; give an exported model folder")
    if args.against and not (args.against / "browser.py").is_file():
        raise SystemExit(f"{args.against} has no browser.py; give a pocketlm_runtime folder")
    sys.path.insert(0, str(ROOT))
    from pocketlm_runtime.model_info import ModelInfo

    info = ModelInfo.from_text((args.model / "pocketlm.json").read_text(encoding="utf-8"))
    runtimes = {"this checkout": ROOT / "pocketlm_runtime"}
    if args.against:
        runtimes["--against"] = args.against.resolve()
    steps: dict[str, dict[str, list[float]]] = {name: {"greedy": [], "penalty": []} for name in runtimes}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "measure.py").write_text(MEASURE, encoding="utf-8")
        text = (ROOT / "model_export" / "eval_text.txt").read_text(encoding="utf-8")[:4000]
        job = {"tokens": args.tokens, "vocab": info.vocab_size, "text": text, "profile": False,
               "outputs": [info.outputs.get("logits", "logits"), *info.kv.present_names()]}
        (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
        for _ in range(args.repeats):  # alternating, one answer of each setting per process
            for label, runtime in runtimes.items():
                result = measure(runtime, args.model, folder)
                for setting in ("greedy", "penalty"):
                    steps[label][setting].append(float(result[setting]))  # type: ignore[arg-type]
        print(f"Python's share of a decode step (Pyodide in node, a backend that answers at once), "
              f"{args.tokens} tokens, medians of {args.repeats} answers:\n")
        print("| runtime | greedy ms/step | with repetition penalty ms/step |")
        print("|---|---|---|")
        for label, runtime in runtimes.items():
            row = steps[label]
            print(f"| {label} ({runtime}) | {statistics.median(row['greedy']):.3f} | "
                  f"{statistics.median(row['penalty']):.3f} |")
        if args.profile:
            job["profile"] = True
            (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
            print("\n" + str(measure(runtimes["this checkout"], args.model, folder)["profile"]))


if __name__ == "__main__":
    main()

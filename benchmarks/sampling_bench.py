"""Cost of sampling over the whole logits row, per decode step, on the default model.

    python -m benchmarks.sampling_bench [--model FOLDER]

Times one ``pick`` (repetition penalty over a 256-token history, temperature, top-k, top-p,
the draw) on real rows of the default model's vocabulary: ``web/sampler.js`` in node (the
same V8 engine as Chromium) and numpy (native.py), for greedy, the page's settings and the
whole distribution, next to a native decode step of the same model. Prints a Markdown
table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from pocketlm_export.export import ExportOptions, export
from pocketlm_runtime import native
from pocketlm_runtime.sampling import SamplingOptions

from .native_speed import LONG_PROMPT, measure

SETTINGS = {
    "greedy (engine default)": SamplingOptions(),
    "page: T 0.3, top-k 50, top-p 0.9, penalty 1.1": SamplingOptions(
        temperature=0.3, top_k=50, top_p=0.9, repetition_penalty=1.1),
    "whole row: T 1, top-k 0": SamplingOptions(temperature=1.0, top_k=0),
    "nucleus over the row: T 1, top-k 0, top-p 0.95": SamplingOptions(temperature=1.0, top_k=0, top_p=0.95),
}


def real_rows(model_dir: Path, count: int = 16) -> tuple[list[np.ndarray], list[int]]:
    model = native.load_native(model_dir, threads=1)
    session, info = model.generator.session, model.info
    ids = model.tokenizer.encode(LONG_PROMPT, add_special_tokens=False)[:256]
    rows = []
    for end in range(len(ids) - count, len(ids)):
        feeds = {"input_ids": session.int64(ids[:end], (1, end)),
                 "attention_mask": session.int64([1] * end, (1, end)),
                 "position_ids": session.int64(list(range(end)), (1, end))}
        feeds.update({name: session.empty_kv() for name in info.kv.past_names()})
        rows.append(np.asarray(session.run(feeds)["logits"][0, -1], dtype=np.float32))
    return rows, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("out/bench-browser/model"))
    args = parser.parse_args()
    if not (args.model / "pocketlm.json").is_file():
        export(None, args.model, ExportOptions(quant="auto", force=True, progress=False))
    rows, history = real_rows(args.model)
    payload = {"rows": [r.tolist() for r in rows], "previous": history,
               "settings": {name: {"temperature": o.temperature, "topK": o.top_k, "topP": o.top_p,
                                   "repetitionPenalty": o.repetition_penalty} for name, o in SETTINGS.items()}}
    script = Path(__file__).with_name("sampler_timing.mjs")
    js = json.loads(subprocess.run(["node", str(script)], input=json.dumps(payload), capture_output=True,
                                   text=True, check=True).stdout)
    numpy_ms = {}
    for name, options in SETTINGS.items():
        started = time.perf_counter()
        for i in range(100):
            native.pick(rows[i % len(rows)], options, history, (i * 0.37) % 1)
        numpy_ms[name] = (time.perf_counter() - started) / 100 * 1000
    step_ms = {t: 1000 / measure(args.model, t)["decode"] for t in (1, 2)}
    print(f"\nDefault model ({rows[0].shape[0]} tokens), 256-token history; native decode step: "
          f"{step_ms[1]:.1f} ms (1 thread), {step_ms[2]:.1f} ms (2 threads)\n")
    print("| settings | JS pick ms | JS / 2T step | numpy pick ms | numpy / 2T step |")
    print("|---|---|---|---|---|")
    for name in SETTINGS:
        print(f"| {name} | {js[name]:.3f} | {100 * js[name] / step_ms[2]:.1f}% | {numpy_ms[name]:.3f} | "
              f"{100 * numpy_ms[name] / step_ms[2]:.1f}% |")


if __name__ == "__main__":
    main()

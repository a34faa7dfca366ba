"""Export benchmark: time and peak memory of exporting the default model, then native
decode speed of the exported graph. Prints a table; asserts nothing.

    make bench-export        (or: python -m benchmarks.export_bench)
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions

PROMPT = "Once upon a time"


def run_export(out: Path, quant: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `pocketlm export` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pocketlm_build.cli", "export", "-o", str(out),
                    "--quant", quant, "--quiet", "--force"], check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far; the export is the largest.
    return seconds, max(peak, before) / 1024


def decode_speed(model_dir: Path, threads: int, tokens: int) -> tuple[float, float]:
    model = load_native(model_dir, threads=threads)
    opts = SamplingOptions(max_new_tokens=tokens)
    model.generate(PROMPT, SamplingOptions(max_new_tokens=4))  # warm-up
    model.new_chat()
    result = model.generate(PROMPT, opts)
    return result.timing.decode_tokens_per_second, result.timing.prefill_tokens_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quant", default="fp32")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        seconds, peak_mb = run_export(out, args.quant)
        size = sum(p.stat().st_size for p in out.iterdir())
        rows = [("export time", f"{seconds:.1f} s", "<= 60 s"),
                ("export peak RSS", f"{peak_mb:.0f} MB", "<= 3000 MB"),
                ("model folder", f"{size / 1e6:.1f} MB", "")]
        for threads in (1, 2):
            decode, prefill = decode_speed(out, threads, args.tokens)
            rows.append((f"generate decode, {threads} thread(s)", f"{decode:.1f} tok/s", ""))
            rows.append((f"generate prefill, {threads} thread(s)", f"{prefill:.1f} tok/s", ""))
    print(f"\nDefault model, quant={args.quant}, {args.tokens} new tokens, greedy\n")
    print(f"| {'measure':<32} | {'value':>12} | {'target':<10} |")
    print(f"|{'-' * 34}|{'-' * 14}|{'-' * 12}|")
    for name, value, target in rows:
        print(f"| {name:<32} | {value:>12} | {target:<10} |")


if __name__ == "__main__":
    main()

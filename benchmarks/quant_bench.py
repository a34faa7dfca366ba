"""Quantization benchmark: every mode on the default model, side by side in one run.

    make bench-quant        (or: python -m benchmarks.quant_bench)

For each mode: total bytes of the model folder, perplexity on the held-out text (from the
export's quality gate), native onnxruntime decode and prefill tokens/s at 1 and 2 threads,
and the ratio to fp32 measured in the same run. Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pocketlm_export.export import ExportOptions, export

from .native_speed import measure

MODES = ("fp32", "fp16", "q8", "exact", "q4")


def ensure_export(root: Path, mode: str, accuracy_level: int) -> Path:
    out = root / f"{mode}-acc{accuracy_level}"
    if not (out / "pocketlm.json").is_file():
        export(None, out, ExportOptions(quant=mode, force=True, progress=False, accuracy_level=accuracy_level))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench"))
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--accuracy-level", type=int, default=0)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    folders = {m: ensure_export(args.workdir, m, args.accuracy_level) for m in args.modes}
    rows = []
    for mode, folder in folders.items():
        report = json.loads((folder / "export_report.json").read_text())
        gate = (report.get("quality") or {}).get("candidates") or [{}]
        speeds = {t: measure(folder, t) for t in (1, 2)}
        rows.append((mode, report["total_bytes"], gate[-1].get("perplexity"), speeds))
    base = next((r for r in rows if r[0] == "fp32"), rows[0])
    ref_ppl = next((json.loads((f / "export_report.json").read_text())["quality"]["candidates"][-1]["reference_perplexity"]
                    for m, f in folders.items() if m != "fp32"), None)
    print(f"\nDefault model, native onnxruntime, accuracy level {args.accuracy_level}; "
          "decode: 64 new tokens; prefill: 195-token prompt; medians of 3\n")
    print("| mode | MB | perplexity | decode 1T tok/s | decode 2T tok/s | prefill 1T tok/s | prefill 2T tok/s | decode 2T vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, size, ppl, sp in rows:
        ratio = sp[2]["decode"] / base[3][2]["decode"]
        ppl_text = f"{ppl:.2f}" if ppl else (f"{ref_ppl:.2f}" if ref_ppl else "-")
        print(f"| {mode} | {size / 1e6:.1f} | {ppl_text} | {sp[1]['decode']:.1f} | {sp[2]['decode']:.1f} | "
              f"{sp[1]['prefill']:.0f} | {sp[2]['prefill']:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()

"""Quantization benchmark: every mode on the default model, side by side in one run.

    make bench-quant        (or: python -m benchmarks.quant_bench)

For each mode: total bytes of the model folder, perplexity on the held-out text and its
rise over the source's fp32 graph, top-1 agreement and greedy agreement with it (from the
export's quality gate), native onnxruntime decode and prefill tokens/s at 1 and 2 threads,
and the ratio to fp32 measured in the same run (``--quality-only`` skips the speeds).
Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pocketlm_export.export import ExportOptions, export

from .native_speed import measure

MODES = ("fp32", "fp16", "q8", "exact", "mixed", "q4")


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
    parser.add_argument("--quality-only", action="store_true", help="sizes and quality, no speeds")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    folders = {m: ensure_export(args.workdir, m, args.accuracy_level) for m in args.modes}
    rows = []
    for mode, folder in folders.items():
        report = json.loads((folder / "export_report.json").read_text())
        gate = (report.get("quality") or {}).get("candidates") or [{}]
        speeds = {} if args.quality_only else {t: measure(folder, t) for t in (1, 2)}
        rows.append((mode, report["total_bytes"], gate[-1], speeds))
    base = next((r for r in rows if r[0] == "fp32"), rows[0])
    ref_ppl = next((json.loads((f / "export_report.json").read_text())["quality"]["candidates"][-1]["reference_perplexity"]
                    for m, f in folders.items() if m != "fp32"), None)
    print(f"\nDefault model, native onnxruntime, accuracy level {args.accuracy_level}; quality against "
          "the fp32 graph of the same GGUF; decode: 64 new tokens; prefill: 195-token prompt; medians of 3\n")
    print("| mode | MB | perplexity | rise | top-1 agree | greedy agree | decode 1T tok/s | decode 2T tok/s "
          "| prefill 1T tok/s | prefill 2T tok/s | decode 2T vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, size, gate, sp in rows:
        ppl = gate.get("perplexity")
        ppl_text = f"{ppl:.2f}" if ppl else (f"{ref_ppl:.2f}" if ref_ppl else "-")
        rise = f"{100 * gate['perplexity_rise']:+.1f}%" if ppl else "0 (reference)"
        top1 = f"{100 * gate['top1_agreement']:.1f}%" if ppl else "100%"
        greedy = f"{100 * gate['greedy_agreement']:.0f}%" if ppl else "100%"
        speed = "| - | - | - | - | -"
        if sp and base[3]:
            ratio = sp[2]["decode"] / base[3][2]["decode"]
            speed = (f"| {sp[1]['decode']:.1f} | {sp[2]['decode']:.1f} | {sp[1]['prefill']:.0f} | "
                     f"{sp[2]['prefill']:.0f} | {ratio:.2f}x")
        print(f"| {mode} | {size / 1e6:.1f} | {ppl_text} | {rise} | {top1} | {greedy} {speed} |")


if __name__ == "__main__":
    main()

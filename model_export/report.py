"""The export report: what was exported, file sizes, timings; as JSON and as Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .sources import SourceModel


def folder_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def write_report(folder: Path, src: SourceModel, config: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    cfg = src.config
    report: dict[str, Any] = {
        "name": cfg.name,
        "architecture": cfg.architecture,
        "source": src.source,
        "quantization": config["quantization"],
        "logits": config["logits"],
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "heads": f"{cfg.num_heads} query / {cfg.num_kv_heads} key-value, head dim {cfg.head_dim}",
        "context_length": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "chat_templates": (["default"] if config.get("chat_template") else [])
        + sorted(config.get("chat_templates") or {}),
        **facts,
    }
    report["files"] = folder_sizes(folder)
    report["total_bytes"] = sum(report["files"].values())
    (folder / "export_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / "export_report.md").write_text(markdown(report), encoding="utf-8")
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Export report: {report['name']}",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {report['architecture']} |",
        f"| source | {report['source'].get('kind')} `{report['source'].get('file')}` (sha256 {report['source'].get('sha256', '')[:16]}...) |",
        *lora_lines(report["source"].get("lora")),
        f"| parameters | {report['parameters']:,} |",
        f"| layers | {report['layers']} (hidden {report['hidden_size']}; {report['heads']}) |",
        f"| context | {report['context_length']} tokens; vocabulary {report['vocab_size']:,} |",
        f"| quantization | {report['quantization']} |",
        f"| chat templates | {', '.join(report.get('chat_templates') or []) or 'none'} |",
        f"| end of generation | {end_tokens(report.get('end_of_generation') or [])} |",
        f"| logits | {report['logits']} positions |",
        f"| total size | {human_bytes(report['total_bytes'])} |",
        "",
        "| file | size |",
        "|---|---|",
        *[f"| {name} | {human_bytes(size)} |" for name, size in report["files"].items()],
        "",
        *quality_lines(report.get("quality") or {}),
        "| step | seconds |",
        "|---|---|",
        *[f"| {step} | {sec:.2f} |" for step, sec in report["seconds"].items()],
        "",
    ]
    return "\n".join(lines)


def end_tokens(tokens: list[dict[str, Any]]) -> str:
    """The end-of-generation tokens as `id` `text` pairs, for one table cell."""
    if not tokens:
        return "none (generation ends at the length limit)"
    return ", ".join(f"{t['id']} `{t['text'].replace('|', chr(92) + '|')}`" for t in tokens)


def quality_lines(gate: dict[str, Any]) -> list[str]:
    """The quality gate's figures for each mode tried, as a Markdown table."""
    rows = gate.get("candidates") or []
    if not rows:
        return []
    ref = gate.get("reference") or {}
    lines = [
        ("Quality against the float32 model of the same source, dequantized and run "
        f"{ref.get('pieces', 1)} piece(s) of layers at a time (held-out text in windows of "
        f"{ref.get('window_tokens', '?')} tokens; greedy continuations, the prompts decoded as one batch, checked token by token "
        "against the reference's choice on the same prefix):"),
        "",
        "| mode | perplexity | fp32 | rise | limit | top-1 agree | max logit error | greedy same | decode tok/s | weights in the gate's session | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for q in rows:
        limit = f"{100 * q['limit']:.0f}%" if q.get("limit") is not None else "-"
        lines.append(
            f"| {q['mode']} | {q['perplexity']:.3f} | {q['reference_perplexity']:.3f} | "
            f"{100 * q['perplexity_rise']:+.2f}% | {limit} | {100 * q['top1_agreement']:.1f}% | "
            f"{q['max_logit_error']:.3g} | {100 * q['greedy_agreement']:.0f}% | "
            f"{q['decode_tokens_per_second']:.1f} | {session_weights(q.get('session_config') or {})} | "
            f"{'pass' if q['passed'] else 'fail'} |")
    return [*lines, ""]


def session_weights(config: dict[str, str]) -> str:
    """How the gate's session held the weights, from its onnxruntime settings."""
    if config.get("session.disable_quant_qdq") == "1":
        return "widened to float32 at load (as runtimes do)"
    return "as stored"


def lora_lines(lora: dict[str, Any] | None) -> list[str]:
    """The merged LoRA adapter's row of the summary table, if any."""
    if not lora:
        return []
    return [(f"| LoRA adapter | `{lora['adapter']}` (sha256 {lora['sha256']}), rank {lora['rank']}, "
            f"alpha {lora['alpha']:g}, {lora['merged_weights']} weights merged |")]

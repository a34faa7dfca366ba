"""Merge a PEFT LoRA adapter into the source weights before the graph is built.

An adapter folder as ``peft``'s ``save_pretrained`` writes it: ``adapter_config.json``
(``r``, ``lora_alpha``, ``use_rslora``, ``rank_pattern``, ``alpha_pattern``, ...) and
``adapter_model.safetensors`` with, for each adapted linear layer ``W [out, in]``, the
tensors ``base_model.model.<module>.lora_A.weight [r, in]`` and ``...lora_B.weight [out, r]``.
The merged weight is PEFT's own (``LoraLayer.get_delta_weight``):

    W' = W + s * B @ A,   s = alpha / r   (alpha / sqrt(r) with use_rslora)

computed in float32 on the dequantized base weight; the merged matrix is then quantized by
the chosen mode like any float weight (the report counts such re-rounded matrices).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError
from .sources.fields import HF_SANDWICH_OVERRIDES, HF_TENSORS, NameMap
from .sources.model import SourceModel, sha256_of
from .sources.safetensors_file import read_safetensors
from .sources.weights import Weight

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


def read_adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not folder.is_dir() or not path.is_file():
        raise ExportError(
            f"{folder} is not a LoRA adapter folder (no {CONFIG_FILE}); pass the folder "
            "peft's save_pretrained wrote"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}); save the adapter again") from None
    if not isinstance(config, dict):
        raise ExportError(f"{path} must hold a JSON object; save the adapter again")
    kind = config.get("peft_type", "LORA")
    if kind != "LORA":
        raise ExportError(f"{folder} is a {kind} adapter; pocketlm merges LoRA adapters only")
    for key, refused in (("use_dora", "DoRA"), ("fan_in_fan_out", "fan_in_fan_out (Conv1D) layers")):
        if config.get(key):
            raise ExportError(f"{folder}: {refused} adapters cannot be merged by pocketlm; train a plain LoRA adapter")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise ExportError(
            f"{folder}: the adapter also trains biases or whole modules (bias / modules_to_save); "
            "pocketlm merges only the low-rank matrices: train with bias='none' and no modules_to_save"
        )
    return config


def pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-module overrides (``rank_pattern`` / ``alpha_pattern``): the first key the
    module's name ends with (as a dotted suffix) wins."""
    for key, value in (patterns or {}).items():
        if module == key or module.endswith("." + key) or re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def merge_lora(src: SourceModel, folder: Path) -> dict[str, Any]:
    """Add the adapter's ``s * B @ A`` to the matching weights of ``src`` (in place).

    Returns what the report records: the adapter's folder name, sha256 of its two files,
    rank, alpha and the canonical names of the merged weights. Raises ExportError for an
    adapter that does not fit the model (unknown module, wrong shapes, missing files).
    """
    config = read_adapter_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        hint = " (adapter_model.bin: save with safe_serialization=True)" if (folder / "adapter_model.bin").is_file() else ""
        raise ExportError(f"{folder} has no {WEIGHTS_FILE}{hint}; save the adapter with peft's save_pretrained")
    tensors = read_safetensors(weights_path)
    pairs: dict[str, dict[str, Weight]] = {}
    for key, weight in tensors.items():
        match = LORA_KEY.match(key.removeprefix(PREFIX))
        if match is None:
            if "lora_embedding" in key or "lora_magnitude" in key:
                raise ExportError(f"{folder}: tensor {key} adapts an embedding or is DoRA; pocketlm merges linear layers only")
            continue
        pairs.setdefault(match["module"], {})[match["part"]] = weight
    if not pairs:
        raise ExportError(f"{weights_path} holds no lora_A / lora_B tensors; it is not a LoRA adapter")
    table = dict(HF_TENSORS)
    if src.spec.sandwich_norms:
        table.update(HF_SANDWICH_OVERRIDES)
    names = NameMap(table)
    rank, alpha = int(config.get("r", 8)), float(config.get("lora_alpha", 8))
    merged: list[str] = []
    for module, parts in sorted(pairs.items()):
        if set(parts) != {"A", "B"}:
            raise ExportError(f"{weights_path}: {module} has lora_{''.join(sorted(parts))} without its pair")
        canonical = names.canonical(module.removeprefix("model.language_model.") + ".weight")
        if canonical is None or canonical not in src.weights:
            raise ExportError(
                f"{folder}: the adapter changes {module}, which this {src.spec.name} model has no "
                "separate weight for; pass the adapter trained for this base model"
            )
        a, b = parts["A"].float32(), parts["B"].float32()
        base = src.weights[canonical]
        r = int(pattern_value(config.get("rank_pattern", {}), module, rank))
        if a.shape[0] != r or b.shape[1] != r or (b.shape[0], a.shape[1]) != base.shape:
            raise ExportError(
                f"{folder}: {module} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, which do not fit "
                f"the base weight {list(base.shape)} with rank {r}; pass the adapter trained for this base model"
            )
        a_alpha = float(pattern_value(config.get("alpha_pattern", {}), module, alpha))
        scale = a_alpha / math.sqrt(r) if config.get("use_rslora") else a_alpha / r
        delta = (b.astype(np.float64) @ a.astype(np.float64)) * scale
        src.weights[canonical] = Weight.from_float(base.float32() + delta.astype(np.float32))
        merged.append(canonical)
    return {"adapter": folder.name, "sha256": sha256_of([folder / CONFIG_FILE, weights_path]),
            "rank": rank, "alpha": alpha, "use_rslora": bool(config.get("use_rslora")),
            "merged_weights": len(merged)}

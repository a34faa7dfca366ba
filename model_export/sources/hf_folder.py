"""Read a Hugging Face model folder: config.json, *.safetensors, tokenizer.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..architectures import ArchSpec, spec_for_hf
from ..config import ModelConfig, RopeConfig
from ..errors import ExportError
from .checks import check_fields, check_rope_factors, number, number_list, whole_number
from .fields import HF_KEYS, HF_SANDWICH_OVERRIDES, HF_TENSORS, NameMap
from .model import (
    SourceModel,
    check_shapes,
    mapping_of,
    post_processor_adds_bos,
    sha256_of,
    split_fused,
)
from .safetensors_file import read_safetensors, shard_files
from .weights import Weight

NORM_SUFFIX = "norm"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}); fix or re-download the file") from None
    if not isinstance(value, dict):
        raise ExportError(f"{path} must hold a JSON object")
    return value


def _rope(params: dict[str, Any] | None, fallback_theta: float, raw: dict[str, Any], where: str,
          prefix: str) -> RopeConfig:
    params = dict(params or {}) if isinstance(params, dict) else {}
    rope = RopeConfig(theta=number(params, "rope_theta", fallback_theta, where, prefix))
    if rope.theta <= 0:
        raise ExportError(f"{where}: `{prefix}rope_theta` must be > 0; fix the value")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", None):
        rope.scaling = str(kind)
        rope.factor = number(params, "factor", 1.0, where, prefix)
        if rope.factor <= 0:
            raise ExportError(f"{where}: `{prefix}factor` must be > 0, not {rope.factor}; fix the value")
        # Phi-3 keeps the original context at the top level of config.json.
        orig = params.get("original_max_position_embeddings", raw.get("original_max_position_embeddings"))
        rope.original_max_position = whole_number(orig, "original_max_position_embeddings", where) if orig else None
        rope.low_freq_factor = number(params, "low_freq_factor", 1.0, where, prefix)
        rope.high_freq_factor = number(params, "high_freq_factor", 4.0, where, prefix)
        rope.short_factor = number_list(params.get("short_factor"), f"{prefix}short_factor", where)
        rope.long_factor = number_list(params.get("long_factor"), f"{prefix}long_factor", where)
        attn = params.get("attention_factor")
        rope.attention_factor = number(params, "attention_factor", 1.0, where, prefix) if attn is not None else None
        rope.beta_fast = number(params, "beta_fast", 32.0, where, prefix)
        rope.beta_slow = number(params, "beta_slow", 1.0, where, prefix)
    return rope


def _config(spec: ArchSpec, raw: dict[str, Any], name: str, where: str = "config.json") -> ModelConfig:
    values: dict[str, Any] = {}
    for key, target in HF_KEYS.items():
        if raw.get(key) is not None:
            values[target] = raw[key]
    missing = [k for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
               if raw.get(k) is None]
    if missing:
        raise ExportError(f"{where} lacks {', '.join(missing)}; it does not describe a decoder model")
    check_fields(values, {field: key for key, field in HF_KEYS.items()}, where)
    for key in ("tie_word_embeddings", "attention_bias"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], bool):
            raise ExportError(f"{where}: `{key}` must be true or false, not {raw[key]!r}; fix the value")
    values.setdefault("num_kv_heads", values["num_heads"])
    values.setdefault("head_dim", values["hidden_size"] // values["num_heads"])
    values.setdefault("context_length", 4096)
    values.setdefault("tie_embeddings", spec.name == "gemma3")
    values.setdefault("attention_bias", spec.attention_bias)
    theta = number(raw, "rope_theta", 10000.0, where)
    section = "rope_parameters" if raw.get("rope_parameters") else "rope_scaling"
    params = raw.get(section)
    local: RopeConfig | None = None
    if params is not None and not isinstance(params, dict):
        raise ExportError(f"{where}: `{section}` must be an object or null; fix the value")
    params = params or {}
    local_theta = number(raw, "rope_local_base_freq", 10000.0, where)
    if "full_attention" in params:
        rope = _rope(params["full_attention"], theta, raw, where, f"{section}.full_attention.")
        local = _rope(params.get("sliding_attention"), local_theta, raw, where, f"{section}.sliding_attention.")
    else:
        rope = _rope(params, theta, raw, where, f"{section}.")
        if "rope_local_base_freq" in raw:
            local = RopeConfig(theta=local_theta)
    partial = number(params, "partial_rotary_factor", number(raw, "partial_rotary_factor", 1.0, where),
                     where, f"{section}.")
    if not 0 < partial <= 1:
        raise ExportError(f"{where}: `partial_rotary_factor` must be in (0, 1], not {partial}; fix the value")
    rotary_dim = int(values["head_dim"] * partial) if partial != 1.0 else None
    if spec.name == "qwen2":
        values["attention_bias"] = True
    config = ModelConfig(
        architecture=spec.name, rope=rope, rope_local=local, rotary_dim=rotary_dim,
        qk_norm=spec.qk_norm, name=name, **values,
    )
    check_rope_factors(config, where, f"{section}.")
    layer_types = raw.get("layer_types")
    sliding_on = raw.get("use_sliding_window", True) and config.sliding_window
    if layer_types and sliding_on:
        config.sliding_layers = [t == "sliding_attention" for t in layer_types]
    elif spec.name == "gemma3" and sliding_on:
        every = int(raw.get("sliding_window_pattern", raw.get("_sliding_window_pattern", 6)))
        config.sliding_layers = [(i + 1) % every != 0 for i in range(config.num_layers)]
    elif sliding_on:
        config.sliding_layers = [True] * config.num_layers
    if not any(config.sliding_layers):
        config.sliding_window = None
        config.sliding_layers = []
    return config


def _weights(folder: Path, spec: ArchSpec) -> tuple[dict[str, Weight], list[Path]]:
    files = shard_files(folder)
    if not files:
        raise ExportError(
            f"{folder} has no *.safetensors weights; a Hugging Face model folder needs "
            "config.json, model*.safetensors and tokenizer.json"
        )
    table = dict(HF_TENSORS)
    if spec.sandwich_norms:
        table.update(HF_SANDWICH_OVERRIDES)
    names = NameMap(table)
    weights: dict[str, Weight] = {}
    for file in files:
        for key, weight in read_safetensors(file).items():
            canonical = names.canonical(key.removeprefix("model.language_model.").replace("language_model.model.", "model."))
            if canonical is None:
                continue
            if spec.hf_norm_offset and canonical.endswith(NORM_SUFFIX):
                weight = weight.plus(spec.hf_norm_offset)
            weights[canonical] = weight
    return weights, files


def read_hf_folder(folder: Path) -> SourceModel:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{folder} has no config.json; pass a GGUF file or a Hugging Face model folder")
    raw = _read_json(config_path)
    model_type = str(raw.get("model_type", ""))
    spec = spec_for_hf(model_type)
    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ExportError(
            f"{folder} has no tokenizer.json; save the tokenizer with "
            "`AutoTokenizer.from_pretrained(...).save_pretrained(folder)` (a fast tokenizer)"
        )
    weights, files = _weights(folder, spec)
    config = _config(spec, raw, str(raw.get("_name_or_path") or folder.name), str(config_path))
    if config.tie_embeddings:
        weights.pop("lm_head", None)
    elif "lm_head" not in weights:
        config.tie_embeddings = True
    split_fused(spec, config, weights)
    check_shapes(spec, config, weights, str(folder))
    tokenizer = _read_json(tokenizer_path)
    tok_config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    template, named = chat_templates(folder, tok_config)
    gen = _read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    eos: list[int] = []
    for value in (raw.get("eos_token_id"), gen.get("eos_token_id")):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in eos:
                eos.append(item)
    bos = raw.get("bos_token_id", gen.get("bos_token_id"))
    add_bos = bool(tok_config.get("add_bos_token", False)) or post_processor_adds_bos(tokenizer)
    files = [*files, config_path, tokenizer_path]
    return SourceModel(
        spec=spec,
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=template,
        chat_templates=named,
        bos_token_id=int(bos) if isinstance(bos, int) else None,
        eos_token_ids=eos,
        add_bos_token=add_bos,
        mappings=list({id(m): m for m in (mapping_of(w.data) for w in weights.values()) if m is not None}.values()),
        source={"kind": "hf", "file": folder.name, "sha256": sha256_of(files),
                "bytes": sum(p.stat().st_size for p in files),
                **({"license": licence} if (licence := model_card_license(folder)) else {})},
    )


def model_card_license(folder: Path) -> str | None:
    """The ``license:`` key of the model card's front matter (README.md between its first two
    ``---`` lines, as the Hugging Face Hub writes it), e.g. ``apache-2.0``; None without one."""
    try:
        text = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:200]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None


def chat_templates(folder: Path, tok_config: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The default chat template and the other named ones, as transformers reads them:
    tokenizer_config.json ``chat_template`` is a string, or a list of ``{"name", "template"}``
    (the one named "default" is the default); else ``chat_template.jinja``; named extras may
    also sit in ``additional_chat_templates/NAME.jinja``. Any other form is refused."""
    value = tok_config.get("chat_template")
    named: dict[str, str] = {}
    if isinstance(value, list):
        for entry in value:
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("template"), str)):
                raise ExportError(f"{folder / 'tokenizer_config.json'}: chat_template list entries must be "
                                  f"{{\"name\": ..., \"template\": ...}}, got {str(entry)[:80]!r}")
            named[entry["name"]] = entry["template"]
        value = named.pop("default", None)
    elif value is not None and not isinstance(value, str):
        raise ExportError(f"{folder / 'tokenizer_config.json'}: chat_template must be a string or a list of "
                          f"named templates, got {type(value).__name__}")
    if value is None and (folder / "chat_template.jinja").is_file():
        value = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        for path in sorted(extra.glob("*.jinja")):
            named.setdefault(path.stem, path.read_text(encoding="utf-8"))
    return value, named


__all__ = ["chat_templates", "read_hf_folder"]

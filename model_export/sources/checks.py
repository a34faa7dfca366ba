"""Value checks for the numbers a source model's metadata gives (config.json or GGUF keys).

Each failure is an ExportError naming the key as the source spells it (``num_attention_heads``
in config.json, ``llama.attention.head_count`` in GGUF) and what it must be.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Final

from ..errors import ExportError

#: ModelConfig fields that are counts or sizes: whole numbers >= 1.
POSITIVE_INTS: Final = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                        "num_kv_heads", "head_dim", "context_length", "sliding_window")
#: The longest context pocketlm builds position tables for (RoPE caches grow with it).
MAX_CONTEXT: Final = 1 << 20
#: ModelConfig fields that are finite numbers > 0.
POSITIVE_FLOATS: Final = ("norm_eps", "query_pre_attn_scalar", "attn_logit_softcap", "final_logit_softcap")


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _spelled(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def whole_number(value: Any, key: str, where: str) -> int:
    """`value` as an int >= 1 (an integral float such as 64.0 is accepted)."""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        _real(value) and math.isfinite(value) and float(value).is_integer())
    if not ok or value < 1:
        raise ExportError(f"{where}: `{key}` must be a whole number >= 1, not {_spelled(value)}; "
                          "fix the value or use the model's original file")
    return int(value)


def positive_number(value: Any, key: str, where: str) -> float:
    """`value` as a finite float > 0."""
    ok = _real(value) and math.isfinite(value)
    if not ok or value <= 0:
        raise ExportError(f"{where}: `{key}` must be a finite number > 0, not {_spelled(value)}; "
                          "fix the value or use the model's original file")
    return float(value)


def number(params: Mapping[str, Any], key: str, default: float, where: str, prefix: str = "") -> float:
    """``params[key]`` (or `default` when absent or null) as a finite float."""
    value = params.get(key)
    if value is None:
        return default
    if not _real(value) or not math.isfinite(value):
        raise ExportError(f"{where}: `{prefix}{key}` must be a finite number, not {_spelled(value)}; "
                          "fix the value or use the model's original file")
    return float(value)


def number_list(value: Any, key: str, where: str) -> list[float] | None:
    """A list of finite numbers (rope factors), or None."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            _real(x) and math.isfinite(x) for x in value):
        raise ExportError(f"{where}: `{key}` must be a list of finite numbers; "
                          "fix the value or use the model's original file")
    return [float(x) for x in value]


def check_fields(values: dict[str, Any], key_of: Mapping[str, str], where: str) -> None:
    """Check (and normalise in place) the ModelConfig fields read from a source.

    `key_of` maps a field to the source's key, for the message.
    """
    for field in POSITIVE_INTS:
        if values.get(field) is not None:
            values[field] = whole_number(values[field], key_of.get(field, field), where)
    for field in POSITIVE_FLOATS:
        if values.get(field) is not None:
            values[field] = positive_number(values[field], key_of.get(field, field), where)
    context = values.get("context_length")
    if context is not None and context > MAX_CONTEXT:
        raise ExportError(f"{where}: `{key_of.get('context_length')}` is {context:,}, more than the "
                          f"{MAX_CONTEXT:,} positions pocketlm supports; fix the value")
    heads, kv_heads = values.get("num_heads"), values.get("num_kv_heads")
    if heads and kv_heads and heads % kv_heads:
        raise ExportError(f"{where}: `{key_of.get('num_heads')}` ({heads}) is not a multiple of "
                          f"`{key_of.get('num_kv_heads')}` ({kv_heads}); fix the value or use the "
                          "model's original file")
    hidden = values.get("hidden_size")
    if heads and hidden and values.get("head_dim") is None and hidden % heads:
        raise ExportError(f"{where}: `{key_of.get('hidden_size')}` ({hidden}) is not a multiple of "
                          f"`{key_of.get('num_heads')}` ({heads}) and no head size is given; fix the "
                          "value or use the model's original file")


#: Where a GGUF block keeps its float16 scales: (block bytes, byte ranges). Every value in
#: the block is a scale times a small integer (plus a minimum), so the block is finite exactly
#: when these are (ggml-common.h block layouts).
_BLOCK_SCALES: Final = {
    "Q4_0": (18, ((0, 2),)), "Q4_1": (20, ((0, 4),)), "Q5_0": (22, ((0, 2),)), "Q5_1": (24, ((0, 4),)),
    "Q8_0": (34, ((0, 2),)), "Q2_K": (84, ((80, 84),)), "Q3_K": (110, ((108, 110),)), "Q4_K": (144, ((0, 4),)), "Q5_K": (176, ((0, 4),)), "Q6_K": (210, ((208, 210),)),
}


def _finite_values(weight: Any) -> Any:
    """The numbers whose finiteness decides the weight's: its floats, or its blocks' scales."""
    import numpy as np

    layout = _BLOCK_SCALES.get(weight.qtype.name)
    if layout is None:
        return weight.float32()
    size, ranges = layout
    blocks = np.ascontiguousarray(weight.data).reshape(-1, size)
    return np.concatenate([blocks[:, a:b].reshape(-1).view(np.float16) for a, b in ranges])


def check_finite(weights: Mapping[str, Any], where: str) -> None:
    """Every weight is finite: NaN or infinity in a source is an error, never exported.

    `weights` maps canonical names to :class:`Weight`.
    """
    import numpy as np

    for name, weight in weights.items():
        values = _finite_values(weight)
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(values.size - np.count_nonzero(finite))
            raise ExportError(f"{where}: tensor {name} holds {bad} NaN or infinite value(s); the weights "
                              "are damaged: download or convert the model again")


def check_rope_factors(config: Any, where: str, key_prefix: str) -> None:
    """longrope's per-dimension factors have one entry per rotated pair of dimensions."""
    pairs = (config.rotary_dim or config.head_dim) // 2
    for rope in (config.rope, config.rope_local):
        if rope is None:
            continue
        for name in ("short_factor", "long_factor", "freq_factors"):
            factors = getattr(rope, name)
            if factors is not None and len(factors) != pairs:
                raise ExportError(f"{where}: `{key_prefix}{name}` has {len(factors)} entries, the heads "
                                  f"rotate {pairs} pairs of dimensions; fix the value or use the model's "
                                  "original file")


def check_special_ids(model: Any, where: str) -> None:
    """The source's BOS/EOS token ids are inside its vocabulary."""
    vocab = model.config.vocab_size
    ids = [("eos", i) for i in model.eos_token_ids]
    if model.bos_token_id is not None:
        ids.append(("bos", model.bos_token_id))
    gguf = model.source.get("kind") == "gguf"
    for kind, token_id in ids:
        if not 0 <= token_id < vocab:
            key = f"tokenizer.ggml.{kind}_token_id" if gguf else f"{kind}_token_id"
            raise ExportError(f"{where}: `{key}` is {token_id}, not below the vocabulary size {vocab}; "
                              "fix the value or use the model's original file")


def usable_chat_template(template: str | None, where: str) -> str | None:
    """`template` when it parses, else None with a warning line (the model still exports;
    `pocketlm chat` then says it has no chat template)."""
    import logging

    from pocketlm_runtime.chat import check_template

    if template is None:
        return None
    try:
        check_template(template)
    except ValueError as exc:
        logging.getLogger("pocketlm").warning("%s: %s; the model is exported without a chat template", where, exc)
        return None
    return template


def check_tokenizer(model: Any, where: str) -> None:
    """The source's tokenizer builds (pocketlm_runtime.tokenizer) and fits the vocabulary."""
    import json

    from pocketlm_runtime.tokenizer import Tokenizer

    key = "tokenizer.ggml.*" if model.source.get("kind") == "gguf" else "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_str(json.dumps(model.tokenizer))
    except Exception as exc:  # noqa: BLE001 - any malformed spec: KeyError, TypeError, ValueError ...
        raise ExportError(f"{where}: the tokenizer ({key}) is not usable ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:160]}); use the model's original files") from None
    if tokenizer.model_vocab_size == 0:
        raise ExportError(f"{where}: the tokenizer ({key}) has an empty vocabulary; use the model's original files")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ExportError(f"{where}: the tokenizer ({key}) has {tokenizer.vocab_size} tokens, more than the "
                          f"model's vocabulary of {model.config.vocab_size}; the tokenizer belongs to another model")

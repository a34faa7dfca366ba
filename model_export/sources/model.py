"""What every source reader returns, and the clean-up common to all of them."""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..architectures import ArchSpec
from ..config import ModelConfig
from ..errors import ExportError
from .weights import Weight


@dataclass
class SourceModel:
    spec: ArchSpec
    config: ModelConfig
    weights: dict[str, Weight]
    tokenizer: dict[str, Any]
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: list[int]
    add_bos_token: bool
    source: dict[str, Any] = field(default_factory=dict)
    # Further named chat templates (name -> Jinja text), e.g. "tool_use"; chat_template is "default".
    chat_templates: dict[str, str] = field(default_factory=dict)
    # The source files' memory maps, whose pages :meth:`release_pages` gives back.
    mappings: list[mmap.mmap] = field(default_factory=list)

    def float32(self, name: str) -> np.ndarray:
        return self.weights[name].float32()

    def release_pages(self) -> None:
        """Drop the source files' pages from this process's memory (they are read again from
        the file if needed): tensors converted so far stop counting in its resident size."""
        for mapping in self.mappings:
            try:
                mapping.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError, AttributeError):
                pass  # a closed map, or a platform without madvise: nothing to give back


def mapping_of(array: np.ndarray) -> mmap.mmap | None:
    """The mmap under a numpy memmap (or a view of one), if any."""
    base: Any = array
    while base is not None:
        found = getattr(base, "_mmap", None)
        if isinstance(found, mmap.mmap):
            return found
        base = getattr(base, "base", None)
    return None


def sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def split_fused(spec: ArchSpec, config: ModelConfig, weights: dict[str, Weight]) -> None:
    """Phi-3's packed q/k/v and gate/up matrices become separate ones (whole rows)."""
    q_rows = config.num_heads * config.head_dim
    kv_rows = config.num_kv_heads * config.head_dim
    for i in range(config.num_layers):
        qkv = weights.pop(f"L{i}.qkv", None)
        if qkv is not None:
            weights[f"L{i}.q"] = qkv.take_rows(slice(0, q_rows))
            weights[f"L{i}.k"] = qkv.take_rows(slice(q_rows, q_rows + kv_rows))
            weights[f"L{i}.v"] = qkv.take_rows(slice(q_rows + kv_rows, q_rows + 2 * kv_rows))
        if spec.fused_gate_up and f"L{i}.gate" not in weights and f"L{i}.up" in weights:
            packed = weights.pop(f"L{i}.up")
            ff = config.intermediate_size
            weights[f"L{i}.gate"] = packed.take_rows(slice(0, ff))
            weights[f"L{i}.up"] = packed.take_rows(slice(ff, 2 * ff))


def required_names(spec: ArchSpec, config: ModelConfig) -> list[str]:
    names = ["embed", "final_norm"]
    if not config.tie_embeddings:
        names.append("lm_head")
    per_layer = ["attn_norm", "q", "k", "v", "o", "ffn_norm", "gate", "up", "down"]
    if config.attention_bias:
        per_layer += ["q_bias", "k_bias", "v_bias"]
    if spec.qk_norm:
        per_layer += ["q_norm", "k_norm"]
    if spec.sandwich_norms:
        per_layer += ["post_attn_norm", "post_ffn_norm"]
    for i in range(config.num_layers):
        names += [f"L{i}.{n}" for n in per_layer]
    return names


def check_shapes(spec: ArchSpec, config: ModelConfig, weights: dict[str, Weight], where: str) -> None:
    missing = [n for n in required_names(spec, config) if n not in weights]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise ExportError(
            f"{where} lacks {len(missing)} tensor(s) a {spec.name} model needs ({shown}); "
            "the file is incomplete or not a decoder language model"
        )
    h, d = config.hidden_size, config.head_dim
    expected = {
        "embed": (config.vocab_size, h),
        "L0.q": (config.num_heads * d, h),
        "L0.k": (config.num_kv_heads * d, h),
        "L0.o": (h, config.num_heads * d),
        "L0.gate": (config.intermediate_size, h),
        "L0.down": (h, config.intermediate_size),
    }
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise ExportError(
                f"{where}: tensor {name} has shape {list(weights[name].shape)}, "
                f"the model's configuration implies {list(shape)}; the file is inconsistent"
            )


def post_processor_adds_bos(tokenizer: dict[str, Any]) -> bool:
    """Whether the tokenizer's post-processor puts a special token before the text."""
    post = tokenizer.get("post_processor") or {}
    steps = post.get("processors", [post]) if isinstance(post, dict) else []
    for step in steps:
        single = step.get("single") if isinstance(step, dict) else None
        if single and "SpecialToken" in single[0]:
            return True
    return False

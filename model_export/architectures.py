"""Supported architectures as small declarative specs.

Each spec states only how an architecture differs from a plain Llama decoder. Field-name
differences between GGUF metadata, ``config.json`` and :class:`ModelConfig` live in
:mod:`pocketlm_export.sources.fields`, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import ExportError


@dataclass(frozen=True)
class ArchSpec:
    name: str
    gguf_names: tuple[str, ...]
    hf_model_types: tuple[str, ...]
    activation: str = "silu"  # "silu" | "gelu_tanh"
    # llama.cpp's converter stores attn_q/attn_k rows permuted for GGML's interleaved RoPE.
    gguf_qk_permuted: bool = False
    # Gemma: norms after attention and after the MLP as well as before them.
    sandwich_norms: bool = False
    qk_norm: bool = False
    # Gemma: embeddings multiplied by sqrt(hidden_size).
    scale_embeddings: bool = False
    # Gemma stores RMSNorm weights as w and multiplies by (1 + w) in HF checkpoints.
    hf_norm_offset: float = 0.0
    attention_bias: bool = False
    # Phi-3 packs q/k/v and gate/up into single matrices.
    fused_qkv: bool = False
    fused_gate_up: bool = False


_SPECS = [
    ArchSpec("llama", ("llama",), ("llama",), gguf_qk_permuted=True),
    ArchSpec("mistral", (), ("mistral",), gguf_qk_permuted=True),
    ArchSpec("qwen2", ("qwen2",), ("qwen2",), attention_bias=True),
    ArchSpec(
        "gemma3",
        ("gemma3",),
        ("gemma3_text", "gemma3"),
        activation="gelu_tanh",
        sandwich_norms=True,
        qk_norm=True,
        scale_embeddings=True,
        hf_norm_offset=1.0,
    ),
    ArchSpec("phi3", ("phi3",), ("phi3",), fused_qkv=True, fused_gate_up=True),
]

REGISTRY: dict[str, ArchSpec] = {spec.name: spec for spec in _SPECS}


def _find(value: str, names_of: Callable[[ArchSpec], tuple[str, ...]], problem: str) -> ArchSpec:
    for spec in _SPECS:
        if value in names_of(spec):
            return spec
    names = ", ".join(n for s in _SPECS for n in names_of(s))
    raise ExportError(f"{problem}; supported: {names}")


def spec_for_gguf(arch: str) -> ArchSpec:
    return _find(arch, lambda s: s.gguf_names, f"unsupported architecture {arch!r} in the GGUF file")


def spec_for_hf(model_type: str) -> ArchSpec:
    return _find(model_type, lambda s: s.hf_model_types,
                 f"unsupported architecture (model_type {model_type!r} in config.json)")

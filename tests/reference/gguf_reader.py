"""Read a GGUF file into the reference's :class:`RefConfig` and :class:`Weights`.

Written from the GGUF format and llama.cpp's model definitions, not from Hugging Face:

- metadata keys ``{arch}.block_count``, ``{arch}.attention.head_count_kv``, ... read directly;
- tensors by GGUF name (``token_embd``, ``blk.N.attn_q``, ...), dequantized with
  ``gguf.quants.dequantize``;
- RoPE as llama.cpp applies it: arch ``llama`` uses GGML's "normal" mode, rotating adjacent
  pairs ``(2i, 2i+1)`` of the rows *as stored* (llama.cpp's converter permuted them for this);
  ``qwen2``, ``phi3`` and ``gemma3`` use "neox" mode (pairs ``(i, i + d/2)``). Frequency
  factors come from ``rope_freqs`` (Llama 3.1 scaling) or ``rope_factors_long/short`` (Phi-3);
- Gemma 3 as llama.cpp runs it: norms used as stored (the converter already added 1), query
  scale ``1/sqrt(head_dim)`` (the 62-layer 27B model: ``1/sqrt(hidden/heads)``), a sliding
  window on five layers of every six (or ``attention.sliding_window_pattern``), local RoPE base
  ``rope.freq_base_swa`` or 10000. llama.cpp applies no sliding window to ``llama``, ``qwen2``
  or ``phi3`` GGUFs, and neither does this reader.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf.quants import dequantize

from .numpy_forward import (
    Array,
    LayerWeights,
    LongRopeMode,
    RefConfig,
    RopeSpec,
    Weights,
    default_inv_freq,
)

SUPPORTED_ARCHS = ("llama", "qwen2", "gemma3", "phi3")
# llama_rope_type() in llama.cpp: which archs rotate adjacent pairs ("normal") vs halves ("neox").
_INTERLEAVED_ROPE = {"llama": True, "qwen2": False, "gemma3": False, "phi3": False}


class GGUFMetadata:
    """Typed access to the key/value metadata of a :class:`gguf.GGUFReader`."""

    def __init__(self, reader: gguf.GGUFReader):
        self.reader = reader
        self.arch = str(self.get("general.architecture"))

    def get(self, key: str, default: Any = None) -> Any:
        key = key.replace("{arch}", getattr(self, "arch", ""))
        field = self.reader.fields.get(key)
        if field is None:
            if default is None:
                raise KeyError(f"GGUF metadata key {key!r} is missing")
            return default
        return field.contents()


def read_gguf_file(path: Path, longrope: LongRopeMode = "dynamic") -> tuple[RefConfig, Weights]:
    reader = gguf.GGUFReader(str(path))
    meta = GGUFMetadata(reader)
    if meta.arch not in SUPPORTED_ARCHS:
        raise ValueError(
            f"GGUF architecture {meta.arch!r} in {path} is not one the reference knows; "
            f"expected one of {', '.join(SUPPORTED_ARCHS)}"
        )
    tensors = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}
    config = _config(meta, tensors, longrope)
    return config, _weights(tensors, config, meta.arch)


def _config(meta: GGUFMetadata, tensors: dict[str, Array], longrope: LongRopeMode) -> RefConfig:
    arch = meta.arch
    hidden = int(meta.get("{arch}.embedding_length"))
    heads = int(meta.get("{arch}.attention.head_count"))
    head_dim = int(meta.get("{arch}.attention.key_length", hidden // heads))
    layers = int(meta.get("{arch}.block_count"))
    gemma = arch == "gemma3"
    rope = _rope(
        meta, tensors, float(meta.get("{arch}.rope.freq_base", 10000.0)), head_dim, longrope
    )

    window = int(meta.get("{arch}.attention.sliding_window", 0)) if gemma else 0
    sliding = _sliding_layers(meta, layers) if window > 0 else ()
    rope_local = None
    if window > 0:
        local_base = float(meta.get("{arch}.rope.freq_base_swa", 10000.0))
        rope_local = RopeSpec(
            inv_freq=default_inv_freq(local_base, rope.rotary_dim), rotary_dim=rope.rotary_dim
        )

    query_scale = None
    if gemma:
        query_scale = 1.0 / math.sqrt(hidden / heads if layers == 62 else head_dim)
    return RefConfig(
        architecture=arch,
        vocab_size=int(tensors["token_embd.weight"].shape[0]),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(meta.get("{arch}.attention.head_count_kv", heads)),
        head_dim=head_dim,
        norm_eps=float(meta.get("{arch}.attention.layer_norm_rms_epsilon")),
        rope=rope,
        rope_local=rope_local,
        activation="gelu_tanh" if gemma else "silu",
        embed_scale=math.sqrt(hidden) if gemma else 1.0,
        query_scale=query_scale,
        sliding_window=window if window > 0 else None,
        sliding_layers=sliding,
        final_softcap=_positive(meta.get("{arch}.final_logit_softcapping", 0.0)) if gemma else None,
    )


def _positive(value: float) -> float | None:
    return float(value) if value and value > 0 else None


def _sliding_layers(meta: GGUFMetadata, layers: int) -> tuple[bool, ...]:
    pattern = meta.get("{arch}.attention.sliding_window_pattern", 6)
    if isinstance(pattern, list):
        return tuple(bool(p) for p in pattern)
    # A pattern of n: n-1 sliding layers, then one global layer.
    return tuple(bool((i + 1) % int(pattern)) for i in range(layers))


def _rope(
    meta: GGUFMetadata,
    tensors: dict[str, Array],
    base: float,
    head_dim: int,
    longrope: LongRopeMode,
) -> RopeSpec:
    rotary_dim = int(meta.get("{arch}.rope.dimension_count", head_dim))
    inv_freq = default_inv_freq(base, rotary_dim)
    interleaved = _INTERLEAVED_ROPE[meta.arch]
    if str(meta.get("{arch}.rope.scaling.type", "none")) == "linear":
        inv_freq = inv_freq / float(meta.get("{arch}.rope.scaling.factor"))
    if "rope_freqs.weight" in tensors:  # llama.cpp divides each frequency by its factor
        inv_freq = inv_freq / tensors["rope_freqs.weight"].astype(np.float64)
    if "rope_factors_short.weight" in tensors:
        return RopeSpec(
            inv_freq=inv_freq / tensors["rope_factors_short.weight"].astype(np.float64),
            long_inv_freq=inv_freq / tensors["rope_factors_long.weight"].astype(np.float64),
            original_context=int(meta.get("{arch}.rope.scaling.original_context_length")),
            mscale=float(meta.get("{arch}.rope.scaling.attn_factor", 1.0)),
            rotary_dim=rotary_dim,
            interleaved=interleaved,
            longrope_mode=longrope,
        )
    return RopeSpec(inv_freq=inv_freq, rotary_dim=rotary_dim, interleaved=interleaved)


def _weights(t: dict[str, Array], config: RefConfig, arch: str) -> Weights:
    def get(name: str) -> Array:
        if name not in t:
            raise KeyError(f"tensor {name!r} missing from the GGUF file")
        return t[name]

    q_rows = config.num_heads * config.head_dim
    kv_rows = config.num_kv_heads * config.head_dim
    gemma = arch == "gemma3"
    layers = []
    for i in range(config.num_layers):
        p = f"blk.{i}."
        if arch == "phi3":
            wq, wk, wv = np.split(get(p + "attn_qkv.weight"), [q_rows, q_rows + kv_rows], axis=0)
            # ffn_up holds gate and up stacked; llama.cpp's swiglu takes the first half as gate.
            w_gate, w_up = np.split(get(p + "ffn_up.weight"), 2, axis=0)
        else:
            wq, wk, wv = (get(p + f"attn_{n}.weight") for n in "qkv")
            w_gate, w_up = get(p + "ffn_gate.weight"), get(p + "ffn_up.weight")
        layers.append(
            LayerWeights(
                attn_norm=get(p + "attn_norm.weight"),
                wq=wq,
                wk=wk,
                wv=wv,
                wo=get(p + "attn_output.weight"),
                bq=t.get(p + "attn_q.bias"),
                bk=t.get(p + "attn_k.bias"),
                bv=t.get(p + "attn_v.bias"),
                bo=t.get(p + "attn_output.bias"),
                q_norm=get(p + "attn_q_norm.weight") if gemma else None,
                k_norm=get(p + "attn_k_norm.weight") if gemma else None,
                post_attn_norm=get(p + "post_attention_norm.weight") if gemma else None,
                ffn_norm=get(p + "ffn_norm.weight"),
                post_ffn_norm=get(p + "post_ffw_norm.weight") if gemma else None,
                w_gate=w_gate,
                w_up=w_up,
                w_down=get(p + "ffn_down.weight"),
            )
        )
    embed = get("token_embd.weight")
    lm_head = t.get("output.weight", embed)
    return Weights(
        embed=embed, layers=layers, final_norm=get("output_norm.weight"), lm_head=lm_head
    )

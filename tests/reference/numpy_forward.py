"""A plain numpy decoder forward pass with a KV cache: the reference the exporter is tested against.

Nothing here imports the exporter. The two readers that fill :class:`RefConfig` and
:class:`Weights` are written from each format's own definition:

- :mod:`.hf_reader`: a Hugging Face folder (``config.json`` + ``*.safetensors``), HF names and
  HF conventions (rotate-half RoPE, Gemma's ``(1 + w)`` norms, Phi-3's fused matrices);
- :mod:`.gguf_reader`: a GGUF file, GGUF names and GGML conventions (interleaved RoPE on the
  row-permuted ``attn_q``/``attn_k`` of arch ``llama``, Gemma norms stored as ``w + 1``).

The model below reads top to bottom: norm -> rope -> attention -> mlp -> block -> model.
Shapes: one sequence (no batch). ``S`` new tokens, ``T`` cached + new positions, ``H`` query
heads, ``KV`` key/value heads, ``D`` head dim. Matrices are stored ``[out, in]`` as in both
formats, so a linear layer is ``x @ W.T + b``.

Usage::

    ref = ReferenceModel.from_hf("tiny-llama/")      # or ReferenceModel.from_gguf("m.gguf")
    logits, past = ref.forward([1, 2, 3])            # logits: [3, vocab]
    logits, past = ref.forward([4], past)            # one decode step with the cache
    ref.greedy([1, 2, 3], 8)                         # 8 new token ids
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]
Activation = Literal["silu", "gelu_tanh"]
LongRopeMode = Literal["dynamic", "short", "long"]


# --------------------------------------------------------------------------------------------
# Configuration and weights (filled by the readers)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding of one attention kind (global or sliding layers).

    ``inv_freq[i]`` is the angle per position of pair ``i`` (scaling already folded in).
    ``interleaved`` selects GGML's "normal" mode, pairs ``(2i, 2i+1)``; otherwise pairs are
    ``(i, i + rotary_dim/2)`` (HF ``rotate_half``, GGML "neox"). Only the first ``rotary_dim``
    dims of a head rotate. ``mscale`` multiplies cos and sin (LongRoPE's attention factor).
    LongRoPE: ``long_inv_freq`` replaces ``inv_freq`` when the sequence is longer than
    ``original_context`` ("dynamic", as transformers decides per call) or always ("long").
    """

    inv_freq: Array
    rotary_dim: int
    interleaved: bool = False
    mscale: float = 1.0
    long_inv_freq: Array | None = None
    original_context: int | None = None
    longrope_mode: LongRopeMode = "dynamic"

    def frequencies(self, positions: NDArray[np.int64]) -> Array:
        if self.long_inv_freq is None or self.longrope_mode == "short":
            return self.inv_freq
        if self.longrope_mode == "long":
            return self.long_inv_freq
        longest = int(positions.max()) + 1
        if self.original_context is not None and longest > self.original_context:
            return self.long_inv_freq
        return self.inv_freq


def default_inv_freq(theta: float, rotary_dim: int) -> Array:
    """The plain RoPE frequencies ``theta ** (-2i / rotary_dim)``, float64."""
    return 1.0 / theta ** (np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)


@dataclass(frozen=True)
class RefConfig:
    """What the forward pass needs to know; both readers fill it."""

    architecture: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float
    rope: RopeSpec
    # RoPE of the sliding-window layers (Gemma 3's local layers); None: same as ``rope``.
    rope_local: RopeSpec | None = None
    activation: Activation = "silu"
    # Added to every RMSNorm weight: 1.0 for HF Gemma, whose norms compute x * (1 + w).
    norm_offset: float = 0.0
    embed_scale: float = 1.0
    query_scale: float | None = None  # None: 1 / sqrt(head_dim)
    sliding_window: int | None = None
    sliding_layers: tuple[bool, ...] = ()
    attn_softcap: float | None = None
    final_softcap: float | None = None

    def is_sliding(self, layer: int) -> bool:
        return (
            self.sliding_window is not None
            and bool(self.sliding_layers)
            and self.sliding_layers[layer]
        )

    def rope_for(self, layer: int) -> RopeSpec:
        if self.is_sliding(layer) and self.rope_local is not None:
            return self.rope_local
        return self.rope


@dataclass
class LayerWeights:
    """One decoder block. Matrices ``[out, in]``; ``None`` where the architecture has none."""

    attn_norm: Array
    wq: Array
    wk: Array
    wv: Array
    wo: Array
    ffn_norm: Array  # the norm before the MLP
    w_gate: Array
    w_up: Array
    w_down: Array
    bq: Array | None = None
    bk: Array | None = None
    bv: Array | None = None
    bo: Array | None = None
    q_norm: Array | None = None
    k_norm: Array | None = None
    post_attn_norm: Array | None = None  # sandwich norms (Gemma)
    post_ffn_norm: Array | None = None


@dataclass
class Weights:
    embed: Array  # [vocab, hidden]
    layers: list[LayerWeights]
    final_norm: Array
    lm_head: Array  # [vocab, hidden]; the embedding itself when tied


@dataclass
class KVCache:
    """Keys and values of every layer, ``[KV, T, D]`` each (the ONNX layout without batch).

    Keys are stored after RoPE, in the basis of the weights read: for a GGUF of arch
    ``llama`` that is the permuted (interleaved) basis, not Hugging Face's.
    """

    keys: list[Array] = field(default_factory=list)
    values: list[Array] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.keys else int(self.keys[0].shape[1])


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def rms_norm(x: Array, weight: Array, eps: float, offset: float) -> Array:
    """``x / sqrt(mean(x^2) + eps) * (offset + weight)`` over the last axis."""
    scale = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    out: Array = x * scale * (offset + weight)
    return out


def linear(x: Array, weight: Array, bias: Array | None = None) -> Array:
    y = x @ weight.T
    return y if bias is None else y + bias


def silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {"silu": silu, "gelu_tanh": gelu_tanh}


def softcap(x: Array, cap: float | None) -> Array:
    return x if cap is None else cap * np.tanh(x / cap)


def apply_rope(x: Array, positions: NDArray[np.int64], rope: RopeSpec) -> Array:
    """Rotate ``x`` of shape ``[S, heads, D]`` by the angles of ``positions`` (``[S]``)."""
    angles = positions[:, None].astype(np.float64) * rope.frequencies(positions)[None, :]
    cos = (np.cos(angles) * rope.mscale).astype(x.dtype)[:, None, :]  # [S, 1, rot/2]
    sin = (np.sin(angles) * rope.mscale).astype(x.dtype)[:, None, :]
    rot, rest = x[..., : rope.rotary_dim], x[..., rope.rotary_dim :]
    if rope.interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = np.empty_like(rot)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
    else:
        half = rope.rotary_dim // 2
        a, b = rot[..., :half], rot[..., half:]
        out = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return np.concatenate([out, rest], axis=-1)


def attention_mask(
    q_pos: NDArray[np.int64], k_pos: NDArray[np.int64], window: int | None
) -> NDArray[np.bool_]:
    """``[S, T]``: True where a query may attend. Causal; a window of W keeps ``q - k < W``."""
    allowed = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        allowed &= (q_pos[:, None] - k_pos[None, :]) < window
    return allowed


def softmax(x: Array) -> Array:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    out: Array = e / np.sum(e, axis=-1, keepdims=True)
    return out


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class ReferenceModel:
    """A decoder-only transformer in numpy; see the module docstring."""

    def __init__(self, config: RefConfig, weights: Weights, dtype: type[np.floating] = np.float64):
        self.config = config
        self.dtype = np.dtype(dtype)
        self.weights = _cast_weights(weights, self.dtype)

    @classmethod
    def from_hf(
        cls,
        folder: str | Path,
        dtype: type[np.floating] = np.float64,
        longrope: LongRopeMode = "dynamic",
    ) -> ReferenceModel:
        from .hf_reader import read_hf_folder

        config, weights = read_hf_folder(Path(folder), longrope=longrope)
        return cls(config, weights, dtype)

    @classmethod
    def from_gguf(
        cls,
        path: str | Path,
        dtype: type[np.floating] = np.float64,
        longrope: LongRopeMode = "dynamic",
    ) -> ReferenceModel:
        from .gguf_reader import read_gguf_file

        config, weights = read_gguf_file(Path(path), longrope=longrope)
        return cls(config, weights, dtype)

    # -- one layer -------------------------------------------------------------------------

    def _norm(self, x: Array, weight: Array) -> Array:
        return rms_norm(x, weight, self.config.norm_eps, self.config.norm_offset)

    def _attention(
        self, i: int, x: Array, positions: NDArray[np.int64], past_k: Array, past_v: Array
    ) -> tuple[Array, Array, Array]:
        cfg, w = self.config, self.weights.layers[i]
        s, d = x.shape[0], cfg.head_dim
        q = linear(x, w.wq, w.bq).reshape(s, cfg.num_heads, d)
        k = linear(x, w.wk, w.bk).reshape(s, cfg.num_kv_heads, d)
        v = linear(x, w.wv, w.bv).reshape(s, cfg.num_kv_heads, d)
        if w.q_norm is not None and w.k_norm is not None:  # Gemma 3: per-head norms before RoPE
            q, k = self._norm(q, w.q_norm), self._norm(k, w.k_norm)
        rope = cfg.rope_for(i)
        q, k = apply_rope(q, positions, rope), apply_rope(k, positions, rope)

        keys = np.concatenate([past_k, k.transpose(1, 0, 2)], axis=1)  # [KV, T, D]
        values = np.concatenate([past_v, v.transpose(1, 0, 2)], axis=1)
        group = cfg.num_heads // cfg.num_kv_heads
        k_all = np.repeat(keys, group, axis=0)  # query head h reads kv head h // group
        v_all = np.repeat(values, group, axis=0)

        scale = cfg.query_scale if cfg.query_scale is not None else 1.0 / math.sqrt(d)
        scores = np.einsum("shd,htd->hst", q, k_all) * scale  # [H, S, T]
        scores = softcap(scores, cfg.attn_softcap)
        k_pos = np.arange(keys.shape[1], dtype=np.int64)
        window = cfg.sliding_window if cfg.is_sliding(i) else None
        scores = np.where(attention_mask(positions, k_pos, window)[None], scores, -np.inf)
        out = np.einsum("hst,htd->shd", softmax(scores), v_all).reshape(s, cfg.num_heads * d)
        return linear(out, w.wo, w.bo), keys, values

    def _mlp(self, i: int, x: Array) -> Array:
        w = self.weights.layers[i]
        act = ACTIVATIONS[self.config.activation]
        return linear(act(linear(x, w.w_gate)) * linear(x, w.w_up), w.w_down)

    def _block(
        self, i: int, h: Array, positions: NDArray[np.int64], past_k: Array, past_v: Array
    ) -> tuple[Array, Array, Array]:
        w = self.weights.layers[i]
        attn, keys, values = self._attention(
            i, self._norm(h, w.attn_norm), positions, past_k, past_v
        )
        if w.post_attn_norm is not None:
            attn = self._norm(attn, w.post_attn_norm)
        h = h + attn
        mlp = self._mlp(i, self._norm(h, w.ffn_norm))
        if w.post_ffn_norm is not None:
            mlp = self._norm(mlp, w.post_ffn_norm)
        return h + mlp, keys, values

    # -- the whole model -------------------------------------------------------------------

    def empty_cache(self) -> KVCache:
        cfg = self.config
        empty = np.zeros((cfg.num_kv_heads, 0, cfg.head_dim), dtype=self.dtype)
        return KVCache([empty] * cfg.num_layers, [empty] * cfg.num_layers)

    def forward(
        self, input_ids: Sequence[int], past: KVCache | None = None
    ) -> tuple[Array, KVCache]:
        """Logits ``[len(input_ids), vocab]`` for new tokens after ``past``, and the grown cache."""
        cfg = self.config
        if len(input_ids) == 0:
            raise ValueError("forward() needs at least one input id, got an empty list")
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ValueError(
                f"input ids must be in [0, {cfg.vocab_size}), got {ids.min()}..{ids.max()}"
            )
        past = past if past is not None else self.empty_cache()
        positions = past.length + np.arange(len(ids), dtype=np.int64)

        h = self.weights.embed[ids] * self.dtype.type(cfg.embed_scale)
        new = KVCache()
        for i in range(cfg.num_layers):
            h, keys, values = self._block(i, h, positions, past.keys[i], past.values[i])
            new.keys.append(keys)
            new.values.append(values)
        h = self._norm(h, self.weights.final_norm)
        logits = softcap(linear(h, self.weights.lm_head), cfg.final_softcap)
        return logits, new

    def greedy(self, prompt_ids: Sequence[int], n: int) -> list[int]:
        """The ``n`` token ids that greedy decoding appends to ``prompt_ids`` (no stop tokens)."""
        logits, past = self.forward(prompt_ids)
        out: list[int] = []
        for _ in range(n):
            out.append(int(np.argmax(logits[-1])))
            logits, past = self.forward([out[-1]], past)
        return out


def _cast_weights(weights: Weights, dtype: np.dtype[np.floating]) -> Weights:
    def cast(a: Array) -> Array:
        return np.ascontiguousarray(a, dtype=dtype)

    def cast_optional(a: Array | None) -> Array | None:
        return None if a is None else cast(a)

    layers = [
        LayerWeights(**{k: cast_optional(v) for k, v in vars(layer).items()})  # type: ignore[arg-type]
        for layer in weights.layers
    ]
    embed = cast(weights.embed)
    lm_head = embed if weights.lm_head is weights.embed else cast(weights.lm_head)
    return Weights(embed=embed, layers=layers, final_norm=cast(weights.final_norm), lm_head=lm_head)

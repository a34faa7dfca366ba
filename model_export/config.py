"""The normalised model description every later stage reads.

GGUF metadata keys and Hugging Face ``config.json`` keys are mapped onto these fields
once, in :mod:`pocketlm_export.sources`; nothing downstream sees either spelling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RopeConfig:
    """Rotary position embedding: base frequency and optional scaling."""

    theta: float = 10000.0
    scaling: str | None = None  # None, "linear", "llama3", "longrope", "yarn"
    factor: float = 1.0
    original_max_position: int | None = None
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    short_factor: list[float] | None = None  # longrope
    long_factor: list[float] | None = None  # longrope
    attention_factor: float | None = None  # longrope / yarn
    # Per-dimension divisors of the inverse frequencies (llama.cpp's rope_freqs tensor).
    freq_factors: list[float] | None = None
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn


@dataclass
class ModelConfig:
    """Shapes and numerics of a decoder-only transformer, independent of the source format."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    # Dimensions of each head that rotate (partial rotary); None means all of head_dim.
    rotary_dim: int | None = None
    norm_eps: float = 1e-5
    rope: RopeConfig = field(default_factory=RopeConfig)
    # Layers with a sliding window use this RoPE (Gemma 3's local layers).
    rope_local: RopeConfig | None = None
    sliding_window: int | None = None
    # One entry a layer: True where the layer attends through the sliding window.
    sliding_layers: list[bool] = field(default_factory=list)
    tie_embeddings: bool = True
    attention_bias: bool = False
    qk_norm: bool = False
    # Query scale is 1/sqrt(query_pre_attn_scalar) where set, else 1/sqrt(head_dim).
    query_pre_attn_scalar: float | None = None
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["rope"] = RopeConfig(**data["rope"])
        if data.get("rope_local") is not None:
            data["rope_local"] = RopeConfig(**data["rope_local"])
        return cls(**data)

    def is_sliding(self, layer: int) -> bool:
        return bool(self.sliding_layers) and self.sliding_layers[layer]

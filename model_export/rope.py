"""Rotary position tables: cos/sin caches of shape [positions, rotary_dim / 2]."""

from __future__ import annotations

import math

import numpy as np

from .config import RopeConfig
from .errors import ExportError

SUPPORTED_SCALING = (None, "linear", "llama3", "longrope")


def inverse_frequencies(rope: RopeConfig, rotary_dim: int, factors: list[float] | None = None) -> np.ndarray:
    exponents = np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim
    inv = 1.0 / (rope.theta**exponents)
    if factors is not None:
        inv = inv / np.asarray(factors, dtype=np.float64)
    if rope.freq_factors is not None:
        inv = inv / np.asarray(rope.freq_factors, dtype=np.float64)
    if rope.scaling == "linear":
        inv = inv / rope.factor
    elif rope.scaling == "llama3":
        inv = _llama3(inv, rope)
    return inv


def _llama3(inv: np.ndarray, rope: RopeConfig) -> np.ndarray:
    old = float(rope.original_max_position or 8192)
    low_wavelen = old / rope.low_freq_factor
    high_wavelen = old / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (old / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)


def cos_sin_cache(rope: RopeConfig, rotary_dim: int, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables for positions 0..positions-1, float32."""
    if rope.scaling not in SUPPORTED_SCALING:
        raise ExportError(
            f"RoPE scaling {rope.scaling!r} is not supported; supported: linear, llama3, longrope"
        )
    pos = np.arange(positions, dtype=np.float64)[:, None]
    if rope.scaling == "longrope":
        orig = int(rope.original_max_position or positions)
        short = inverse_frequencies(rope, rotary_dim, rope.short_factor)
        long = inverse_frequencies(rope, rotary_dim, rope.long_factor)
        angles = np.where(pos < orig, pos * short[None, :], pos * long[None, :])
        scale = rope.attention_factor
        if scale is None:
            ratio = positions / orig
            scale = 1.0 if ratio <= 1.0 else math.sqrt(1 + math.log(ratio) / math.log(orig))
    else:
        angles = pos * inverse_frequencies(rope, rotary_dim)[None, :]
        scale = 1.0
    return (np.cos(angles) * scale).astype(np.float32), (np.sin(angles) * scale).astype(np.float32)

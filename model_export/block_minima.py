"""4-bit blocks with a float minimum: ``w = d * q + m`` (GGUF's Q4_1 form), from float weights.

Each block of ``block_size`` values along ``K`` gets a scale ``d`` and a minimum ``m``, both
float16-exact, and codes ``q`` in 0..15. Unlike an integer zero point (``d * (q - z)``,
``z`` in 0..15), the minimum sits anywhere: a block whose values lie on a 4-bit grid
(weights that were Q4_1 before) is stored exactly, and other blocks lose less than with a
grid forced through zero. The rounding follows llama.cpp's Q4_1 idea (ggml-quants.c,
``make_qkx`` search): start from ``d = (max - min) / 15``, ``m = min``; then, for a few
divisors of the range from 12 to 15.5, twice: round, solve the least-squares ``(d, m)`` for
those codes; keep the pair of least squared error.

Stored as MatMulNBits codes with zero points 0 plus a float ``[N, K / block_size]`` table
of minima; the graph adds ``sum(x over the block) * m`` (quantize.py's
``add_block_minima``), as for GGUF Q4_1 carried over.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .quant_blocks import NBitsWeight, _float_blocks, _fp16_exact, _pack_nibbles

# Divisors of a block's range tried besides 15 (the plain choice): a slightly larger step
# clips an outlier code and may fit the rest better.
RANGE_DIVISORS = (15.0, 14.0, 13.0, 12.0, 15.5, 14.5, 13.5)
REFINEMENTS = 2  # rounds of (codes, least-squares (d, m)) per divisor


def _codes(blocks: NDArray[np.float64], d: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    return np.clip(np.rint((blocks - m) * inv), 0, 15)


def _error(blocks: NDArray[np.float64], d: NDArray[np.float64], m: NDArray[np.float64],
           q: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.sum((d * q + m - blocks) ** 2, axis=-1, keepdims=True)


def _least_squares(blocks: NDArray[np.float64], q: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The ``(d, m)`` of least squared error for fixed codes (normal equations of a line)."""
    size = blocks.shape[-1]
    sq, sw = q.sum(-1, keepdims=True), blocks.sum(-1, keepdims=True)
    sqq, sqw = (q * q).sum(-1, keepdims=True), (q * blocks).sum(-1, keepdims=True)
    det = size * sqq - sq * sq
    ok = det > 0
    safe = np.where(ok, det, 1.0)
    d = np.where(ok, (size * sqw - sq * sw) / safe, 0.0)
    m = np.where(ok, (sqq * sw - sq * sqw) / safe, sw / size)
    return d, m


def quantize_q4_minima(w: NDArray[np.floating], block_size: int = 32) -> tuple[NBitsWeight, NDArray[np.float32]]:
    """Round a float ``W[N, K]`` to ``d * q + m`` blocks along ``K`` (see the module doc).

    Returns the MatMulNBits weight (bits 4, packed uint8 zero points 0, float32 scales
    ``[N, K/bs]``) and the minima, float32 ``[N, K/bs]``; both are float16-exact.
    """
    blocks, n, k = _float_blocks(w, block_size)
    lo = blocks.min(axis=-1, keepdims=True)
    hi = blocks.max(axis=-1, keepdims=True)
    best_d, best_m = _fp16_exact((hi - lo) / 15.0), _fp16_exact(lo)
    best_err = _error(blocks, best_d, best_m, _codes(blocks, best_d, best_m))
    for divisor in RANGE_DIVISORS:
        d0, m0 = _fp16_exact((hi - lo) / divisor), _fp16_exact(lo)
        d, m = d0, m0
        for _ in range(REFINEMENTS):
            d, m = _least_squares(blocks, _codes(blocks, d, m))
            d, m = _fp16_exact(np.maximum(d, 0.0)), _fp16_exact(m)
        err = _error(blocks, d, m, _codes(blocks, d, m))
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_d = np.where(better, d, best_d)
        best_m = np.where(better, m, best_m)
    codes = _codes(blocks, best_d, best_m).astype(np.uint8)
    kb = blocks.shape[1]
    zero_points = np.zeros((n, (kb + 1) // 2), np.uint8)
    weight = NBitsWeight(n, k, 4, block_size, _pack_nibbles(codes), best_d[..., 0].astype(np.float32), zero_points)
    return weight, best_m[..., 0].astype(np.float32)

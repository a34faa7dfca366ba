"""4-bit blocks with float minima (model_export/block_minima.py) against the gguf package's
Q4_1 quantizer (llama.cpp's reference rounding, ``gguf.quants``): weights that were Q4_1
come back unchanged, and float weights round no worse than Q4_1 does."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from pocketlm_export.block_minima import quantize_q4_minima
from pocketlm_export.quant_blocks import dequantize_nbits


def restored(w: np.ndarray, block_size: int = 32) -> np.ndarray:
    q, minima = quantize_q4_minima(w, block_size)
    blocks = dequantize_nbits(q).reshape(q.n, q.k_blocks, block_size) + minima[..., None]
    return blocks.reshape(w.shape)


def weights(seed: int) -> np.ndarray:
    """Heavy-tailed like trained weights (Student t, 5 degrees of freedom)."""
    return (np.random.default_rng(seed).standard_t(5, size=(192, 512)) * 0.02).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_weights_that_were_q4_1_come_back_unchanged(seed: int) -> None:
    w = weights(seed)
    q4_1 = dequantize(quantize(w, GGMLQuantizationType.Q4_1), GGMLQuantizationType.Q4_1).reshape(w.shape)
    np.testing.assert_array_equal(restored(q4_1), q4_1)


@pytest.mark.parametrize("seed", range(3))
def test_float_weights_round_no_worse_than_ggufs_q4_1(seed: int) -> None:
    w = weights(seed)
    reference = dequantize(quantize(w, GGMLQuantizationType.Q4_1), GGMLQuantizationType.Q4_1).reshape(w.shape)
    ours = restored(w)
    assert float(np.mean((ours - w) ** 2)) <= float(np.mean((reference - w) ** 2))


def test_constant_block_is_exact() -> None:
    w = np.full((4, 64), 0.125, np.float32)
    w[1] = -3.0
    np.testing.assert_array_equal(restored(w), w)

"""Weights as the source stores them, with a float view on demand.

A matrix keeps its stored form (float array, or GGUF quantized blocks laid out one row
of blocks per output row) so that later stages can either dequantize it or carry the
blocks over unchanged. Row operations (permute, slice) act on the stored form: GGUF
blocks run along the input dimension, so a row is always whole blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

# Values widened to float at a time when a large matrix is converted part by part.
CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class Weight:
    """One tensor. ``shape`` is logical in Hugging Face orientation: matrices are [out, in]."""

    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    data: np.ndarray  # float array of ``shape``; or uint8 [rows, row_bytes] for blocks

    @classmethod
    def from_float(cls, array: np.ndarray) -> Weight:
        array = np.ascontiguousarray(array, dtype=np.float32)
        return cls(tuple(array.shape), GGMLQuantizationType.F32, array)

    @property
    def is_quantized(self) -> bool:
        return self.qtype not in (
            GGMLQuantizationType.F32,
            GGMLQuantizationType.F16,
            GGMLQuantizationType.BF16,
        )

    def float32(self) -> np.ndarray:
        if self.qtype == GGMLQuantizationType.F32:
            return np.asarray(self.data, dtype=np.float32).reshape(self.shape)
        if self.qtype in (GGMLQuantizationType.F16,):
            return np.asarray(self.data).astype(np.float32).reshape(self.shape)
        return dequantize(self.data, self.qtype).astype(np.float32).reshape(self.shape)

    def row_chunks(self, values: int = CHUNK_VALUES) -> Iterator[slice]:
        """Consecutive row ranges of about ``values`` values each (at least one row), so a
        large matrix is widened to float a part at a time."""
        cols = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1
        step = max(1, values // max(cols, 1))
        for start in range(0, self.shape[0], step):
            yield slice(start, min(start + step, self.shape[0]))

    def float32_transposed(self) -> np.ndarray:
        """A matrix [out, in] as float32 [in, out], C-contiguous, widened a few rows at a time
        (peak memory: the result plus one chunk)."""
        if len(self.shape) != 2:
            raise ValueError(f"float32_transposed needs a matrix, got shape {self.shape}")
        out = np.empty((self.shape[1], self.shape[0]), np.float32)
        for rows in self.row_chunks():
            out[:, rows] = self.take_rows(rows).float32().T
        return out

    def take_rows(self, rows: np.ndarray | slice) -> Weight:
        data = self.data[rows]
        count = data.shape[0]
        return Weight((count, *self.shape[1:]), self.qtype, np.ascontiguousarray(data))

    def plus(self, offset: float) -> Weight:
        """Add a constant to a float tensor (Gemma's ``1 + w`` norm weights)."""
        return Weight.from_float(self.float32() + np.float32(offset))

"""The quality gate's float32 reference, run one layer per piece, computes the same logits
as the independent numpy forward pass (tests/reference) of the same tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketlm_export.reference import LayeredReference, plan_pieces
from pocketlm_export.sources import load_source
from tests.fixtures.tiny_models import write_tiny_gguf, write_tiny_hf
from tests.reference.numpy_forward import ReferenceModel


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi3", "qwen2-big-vocab"])
def test_layer_by_layer_reference_matches_numpy_forward(arch: str, tmp_path: Path) -> None:
    path = write_tiny_hf(arch, tmp_path / "hf", seed=9) if arch == "gemma3" else \
        write_tiny_gguf(arch, tmp_path / "m.gguf", seed=9, matrix_type="Q8_0")
    src = load_source(path)
    assert len(plan_pieces(src, piece_bytes=1)) == src.config.num_layers  # one layer a piece
    ref = LayeredReference(src, tmp_path / "pieces", piece_bytes=1, threads=1)
    numpy_ref = ReferenceModel.from_hf(path) if arch == "gemma3" else ReferenceModel.from_gguf(path)
    sequences = [[5, 9, 200, 17, 3, 64, 128, 7], [250, 1, 2]]
    got: dict[int, np.ndarray] = {}
    ref.run(sequences, lambda n, logits: got.__setitem__(n, logits.copy()))
    ref.close()
    assert not (tmp_path / "pieces").exists()
    for n, ids in enumerate(sequences):
        want, _ = numpy_ref.forward(ids)
        assert float(np.max(np.abs(got[n] - want))) <= 1e-3

"""Every registered architecture, exported from a tiny random model written by the tests,
matches the independent numpy forward pass: 64-token prefill then 32 cached decode steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketlm_export.architectures import REGISTRY
from pocketlm_export.export import ExportOptions, export
from tests.fixtures.tiny_models import (
    HF_ONLY,
    TINY_ARCHS,
    TINY_VARIANTS,
    write_tiny_gguf,
    write_tiny_hf,
)
from tests.onnx_runner import OnnxDecoder
from tests.reference.numpy_forward import ReferenceModel

PREFILL, DECODE, TOLERANCE = 64, 32, 1e-3


def compare(folder: Path, ref: ReferenceModel, vocab: int) -> float:
    rng = np.random.default_rng(7)
    prompt = [int(t) for t in rng.integers(0, vocab, PREFILL)]
    onnx_model = OnnxDecoder(folder)
    got = onnx_model.step(prompt)
    want, past = ref.forward(prompt)
    worst = float(np.max(np.abs(got - want)))
    for _ in range(DECODE):
        token = int(np.argmax(want[-1]))
        got = onnx_model.step([token])
        want, past = ref.forward([token], past)
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


def test_every_registered_architecture_has_a_tiny_model() -> None:
    assert set(REGISTRY) <= set(TINY_ARCHS), f"no tiny model for {set(REGISTRY) - set(TINY_ARCHS)}"


ALL_SPECS = sorted({**TINY_ARCHS, **TINY_VARIANTS})


@pytest.mark.parametrize("name", ALL_SPECS)
def test_hf_folder_export_matches_numpy_reference(name: str, tmp_path: Path) -> None:
    spec = {**TINY_ARCHS, **TINY_VARIANTS}[name]
    src = write_tiny_hf(spec, tmp_path / "hf", seed=1)
    export(src, tmp_path / "out", ExportOptions(logits="all", progress=False))
    worst = compare(tmp_path / "out", ReferenceModel.from_hf(src), spec.vocab_size)
    assert worst <= TOLERANCE, f"{name}: max |logit diff| {worst:.2e}"


@pytest.mark.parametrize("name", [n for n in ALL_SPECS if n not in HF_ONLY])
def test_gguf_export_matches_numpy_reference(name: str, tmp_path: Path) -> None:
    spec = {**TINY_ARCHS, **TINY_VARIANTS}[name]
    src = write_tiny_gguf(spec, tmp_path / "tiny.gguf", seed=2)
    export(src, tmp_path / "out", ExportOptions(logits="all", progress=False))
    worst = compare(tmp_path / "out", ReferenceModel.from_gguf(src), spec.vocab_size)
    assert worst <= TOLERANCE, f"{name}: max |logit diff| {worst:.2e}"


@pytest.mark.parametrize("matrix_type", ["F16", "Q8_0", "Q4_0", "Q4_1"])
def test_quantized_gguf_tensors_dequantize_like_the_reference(matrix_type: str, tmp_path: Path) -> None:
    src = write_tiny_gguf("llama", tmp_path / "tiny.gguf", seed=3, matrix_type=matrix_type)
    export(src, tmp_path / "out", ExportOptions(logits="all", progress=False))
    worst = compare(tmp_path / "out", ReferenceModel.from_gguf(src), TINY_ARCHS["llama"].vocab_size)
    assert worst <= TOLERANCE, f"{matrix_type}: max |logit diff| {worst:.2e}"

"""The quality gate's runner: greedy continuations decoded as one batch must be, row by row,
what one-prompt-at-a-time decoding gives (an independent loop over the same graph,
tests/onnx_runner.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketlm_export.export import ExportOptions, export
from pocketlm_export.quality import GraphRunner
from tests.fixtures.tiny_models import TINY_ARCHS, write_tiny_hf
from tests.onnx_runner import OnnxDecoder

PROMPTS = [[1, 5, 9, 12], [3], [7, 2, 8, 4, 6, 11, 10, 13, 2]]  # different lengths: padded rows


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
@pytest.mark.parametrize("quant", ["fp32", "q4"])
def test_batched_greedy_decoding_gives_each_prompt_its_own_continuation(arch: str, quant: str,
                                                                         tmp_path: Path) -> None:
    src = write_tiny_hf(arch, tmp_path / "hf", seed=7)
    out = tmp_path / "out"
    export(src, out, ExportOptions(quant=quant, logits="all", progress=False))
    runner = GraphRunner(out / "model.onnx", threads=1)
    batched, steps_per_second = runner.greedy_batch(PROMPTS, 12)
    alone = [OnnxDecoder(out).greedy(p, 12) for p in PROMPTS]
    assert batched == alone
    assert batched == [runner.greedy(p, 12)[0] for p in PROMPTS]
    assert steps_per_second > 0

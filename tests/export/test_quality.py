"""The quality gate's runner: greedy continuations decoded as one batch must be, row by row,
what one-prompt-at-a-time decoding gives (an independent loop over the same graph,
tests/onnx_runner.py); evaluation windows run as one batch must give the figures they give
run one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketlm_export import quality
from pocketlm_export.export import ExportOptions, build_into, export
from pocketlm_export.quality import GraphRunner
from pocketlm_export.quantize import QuantOptions, codec_for, session_config
from pocketlm_export.sources import load_source
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
    assert steps_per_second > 0


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_windows_run_as_one_batch_measure_what_windows_run_alone_measure(arch: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = load_source(write_tiny_hf(arch, tmp_path / "hf", seed=3))
    rng = np.random.default_rng(0)
    text = [int(t) for t in rng.integers(0, src.config.vocab_size, 5 * 64 + 21)]
    ref = quality.reference(src, tmp_path / "ref", text, 128)  # windows of 64: five whole, one short
    assert ref.window == 64
    options = QuantOptions(mode="q4", layout="nbits")
    model = build_into(tmp_path / "q4", src, codec_for(src, options), False)
    figures = []
    for budget in (1, 1 << 30):  # one window a call, then every whole window in one call
        monkeypatch.setattr(quality, "CALL_LOGITS_BYTES", budget)
        result = quality.compare("q4", model, ref, text, PROMPTS, session_config(options)).as_dict()
        del result["decode_tokens_per_second"]
        figures.append(result)
    ref.layered.close()
    alone, batched = figures
    assert batched.pop("perplexity") == pytest.approx(alone.pop("perplexity"), rel=1e-6)
    assert batched.pop("perplexity_rise") == pytest.approx(alone.pop("perplexity_rise"), abs=1e-6)
    assert batched.pop("max_logit_error") == pytest.approx(alone.pop("max_logit_error"), abs=1e-5)
    assert batched == alone

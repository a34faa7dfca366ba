"""The engine on the real default model (SmolLM2-135M-Instruct) against native onnxruntime.

The model is exported with ``--layout nbits`` twice: ``--quant exact`` (the GGUF's own
Q4_1 / Q8_0 blocks) and ``--quant q4`` (4-bit blocks with zero points). On the same folder:

- over the held-out text (pocketlm_export.quality's evaluation windows): teacher-forced
  top-1 agreement >= 97% and perplexity within +1% of onnxruntime with float activations
  (onnxruntime with int8 activations, accuracy_level 4, is printed beside: it misses both);
- the logits of the first window within ``reference.logit_bound``;
- greedy answers to the page's parity prompts (tests/web/test_default_model.py) through the
  one generation loop (pocketlm_runtime), first 16 tokens equal to native onnxruntime's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketlm_runtime.native import load_native
from pocketlm_runtime.pipeline import LanguageModel
from pocketlm_runtime.sampling import SamplingOptions

from . import reference
from .node_engine import EngineSession, NodeEngine

pytestmark = pytest.mark.slow

PROMPTS: list[Any] = [
    "Once upon a time",
    "def fibonacci(n):",
    [{"role": "user", "content": "What is the capital of France?"}],
]
GREEDY_TOKENS = 16


@pytest.fixture(scope="module", params=["exact", "q4"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pocketlm_export.export import ExportOptions, export

    given = os.environ.get("POCKETLM_TEST_ENGINE_MODELS")  # a folder holding exact/ and q4/ exports
    if given:
        return Path(given) / request.param
    out = tmp_path_factory.mktemp("engine-default") / request.param
    export(None, out, ExportOptions(quant=request.param, layout="nbits", logits="all", progress=False))
    return out


@pytest.fixture(scope="module")
def text(model: Path) -> tuple[list[list[int]], list[list[int]]]:
    """Evaluation windows of the held-out text and their next-token targets."""
    return reference.eval_windows(model)


def native_scores(model: Path, windows: list[list[int]], targets: list[list[int]],
                  accuracy_level: int) -> tuple[list[np.ndarray], float]:
    """Top-1 ids of every position and perplexity, onnxruntime on the same folder."""
    return reference.window_scores(reference.session(model, accuracy_level, threads=2), model, windows, targets)


def agreement(a: list[Any], b: list[Any], targets: list[list[int]]) -> float:
    same = sum(int((np.asarray(x)[: len(t)] == np.asarray(y)[: len(t)]).sum()) for x, y, t in zip(a, b, targets))
    return same / sum(len(t) for t in targets)


@pytest.mark.parametrize("prefill", ["float", "int16"])
def test_held_out_text_matches_native(node: NodeEngine, model: Path, text: tuple[list[list[int]], list[list[int]]],
                                      tmp_path: Path, prefill: str) -> None:
    # Both prefill GEMMs of the int16 mode (the window is one chunk of tokens): over float32
    # activations (the relaxed build's default) and over int16 blocks (the plain build's).
    windows, targets = text
    float_tops, float_ppl = native_scores(model, windows, targets, 0)
    int8_tops, int8_ppl = native_scores(model, windows, targets, 4)
    node.load(model, "relaxed", threads=2)
    node.call("setPrefillInt16", on=prefill == "int16")
    dump = tmp_path / "first.f32"
    first = node.call("evaluate", windows=windows[:1], targets=targets[:1], dump=str(dump))
    rest = node.call("evaluate", windows=windows[1:], targets=targets[1:])
    out = first + rest
    tops = [r["top"] for r in out]
    ppl = math.exp(sum(r["nll"] for r in out) / sum(len(t) for t in targets))
    top1_float, top1_int8 = agreement(tops, float_tops, targets), agreement(tops, int8_tops, targets)
    native_int8_top1 = agreement(int8_tops, float_tops, targets)
    print(f"\n{model.name}, {prefill} prefill: engine top-1 vs float {top1_float:.4f}, vs int8 {top1_int8:.4f}; native int8 vs float "
          f"{native_int8_top1:.4f}; perplexity engine {ppl:.4f}, native float {float_ppl:.4f}, native int8 {int8_ppl:.4f}")
    # The targets of the engine (int16 activation blocks, its default).
    assert top1_float >= 0.97
    assert ppl <= float_ppl * 1.01

    w0 = windows[0]
    float_ref = reference.window_logits(reference.session(model, 0, 2), model, w0)
    int8_ref = reference.window_logits(reference.session(model, 4, 2), model, w0)
    logits = np.fromfile(dump, np.float32).reshape(float_ref.shape)
    bound = reference.logit_bound(float_ref, int8_ref, 16)
    assert float(np.abs(logits - float_ref).max()) <= bound


@pytest.mark.parametrize("build,threads", [("relaxed", 2), ("relaxed", 1), ("plain", 2), ("plain", 1)])
def test_greedy_answers_equal_native(node: NodeEngine, model: Path, build: str, threads: int) -> None:
    native = load_native(model, threads=2)
    info = node.load(model, build, threads=threads)
    assert (info["simd"], info["threads"]) == (build, threads)
    engine = LanguageModel(EngineSession(node), native.info, native.tokenizer)
    prompts = PROMPTS if (build, threads) == ("relaxed", 2) else PROMPTS[:1]
    for prompt in prompts:
        options = SamplingOptions(max_new_tokens=GREEDY_TOKENS, stop=[])
        expected = native.generate(prompt, options).tokens
        native.new_chat()
        got = engine.generate(prompt, options).tokens
        engine.new_chat()
        assert got[:GREEDY_TOKENS] == expected[:GREEDY_TOKENS], prompt
    assert node.call("liveTensors") == engine_live(engine)


def engine_live(engine: LanguageModel) -> int:
    """Handles the loop still holds (its KV cache between turns)."""
    return len(engine.generator.kv)

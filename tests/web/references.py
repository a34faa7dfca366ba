"""What the page must answer, computed outside the browser.

- :func:`native_tokens`: native onnxruntime (the reference for onnxruntime-web's WebGPU and
  WASM backends in the page);
- :func:`engine_tokens`: the CPU engine's same WebAssembly build run in node (the reference
  for the page's CPU engine, whose int8 activations may pick another token than float
  activations where two logits nearly tie, as they do in the tests' random tiny models).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


def native_tokens(model: Path, prompt: Any, max_new_tokens: int) -> list[int]:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    result = load_native(model, threads=1).generate(prompt, SamplingOptions(max_new_tokens=max_new_tokens))
    return result.tokens


def engine_tokens(model: Path, prompt: Any, max_new_tokens: int, build: str = "relaxed") -> list[int]:
    return list(_engine_tokens(model, json.dumps(prompt), max_new_tokens, build))


@cache
def _engine_tokens(model: Path, prompt_json: str, max_new_tokens: int, build: str) -> tuple[int, ...]:
    from pocketlm_runtime.model_info import ModelInfo
    from pocketlm_runtime.pipeline import LanguageModel
    from pocketlm_runtime.sampling import SamplingOptions
    from pocketlm_runtime.tokenizer import Tokenizer
    from tests.engine.node_engine import EngineSession, NodeEngine

    info = ModelInfo.from_text((model / "pocketlm.json").read_text(encoding="utf-8"))
    node = NodeEngine()
    try:
        node.load(model, build=build, threads=1)
        lm = LanguageModel(EngineSession(node), info, Tokenizer.from_file(model / "tokenizer.json"))
        return tuple(lm.generate(json.loads(prompt_json), SamplingOptions(max_new_tokens=max_new_tokens)).tokens)
    finally:
        node.close()


def engine_text(model: Path, prompt: Any, options: Any) -> str:
    """The text the CPU engine (relaxed build, node) answers ``prompt`` with these
    :class:`~pocketlm_runtime.sampling.SamplingOptions`."""
    from pocketlm_runtime.model_info import ModelInfo
    from pocketlm_runtime.pipeline import LanguageModel
    from pocketlm_runtime.tokenizer import Tokenizer
    from tests.engine.node_engine import EngineSession, NodeEngine

    info = ModelInfo.from_text((model / "pocketlm.json").read_text(encoding="utf-8"))
    node = NodeEngine()
    try:
        node.load(model, build="relaxed", threads=1)
        lm = LanguageModel(EngineSession(node), info, Tokenizer.from_file(model / "tokenizer.json"))
        return lm.generate(prompt, options).text
    finally:
        node.close()


def engine_continuation(model: Path, ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens the CPU engine (relaxed build, node) appends to the token ids ``ids``."""
    from pocketlm_runtime.generator import Generator
    from pocketlm_runtime.model_info import ModelInfo
    from pocketlm_runtime.sampling import SamplingOptions
    from tests.engine.node_engine import EngineSession, NodeEngine

    info = ModelInfo.from_text((model / "pocketlm.json").read_text(encoding="utf-8"))
    node = NodeEngine()
    try:
        node.load(model, build="relaxed", threads=1)
        generator = Generator(EngineSession(node), info)
        generator.begin(SamplingOptions(max_new_tokens=max_new_tokens))
        generator.append_tokens(ids)
        return list(generator.tokens())
    finally:
        node.close()

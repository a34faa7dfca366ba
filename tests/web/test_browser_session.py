"""pocketlm_runtime.browser in CPython, with `js` and `pyodide.ffi` replaced by fakes.

The fake backend keeps tensors in a handle table like ort_backend.js does, and runs them
with native onnxruntime, so the bookkeeping (handles, feeds, releases, stop, timing) is
checked in milliseconds; the real thing runs in Chromium in test_page.py.
"""

from __future__ import annotations

import array
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from pocketlm_runtime import native
from pocketlm_runtime.model_info import ModelInfo
from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions


class Done:
    """A settled JS promise: awaitable, and what the fake run_sync unwraps."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Iterator[Any]:
        yield from ()
        return self.value


class Typed:
    """A JS typed array as Python sees it: .to_py() gives a memoryview."""

    def __init__(self, typecode: str, values: Any) -> None:
        self.data = array.array(typecode, values)

    def to_py(self) -> memoryview:
        return memoryview(self.data)


class FakeBackend:
    """ort_backend.js's helpers over onnxruntime, with the same handle table."""

    def __init__(self, model: Path, info: ModelInfo, gpu_like: bool = False) -> None:
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.kv_shape = (1, info.kv.num_kv_heads, 0, info.kv.head_dim)
        self.table: dict[int, Any] = {}
        self.next = 1
        self.feed_names: list[str] = []
        # Like onnxruntime-web on a GPU: run and pick answer with promises. Otherwise like the
        # CPU engine: both answer at once.
        self.gpu_like = gpu_like
        self.runs = 0

    def keep(self, value: Any) -> int:
        self.next += 1
        self.table[self.next] = value
        return self.next

    def setFeedNames(self, names: list[str]) -> None:
        self.feed_names = list(names)

    def outputNames(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, handles: array.array) -> Done:
        self.runs += 1
        feeds = {name: self.table[h] for name, h in zip(self.feed_names, handles)}
        outputs = self.session.run(None, feeds)
        handles = Typed("i", [self.keep(value) for value in outputs])
        return Done(handles) if self.gpu_like else handles

    def int64(self, data: bytes, dims: list[int]) -> int:
        return self.keep(np.frombuffer(data, dtype=np.int64).reshape(dims))

    def emptyKV(self) -> int:
        return self.keep(np.zeros(self.kv_shape, dtype=np.float32))

    def pick(self, handle: int, settings: dict[str, Any], previous: array.array, uniform: float) -> Any:
        options = SamplingOptions(temperature=settings["temperature"], top_k=settings["topK"],
                                  top_p=settings["topP"], repetition_penalty=settings["repetitionPenalty"])
        token = native.pick(self.table[handle][0, -1], options, list(previous), uniform)
        return Done(token) if self.gpu_like else token

    def dispose(self, handles: array.array) -> None:
        for handle in handles:
            del self.table[handle]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pocketlm_runtime.browser imported against fake `js` and `pyodide.ffi` modules."""
    js = types.ModuleType("js")
    js.Object = types.SimpleNamespace(fromEntries=dict)  # type: ignore[attr-defined]
    ffi = types.ModuleType("pyodide.ffi")
    ffi.JsProxy = type("JsProxy", (), {})  # type: ignore[attr-defined]
    ffi.jsnull = object()  # type: ignore[attr-defined]
    ffi.run_sync = lambda promise: promise.value  # type: ignore[attr-defined]
    ffi.to_js = lambda value, dict_converter=None: value  # type: ignore[attr-defined]
    pyodide = types.ModuleType("pyodide")
    pyodide.ffi = ffi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "js", js)
    monkeypatch.setitem(sys.modules, "pyodide", pyodide)
    monkeypatch.setitem(sys.modules, "pyodide.ffi", ffi)
    monkeypatch.delitem(sys.modules, "pocketlm_runtime.browser", raising=False)
    return importlib.import_module("pocketlm_runtime.browser")


def load(browser: Any, model: Path, gpu_like: bool = False) -> tuple[Any, FakeBackend]:
    config = (model / "pocketlm.json").read_text()
    info = ModelInfo.from_text(config)
    backend = FakeBackend(model / info.model_file, info, gpu_like)
    return browser.load_model(config, (model / "tokenizer.json").read_text(), backend), backend


def generate(model: Any, prompt: Any, options: dict[str, Any], stop_after: int | None = None) -> dict[str, Any]:
    pieces: list[str] = []
    result: dict[str, Any] = model.generate(
        prompt, options, pieces.append,
        lambda: stop_after is not None and len(pieces) >= stop_after, lambda: Done(False))
    result["pieces"] = pieces
    return result


@pytest.mark.parametrize("gpu_like", [False, True])
def test_browser_session_gives_the_native_tokens(browser: Any, tiny_model: Path, gpu_like: bool) -> None:
    model, _backend = load(browser, tiny_model, gpu_like)
    native = load_native(tiny_model, threads=1)
    prompts: list[str | list[dict[str, str]]] = ["hello world", [{"role": "user", "content": "hello"}]]
    for prompt in prompts:
        model.new_chat()
        result = generate(model, prompt, {"maxNewTokens": 12})
        assert result["tokens"] == native.generate(prompt, SamplingOptions(max_new_tokens=12)).tokens
        assert "".join(result["pieces"]) == result["text"]


def test_every_tensor_but_the_cache_is_released(browser: Any, tiny_model: Path) -> None:
    model, backend = load(browser, tiny_model)
    layers = ModelInfo.from_text((tiny_model / "pocketlm.json").read_text()).kv.num_layers
    generate(model, "hello world", {"maxNewTokens": 10})
    assert len(backend.table) == 2 * layers
    model.new_chat()
    assert len(backend.table) == 2 * layers  # the old cache freed, an empty one made


def test_a_stop_request_ends_the_answer_at_the_next_step(browser: Any, tiny_model: Path) -> None:
    model, _backend = load(browser, tiny_model)
    result = generate(model, "hello world", {"maxNewTokens": 200}, stop_after=1)
    assert result["stop_reason"] == "stopped"
    assert len(result["tokens"]) <= 3


def test_the_step_clock_reports_pythons_share(browser: Any, tiny_model: Path) -> None:
    model, _ = load(browser, tiny_model)
    result = generate(model, "hello world", {"maxNewTokens": 8, "temperature": 0})
    assert result["decode_steps"] == 7
    assert 0 < result["python_share"] < 1
    assert result["ort_ms_per_step"] > 0


def test_engine_option_names_map_to_sampling_options(browser: Any) -> None:
    options = browser.sampling_options({"maxNewTokens": 5, "topK": 3, "topP": 0.5, "stop": ["x"],
                                        "repetitionPenalty": 1.2, "seed": 1, "temperature": 0.7})
    assert (options.max_new_tokens, options.top_k, options.top_p, options.stop) == (5, 3, 0.5, ["x"])
    assert (options.repetition_penalty, options.seed, options.temperature) == (1.2, 1, 0.7)
    with pytest.raises(ValueError, match="unknown generation option 'top_k'; known options: "):
        browser.sampling_options({"top_k": 3})
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        browser.sampling_options({"maxNewTokens": 0})


def test_chat_flag_applies_the_template_to_plain_text(browser: Any, tiny_model: Path) -> None:
    model, _ = load(browser, tiny_model)
    wrapped = model.generate("hello", {"maxNewTokens": 6}, lambda text: None, lambda: False,
                             lambda: Done(False), True)
    native = load_native(tiny_model, threads=1).generate(
        "hello", SamplingOptions(max_new_tokens=6), chat=True)
    assert wrapped["tokens"] == native.tokens
    assert wrapped["prompt_tokens"] == native.timing.prompt_tokens

"""The default model in the browser, against runs outside it.

- The CPU engine in Chromium (relaxed and plain SIMD builds, 1 and 2 threads) gives the
  same greedy tokens as the same engine build run in node (tests/engine), which
  tests/engine checks against native onnxruntime.
- onnxruntime-web in Chromium (its WASM build, and WebGPU on SwiftShader: a few tokens
  by default, all with POCKETLM_TEST_WEBGPU=1, about 15 s a token) gives native
  onnxruntime's tokens.
All of them are driven by pocketlm_runtime's one generation loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.nginx_runner import nginx_serving
from tests.web.site_browser import BrowserFactory, SiteServer, ask, wait_ready, wait_until

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NEW_TOKENS = 32
PROMPTS: list[Any] = [
    "Once upon a time",
    "def fibonacci(n):",
    [{"role": "user", "content": "What is the capital of France?"}],
]


@pytest.fixture(scope="module")
def engine_answers(default_model: Path) -> dict[str, list[list[int]]]:
    """The CPU engine's greedy answers in node, for each of its two builds."""
    from pocketlm_runtime.model_info import ModelInfo
    from pocketlm_runtime.pipeline import LanguageModel
    from pocketlm_runtime.sampling import SamplingOptions
    from pocketlm_runtime.tokenizer import Tokenizer
    from tests.engine.node_engine import EngineSession, NodeEngine

    info = ModelInfo.from_text((default_model / "pocketlm.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(default_model / "tokenizer.json")
    answers = {}
    for build in ("relaxed", "plain"):
        node = NodeEngine()
        try:
            node.load(default_model, build=build, threads=1)
            model = LanguageModel(EngineSession(node), info, tokenizer)
            answers[build] = [model.generate(prompt, SamplingOptions(max_new_tokens=NEW_TOKENS)).tokens
                              for prompt in PROMPTS]
        finally:
            node.close()
    return answers


@pytest.fixture(scope="module")
def native_answers(default_model: Path) -> list[list[int]]:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    model = load_native(default_model)
    return [model.generate(prompt, SamplingOptions(max_new_tokens=NEW_TOKENS)).tokens
            for prompt in PROMPTS]


def open_page(browsers: BrowserFactory, server: SiteServer, query: str, webgpu: bool = False) -> Any:
    context, traffic = browsers(server.url, webgpu=webgpu)
    page = context.new_page()
    page.goto(f"{server.url}/?{query}")
    wait_ready(page)
    return page, traffic


@pytest.mark.parametrize(("simd", "threads"), [("relaxed", 1), ("relaxed", 2), ("plain", 2)])
def test_cpu_engine_gives_the_node_engines_tokens(open_browser: BrowserFactory, default_server: SiteServer,
                                                  engine_answers: dict[str, list[list[int]]],
                                                  simd: str, threads: int) -> None:
    page, traffic = open_page(open_browser, default_server, f"backend=wasm&simd={simd}&threads={threads}")
    backend = page.evaluate("window.pocketlm.engine.backend")
    assert (backend["name"], backend["simd"], backend["threads"]) == ("wasm", simd, threads)
    for prompt, expected in zip(PROMPTS, engine_answers[simd]):
        page.evaluate("window.pocketlm.engine.newChat()")
        assert ask(page, prompt, maxNewTokens=NEW_TOKENS)["tokens"] == expected, prompt
    assert traffic.foreign == []
    # The CPU path never loads onnxruntime-web.
    assert not [url for url in traffic.seen if "/runtime/ort/" in url]


def test_ort_wasm_gives_native_tokens(open_browser: BrowserFactory, default_server: SiteServer,
                                      native_answers: list[list[int]]) -> None:
    """onnxruntime-web's WASM build, kept as the in-page reference (slow on 4-bit blocks)."""
    count = 8
    page, _ = open_page(open_browser, default_server, "backend=ort-wasm&threads=2")
    assert page.evaluate("window.pocketlm.engine.backend.name") == "ort-wasm"
    assert ask(page, PROMPTS[0], maxNewTokens=count)["tokens"] == native_answers[0][:count]


def test_webgpu_greedy_tokens_equal_native(open_browser: BrowserFactory, default_server: SiteServer,
                                           native_answers: list[list[int]]) -> None:
    """The export's 4-bit blocks kept 4-bit on the GPU (MatMulNBits; the embedding and tied
    head sharing one table). SwiftShader takes tens of seconds a token: the first prompt's
    first tokens by default, every prompt's 32 tokens with POCKETLM_TEST_WEBGPU=1."""
    full = os.environ.get("POCKETLM_TEST_WEBGPU") == "1"
    count = NEW_TOKENS if full else 4
    page, _ = open_page(open_browser, default_server, "backend=webgpu", webgpu=True)
    assert page.evaluate("window.pocketlm.engine.backend.name") == "webgpu"
    for prompt, expected in list(zip(PROMPTS, native_answers))[: 3 if full else 1]:
        page.evaluate("window.pocketlm.engine.newChat()")
        assert ask(page, prompt, maxNewTokens=count)["tokens"] == expected[:count], prompt


def test_the_site_served_by_nginx_gives_the_same_tokens(open_browser: BrowserFactory, default_site: Path,
                                                         engine_answers: dict[str, list[list[int]]],
                                                         tmp_path: Path) -> None:
    with nginx_serving(default_site, tmp_path / "nginx") as port:
        origin = f"http://127.0.0.1:{port}"
        context, traffic = open_browser(origin)
        page = context.new_page()
        page.goto(f"{origin}/?backend=wasm&threads=2")
        wait_ready(page)
        assert page.evaluate("crossOriginIsolated") is True
        for prompt, expected in zip(PROMPTS, engine_answers["relaxed"]):
            page.evaluate("window.pocketlm.engine.newChat()")
            assert ask(page, prompt, maxNewTokens=NEW_TOKENS)["tokens"] == expected, prompt
        assert traffic.foreign == []


def test_python_takes_at_most_a_tenth_of_a_decode_step(open_browser: BrowserFactory,
                                                       default_server: SiteServer) -> None:
    page, _ = open_page(open_browser, default_server, "backend=wasm&threads=1")
    ask(page, "Hello", maxNewTokens=4)  # warm up
    timing = ask(page, "Once upon a time", maxNewTokens=64)["timing"]
    assert timing["decodeSteps"] >= 32
    assert timing["pythonShare"] <= 0.10, timing


def test_the_chat_page_answers(open_browser: BrowserFactory, default_server: SiteServer,
                               tmp_path: Path) -> None:
    page, _ = open_page(open_browser, default_server, "")
    page.fill("#prompt", "Write a haiku about the sea.")
    page.click("#send")
    wait_until(page, "document.querySelector('#messages li.assistant .text')?.textContent.length > 20", 300)
    # The README shows this picture.
    page.screenshot(path=str(SCREENSHOT))
    wait_until(page, "!document.getElementById('send').disabled", 300)
    status = page.inner_text("#status")
    assert "tokens/s" in status and "first token" in status
    answer = page.evaluate("window.pocketlm.history[1].content")
    assert len(answer.split()) >= 5

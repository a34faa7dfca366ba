"""The default model in the browser: the same greedy tokens as native onnxruntime.

Two independent paths to one answer: onnxruntime-web in Chromium (WASM, 1 and 2 threads;
WebGPU on SwiftShader when POCKETLM_TEST_WEBGPU=1, about 15 s a token) against
onnxruntime in CPython, both driven by pocketlm_runtime's one generation loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import BrowserFactory, SiteServer, ask, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NEW_TOKENS = 32
PROMPTS: list[Any] = [
    "Once upon a time",
    "def fibonacci(n):",
    [{"role": "user", "content": "What is the capital of France?"}],
]


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


@pytest.mark.parametrize("threads", [1, 2])
def test_wasm_greedy_tokens_equal_native(open_browser: BrowserFactory, default_server: SiteServer,
                                         native_answers: list[list[int]], threads: int) -> None:
    page, traffic = open_page(open_browser, default_server, f"backend=wasm&threads={threads}")
    backend = page.evaluate("window.pocketlm.engine.backend")
    assert (backend["name"], backend["threads"]) == ("wasm", threads)
    for prompt, expected in zip(PROMPTS, native_answers):
        page.evaluate("window.pocketlm.engine.newChat()")
        assert ask(page, prompt, maxNewTokens=NEW_TOKENS)["tokens"] == expected, prompt
    assert traffic.foreign == []


@pytest.mark.skipif(os.environ.get("POCKETLM_TEST_WEBGPU") != "1",
                    reason="WebGPU on SwiftShader takes ~25 min; set POCKETLM_TEST_WEBGPU=1")
def test_webgpu_greedy_tokens_equal_native(open_browser: BrowserFactory, default_server: SiteServer,
                                           native_answers: list[list[int]]) -> None:
    page, _ = open_page(open_browser, default_server, "backend=webgpu", webgpu=True)
    assert page.evaluate("window.pocketlm.engine.backend.name") == "webgpu"
    for prompt, expected in zip(PROMPTS, native_answers):
        page.evaluate("window.pocketlm.engine.newChat()")
        assert ask(page, prompt, maxNewTokens=NEW_TOKENS)["tokens"] == expected, prompt


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
    page.wait_for_function(
        "document.querySelector('#messages li.assistant p')?.textContent.length > 20")
    page.screenshot(path=str(tmp_path / "mid-answer.png"))
    page.wait_for_function("!document.getElementById('send').disabled", timeout=300_000)
    status = page.inner_text("#status")
    assert "tokens/s" in status and "first token" in status
    answer = page.evaluate("window.pocketlm.history[1].content")
    assert len(answer.split()) >= 5

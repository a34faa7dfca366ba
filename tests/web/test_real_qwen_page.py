"""The real Qwen2.5-Coder-0.5B-Instruct in the page: its exact export (672 MB of Q5_0 / Q8_0 /
Q4_K / Q6_K blocks, a 151,936-token vocabulary, an untied head) is built into a site, loaded
by the page's CPU engine in Chromium (2 threads, weights streamed from the model cache into
the engine's memory) and answers a coding prompt with the greedy tokens native onnxruntime
gives on the same folder.

The export is the session fixture `qwen_exact` (tests/conftest.py), shared with
tests/export/test_real_qwen.py; a few tokens keep this test short (the page's load of the
672 MB file is most of its time).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.references import native_tokens
from tests.web.site_browser import BrowserFactory, SiteServer, ask, open_ready_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPT = [{"role": "user", "content": "Write a Python function that reverses a string."}]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def qwen_server(qwen_exact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteServer]:
    from pocketlm_build.bundle import build_site

    site = tmp_path_factory.mktemp("qwen-site") / "dist"
    build_site(qwen_exact, site, compress=False)  # no gzip copies: a minute saved, loopback only
    server = SiteServer(site)
    yield server
    server.stop()


def test_the_page_answers_with_native_onnxruntimes_tokens(open_browser: BrowserFactory, qwen_server: SiteServer,
                                                          qwen_exact: Path) -> None:
    expected = native_tokens(qwen_exact, PROMPT, NEW_TOKENS)
    page, traffic = open_ready_page(open_browser, qwen_server, "backend=wasm&threads=2")
    backend = page.evaluate("window.pocketlm.engine.backend")
    assert (backend["name"], backend["threads"]) == ("wasm", 2)
    assert ask(page, PROMPT, maxNewTokens=NEW_TOKENS)["tokens"] == expected
    assert traffic.foreign == []

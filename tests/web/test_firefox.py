"""Firefox ESR (Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core from
npm) answers the parity prompts with the tokens of native onnxruntime, as Chromium does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import SiteServer
from tests.web.test_default_model import NEW_TOKENS, PROMPTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FIREFOX = Path("/usr/bin/firefox-esr")
SCRIPT = Path(__file__).with_name("firefox_answers.mjs")


def firefox_answers(url: str, prompts: list[Any], max_new_tokens: int) -> dict[str, Any]:
    if not FIREFOX.exists():
        pytest.skip(f"{FIREFOX} is missing: apt-get install firefox-esr")
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules/puppeteer-core").exists():
        pytest.skip("node and npm's puppeteer-core are needed (make setup)")
    run = subprocess.run([node, str(SCRIPT), url, json.dumps({"prompts": prompts, "maxNewTokens": max_new_tokens})],
                         capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no answer from Firefox: {run.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in result, result.get("error")
    return result


def test_firefox_gives_the_native_tokens_for_the_parity_prompts(default_server: SiteServer,
                                                                default_model: Path) -> None:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    model = load_native(default_model)
    expected = [model.generate(p, SamplingOptions(max_new_tokens=NEW_TOKENS)).tokens for p in PROMPTS]
    result = firefox_answers(default_server.url + "/?backend=wasm", PROMPTS, NEW_TOKENS)
    assert "Firefox" in result["userAgent"]
    assert result["backend"]["name"] in ("wasm", "ort-wasm"), result["backend"]  # a CPU backend
    print(f"\nFirefox ran on {result['backend']['name']}: {result['backend'].get('reason', '')}")
    assert result["tokens"] == expected

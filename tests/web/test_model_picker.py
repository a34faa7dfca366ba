"""A site with two models: the picker lists them, choosing one downloads only its files
(counted by the server), each answers as native onnxruntime does on its own folder, the
choice is remembered, and a model's download can be deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import BrowserFactory, SiteServer, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = "!document.getElementById('send').disabled"


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another architecture (tiny Qwen2), with a licence in its GGUF."""
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    folder = tmp_path_factory.mktemp("second-model")
    gguf = write_tiny_gguf("qwen2", folder / "tiny-qwen.gguf", seed=3, matrix_type="Q4_0", license="apache-2.0")
    return export(gguf, folder / "model", ExportOptions(quant="exact", progress=False,
                                                        allow_quality_loss=True)).out


@pytest.fixture(scope="module")
def two_model_server(tiny_model: Path, second_model: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteServer]:
    from pocketlm_build.bundle import build_site

    dist = tmp_path_factory.mktemp("two-models") / "dist"
    build_site([tiny_model, second_model], dist)
    server = SiteServer(dist)
    yield server
    server.stop()


def native_tokens(model: Path, prompt: str, n: int) -> list[int]:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    messages = [{"role": "user", "content": prompt}]
    return load_native(model, threads=1).generate(messages, SamplingOptions(max_new_tokens=n)).tokens


def page_tokens(page: Any, prompt: str, n: int) -> list[int]:
    return list(page.evaluate(f"window.pocketlm.engine.generate([{{role: 'user', content: {json.dumps(prompt)}}}], "
                              f"{{maxNewTokens: {n}}}).then((r) => r.tokens)"))


def sent(server: SiteServer) -> set[str]:
    """The files the server sent so far."""
    return set(server.app.paths)


def ready_on(page: Any, model_id: str) -> None:
    wait_until(page, f"document.body.dataset.model === {json.dumps(model_id)} && {IDLE}", 300)


def test_the_picker_downloads_only_the_chosen_model_remembers_it_and_deletes_a_download(
        open_browser: BrowserFactory, two_model_server: SiteServer, tiny_model: Path, second_model: Path) -> None:
    server = two_model_server
    site = json.loads((server.root / "site.json").read_text())
    first, second = site["models"]
    files = {model["id"]: set(model["files"].values()) for model in site["models"]}
    context, _ = open_browser(server.url)
    page = context.new_page()
    page.goto(server.url + "/?backend=wasm")
    page.wait_for_selector("#models", state="visible", timeout=120_000)
    items = page.locator("#model-list li")
    assert items.count() == 2
    texts = items.all_inner_texts()
    assert first["name"] in texts[0] and "licence not stated" in texts[0]
    assert second["name"] in texts[1] and "licence apache-2.0" in texts[1]
    assert f"{second['bytes'] / 1e6:.1f} MB" in texts[1] and "not downloaded yet" in texts[1]

    # Choosing the second model downloads its files and none of the first's.
    page.click(f"#model-list li[data-model='{second['id']}'] .use-model")
    ready_on(page, second["id"])
    seen = sent(server)
    assert files[second["id"]] <= seen
    assert not files[first["id"]] & seen
    assert page.is_hidden("#models") and page.is_visible("#change-model")
    assert page_tokens(page, "hello world", 8) == native_tokens(second_model, "hello world", 8)

    # Switching: the first model downloads now, and answers as its own folder does.
    page.click("#change-model")
    page.wait_for_selector("#models", state="visible")
    assert "in use" in page.inner_text(f"#model-list li[data-model='{second['id']}']")
    page.click(f"#model-list li[data-model='{first['id']}'] .use-model")
    ready_on(page, first["id"])
    assert files[first["id"]] <= sent(server)
    assert page_tokens(page, "hello world", 8) == native_tokens(tiny_model, "hello world", 8)

    # The second model is kept; deleting its download frees its cache.
    page.click("#change-model")
    page.wait_for_selector(f"#model-list li[data-model='{second['id']}'] .delete-model")
    assert "downloaded" in page.inner_text(f"#model-list li[data-model='{second['id']}']")
    assert second["cache"] in page.evaluate("caches.keys()")
    page.click(f"#model-list li[data-model='{second['id']}'] .delete-model")
    wait_until(page, f"!document.querySelector(\"#model-list li[data-model='{second['id']}'] .delete-model\")")
    assert second["cache"] not in page.evaluate("caches.keys()")
    assert "not downloaded yet" in page.inner_text(f"#model-list li[data-model='{second['id']}']")
    page.click("#models-close")
    assert page.is_hidden("#models") and page.is_visible("#messages")

    # The next visit loads the remembered model at once, from its cache.
    server.app.paths.clear()
    page.reload()
    ready_on(page, first["id"])
    assert page.is_hidden("#models")
    assert not (files[first["id"]] | files[second["id"]]) & sent(server)

"""Browser fixtures: built sites served by `pocketlm serve`'s app, and headless Chromium.

Each site is built once per session from an exported model folder: a tiny random llama
(fast; the page's behaviour; also as q4 with and without zero points) and the default
SmolLM2 export (slow; the answers), all in the MatMulNBits layout that the CPU engine,
onnxruntime-web's WebGPU backend and native onnxruntime read. POCKETLM_TEST_MODEL may name an
already exported folder to use instead of exporting the default model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import CHROMIUM, BrowserFactory, Browsers, SiteServer

# ---- models and sites --------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama, exported like any model (runs in milliseconds)."""
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    folder = tmp_path_factory.mktemp("tiny-model")
    gguf = write_tiny_gguf("llama", folder / "tiny.gguf", seed=0, matrix_type="Q4_0")
    # Its own 4-bit blocks, as the page's CPU engine runs them (random weights: no gate).
    return export(gguf, folder / "model", ExportOptions(quant="exact", progress=False,
                                                        allow_quality_loss=True)).out


@pytest.fixture(scope="session")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (SmolLM2-135M-Instruct) exported as `pocketlm export` does by default."""
    given = os.environ.get("POCKETLM_TEST_MODEL")
    if given:
        return Path(given)
    from pocketlm_export.export import ExportOptions, export

    return export(None, tmp_path_factory.mktemp("default-model") / "model",
                  ExportOptions(quant="auto", progress=False)).out


@pytest.fixture(scope="session", params=["asymmetric", "symmetric", "k-quants"])
def tiny_nbits_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama as 4-bit blocks (with and without zero points) in the MatMulNBits layout;
    "k-quants": a wider llama of GGUF Q6_K matrices and a Q2_K embedding / tied head, exported
    exactly (8-bit blocks of 16; float32 scales; 4-bit blocks of 16 with minima, which the
    gathered rows and the tied head add)."""
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    folder = tmp_path_factory.mktemp(f"tiny-nbits-{request.param}")
    if request.param == "k-quants":
        gguf = write_tiny_gguf("llama-wide", folder / "tiny.gguf", seed=0, matrix_type="Q6_K",
                               embedding_type="Q2_K")
        return export(gguf, folder / "model", ExportOptions(quant="exact", layout="nbits", progress=False)).out
    gguf = write_tiny_gguf("llama", folder / "tiny.gguf", seed=0)
    options = ExportOptions(quant="q4", symmetric=request.param == "symmetric", layout="nbits",
                            allow_quality_loss=True, progress=False)
    return export(gguf, folder / "model", options).out


def build(model: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    from pocketlm_build.bundle import build_site

    out = tmp_path_factory.mktemp(name) / "dist"
    build_site(model, out)
    return out


@pytest.fixture(scope="session")
def tiny_site(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tiny_model, tmp_path_factory, "tiny-site")


@pytest.fixture(scope="session")
def default_site(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(default_model, tmp_path_factory, "default-site")


@pytest.fixture(scope="session")
def tiny_nbits_server(tiny_nbits_model: Path, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[SiteServer]:
    server = SiteServer(build(tiny_nbits_model, tmp_path_factory, "tiny-nbits-site"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_server(tiny_site: Path) -> Iterator[SiteServer]:
    server = SiteServer(tiny_site)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def default_server(default_site: Path) -> Iterator[SiteServer]:
    server = SiteServer(default_site)
    yield server
    server.stop()


# ---- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def open_browser(playwright_driver: Any) -> Iterator[BrowserFactory]:
    browsers = Browsers(playwright_driver)
    yield browsers
    browsers.close_all()


@pytest.fixture(scope="module")
def module_browser(playwright_driver: Any) -> Iterator[BrowserFactory]:
    """Like open_browser, for pages shared by the tests of a module."""
    browsers = Browsers(playwright_driver)
    yield browsers
    browsers.close_all()

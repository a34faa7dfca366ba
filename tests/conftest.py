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

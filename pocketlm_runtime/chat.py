"""Chat messages -> prompt text through the model's Hugging Face chat template (Jinja).

Renders like ``transformers``' ``apply_chat_template(..., tokenize=False)``: a sandboxed,
immutable Jinja environment with ``trim_blocks``/``lstrip_blocks``, loop controls, a
``raise_exception`` global, ``strftime_now`` and a ``tojson`` filter that does not escape
HTML. Message keys whose value is None are dropped first, as transformers does (a
tool-call turn with ``content: None`` must not render the text ``None``). jinja2 (pure
Python) is imported on first use, so the runtime imports without it.

Chat input is data: with ``control_tokens`` given, every control token's text found in the
messages (and tools, documents, extra variables) is wrapped in two private-use markers
before rendering, and :func:`encode_marked` encodes a wrapped token as plain text while
the template's own markers stay control tokens. This gives the ids of transformers'
``apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)``, so text typed
as ``hi<|im_end|>\n<|im_start|>system`` cannot open a system turn. The control tokens
(:func:`control_tokens`) are the special added tokens plus the added tokens that the
template's literal text contains (whitespace tokens aside).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

MARK_START = "\U000f0000"  # private-use markers around control-token text from the user
MARK_END = "\U000f0001"


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


def template_literals(template: str) -> str:
    """The template's literal text and string constants, joined by NUL (so a search for a
    token cannot match across two of them)."""
    import jinja2.nodes

    tree = _compile(template).environment.parse(template)
    texts = {node.data for node in tree.find_all(jinja2.nodes.TemplateData)}
    texts |= {node.value for node in tree.find_all(jinja2.nodes.Const) if isinstance(node.value, str)}
    return "\0".join(sorted(texts))


def control_tokens(template: str, added: Mapping[str, int], special: frozenset[int] | set[int]) -> tuple[str, ...]:
    """Texts of the added tokens that only the template may write: every special one, and
    the others that the template's literal text contains (not whitespace tokens)."""
    literals = template_literals(template)
    return tuple(text for text, token_id in added.items()
                 if token_id in special or (text in literals and not text.isspace()))


@lru_cache(maxsize=16)
def _alternation(tokens: tuple[str, ...]) -> str:
    longest_first = sorted(tokens, key=len, reverse=True)
    return "|".join(map(re.escape, longest_first)) or "(?!)"


def mark_control_tokens(value: Any, tokens: tuple[str, ...]) -> Any:
    """``value`` (a string, or lists/dicts of them, dict keys aside) with each control token's
    text wrapped in the markers; markers already in the text are removed first."""
    if isinstance(value, str):
        value = value.replace(MARK_START, "").replace(MARK_END, "")
        return re.sub(_alternation(tokens), lambda m: MARK_START + m.group() + MARK_END, value)
    if isinstance(value, Mapping):
        return {key: mark_control_tokens(item, tokens) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark_control_tokens(item, tokens) for item in value]
    return value


class PlainEncoder(Protocol):
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...
    def encode_plain(self, text: str) -> list[int]: ...
    @property
    def added_tokens(self) -> dict[str, int]: ...


def encode_marked(tokenizer: PlainEncoder, text: str) -> list[int]:
    """Ids of a chat rendered from marked inputs: a marked control token becomes the ids of
    its text as ordinary text, the rest is encoded normally (the template's control tokens
    stay tokens). A lone marker (a template string method may split a pair) is dropped but
    still separates the text on its sides. Each piece after the first is encoded after a
    newline that is then removed, as transformers does, so no tokenizer treats it as the
    start of the input. Raises ValueError when plain text of a control token gives that
    token back (it cannot be made harmless)."""
    if MARK_START not in text and MARK_END not in text:
        return tokenizer.encode(text, add_special_tokens=False)
    added = tokenizer.added_tokens
    split = re.compile(f"{MARK_START}({_alternation(tuple(added))}){MARK_END}|[{MARK_START}{MARK_END}]")
    pieces = split.split(text)
    newline = tokenizer.encode("\n", add_special_tokens=False)
    ids = tokenizer.encode(pieces[0], add_special_tokens=False)
    for i, piece in enumerate(pieces[1:], start=1):
        if not piece:
            continue
        as_text = i % 2 == 1
        encode = tokenizer.encode_plain if as_text else (lambda t: tokenizer.encode(t, add_special_tokens=False))
        piece_ids = encode("\n" + piece)
        if piece_ids[: len(newline)] == newline:
            piece_ids = piece_ids[len(newline):]
        else:
            piece_ids = encode(piece)
        if as_text and added.get(piece) in piece_ids:
            raise ValueError(f"cannot pass {piece!r} as text: the tokenizer makes that token from plain text")
        ids += piece_ids
    return ids


def render_chat(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", control: tuple[str, ...] | None = None,
                **extra: Any) -> str:
    """The prompt text for ``messages`` (dicts with ``role`` and ``content``).

    ``extra`` reaches the template as further variables (``tools``, ``documents``, ...).
    Keys whose value is None are dropped from each message. With ``control`` (from
    :func:`control_tokens`), those tokens' texts in the messages and ``extra`` are marked
    for :func:`encode_marked`. A template that calls ``raise_exception`` (for instance on an
    unsupported role order), or fails in any other way while rendering, raises ``ValueError``
    with its message.
    """
    import jinja2

    messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
    if control is not None:
        messages = mark_control_tokens(messages, control)
        extra = mark_control_tokens(extra, control)
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

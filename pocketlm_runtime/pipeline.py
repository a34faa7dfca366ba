"""Text in, text out: chat template -> tokenizer -> generation loop -> streamed text.

Streaming goes through any object with ``put(text)`` and ``end()``. Text that might be
the start of a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .chat import control_tokens, encode_marked, render_chat
from .generator import ContextFull, Generator, Interrupted, Timing
from .model_info import ModelInfo
from .sampling import SamplingOptions
from .session import Session
from .tokenizer import IncrementalDecoder, Tokenizer

Message = dict[str, Any]


class Streamer(Protocol):
    def put(self, text: str) -> None: ...
    def end(self) -> None: ...


@dataclass
class Result:
    text: str
    tokens: list[int]
    stop_reason: str
    timing: Timing

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "stop_reason": self.stop_reason,
                **self.timing.as_dict()}


class StopStrings:
    """Cuts the text at the earliest stop string; holds back a possible prefix of one.

    The cut is at the smallest offset where any stop string occurs in the text streamed so
    far (``stop=["re", "he"]`` on ``" there"`` gives ``" t"``), whatever the order of the
    list and however the text arrives in pieces, as OpenAI-style APIs do. Hidden text (a
    special token's own text, which the answer does not show) can be part of a match:
    ``stop=["<|im_end|>"]`` ends the answer at that token.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.visible: list[bool] = []  # per character of the buffer
        self.hit = False

    def _take(self, n: int) -> str:
        """Remove the first ``n`` characters of the buffer; returns the visible ones."""
        head, shown = self.buffer[:n], self.visible[:n]
        self.buffer, self.visible = self.buffer[n:], self.visible[n:]
        if all(shown):
            return head
        return "".join(c for c, v in zip(head, shown) if v)

    def feed(self, text: str, visible: bool = True) -> str:
        """Add streamed text; returns the text now known to come before any stop string."""
        if not text or self.hit:
            return ""
        self.buffer += text
        self.visible.extend([visible] * len(text))
        found = [at for stop in self.stops if (at := self.buffer.find(stop)) >= 0]
        if found:
            self.hit = True
            out = self._take(min(found))
            self.buffer, self.visible = "", []
            return out
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), keep, -1):
                if self.buffer.endswith(stop[:n]):
                    keep = n
                    break
        return self._take(len(self.buffer) - keep)

    def flush(self) -> str:
        return self._take(len(self.buffer))


class LanguageModel:
    """A tokenizer, a model description and a session, ready to answer."""

    def __init__(self, session: Session, info: ModelInfo, tokenizer: Tokenizer) -> None:
        self.info = info
        self.tokenizer = tokenizer
        self.generator = Generator(session, info)
        self._control: dict[str, tuple[str, ...]] = {}

    def special_text(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        return self.tokenizer.id_to_token(token_id) or ""

    def control_tokens(self, template: str) -> tuple[str, ...]:
        """The added tokens only the chat template may write (:func:`chat.control_tokens`)."""
        cached = self._control.get(template)
        if cached is None:
            cached = control_tokens(template, self.tokenizer.added_tokens, self.tokenizer.special_ids)
            self._control[template] = cached
        return cached

    def prompt_text(self, prompt: str | list[Message], *, chat: bool | None = None,
                    tools: list[dict[str, Any]] | None = None) -> tuple[str, bool]:
        """The text a prompt is tokenized from (chat messages through the chat template, with
        control-token text from the messages marked as data), and whether the tokenizer adds
        its special tokens (plain prompts only)."""
        if isinstance(prompt, list):
            chat = True
        if chat:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            template = self.info.template_for(tools)
            eos = self.info.eos_token_ids[0] if self.info.eos_token_ids else None
            text = render_chat(template, messages, add_generation_prompt=True,
                               bos_token=self.special_text(self.info.bos_token_id),
                               eos_token=self.special_text(eos), control=self.control_tokens(template),
                               tools=tools)
            return text, False
        return str(prompt), True

    def encode_prompt(self, text: str, special: bool) -> list[int]:
        """Ids of :meth:`prompt_text`'s text (marked control-token text as plain text)."""
        if special:
            return self.tokenizer.encode(text, add_special_tokens=True)
        return encode_marked(self.tokenizer, text)

    def prompt_ids(self, prompt: str | list[Message], *, chat: bool | None = None,
                   tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids for a plain prompt, or for chat messages through the chat template."""
        text, special = self.prompt_text(prompt, chat=chat, tools=tools)
        return self.encode_prompt(text, special)

    def prefill(self, prompt: str | list[Message], *, chat: bool | None = None) -> int:
        """Feed the part of a prompt being typed that more typing will not change: the text
        up to the draft's last word (the last message's content, or the plain prompt), since
        the word being typed may still grow and the tokens after the draft come from the
        template. :meth:`generate` on the finished prompt then feeds only the rest. Returns
        the tokens fed (0 when the cache held them already)."""
        text, special = self.prompt_text(prompt, chat=chat)
        draft = prompt[-1]["content"] if isinstance(prompt, list) and prompt else str(prompt)
        at = text.rfind(draft) if draft else -1
        if at < 0:
            return 0
        words = draft.rstrip()
        cut = max(words.rfind(" "), words.rfind("\n"))  # keep the space with the next word
        if cut <= 0:
            return 0
        stable = self.encode_prompt(text[: at + cut], special)
        return self.generator.prefill(stable[:-1])  # the last token may merge with what follows

    def generate(self, prompt: str | list[Message], options: SamplingOptions | None = None,
                 streamer: Streamer | None = None, *, chat: bool | None = None,
                 tools: list[dict[str, Any]] | None = None,
                 max_prompt_tokens: int | None = None) -> Result:
        """Answer ``prompt``. Raises :class:`ContextFull` before any model run when the
        prompt's tokens fill the context or exceed ``max_prompt_tokens`` (a site's cap).
        When :attr:`Generator.interrupt` stops the reading of the prompt, the result has no
        tokens and the stop reason ``stopped``."""
        options = options or SamplingOptions()
        gen = self.generator
        ids = self.prompt_ids(prompt, chat=chat, tools=tools)
        if not ids:
            raise ValueError("the prompt is empty; type something first")
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise ContextFull(f"the prompt is {len(ids)} tokens and this site takes at most "
                              f"{max_prompt_tokens}; shorten it or start a new chat")
        gen.begin(options)
        gen.set_prompt(ids)
        decoder = IncrementalDecoder(self.tokenizer, skip_special_tokens=True)
        stops = StopStrings(options.stop)
        pieces: list[str] = []
        special = self.tokenizer.special_ids

        def emit(text: str) -> None:
            if text:
                pieces.append(text)
                if streamer is not None:
                    streamer.put(text)

        try:
            while not gen.is_done():
                token = gen.generate_next_token()
                if token in self.info.eos_token_ids:
                    break
                emit(stops.feed(decoder.put(token)))
                if token in special:  # its text is not shown, but a stop string may match it
                    emit(stops.feed(self.tokenizer.id_to_token(token) or "", visible=False))
                if stops.hit:
                    gen.stop("stop_string")
        except Interrupted:
            gen.pending = []
            gen.stop()
        if not stops.hit:
            emit(stops.feed(decoder.end()))
            if stops.hit:
                gen.stop("stop_string")
            emit(stops.flush())
        if streamer is not None:
            streamer.end()
        return Result("".join(pieces), list(gen.generated), gen.stop_reason, gen.timing)

    def stop(self) -> None:
        self.generator.stop()

    def new_chat(self) -> None:
        self.generator.reset()

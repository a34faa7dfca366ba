"""Text in, text out: chat template -> tokenizer -> generation loop -> streamed text.

Streaming goes through any object with ``put(text)`` and ``end()``. Text that might be
the start of a stop string is held back until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .chat import render_chat
from .generator import ContextFull, Generator, Interrupted, Timing
from .model_info import ModelInfo
from .sampling import SamplingOptions
from .session import Session
from .tokenizer import IncrementalDecoder, Tokenizer

Message = dict[str, str]


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
    """Cuts the text at the first stop string; holds back a possible prefix of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.hit = False

    def feed(self, text: str) -> str:
        self.buffer += text
        for stop in self.stops:
            at = self.buffer.find(stop)
            if at >= 0:
                self.hit = True
                out, self.buffer = self.buffer[:at], ""
                return out
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        out = self.buffer[: len(self.buffer) - keep]
        self.buffer = self.buffer[len(out):]
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class LanguageModel:
    """A tokenizer, a model description and a session, ready to answer."""

    def __init__(self, session: Session, info: ModelInfo, tokenizer: Tokenizer) -> None:
        self.info = info
        self.tokenizer = tokenizer
        self.generator = Generator(session, info)

    def special_text(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        return self.tokenizer.id_to_token(token_id) or ""

    def prompt_text(self, prompt: str | list[Message], *, chat: bool | None = None) -> tuple[str, bool]:
        """The text a prompt is tokenized from (chat messages through the chat template),
        and whether the tokenizer adds its special tokens (plain prompts only)."""
        if isinstance(prompt, list):
            chat = True
        if chat:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            if not self.info.chat_template:
                raise ValueError("this model has no chat template; pass a plain prompt instead")
            eos = self.info.eos_token_ids[0] if self.info.eos_token_ids else None
            text = render_chat(self.info.chat_template, messages, add_generation_prompt=True,
                               bos_token=self.special_text(self.info.bos_token_id),
                               eos_token=self.special_text(eos))
            return text, False
        return str(prompt), True

    def prompt_ids(self, prompt: str | list[Message], *, chat: bool | None = None) -> list[int]:
        """Token ids for a plain prompt, or for chat messages through the chat template."""
        text, special = self.prompt_text(prompt, chat=chat)
        return self.tokenizer.encode(text, add_special_tokens=special)

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
        stable = self.tokenizer.encode(text[: at + cut], add_special_tokens=special)
        return self.generator.prefill(stable[:-1])  # the last token may merge with what follows

    def generate(self, prompt: str | list[Message], options: SamplingOptions | None = None,
                 streamer: Streamer | None = None, *, chat: bool | None = None,
                 max_prompt_tokens: int | None = None) -> Result:
        """Answer ``prompt``. Raises :class:`ContextFull` before any model run when the
        prompt's tokens fill the context or exceed ``max_prompt_tokens`` (a site's cap).
        When :attr:`Generator.interrupt` stops the reading of the prompt, the result has no
        tokens and the stop reason ``stopped``."""
        options = options or SamplingOptions()
        gen = self.generator
        ids = self.prompt_ids(prompt, chat=chat)
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

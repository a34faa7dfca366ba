"""The one generation loop, shared by the terminal and the browser.

Verbs after onnxruntime-genai: :meth:`Generator.append_tokens`,
:meth:`Generator.generate_next_token`, :meth:`Generator.is_done`,
:meth:`Generator.get_next_tokens`. The prompt goes through the same loop as generated
tokens: pending tokens are fed to the model on the next step. A new prompt that extends
the tokens already in the KV cache only feeds the new part (chat turns reuse the cache).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .model_info import ModelInfo
from .sampling import Sampler, SamplingOptions
from .session import Session, SessionLost

Clock = Callable[[], float]


class ContextFull(ValueError):
    """The prompt plus the answer would not fit the model's context."""


@dataclass
class Timing:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def time_to_first_token(self) -> float:
        return self.prefill_seconds

    @property
    def prefill_tokens_per_second(self) -> float:
        fed = self.prompt_tokens - self.reused_tokens
        return fed / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        steps = self.new_tokens - 1
        return steps / self.decode_seconds if self.decode_seconds and steps > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
            "new_tokens": self.new_tokens,
            "time_to_first_token": self.time_to_first_token,
            "prefill_tokens_per_second": self.prefill_tokens_per_second,
            "decode_tokens_per_second": self.decode_tokens_per_second,
        }


class Generator:
    def __init__(self, session: Session, info: ModelInfo, clock: Clock = time.perf_counter) -> None:
        self.session = session
        self.info = info
        self.clock = clock
        self.cached: list[int] = []  # tokens whose keys/values are in the cache
        self.kv: dict[str, Any] = {}
        self.reset()
        self.begin(SamplingOptions())

    # -- cache --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the KV cache."""
        self.session.release(list(self.kv.values()))
        self.kv = {name: self.session.empty_kv() for name in self.info.kv.past_names()}
        self.cached = []

    def begin(self, options: SamplingOptions) -> None:
        """Start a new answer with these sampling options."""
        self.options = options.validate()
        self.sampler = Sampler(options)
        self.pending: list[int] = []
        self.generated: list[int] = []
        self.chosen: int | None = None  # the token picked from the last step's logits
        self.done = False
        self.timing = Timing()
        self.stop_reason = ""

    # -- verbs ----------------------------------------------------------------------
    def append_tokens(self, ids: list[int]) -> None:
        """Queue tokens to feed on the next step."""
        self.pending.extend(ids)
        self.timing.prompt_tokens += len(ids)

    def _cached_prefix(self, ids: list[int]) -> int:
        """How many of ``ids`` the cache holds already, from the start."""
        common = 0
        for a, b in zip(self.cached, ids):
            if a != b:
                break
            common += 1
        return common

    def set_prompt(self, ids: list[int]) -> None:
        """Queue a whole prompt, reusing the cache for the part already fed."""
        common = self._cached_prefix(ids)
        if common < len(self.cached) or common == len(ids):
            self.reset()
            common = 0
        self.timing.reused_tokens = common
        self.timing.prompt_tokens = common
        self.append_tokens(ids[common:])

    def prefill(self, ids: list[int]) -> int:
        """Feed the start of a coming prompt into the cache now (e.g. while it is typed), so
        the answer's :meth:`set_prompt` finds it there. The cache cannot be cut back: if it
        holds tokens that ``ids`` does not, it starts again. Returns the tokens fed."""
        common = self._cached_prefix(ids)
        if common < len(self.cached):
            self.reset()
            common = 0
        self.pending = list(ids[common:])  # a finished answer's last token is not kept
        if not self.pending:
            return 0
        fed = len(self.pending)
        self._feed(None)
        self.chosen = None
        return fed

    def _feed(self, uniform: float | None) -> None:
        """Run the pending tokens; with ``uniform`` (not None), pick the next token too."""
        try:
            self._run_pending(uniform)
        except SessionLost:
            # A new session holds nothing: feed every token again (once; a second loss raises).
            self.session.release(list(self.kv.values()))
            self.kv = {name: self.session.empty_kv() for name in self.info.kv.past_names()}
            self.pending = self.cached + self.pending
            self.cached = []
            self._run_pending(uniform)

    def _run_pending(self, uniform: float | None) -> None:
        ids = self.pending
        start = len(self.cached)
        total = start + len(ids)
        if total > self.info.context_length:
            raise ContextFull(
                f"{total} tokens do not fit the model's context of {self.info.context_length}; "
                "shorten the prompt or start a new chat"
            )
        s = self.session
        names = self.info.inputs
        inputs = {
            names["input_ids"]: s.int64(ids, (1, len(ids))),
            names["attention_mask"]: s.int64([1] * total, (1, total)),
            names["position_ids"]: s.int64(list(range(start, total)), (1, len(ids))),
        }
        try:
            outputs = s.run({**inputs, **self.kv})
        finally:
            s.release(list(inputs.values()))
        s.release(list(self.kv.values()))
        self.kv = {
            past: outputs[present]
            for past, present in zip(self.info.kv.past_names(), self.info.kv.present_names())
        }
        logits = outputs[self.info.outputs.get("logits", "logits")]
        try:
            if uniform is not None:
                # The penalty looks at every token of the sequence, this step's included.
                seen = (self.cached + ids) if self.options.repetition_penalty != 1.0 else []
                self.chosen = s.pick(logits, self.options, seen, uniform)
        finally:
            s.release([logits])
        self.cached.extend(ids)
        self.pending = []

    def generate_next_token(self) -> int:
        if self.done:
            raise RuntimeError("generation is done; call begin() for a new answer")
        started = self.clock()
        if not self.pending:
            raise RuntimeError("no tokens to continue from; append_tokens() first")
        self._feed(self.sampler.uniform())
        token = self.chosen
        if token is None:
            raise RuntimeError("the session picked no token")
        self.chosen = None
        elapsed = self.clock() - started
        if self.generated:
            self.timing.decode_seconds += elapsed
        else:
            self.timing.prefill_seconds += elapsed
        self.generated.append(token)
        self.timing.new_tokens += 1
        self.pending = [token]
        if token in self.info.eos_token_ids:
            self.done, self.stop_reason = True, "eos"
        elif len(self.generated) >= self.options.max_new_tokens:
            self.done, self.stop_reason = True, "max_tokens"
        elif len(self.cached) + 1 >= self.info.context_length:
            self.done, self.stop_reason = True, "context"
        return token

    def is_done(self) -> bool:
        return self.done

    def get_next_tokens(self) -> list[int]:
        return self.generated[-1:]

    def stop(self, reason: str = "stopped") -> None:
        self.done, self.stop_reason = True, reason

    def tokens(self) -> Iterator[int]:
        """Generate until done, yielding each token."""
        while not self.done:
            yield self.generate_next_token()

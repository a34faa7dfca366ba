"""The one generation loop, shared by the terminal and the browser.

Verbs after onnxruntime-genai: :meth:`Generator.append_tokens`,
:meth:`Generator.generate_next_token`, :meth:`Generator.is_done`,
:meth:`Generator.get_next_tokens`. The prompt goes through the same loop as generated
tokens: pending tokens are fed to the model on the next step. A new prompt that extends
the tokens already in the KV cache only feeds the new part (chat turns reuse the cache).

Long prompts are fed in chunks (:class:`Chunking`): memory stays bounded by the chunk, not
the prompt (attention scores are chunk x context, not prompt x prompt), time grows linearly
with the prompt, and between chunks :attr:`Generator.interrupt` is asked whether to go on.
A prompt that cannot fit the context is refused before anything is fed.
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


class Interrupted(Exception):
    """Feeding stopped between two chunks because :attr:`Generator.interrupt` said so.
    The chunks fed before stay in the cache; the rest is dropped."""


@dataclass
class Chunking:
    """How many prompt tokens one model run feeds.

    ``tokens``: the size of a chunk (and of the first one when adapting). With
    ``seconds`` > 0 the size adapts so that a chunk takes about that long (later chunks
    attend to more positions and get slower), between ``least`` and ``most`` tokens; this
    bounds how long an interruption waits. When adapting, a rest of under half a chunk is
    read with the chunk before it (:meth:`take`: a short run costs nearly a whole pass over
    the weights), so a run takes up to 1.5 x ``seconds``; and the next prompt starts from
    the size the last one reached (``tokens`` is updated). Chunk boundaries only reorder
    floating-point sums, so the tokens of greedy decoding match an unchunked run in all but
    ties.
    """

    tokens: int = 256
    seconds: float = 0.0
    least: int = 8
    most: int = 512

    def next_size(self, size: int, elapsed: float) -> int:
        """The next chunk's size after one of ``size`` tokens took ``elapsed`` seconds."""
        if self.seconds <= 0 or elapsed <= 0:
            return size
        wanted = int(size * self.seconds / elapsed)
        return max(self.least, min(self.most, wanted, 2 * size))

    def take(self, size: int, pending: int) -> int:
        """How many of ``pending`` tokens the next run feeds when ``size`` is planned."""
        if self.seconds > 0 and pending <= size + size // 2:
            return min(pending, self.most)
        return size


def context_error(total: int, context_length: int) -> ContextFull:
    return ContextFull(
        f"{total} tokens do not fit the model's context of {context_length}; "
        "shorten the prompt or start a new chat"
    )


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
        # Each step's present key/value outputs become the next step's past inputs.
        self.kv_names = list(zip(info.kv.past_names(), info.kv.present_names()))
        self.chunking = Chunking()
        # Asked between prompt chunks; True stops feeding with :class:`Interrupted`.
        self.interrupt: Callable[[], bool] | None = None
        self.reset()
        self.begin(SamplingOptions())

    # -- cache --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the KV cache."""
        self.session.release(list(self.kv.values()))
        self.kv = {past: self.session.empty_kv() for past, _ in self.kv_names}
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
        """Queue a whole prompt, reusing the cache for the part already fed.

        Raises :class:`ContextFull` at once when the prompt alone fills the context."""
        if len(ids) >= self.info.context_length:
            raise context_error(len(ids), self.info.context_length)
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
        holds tokens that ``ids`` does not, it starts again. Returns the tokens fed: fewer
        when :attr:`interrupt` stopped it between chunks, none when ``ids`` cannot fit."""
        if len(ids) >= self.info.context_length:
            return 0
        common = self._cached_prefix(ids)
        if common < len(self.cached):
            self.reset()
            common = 0
        self.pending = list(ids[common:])  # a finished answer's last token is not kept
        if not self.pending:
            return 0
        before = len(self.cached)
        try:
            self._feed(None)
        except Interrupted:
            self.pending = []
        self.chosen = None
        return len(self.cached) - before

    def _feed(self, uniform: float | None) -> None:
        """Run the pending tokens; with ``uniform`` (not None), pick the next token too."""
        try:
            self._run_pending(uniform)
        except SessionLost:
            # A new session holds nothing: feed every token again (once; a second loss raises).
            self.session.release(list(self.kv.values()))
            self.kv = {past: self.session.empty_kv() for past, _ in self.kv_names}
            self.pending = self.cached + self.pending
            self.cached = []
            self._run_pending(uniform)

    def _run_pending(self, uniform: float | None) -> None:
        """Feed the pending tokens, a chunk per model run (see :class:`Chunking`); the
        next token is picked (with ``uniform``) after the last chunk only."""
        total = len(self.cached) + len(self.pending)
        if total > self.info.context_length:
            raise context_error(total, self.info.context_length)
        size = self.chunking.tokens
        while self.pending:
            if self.interrupt is not None and self.interrupt():
                raise Interrupted("stopped while reading the prompt")
            take = self.chunking.take(size, len(self.pending))
            chunk, rest = self.pending[:take], self.pending[take:]
            started = self.clock()
            self._run(chunk, None if rest else uniform)
            self.pending = rest
            if rest or len(chunk) >= size:  # a short last run says little about the rate
                size = self.chunking.next_size(len(chunk), self.clock() - started)
        if self.chunking.seconds > 0:
            self.chunking.tokens = size

    def _run(self, ids: list[int], uniform: float | None) -> None:
        """One model run over ``ids``, after the cached tokens; with ``uniform`` (not None),
        the next token is picked from its logits."""
        start = len(self.cached)
        total = start + len(ids)
        s = self.session
        names = self.info.inputs
        inputs = {
            names["input_ids"]: s.int64(ids, (1, len(ids))),
            names["attention_mask"]: s.int64([1] * total, (1, total)),
            names["position_ids"]: s.int64(list(range(start, total)), (1, len(ids))),
        }
        spent = list(inputs.values())  # released in one call once the step is done
        try:
            outputs = s.run({**inputs, **self.kv})
        except BaseException:
            s.release(spent)
            raise
        spent += self.kv.values()
        self.kv = {past: outputs[present] for past, present in self.kv_names}
        logits = outputs[self.info.outputs.get("logits", "logits")]
        spent.append(logits)
        try:
            if uniform is not None:
                # The penalty looks at every token of the sequence, this step's included.
                seen = (self.cached + ids) if self.options.repetition_penalty != 1.0 else []
                self.chosen = s.pick(logits, self.options, seen, uniform)
        finally:
            s.release(spent)
        self.cached.extend(ids)

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

"""The narrow protocol between the generation loop and an inference engine.

The loop never touches tensors itself: it asks the session to wrap token ids, to make an
empty KV cache, to run the graph, and to choose the next token from the last position's
logits. KV tensors pass from one step's outputs to the next step's feeds as opaque
objects, so in the browser they never leave JavaScript (or the GPU), and neither does the
logits row: the session runs the logits processors over the whole row where the row is
(numpy natively, ``web/sampler.js`` in the page) and returns one token id.

Sampling protocol: ``pick(logits, options, history, uniform)`` applies repetition penalty,
temperature, top-k and top-p to the full last row exactly as
:mod:`pocketlm_runtime.sampling` defines them (transformers' processors and order), then
returns the argmax (greedy options) or the inverse-CDF draw for ``uniform`` in [0, 1),
taken over the kept ids in increasing id order. ``history`` is every token id of the
sequence so far (prompt and answer), used by the penalty only. The uniform number comes
from the generation loop's seeded generator, so one seed gives one answer everywhere.
``distribution`` returns the kept (ids, probabilities), most likely first, for tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .sampling import Distribution, SamplingOptions

Candidates = Distribution


class SessionLost(Exception):
    """The engine replaced its session (in the browser: the GPU failed and the model moved
    to WASM). Every tensor the caller holds is gone; the tokens must be fed again."""


class Session(Protocol):
    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run the graph; returns every output by name. May raise :class:`SessionLost`."""
        ...

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        """An int64 tensor (input_ids, attention_mask, position_ids)."""
        ...

    def empty_kv(self) -> Any:
        """A past key/value tensor with zero cached positions."""
        ...

    def pick(self, logits: Any, options: SamplingOptions, history: Sequence[int], uniform: float) -> int:
        """The next token id from the last position's row (see the module docstring).
        May raise :class:`SessionLost`."""
        ...

    def distribution(self, logits: Any, options: SamplingOptions, history: Sequence[int]) -> Distribution:
        """The kept (ids, probabilities) after the processors, most likely first."""
        ...

    def release(self, tensors: list[Any]) -> None:
        """Free tensors that are no longer needed (a no-op where memory is managed)."""
        ...

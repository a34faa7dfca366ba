"""The narrow protocol between the generation loop and an inference engine.

The loop never touches tensors itself: it asks the session to wrap token ids, to make an
empty KV cache, to run the graph, and to report the best candidates of the last
position's logits. KV tensors pass from one step's outputs to the next step's feeds as
opaque objects, so in the browser they never leave JavaScript (or the GPU).
"""

from __future__ import annotations

from typing import Any, Protocol

# (token ids, logits), best first, for the last position.
Candidates = tuple[list[int], list[float]]


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

    def candidates(self, logits: Any, k: int) -> Candidates:
        """The k highest logits of the last position, best first (k <= 0: all of them).
        May raise :class:`SessionLost`."""
        ...

    def release(self, tensors: list[Any]) -> None:
        """Free tensors that are no longer needed (a no-op where memory is managed)."""
        ...

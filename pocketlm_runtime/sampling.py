"""Sampling: small steps over the best candidates of the last position's logits.

Each step maps ``(ids, logits) -> (ids, logits)`` with ids kept best first. Greedy
decoding is ``temperature == 0``. Sampling looks at the session's ``candidates`` best
tokens (64 by default), enough for any top-k / top-p setting people use.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from .session import Candidates


@dataclass
class SamplingOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    candidates: int = 64

    def validate(self) -> SamplingOptions:
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
             f"repetition_penalty must be a finite number > 0 (1 = off), got {self.repetition_penalty}"),
            (self.candidates >= 1, f"candidates must be >= 1, got {self.candidates}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def needed_candidates(self) -> int:
        """How many best logits the session must return for these options."""
        if self.greedy and self.repetition_penalty == 1.0:
            return 1
        want = self.candidates
        if self.top_k:
            want = max(min(want, self.top_k), 1) if self.top_p == 1.0 else want
        return want


def penalize(cands: Candidates, history: Iterable[int], penalty: float) -> Candidates:
    """CTRL-style repetition penalty on tokens already seen, then re-sorted."""
    if penalty == 1.0:
        return cands
    seen = set(history)
    ids, logits = cands
    scored = [
        (tid, (x / penalty if x > 0 else x * penalty) if tid in seen else x)
        for tid, x in zip(ids, logits)
    ]
    scored.sort(key=lambda pair: -pair[1])
    return [t for t, _ in scored], [x for _, x in scored]


def scale(cands: Candidates, temperature: float) -> Candidates:
    ids, logits = cands
    return ids, [x / temperature for x in logits]


def top_k(cands: Candidates, k: int) -> Candidates:
    if k <= 0:
        return cands
    ids, logits = cands
    return ids[:k], logits[:k]


def softmax(logits: list[float]) -> list[float]:
    top = max(logits) if logits else 0.0
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def top_p(cands: Candidates, p: float) -> Candidates:
    if p >= 1.0:
        return cands
    ids, logits = cands
    probs = softmax(logits)
    cumulative, keep = 0.0, 0
    for keep, prob in enumerate(probs, start=1):
        cumulative += prob
        if cumulative >= p:
            break
    return ids[:keep], logits[:keep]


class Sampler:
    """Turns candidates into one token id according to :class:`SamplingOptions`."""

    def __init__(self, options: SamplingOptions) -> None:
        self.options = options.validate()
        self.rng = random.Random(options.seed)

    def __call__(self, cands: Candidates, history: list[int]) -> int:
        opts = self.options
        cands = penalize(cands, history, opts.repetition_penalty)
        if opts.greedy:
            return cands[0][0]
        cands = top_p(top_k(scale(cands, opts.temperature), opts.top_k), opts.top_p)
        ids, logits = cands
        return self.rng.choices(ids, weights=softmax(logits), k=1)[0]

"""Sampling over the whole distribution of the last position's logits.

The logits processors run over the full vocabulary row, in the order and with the rules of
transformers' ``generate``:

1. repetition penalty (``RepetitionPenaltyLogitsProcessor``, CTRL, Keskar et al. 2019):
   the logit ``x`` of every token id already in the sequence (prompt and answer) becomes
   ``x / penalty`` when ``x > 0`` and ``x * penalty`` otherwise; 1 = off;
2. temperature (``TemperatureLogitsWarper``): logits divided by ``temperature``;
   0 means greedy decoding, which takes the highest logit after step 1 and skips 3-5;
3. top-k (``TopKLogitsWarper``): keeps the tokens whose logit is at least the k-th highest
   (ties with it are kept); ``top_k = 0`` = off, ``top_k`` above the vocabulary = all;
4. top-p (``TopPLogitsWarper``, nucleus, Holtzman et al. 2019): sorts the kept tokens by
   probability, ascending (equal ones by id), and drops those whose cumulative probability
   is ``<= 1 - top_p``
   (the most likely token always stays); ``top_p = 1`` = off;
5. softmax over what is kept, then one draw.

The draw is inverse-CDF sampling with one uniform number ``u`` in [0, 1) from the caller's
seeded generator: the first kept token, in increasing id order, at which the cumulative
probability exceeds ``u``. Every implementation (numpy in native.py, ``web/sampler.js``
for onnxruntime-web, this module) uses that same rule, so one seed gives one answer.

This module is the readable reference and the fallback in pure Python (standard library,
about 20 ms a step on a 49k-token row); sessions run the same steps in numpy or JS.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# (token ids, probabilities) of the kept tokens, most likely first (ties: lower id first).
Distribution = tuple[list[int], list[float]]


@dataclass
class SamplingOptions:
    """How the next token is chosen (see the module docstring for each step).

    ``max_new_tokens``: answer length limit in tokens; ``temperature``: 0 = greedy, else
    logits / temperature; ``top_k``: keep the k most likely (0 = off); ``top_p``: nucleus
    mass in (0, 1] (1 = off); ``repetition_penalty``: > 0, 1 = off; ``seed``: makes draws
    repeatable (None = a fresh seed); ``stop``: strings that end the answer (the earliest
    match wins, see pipeline.StopStrings).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def validate(self) -> SamplingOptions:
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
             f"repetition_penalty must be a finite number > 0 (1 = off), got {self.repetition_penalty}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def penalize(row: Sequence[float], history: Iterable[int], penalty: float) -> list[float]:
    """Step 1 on a copy of ``row`` (float logits, one per token id)."""
    out = list(row)
    if penalty != 1.0:
        for token in set(history):
            x = out[token]
            out[token] = x / penalty if x > 0 else x * penalty
    return out


def argmax(row: Sequence[float]) -> int:
    """The first id of the highest value (as numpy and torch pick on ties)."""
    best = 0
    for i in range(1, len(row)):
        if row[i] > row[best]:
            best = i
    return best


def distribution(row: Sequence[float], options: SamplingOptions, history: Iterable[int]) -> Distribution:
    """Steps 1-5 on one full row: the kept ids and their probabilities, most likely first.
    Greedy options give ``([argmax], [1.0])``."""
    logits = penalize(row, history, options.repetition_penalty)
    if options.greedy:
        return [argmax(logits)], [1.0]
    scaled = [x / options.temperature for x in logits]
    kept = list(range(len(scaled)))
    k = options.top_k
    if 0 < k < len(scaled):
        kth = sorted(scaled, reverse=True)[k - 1]
        kept = [i for i in kept if scaled[i] >= kth]
    top = max(scaled[i] for i in kept)
    weights = {i: math.exp(scaled[i] - top) for i in kept}
    total = math.fsum(weights.values())
    probs = {i: w / total for i, w in weights.items()}
    if options.top_p < 1.0:
        ascending = sorted(kept, key=lambda i: (probs[i], i))  # ties: lower id first, as torch.sort
        cumulative, drop = 0.0, 0
        for i in ascending[:-1]:  # the most likely token always stays
            cumulative += probs[i]
            if cumulative > 1.0 - options.top_p:
                break
            drop += 1
        kept = ascending[drop:]
        mass = math.fsum(probs[i] for i in kept)
        probs = {i: probs[i] / mass for i in kept}
    order = sorted(kept, key=lambda i: (-probs[i], i))
    return order, [probs[i] for i in order]


def draw(dist: Distribution, uniform: float) -> int:
    """Inverse-CDF pick over the kept ids in increasing id order (see the module doc)."""
    pairs = sorted(zip(*dist))
    cumulative = 0.0
    for token, prob in pairs:
        cumulative += prob
        if uniform < cumulative:
            return token
    return pairs[-1][0]  # u within rounding of 1


def pick(row: Sequence[float], options: SamplingOptions, history: Iterable[int], uniform: float) -> int:
    """The next token for one full row: greedy, or one draw with ``uniform`` in [0, 1)."""
    return draw(distribution(row, options, history), uniform)


class Sampler:
    """The seeded source of the uniform numbers of :func:`pick` (one per sampled token)."""

    def __init__(self, options: SamplingOptions) -> None:
        self.options = options.validate()
        self.rng = random.Random(options.seed)

    def uniform(self) -> float:
        """A number in [0, 1); 0.0 for greedy options, which need none (no draw is used up)."""
        return 0.0 if self.options.greedy else self.rng.random()

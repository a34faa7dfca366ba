"""Sampling steps agree with transformers' logits processors on random logits."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pocketlm_runtime.sampling import Sampler, SamplingOptions, penalize, top_k, top_p

torch = pytest.importorskip("torch")
generation = pytest.importorskip("transformers.generation.logits_process")


def sorted_candidates(row: np.ndarray) -> tuple[list[int], list[float]]:
    order = np.argsort(-row, kind="stable")
    return [int(i) for i in order], [float(row[i]) for i in order]


def kept_by(processor, row: np.ndarray, history: list[int] | None = None) -> dict[int, float]:  # type: ignore[no-untyped-def]
    ids = torch.tensor([history or [0]])
    out = processor(ids, torch.tensor(row[None], dtype=torch.float64))[0].numpy()
    return {i: float(v) for i, v in enumerate(out) if np.isfinite(v)}


@pytest.mark.parametrize("seed", range(5))
def test_top_k_keeps_what_transformers_keeps(seed: int) -> None:
    row = np.random.default_rng(seed).normal(size=300) * 3
    ids, _ = top_k(sorted_candidates(row), 17)
    assert set(ids) == set(kept_by(generation.TopKLogitsWarper(17), row))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_keeps_what_transformers_keeps(p: float) -> None:
    row = np.random.default_rng(int(p * 100)).normal(size=300) * 2
    ids, _ = top_p(sorted_candidates(row), p)
    assert set(ids) == set(kept_by(generation.TopPLogitsWarper(p), row))


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(penalty: float) -> None:
    row = np.random.default_rng(3).normal(size=100) * 4
    history = [3, 5, 5, 17, 42, 99]
    ids, logits = penalize(sorted_candidates(row), history, penalty)
    want = kept_by(generation.RepetitionPenaltyLogitsProcessor(penalty), row, history)
    assert {i: round(x, 9) for i, x in zip(ids, logits)} == {i: round(x, 9) for i, x in want.items()}
    assert logits == sorted(logits, reverse=True)


def test_greedy_picks_the_best_candidate() -> None:
    row = np.random.default_rng(1).normal(size=50)
    assert Sampler(SamplingOptions())(sorted_candidates(row), []) == int(np.argmax(row))


def test_seeded_sampling_is_reproducible_and_follows_the_distribution() -> None:
    row = np.log(np.array([0.5, 0.3, 0.2]))
    opts = SamplingOptions(temperature=1.0, top_k=0, seed=11)
    first = Sampler(opts)
    draws = [first(sorted_candidates(row), []) for _ in range(4000)]
    again = Sampler(opts)
    assert draws[:50] == [again(sorted_candidates(row), []) for _ in range(50)]
    freq = Counter(draws)
    for token, prob in enumerate([0.5, 0.3, 0.2]):
        assert math.isclose(freq[token] / len(draws), prob, abs_tol=0.03)


@pytest.mark.parametrize("bad", [
    {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2},
    {"repetition_penalty": 0}, {"max_new_tokens": 0},
])
def test_invalid_options_name_the_field(bad: dict[str, float]) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**bad).validate()  # type: ignore[arg-type]

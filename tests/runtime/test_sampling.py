"""Sampling over the whole row against transformers' logits processors.

The reference is transformers: RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
TopKLogitsWarper and TopPLogitsWarper applied in generate()'s order to a float32 row, then
softmax. Three implementations are checked against it, on real rows of the default model
(every position of a few prompts, so the rows are real distributions) and on random rows:
the numpy session (native.py), web/sampler.js run in node, and the pure-Python reference
(sampling.py). Each must keep the same support, with total variation < 1e-4, and the same
greedy pick under a repetition penalty.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketlm_runtime import native, sampling
from pocketlm_runtime.sampling import Sampler, SamplingOptions

torch = pytest.importorskip("torch")
generation = pytest.importorskip("transformers.generation.logits_process")

NODE_SCRIPT = Path(__file__).with_name("sampler_node.mjs")
PROMPTS = ["Once upon a time, in a small village by the sea,",
           "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
           "def fibonacci(n):\n    "]
SETTINGS = [
    SamplingOptions(temperature=1.0, top_k=0, top_p=1.0),  # the whole distribution
    SamplingOptions(temperature=0.3, top_k=50, top_p=0.9, repetition_penalty=1.1),  # the page's
    SamplingOptions(temperature=1.0, top_k=0, top_p=0.95),  # nucleus over the whole row
    SamplingOptions(temperature=1.3, top_k=10**6, top_p=1.0, repetition_penalty=1.3),  # k > vocab
    SamplingOptions(temperature=0.7, top_k=10, top_p=1.0, repetition_penalty=0.8),
    SamplingOptions(temperature=1.0, top_k=200, top_p=0.5, repetition_penalty=1.2),
]


def transformers_probs(row: np.ndarray, options: SamplingOptions, history: list[int]) -> np.ndarray:
    """transformers' processors in generate()'s order on one float32 row; greedy: one-hot argmax."""
    scores = torch.tensor(row[None], dtype=torch.float32)
    ids = torch.tensor([history], dtype=torch.long)
    if options.repetition_penalty != 1.0 and history:
        scores = generation.RepetitionPenaltyLogitsProcessor(options.repetition_penalty)(ids, scores)
    if options.greedy:
        out = np.zeros(row.shape[0])
        out[int(torch.argmax(scores[0]))] = 1.0
        return out
    scores = generation.TemperatureLogitsWarper(options.temperature)(ids, scores)
    if options.top_k:
        scores = generation.TopKLogitsWarper(options.top_k)(ids, scores)
    if options.top_p < 1.0:
        scores = generation.TopPLogitsWarper(options.top_p)(ids, scores)
    return torch.softmax(scores.double(), dim=-1)[0].numpy()


def as_row(dist: tuple[list[int], list[float]], size: int) -> np.ndarray:
    out = np.zeros(size)
    out[np.asarray(dist[0], dtype=np.int64)] = dist[1]
    return out


def assert_same(ours: np.ndarray, want: np.ndarray, label: str) -> None:
    assert set(np.flatnonzero(ours)) == set(np.flatnonzero(want)), f"{label}: support differs"
    tv = 0.5 * float(np.abs(ours - want).sum())
    assert tv < 1e-4, f"{label}: total variation {tv:.2e}"


@pytest.fixture(scope="module")
def real_rows(default_export_all: Path) -> list[tuple[np.ndarray, list[int]]]:
    """(row, history) for every position of the prompts, on the default model."""
    model = native.load_native(default_export_all, threads=1)
    session, info = model.generator.session, model.info
    rows: list[tuple[np.ndarray, list[int]]] = []
    for prompt in PROMPTS:
        ids = model.tokenizer.encode(prompt, add_special_tokens=False)
        feeds = {"input_ids": session.int64(ids, (1, len(ids))),
                 "attention_mask": session.int64([1] * len(ids), (1, len(ids))),
                 "position_ids": session.int64(list(range(len(ids))), (1, len(ids)))}
        feeds.update({name: session.empty_kv() for name in info.kv.past_names()})
        logits = session.run(feeds)["logits"][0]
        rows += [(np.asarray(logits[i], dtype=np.float32), ids[: i + 1]) for i in range(2, len(ids), 3)]
    return rows


@pytest.mark.parametrize("options", SETTINGS, ids=str)
def test_native_equals_transformers_on_real_rows(real_rows: list[tuple[np.ndarray, list[int]]],
                                                 options: SamplingOptions) -> None:
    for n, (row, history) in enumerate(real_rows):
        want = transformers_probs(row, options, history)
        ids, probs = native.kept(row, options, history)
        assert_same(as_row((ids.tolist(), probs.tolist()), row.shape[0]), want, f"row {n}")


@pytest.mark.parametrize("options", SETTINGS[:3], ids=str)
def test_python_reference_equals_transformers_on_real_rows(real_rows: list[tuple[np.ndarray, list[int]]],
                                                           options: SamplingOptions) -> None:
    for n, (row, history) in enumerate(real_rows[::4]):
        want = transformers_probs(row, options, history)
        ours = sampling.distribution(row.tolist(), options, history)
        assert_same(as_row(ours, row.shape[0]), want, f"row {n}")


def run_node(rows: list[np.ndarray], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    payload = json.dumps({"rows": [r.tolist() for r in rows], "cases": cases})
    done = subprocess.run(["node", str(NODE_SCRIPT)], input=payload, capture_output=True, text=True,
                          check=True, timeout=120)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def js_settings(options: SamplingOptions) -> dict[str, float]:
    return {"temperature": options.temperature, "topK": options.top_k, "topP": options.top_p,
            "repetitionPenalty": options.repetition_penalty}


def test_js_sampler_equals_transformers_and_picks_like_native(
        real_rows: list[tuple[np.ndarray, list[int]]]) -> None:
    rows = [row for row, _ in real_rows]
    greedy = [SamplingOptions(temperature=0, repetition_penalty=p) for p in (1.0, 1.5, 3.0)]
    cases = [{"row": n, "settings": js_settings(options), "previous": history, "uniform": (n * 0.137) % 1}
             for options in SETTINGS + greedy for n, (_, history) in enumerate(real_rows)]
    results = run_node(rows, cases)
    for case, got in zip(cases, results):
        options = (SETTINGS + greedy)[cases.index(case) // len(rows)]
        row, history = real_rows[case["row"]]
        label = f"{options} row {case['row']}"
        assert_same(as_row((got["ids"], got["probs"]), row.shape[0]),
                    transformers_probs(row, options, history), label)
        assert got["pick"] == native.pick(row, options, history, case["uniform"]), label


def scaled_tie_row(seed: int, k: int, temperature: float) -> np.ndarray:
    """A random row whose k-th highest logit has a neighbour one float32 step below it that
    the temperature scales to the same value, so top-k (applied after the temperature, as
    transformers does) keeps both."""
    rng = np.random.default_rng(seed)
    row = (rng.normal(size=500) * 3).astype(np.float32)
    t = np.float32(temperature)
    for value in np.sort(rng.uniform(2.0, 9.0, size=2000).astype(np.float32)):
        below = np.nextafter(value, np.float32(-np.inf))
        if value / t == below / t:
            order = np.argsort(-row, kind="stable")
            row[row >= value] = np.float32(-5)  # nothing above the pair but k - 1 logits
            row[order[: k - 1]] = value + np.float32(1) + np.arange(k - 1, dtype=np.float32)
            row[order[k - 1]], row[order[k]] = value, below
            return row
    raise AssertionError("no float32 pair found that the temperature rounds together")


@pytest.mark.parametrize("seed", range(3))
def test_js_sampler_keeps_ties_of_the_scaled_kth_logit_and_leaves_the_row_unchanged(seed: int) -> None:
    """Random rows with exact ties (rounded logits) and with a scaled tie at the k-th
    highest, under a repetition penalty, against transformers (top-p off: torch.sort is
    not stable, so its choice among equal tokens at the nucleus boundary is arbitrary)."""
    rng = np.random.default_rng(seed)
    tied = np.round(rng.normal(size=500) * 3, 1).astype(np.float32)
    options = [SamplingOptions(temperature=3.0, top_k=10, repetition_penalty=1.2),
               SamplingOptions(temperature=0.3, top_k=50, repetition_penalty=1.1),
               SamplingOptions(temperature=0, repetition_penalty=1.5)]
    rows = [tied, scaled_tie_row(seed, 10, 3.0)]
    history = rng.integers(0, 500, size=40).tolist()
    cases = [{"row": n, "settings": js_settings(o), "previous": history, "uniform": 0.5}
             for o in options for n in range(len(rows))]
    for case, got in zip(cases, run_node(rows, cases)):
        o, row = options[cases.index(case) // len(rows)], rows[case["row"]]
        label = f"{o} row {case['row']}"
        assert got["unchanged"], label
        assert_same(as_row((got["ids"], got["probs"]), 500), transformers_probs(row, o, history), label)


@pytest.mark.parametrize("penalty", [1.3, 2.0, 5.0])
def test_greedy_under_a_penalty_picks_what_transformers_picks(
        real_rows: list[tuple[np.ndarray, list[int]]], penalty: float) -> None:
    options = SamplingOptions(temperature=0, repetition_penalty=penalty)
    changed = 0
    for row, history in real_rows:
        want = int(np.argmax(transformers_probs(row, options, history)))
        assert native.pick(row, options, history, 0.0) == want
        assert sampling.pick(row.tolist(), options, history, 0.0) == want
        changed += want != int(np.argmax(row))
    if penalty >= 2.0:
        assert changed > 0  # the penalty does move some picks on these rows


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [True, False])
def test_random_rows(seed: int, ties: bool) -> None:
    """With many equal logits, top-k keeps every tie of the k-th value. Top-p is checked on
    rows without ties: torch.sort is not stable, so which of several equally likely tokens
    transformers drops at the nucleus boundary is arbitrary (we drop lower ids first)."""
    rng = np.random.default_rng(seed)
    row = (rng.normal(size=400) * 3).astype(np.float32)
    if ties:
        row = np.round(row, 1)
    history = rng.integers(0, 400, size=30).tolist()
    for options in SETTINGS:
        if ties and options.top_p < 1.0:
            continue
        want = transformers_probs(row, options, history)
        ids, probs = native.kept(row, options, history)
        assert_same(as_row((ids.tolist(), probs.tolist()), 400), want, str(options))
        assert_same(as_row(sampling.distribution(row.tolist(), options, history), 400), want, str(options))


def test_top_k_zero_is_off_and_above_the_vocabulary_is_all() -> None:
    row = np.random.default_rng(5).normal(size=300).astype(np.float32)
    for k in (0, 300, 301, 10**9):
        ids, _ = native.kept(row, SamplingOptions(temperature=1.0, top_k=k), [])
        assert ids.shape[0] == 300


def test_draws_follow_the_distribution_and_a_seed_repeats_them() -> None:
    row = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32))
    opts = SamplingOptions(temperature=1.0, top_k=0, seed=11)
    first, again = Sampler(opts), Sampler(opts)
    draws = [native.pick(row, opts, [], first.uniform()) for _ in range(4000)]
    assert draws[:50] == [sampling.pick(row.tolist(), opts, [], again.uniform()) for _ in range(50)]
    freq = Counter(draws)
    for token, prob in enumerate([0.5, 0.3, 0.2]):
        assert math.isclose(freq[token] / len(draws), prob, abs_tol=0.03)


@pytest.mark.parametrize("bad", [
    {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2},
    {"repetition_penalty": 0}, {"max_new_tokens": 0},
])
def test_invalid_options_name_the_field(bad: dict[str, Any]) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**bad).validate()

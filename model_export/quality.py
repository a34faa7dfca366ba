"""The quality gate: a quantized graph against the fp32 graph of the same source.

Measured on the held-out text kept with the package (``eval_text.txt``): perplexity, top-1
agreement and the largest logit difference at every position; then greedy continuations
of a few prompts, token by token with the KV cache, which also gives a decode speed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from .errors import ExportError

WINDOW = 512
GREEDY_PROMPTS = (
    "The history of the bicycle begins",
    "To make a good cup of tea, you",
    "def fibonacci(n):",
)
GREEDY_TOKENS = 32
# Largest allowed perplexity rise over fp32, per mode.
PPL_LIMITS = {"exact": 0.02, "mixed": 0.02, "q8": 0.02, "fp16": 0.02, "q4": 0.08}


def eval_text() -> str:
    return (resources.files("pocketlm_export") / "eval_text.txt").read_text(encoding="utf-8")


class GraphRunner:
    """An in-memory graph with logits for every position, fed with a KV cache."""

    def __init__(self, model: onnx.ModelProto, threads: int = 2, config: dict[str, str] | None = None,
                 window: int = WINDOW) -> None:
        self.window = window
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.past_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]

    def fresh(self) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((1, int(i.shape[1]), 0, int(i.shape[3])), np.float32) for i in self.past_inputs}

    def step(self, ids: list[int], past: dict[str, np.ndarray], start: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        total = start + len(ids)
        feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, total), np.int64),
                 "position_ids": np.arange(start, total, dtype=np.int64)[None], **past}
        out = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        new_past = {name: out[name.replace("past_key_values.", "present.")] for name in past}
        return out["logits"][0], new_past

    def windows(self, ids: list[int]) -> list[np.ndarray]:
        w = self.window
        return [self.step(ids[i:i + w], self.fresh(), 0)[0] for i in range(0, len(ids) - 1, w)]

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float]:
        logits, past = self.step(ids, self.fresh(), 0)
        tokens = [int(np.argmax(logits[-1]))]
        started = time.perf_counter()
        for _ in range(n - 1):
            logits, past = self.step([tokens[-1]], past, len(ids) + len(tokens) - 1)
            tokens.append(int(np.argmax(logits[-1])))
        return tokens, (n - 1) / (time.perf_counter() - started)


def nll(logits: np.ndarray, targets: list[int]) -> float:
    """Summed negative log-likelihood of ``targets`` under ``logits`` [len(targets), vocab]."""
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(x - top).sum(axis=-1))
    return float(np.sum(logz - x[np.arange(len(targets)), targets]))


@dataclass
class Reference:
    """What the fp32 graph gave, kept so each candidate mode is compared without rebuilding it."""

    windows: list[np.ndarray]
    perplexity: float
    greedy: list[list[int]]
    decode_tokens_per_second: float


@dataclass
class Quality:
    mode: str
    perplexity: float
    reference_perplexity: float
    perplexity_rise: float
    top1_agreement: float
    max_logit_error: float
    greedy_agreement: float
    greedy_identical: int
    decode_tokens_per_second: float
    reference_decode_tokens_per_second: float
    limit: float | None
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def perplexity(windows: list[np.ndarray], ids: list[int]) -> float:
    total, count = 0.0, 0
    size = windows[0].shape[0]
    for w, chunk_start in zip(windows, range(0, len(ids) - 1, size)):
        targets = ids[chunk_start + 1: chunk_start + 1 + len(w)]
        total += nll(w[: len(targets)], targets)
        count += len(targets)
    return math.exp(total / count)


def window_for(context_length: int) -> int:
    """Evaluation windows fit the model's context, leaving room for the greedy prompts."""
    return max(16, min(WINDOW, context_length // 2))


def finite_logits(mode: str, windows: list[np.ndarray]) -> None:
    """NaN or infinite logits are a broken model, never a quality figure: ExportError."""
    if not all(np.isfinite(w).all() for w in windows):
        raise ExportError(f"the {mode} graph gives NaN or infinite logits on the evaluation text; the "
                          "weights overflow in this mode: choose another --quant (e.g. fp32)")


def reference(model: onnx.ModelProto, text_ids: list[int], prompts: list[list[int]],
              context_length: int) -> Reference:
    runner = GraphRunner(model, window=window_for(context_length))
    windows = runner.windows(text_ids)
    finite_logits("fp32", windows)
    greedy = [runner.greedy(p, GREEDY_TOKENS) for p in prompts]
    return Reference(windows, perplexity(windows, text_ids), [g for g, _ in greedy],
                     float(np.median([s for _, s in greedy])))


def compare(mode: str, model: onnx.ModelProto, ref: Reference, text_ids: list[int],
            prompts: list[list[int]], context_length: int, config: dict[str, str] | None = None) -> Quality:
    runner = GraphRunner(model, config=config, window=window_for(context_length))
    windows = runner.windows(text_ids)
    finite_logits(mode, windows)
    ppl = perplexity(windows, text_ids)
    agree = total = 0
    worst = 0.0
    for got, want in zip(windows, ref.windows):
        agree += int(np.sum(got.argmax(-1) == want.argmax(-1)))
        total += got.shape[0]
        worst = max(worst, float(np.max(np.abs(got - want))))
    greedy = [runner.greedy(p, GREEDY_TOKENS) for p in prompts]
    same = sum(sum(int(a == b) for a, b in zip(g, r)) for (g, _), r in zip(greedy, ref.greedy))
    identical = sum(int(g == r) for (g, _), r in zip(greedy, ref.greedy))
    rise = ppl / ref.perplexity - 1.0
    limit = PPL_LIMITS.get(mode)
    return Quality(
        mode=mode, perplexity=ppl, reference_perplexity=ref.perplexity, perplexity_rise=rise,
        top1_agreement=agree / total, max_logit_error=worst,
        greedy_agreement=same / (len(prompts) * GREEDY_TOKENS), greedy_identical=identical,
        decode_tokens_per_second=float(np.median([s for _, s in greedy])),
        reference_decode_tokens_per_second=ref.decode_tokens_per_second,
        limit=limit, passed=limit is None or rise <= limit,
    )

"""The quality gate: a quantized graph against the float32 model of the same source.

Measured on the held-out text kept with the package (``eval_text.txt``), in windows: the
perplexity, top-1 agreement and largest logit difference at every position; then greedy
continuations of a few prompts, token by token with the KV cache (which also gives a
decode speed), each checked against the reference's own argmax on the same prefix
(teacher forcing: a continuation counts as identical when the reference would have chosen
every one of its tokens, which is exactly when the reference's greedy run produces it).
The prompts are decoded together as one batch (right-padded, each row's attention mask
covering its own tokens): a decode step costs a big quantized graph about the same for one
row as for three, since onnxruntime widens its 8-bit blocks to float32 on every call; the
decode speed is then steps per second, each step giving every prompt one token.

The reference is :class:`~pocketlm_export.reference.LayeredReference` (float32, run a few
layers at a time); its logits wait on disk, so memory holds at most one window of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import ExportError
from .reference import LayeredReference
from .sources.model import SourceModel

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


# Rows of logits compared at a time (memory: rows x vocabulary x 4 bytes, twice).
COMPARE_ROWS = 64
# Largest logits tensor of one window: a 150k vocabulary gets shorter windows, since
# onnxruntime holds a few copies of the logits while it runs a window.
WINDOW_LOGITS_BYTES = 128 << 20
# Largest logits tensor of one call of the candidate graph: windows shortened for a big
# vocabulary run together as one batch, up to WINDOW tokens and this size a call (a call of
# a big quantized graph pays for widening its 8-bit blocks whatever its batch).
CALL_LOGITS_BYTES = 256 << 20


class GraphRunner:
    """A graph file with logits for every position, fed with a KV cache."""

    def __init__(self, model_path: Path, threads: int = 2, config: dict[str, str] | None = None,
                 window: int = WINDOW) -> None:
        self.window = window
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False  # give each window's logits back at once
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        self.vocab_size = int(logits.shape[-1])
        self.past_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]

    def fresh(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((batch, int(i.shape[1]), 0, int(i.shape[3])), np.float32) for i in self.past_inputs}

    def run_batch(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
                  past: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One call: int64 ``ids`` and ``positions`` [B, S], ``mask`` [B, past + S] -> logits
        [B, S, vocab] float32 and the new cache."""
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **past}
        out = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        new_past = {name: out[name.replace("past_key_values.", "present.")] for name in past}
        return out["logits"], new_past

    def greedy_batch(self, prompts: list[list[int]], n: int) -> tuple[list[list[int]], float]:
        """``n`` greedy tokens after each prompt, all prompts decoded as one batch; returns the
        continuations and the decode steps per second (each step gives every row a token).

        Rows are right-padded to the longest prompt. Row ``r``'s attention mask has ones
        over its own tokens only, so GroupQueryAttention counts ``len(prompt r) + t`` tokens
        for it at step ``t`` (``seqlens_k``) and appends its key and value right after them:
        each row's cache stays contiguous and never sees another row's padding."""
        lengths = np.array([len(p) for p in prompts], np.int64)
        rows, width = len(prompts), int(lengths.max())
        ids = np.zeros((rows, width), np.int64)
        for r, p in enumerate(prompts):
            ids[r, : len(p)] = p
        columns = np.arange(width, dtype=np.int64)
        mask = (columns[None] < lengths[:, None]).astype(np.int64)
        logits, past = self.run_batch(ids, mask, np.tile(columns, (rows, 1)), self.fresh(rows))
        tokens = [[int(np.argmax(logits[r, lengths[r] - 1]))] for r in range(rows)]
        del logits
        started = time.perf_counter()
        for step in range(1, n):
            total = np.arange(width + step, dtype=np.int64)
            mask = (total[None] < (lengths + step)[:, None]).astype(np.int64)
            last = np.array([[t[-1]] for t in tokens], np.int64)
            logits, past = self.run_batch(last, mask, (lengths + step - 1)[:, None], past)
            for r in range(rows):
                tokens[r].append(int(np.argmax(logits[r, -1])))
        return tokens, (n - 1) / (time.perf_counter() - started)


def nll(logits: np.ndarray, targets: list[int]) -> float:
    """Summed negative log-likelihood of ``targets`` under ``logits`` [len(targets), vocab]."""
    total = 0.0
    for start in range(0, len(targets), COMPARE_ROWS):
        x = logits[start:start + COMPARE_ROWS].astype(np.float64)
        rows = targets[start:start + COMPARE_ROWS]
        top = x.max(axis=-1, keepdims=True)
        logz = top[:, 0] + np.log(np.exp(x - top).sum(axis=-1))
        total += float(np.sum(logz - x[np.arange(len(rows)), rows]))
    return total


def windows_per_call(window: int, vocab_size: int) -> int:
    """Windows run as one batch: as many as make at most :data:`WINDOW` tokens and
    :data:`CALL_LOGITS_BYTES` of logits (at least 1). Full-length windows run alone, so a
    small vocabulary's call holds what it always did."""
    return max(1, min(WINDOW // window, CALL_LOGITS_BYTES // (4 * window * vocab_size)))


def batches_of(windows: list[tuple[list[int], list[int]]],
               most: int) -> list[list[tuple[list[int], list[int]]]]:
    """Consecutive windows of the same length in groups of at most ``most`` (at least 1)."""
    groups: list[list[tuple[list[int], list[int]]]] = []
    for window in windows:
        if groups and len(groups[-1]) < max(1, most) and len(groups[-1][0][0]) == len(window[0]):
            groups[-1].append(window)
        else:
            groups.append([window])
    return groups


def windows_of(ids: list[int], size: int) -> list[tuple[list[int], list[int]]]:
    """The text cut into windows of ``size`` tokens: (window ids, the next token of each)."""
    return [(ids[i:i + size], ids[i + 1:i + 1 + size]) for i in range(0, len(ids) - 1, size)]


@dataclass
class Reference:
    """What the float32 reference gave, kept so each candidate mode is compared with it."""

    layered: LayeredReference
    window: int
    logits_file: Path  # float32 [rows of every window, vocab], windows in order
    perplexity: float
    pieces: int
    largest_piece_bytes: int

    def describe(self) -> dict[str, Any]:
        return {"model": "float32, dequantized from the source", "pieces": self.pieces,
                "largest_piece_bytes": self.largest_piece_bytes, "window_tokens": self.window}


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
    limit: float | None
    passed: bool
    session_config: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_for(context_length: int, vocab_size: int) -> int:
    """Evaluation windows fit the model's context, leaving room for the greedy prompts, and
    keep one window's logits under :data:`WINDOW_LOGITS_BYTES` (a power of two >= 16)."""
    by_memory = 1 << max(4, (WINDOW_LOGITS_BYTES // (4 * vocab_size)).bit_length() - 1)
    return max(16, min(WINDOW, context_length // 2, by_memory))


def finite_logits(mode: str, logits: np.ndarray) -> None:
    """NaN or infinite logits are a broken model, never a quality figure: ExportError."""
    if not np.isfinite(logits).all():
        raise ExportError(f"the {mode} graph gives NaN or infinite logits on the evaluation text; the "
                          "weights overflow in this mode: choose another --quant (e.g. fp32)")


def reference(src: SourceModel, folder: Path, text_ids: list[int], context_length: int,
              threads: int = 2) -> Reference:
    """Run the float32 reference over the held-out text; its logits go to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    layered = LayeredReference(src, folder / "pieces", threads=threads)
    window = window_for(context_length, src.config.vocab_size)
    chunks = windows_of(text_ids, window)
    logits_file = folder / "reference-logits.f32"
    total = 0.0
    with logits_file.open("wb") as handle:
        def consume(n: int, logits: np.ndarray) -> None:
            nonlocal total
            targets = chunks[n][1]
            finite_logits("fp32", logits)
            total += nll(logits[: len(targets)], targets)
            handle.write(np.ascontiguousarray(logits, np.float32).reshape(-1).data.cast("B"))

        layered.run([ids for ids, _ in chunks], consume)
    count = sum(len(t) for _, t in chunks)
    return Reference(layered, window, logits_file, math.exp(total / count), len(layered.pieces),
                     layered.largest_piece_bytes)


def compare(mode: str, model_path: Path, ref: Reference, text_ids: list[int],
            prompts: list[list[int]], config: dict[str, str] | None = None) -> Quality:
    """Measure the graph at ``model_path`` against ``ref`` (see the module docstring)."""
    runner = GraphRunner(model_path, config=config, window=ref.window)
    total = 0.0
    agree = rows = 0
    worst = 0.0
    windows = windows_of(text_ids, ref.window)
    with ref.logits_file.open("rb") as handle:
        for group in batches_of(windows, windows_per_call(ref.window, runner.vocab_size)):
            ids = np.array([w for w, _ in group], np.int64)
            positions = np.tile(np.arange(ids.shape[1], dtype=np.int64), (len(group), 1))
            batch = runner.run_batch(ids, np.ones_like(ids), positions, runner.fresh(len(group)))[0]
            for got, (_, targets) in zip(batch, group):
                finite_logits(mode, got)
                total += nll(got[: len(targets)], targets)
                for start in range(0, got.shape[0], COMPARE_ROWS):
                    part = got[start:start + COMPARE_ROWS]
                    want = np.fromfile(handle, np.float32, count=part.size).reshape(part.shape)
                    agree += int(np.sum(part.argmax(-1) == want.argmax(-1)))
                    worst = max(worst, float(np.max(np.abs(part - want))))
                rows += got.shape[0]
            del batch, got
        if handle.tell() != ref.logits_file.stat().st_size:
            raise RuntimeError("the reference logits do not match the candidate's windows")
    greedy, steps_per_second = runner.greedy_batch(prompts, GREEDY_TOKENS)
    del runner  # the reference pieces load next
    chosen: list[list[int]] = [[] for _ in prompts]

    def consume(n: int, logits: np.ndarray) -> None:
        start = len(prompts[n]) - 1
        chosen[n] = [int(i) for i in logits[start:start + GREEDY_TOKENS].argmax(-1)]

    ref.layered.run([p + g[:-1] for p, g in zip(prompts, greedy)], consume)
    same = sum(sum(int(a == b) for a, b in zip(g, r)) for g, r in zip(greedy, chosen))
    identical = sum(int(g == r) for g, r in zip(greedy, chosen))
    ppl = math.exp(total / sum(len(t) for _, t in windows))
    rise = ppl / ref.perplexity - 1.0
    limit = PPL_LIMITS.get(mode)
    return Quality(
        mode=mode, perplexity=ppl, reference_perplexity=ref.perplexity, perplexity_rise=rise,
        top1_agreement=agree / rows, max_logit_error=worst,
        greedy_agreement=same / (len(prompts) * GREEDY_TOKENS), greedy_identical=identical,
        decode_tokens_per_second=steps_per_second,
        limit=limit, passed=limit is None or rise <= limit, session_config=dict(config or {}),
    )

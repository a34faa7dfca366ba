"""The session protocol over onnxruntime (CPython only: imports numpy and onnxruntime).

The logits processors run over the whole last row in numpy (:func:`kept`), by the rules of
:mod:`pocketlm_runtime.sampling`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from .model_info import CONFIG_FILE, ModelInfo
from .sampling import Distribution, SamplingOptions

if TYPE_CHECKING:
    from .pipeline import LanguageModel

KV_DTYPES = {"float32": np.float32, "float16": np.float16}


class NativeSession:
    def __init__(self, model_path: Path, info: ModelInfo, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        for key, value in info.session_config.items():
            options.add_session_config_entry(key, value)
        self.ort = ort.InferenceSession(str(model_path), options,
                                        providers=providers or ["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.ort.get_outputs()]
        self.kv_shape = (1, info.kv.num_kv_heads, 0, info.kv.head_dim)
        self.kv_dtype = KV_DTYPES[info.kv.dtype]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(self.output_names, self.ort.run(self.output_names, feeds)))

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        return np.asarray(values, dtype=np.int64).reshape(shape)

    def empty_kv(self) -> Any:
        return np.zeros(self.kv_shape, dtype=self.kv_dtype)

    def pick(self, logits: Any, options: SamplingOptions, history: Sequence[int], uniform: float) -> int:
        return pick(np.asarray(logits[0, -1], dtype=np.float32), options, history, uniform)

    def distribution(self, logits: Any, options: SamplingOptions, history: Sequence[int]) -> Distribution:
        ids, probs = kept(np.asarray(logits[0, -1], dtype=np.float32), options, history)
        order = np.lexsort((ids, -probs))
        return [int(i) for i in ids[order]], [float(p) for p in probs[order]]

    def release(self, tensors: list[Any]) -> None:
        return None


def penalized(row: NDArray[np.float32], options: SamplingOptions, history: Sequence[int]) -> NDArray[np.float32]:
    """The row after the repetition penalty (a copy when the penalty changes anything)."""
    penalty = options.repetition_penalty
    if penalty == 1.0 or not len(history):
        return row
    out = row.copy()
    seen = np.unique(np.asarray(history, dtype=np.int64))
    values = out[seen]
    out[seen] = np.where(values > 0, values / np.float32(penalty), values * np.float32(penalty))
    return out


def kept(row: NDArray[np.float32], options: SamplingOptions,
         history: Sequence[int]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The kept ids in increasing order and their probabilities (float64), for one float32
    row of vocabulary size; greedy options keep the argmax alone."""
    logits = penalized(row, options, history)
    if options.greedy:
        return np.array([int(np.argmax(logits))]), np.array([1.0])
    scaled = logits / np.float32(options.temperature)
    size = scaled.shape[0]
    if 0 < options.top_k < size:
        kth = np.partition(scaled, size - options.top_k)[size - options.top_k]
        ids = np.flatnonzero(scaled >= kth)
    else:
        ids = np.arange(size)
    values = scaled[ids].astype(np.float64)
    weights = np.exp(values - values.max())
    probs = weights / weights.sum()
    if options.top_p < 1.0:
        ids, probs = nucleus(ids, probs, options.top_p)
    return ids, probs


def nucleus(ids: NDArray[np.int64], probs: NDArray[np.float64],
            top_p: float) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Top-p: drop the least likely tokens while their cumulative probability is
    <= 1 - top_p. A token of probability <= (1 - top_p) / n is always dropped (every token
    before it in ascending order is no more likely), so only the others are sorted."""
    limit = 1.0 - top_p
    small = probs <= limit / probs.shape[0]
    rest = np.flatnonzero(~small)
    order = rest[np.lexsort((ids[rest], probs[rest]))]  # ascending; ties: lower id first
    cumulative = float(probs[small].sum()) + np.cumsum(probs[order])
    drop = cumulative <= limit
    drop[-1] = False  # the most likely token always stays
    keep = np.sort(order[~drop])
    out = probs[keep]
    return ids[keep], out / out.sum()


def pick(row: NDArray[np.float32], options: SamplingOptions, history: Sequence[int], uniform: float) -> int:
    """Greedy argmax, or the inverse-CDF draw for ``uniform`` over the kept ids in increasing
    id order (:mod:`pocketlm_runtime.sampling`)."""
    if options.greedy and options.repetition_penalty == 1.0:
        return int(np.argmax(row))
    ids, probs = kept(row, options, history)
    at = int(np.searchsorted(np.cumsum(probs), uniform, side="right"))
    return int(ids[min(at, ids.shape[0] - 1)])


def read_info(model_dir: Path) -> ModelInfo:
    config = model_dir / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not an exported model folder (no {CONFIG_FILE}); "
            "run `pocketlm export SOURCE -o FOLDER` first"
        )
    return ModelInfo.from_text(config.read_text(encoding="utf-8"))


def load_native(model_dir: Path, threads: int | None = None) -> LanguageModel:
    """An exported model folder, ready to generate with onnxruntime."""
    from .pipeline import LanguageModel
    from .tokenizer import Tokenizer

    info = read_info(model_dir)
    session = NativeSession(model_dir / info.model_file, info, threads=threads)
    tokenizer = Tokenizer.from_file(model_dir / "tokenizer.json")
    return LanguageModel(session, info, tokenizer)

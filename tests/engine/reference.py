"""Native onnxruntime references for the engine tests, on the engine's own model folder.

The folder's graph runs MatMulNBits with float activations (accuracy_level 0): the
reference. The same graph with accuracy_level 4 (int8 activations quantized per block, what
the engine does) measures how far int8 activations alone move the logits; the engine is
held to that distance (see ``logit_bound``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from pocketlm_runtime.native import read_info


def session(folder: Path, accuracy_level: int = 0, threads: int = 1) -> ort.InferenceSession:
    """The folder's graph; with accuracy_level 4, a copy of it beside the original (same data file)."""
    path = folder / "model.onnx"
    if accuracy_level:
        model = onnx.load(path, load_external_data=False)
        for node in model.graph.node:
            if node.op_type == "MatMulNBits":
                for attr in node.attribute:
                    if attr.name == "accuracy_level":
                        attr.i = accuracy_level
        path = folder / f"model_level{accuracy_level}.onnx"
        onnx.save(model, path)
    return graph_session(path, accuracy_level, threads)


def graph_session(path: Path, accuracy_level: int = 0, threads: int = 1) -> ort.InferenceSession:
    """onnxruntime on the graph file ``path`` (its data file beside it), CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def eval_windows(folder: Path) -> tuple[list[list[int]], list[list[int]]]:
    """The held-out text (model_export/eval_text.txt) in the quality gate's windows, and
    each window's next-token targets."""
    from pocketlm_export import quality
    from pocketlm_runtime.native import load_native

    native = load_native(folder, threads=1)
    ids = native.tokenizer.encode(quality.eval_text(), add_special_tokens=False)
    size = quality.window_for(8192, native.info.vocab_size)
    windows = [ids[i:i + size] for i in range(0, len(ids) - 1, size)]
    targets = [ids[i + 1:i + 1 + size] for i in range(0, len(ids) - 1, size)]
    return windows, targets


def window_scores(sess: ort.InferenceSession, folder: Path, windows: list[list[int]],
                  targets: list[list[int]]) -> tuple[list[np.ndarray], float]:
    """Top-1 ids of every position of each window, and the perplexity of the targets."""
    from pocketlm_export import quality

    tops, nll, count = [], 0.0, 0
    for w, t in zip(windows, targets):
        logits = window_logits(sess, folder, w)
        tops.append(logits.argmax(-1))
        nll += quality.nll(logits[: len(t)], t)
        count += len(t)
    return tops, math.exp(nll / count)


def window_logits(sess: ort.InferenceSession, folder: Path, ids: list[int]) -> np.ndarray:
    """Logits [len(ids), vocab] of every position, from an empty cache (a graph exported
    with --logits all)."""
    logits = sess.run(["logits"], feeds(folder, ids))[0][0]
    assert logits.shape[0] == len(ids), "export the reference with --logits all"
    return np.asarray(logits, np.float32)


def feeds(folder: Path, ids: list[int]) -> dict[str, np.ndarray]:
    """The graph's inputs for reading ``ids`` from an empty cache."""
    info = read_info(folder)
    n = len(ids)
    out = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
           "position_ids": np.arange(n, dtype=np.int64)[None]}
    for name in info.kv.past_names():
        out[name] = np.zeros((1, info.kv.num_kv_heads, 0, info.kv.head_dim), np.float32)
    return out


def logit_bound(float_ref: np.ndarray, int8_ref: np.ndarray, activations: int = 16) -> float:
    """The largest logit error the engine may show against the float-activation reference.

    int8 activations: 1.5x what onnxruntime's own int8-activation kernels show on the same
    weights and tokens, plus 1e-3 for float32 summation order (both round activations to
    int8 per block; they differ in rounding ties and summation order, so their errors are of
    the same size but not identical). int16 activations: a step 258x finer (1/32767 of a
    block's largest value instead of 1/127), so 1/20 of the int8 distance (over 10x margin)
    plus 2e-3."""
    distance = float(np.abs(int8_ref - float_ref).max())
    return 1.5 * distance + 1e-3 if activations == 8 else 0.05 * distance + 2e-3

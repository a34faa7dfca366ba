"""Native onnxruntime references for the engine tests, on the engine's own model folder.

The folder's graph runs MatMulNBits with float activations (accuracy_level 0): the
reference. The same graph with accuracy_level 4 (int8 activations quantized per block, what
the engine does) measures how far int8 activations alone move the logits; the engine is
held to that distance (see ``logit_bound``).
"""

from __future__ import annotations

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
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def window_logits(sess: ort.InferenceSession, folder: Path, ids: list[int]) -> np.ndarray:
    """Logits [len(ids), vocab] of every position, from an empty cache (a graph exported
    with --logits all)."""
    info = read_info(folder)
    n = len(ids)
    feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
             "position_ids": np.arange(n, dtype=np.int64)[None]}
    for name in info.kv.past_names():
        feeds[name] = np.zeros((1, info.kv.num_kv_heads, 0, info.kv.head_dim), np.float32)
    logits = sess.run(["logits"], feeds)[0][0]
    assert logits.shape[0] == n, "export the reference with --logits all"
    return np.asarray(logits, np.float32)


def logit_bound(float_ref: np.ndarray, int8_ref: np.ndarray) -> float:
    """The largest logit error the engine may show against the float-activation reference:
    1.5x what onnxruntime's own int8-activation kernels show on the same weights and tokens,
    plus 1e-3 for float32 summation order. Both implementations round activations to int8
    per block; they differ in rounding ties and summation order, so their errors are of the
    same size but not identical."""
    return 1.5 * float(np.abs(int8_ref - float_ref).max()) + 1e-3

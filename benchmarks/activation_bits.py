"""What int8 activations cost in accuracy when only some linears take them.

Native onnxruntime on an ``nbits`` export exported with ``--logits all``: every
MatMulNBits at accuracy_level 0 (float activations: the reference), then, for each set of
linears given, those kept at accuracy_level 0 and all the others at accuracy_level 4 (int8
activations quantized per block, the arithmetic of a twice-faster prefill kernel). Prints,
over the held-out text (model_export/eval_text.txt, in the quality gate's windows),
teacher-forced top-1 agreement with the reference and perplexity against it: the CPU
engine's accuracy bound is 97% and +1%.

    python -m benchmarks.activation_bits --model FOLDER [--keep-float /down /down,/o lm_head]

Each ``--keep-float`` item is a comma-separated list of substrings of node names (``/down``:
every layer's down projection; ``lm_head``; ``none``: every linear in int8).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from pocketlm_runtime.native import load_native
from tests.engine import reference


def scores(graph: Path, folder: Path, windows: list[list[int]], targets: list[list[int]],
           level: int) -> tuple[np.ndarray, float]:
    """Top-1 ids of every scored position, and perplexity."""
    from pocketlm_export import quality

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(level))
    sess = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    tops, nll, count = [], 0.0, 0
    for w, t in zip(windows, targets):
        logits = reference.window_logits(sess, folder, w)
        tops.append(logits[: len(t)].argmax(-1))
        nll += quality.nll(logits[: len(t)], t)
        count += len(t)
    return np.concatenate(tops), math.exp(nll / count)


def mixed_graph(folder: Path, keep: list[str]) -> Path:
    """A copy of the graph (same data file) with the linears named by ``keep`` at
    accuracy_level 0 and every other MatMulNBits at 4."""
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            level = 0 if any(k in node.name for k in keep) else 4
            for attr in node.attribute:
                if attr.name == "accuracy_level":
                    attr.i = level
    path = folder / "model_activation_bits.onnx"
    onnx.save(model, path)
    return path


def main() -> None:
    from pocketlm_export import quality

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an nbits export with --logits all")
    parser.add_argument("--keep-float", nargs="+", default=["none", "/down", "/down,/o", "/down,/gate,/up",
                                                            "lm_head,/down,/o"])
    args = parser.parse_args()
    folder = args.model
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"{folder} holds no model.onnx; give an nbits export (pocketlm export --layout nbits)")
    native = load_native(folder, threads=1)
    ids = native.tokenizer.encode(quality.eval_text(), add_special_tokens=False)
    size = quality.window_for(8192, native.info.vocab_size)
    windows = [ids[i:i + size] for i in range(0, len(ids) - 1, size)]
    targets = [ids[i + 1:i + 1 + size] for i in range(0, len(ids) - 1, size)]
    float_tops, float_ppl = scores(folder / "model.onnx", folder, windows, targets, 0)
    print(f"{folder}: {sum(len(t) for t in targets)} positions; float activations: perplexity {float_ppl:.4f}\n")
    print("| linears kept in float (the rest int8) | top-1 agreement | perplexity | change |")
    print("|---|---|---|---|")
    try:
        for item in args.keep_float:
            keep = [] if item == "none" else item.split(",")
            tops, ppl = scores(mixed_graph(folder, keep), folder, windows, targets, 4)
            print(f"| {item} | {np.mean(tops == float_tops):.2%} | {ppl:.4f} | {100 * (ppl / float_ppl - 1):+.2f}% |",
                  flush=True)
    finally:
        (folder / "model_activation_bits.onnx").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

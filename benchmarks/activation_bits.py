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
from pathlib import Path

import numpy as np
import onnx

from tests.engine import reference


def scores(graph: Path, folder: Path, windows: list[list[int]], targets: list[list[int]],
           level: int) -> tuple[np.ndarray, float]:
    """Top-1 ids of every scored position (all windows in a row), and perplexity."""
    tops, ppl = reference.window_scores(reference.graph_session(graph, level, threads=2), folder, windows, targets)
    return np.concatenate([top[: len(t)] for top, t in zip(tops, targets)]), ppl


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an nbits export with --logits all")
    parser.add_argument("--keep-float", nargs="+", default=["none", "/down", "/down,/o", "/down,/gate,/up",
                                                            "lm_head,/down,/o"])
    args = parser.parse_args()
    folder = args.model
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"{folder} holds no model.onnx; give an nbits export (pocketlm export --layout nbits)")
    windows, targets = reference.eval_windows(folder)
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

"""What int8 activations cost in accuracy, alone and in the designs that keep some values
out of int8.

Native onnxruntime on an ``nbits`` export exported with ``--logits all``: every
MatMulNBits at accuracy_level 0 (float activations: the reference), then three kinds of
runs, each printed as teacher-forced top-1 agreement with the reference and perplexity
over the held-out text (model_export/eval_text.txt, in the quality gate's windows). The CPU
engine's accuracy bound is 97% and +1%.

- ``--keep-float``: the linears named kept at accuracy_level 0, every other at 4 (int8
  activations quantized per block, the arithmetic of a twice-faster prefill kernel). Each
  item is a comma-separated list of substrings of node names (``/down``: every layer's down
  projection; ``lm_head``; ``none``: every linear in int8).
- ``--fallback C``: every linear's input rounded to int8 per block (``max|x| / 127``, as
  accuracy_level 4 does), except the blocks whose ``max|x|`` exceeds C times the token's
  root mean square, which stay float (a kernel would take their second byte too). Prints
  the share of blocks kept.
- ``--outlier-channels K``: the K input channels of each linear with the largest mean
  square on the first window kept in float, the rest rounded to int8 per block (a kernel
  would add those channels' products in float). The agreement is also given for the other
  windows alone.

The rounding is written into a copy of the graph (ONNX operators before each MatMulNBits);
the linears themselves run with float activations.

    python -m benchmarks.activation_bits --model FOLDER [--keep-float /down /down,/o lm_head]
        [--fallback 8 5 3] [--outlier-channels 4 16]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.engine import reference


@dataclass
class Scores:
    tops: list[np.ndarray]  # top-1 ids of each window's scored positions
    ppl: float
    kept: float = 0.0  # share of blocks kept in float (--fallback)

    def agreement(self, other: Scores, first: int = 0) -> float:
        return float(np.mean(np.concatenate(self.tops[first:]) == np.concatenate(other.tops[first:])))


def linears(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "MatMulNBits"]


def attribute(node: onnx.NodeProto, name: str) -> int:
    return next(a.i for a in node.attribute if a.name == name)


def mixed_graph(folder: Path, keep: list[str]) -> Path:
    """A copy of the graph (same data file) with the linears named by ``keep`` at
    accuracy_level 0 and every other MatMulNBits at 4."""
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    for node in linears(model):
        level = 0 if any(k in node.name for k in keep) else 4
        for attr in node.attribute:
            if attr.name == "accuracy_level":
                attr.i = level
    return save(model, folder)


def save(model: onnx.ModelProto, folder: Path) -> Path:
    path = folder / "model_activation_bits.onnx"
    onnx.save(model, path)
    return path


class Rounding:
    """ONNX nodes that round a linear's input x [tokens, K] to int8 per block of ``bs``."""

    def __init__(self, node: onnx.NodeProto, index: int):
        self.prefix = f"int8_{index}_"
        self.x = node.input[0]
        self.k, self.bs = attribute(node, "K"), attribute(node, "block_size")
        self.nodes: list[onnx.NodeProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.nodes.append(helper.make_node("Constant", [], [self.prefix + name],
                                           value=numpy_helper.from_array(value, self.prefix + name)))
        return self.prefix + name

    def op(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [self.prefix + out], **attrs))
        return self.prefix + out

    def blocks(self, x: str) -> str:
        """x as [tokens, K / bs, bs]."""
        return self.op("Reshape", [x, self.const("blocks", np.array([-1, self.k // self.bs, self.bs], np.int64))],
                       "xb")

    def rounded(self, xb: str) -> tuple[str, str]:
        """The blocks rounded to int8 (max|x| / 127 a step), and max|x| [tokens, K / bs, 1]."""
        amax = self.op("ReduceMax", [self.op("Abs", [xb], "abs"), self.const("last", np.array([-1], np.int64))],
                       "amax", keepdims=1)
        step = self.op("Max", [self.op("Mul", [amax, self.const("inv127", np.array(1 / 127, np.float32))], "s0"),
                               self.const("tiny", np.array(1e-30, np.float32))], "step")
        return self.op("Mul", [self.op("Round", [self.op("Div", [xb, step], "scaled")], "codes"), step], "q"), amax

    def back(self, blocks: str) -> str:
        return self.op("Reshape", [blocks, self.op("Shape", [self.x], "shape")], "y")


def rounded_graph(folder: Path, fallback: float | None = None,
                  channels: dict[str, np.ndarray] | None = None) -> tuple[Path, list[str]]:
    """A copy of the graph with every linear's input rounded to int8 per block, except the
    blocks over ``fallback`` x the token's RMS, or the input channels in ``channels`` (by
    input name). Returns its path and the names of the per-linear "share kept" outputs."""
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    nodes, shares = [], []
    for i, node in enumerate(model.graph.node):
        if node.op_type == "MatMulNBits":
            r = Rounding(node, i)
            if channels is not None:
                mask = np.zeros(r.k, np.float32)
                mask[channels[r.x]] = 1
                kept = r.op("Mul", [r.x, r.const("mask", mask)], "kept")
                rest = r.op("Mul", [r.x, r.const("rest_mask", 1 - mask)], "rest")
                q, _ = r.rounded(r.blocks(rest))
                y = r.op("Add", [r.back(q), kept], "mixed")
            else:
                xb = r.blocks(r.x)
                q, amax = r.rounded(xb)
                rms = r.op("Sqrt", [r.op("ReduceMean", [r.op("Mul", [xb, xb], "sq"),
                                                        r.const("both", np.array([-2, -1], np.int64))],
                                         "ms", keepdims=1)], "rms")
                limit = r.op("Mul", [rms, r.const("c", np.array(fallback, np.float32))], "limit")
                outlier = r.op("Greater", [amax, limit], "outlier")
                y = r.back(r.op("Where", [outlier, xb, q], "yb"))
                share = r.op("ReduceMean", [r.op("Cast", [outlier], "outlier_f", to=TensorProto.FLOAT)], "share",
                             keepdims=0)
                shares.append(share)
            node.input[0] = y
            nodes.extend(r.nodes)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for name in shares:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, []))
    return save(model, folder), shares


def run(graph: Path, folder: Path, windows: list[list[int]], targets: list[list[int]], level: int = 0,
        extra: list[str] | None = None) -> tuple[Scores, list[np.ndarray]]:
    """Scores of the graph over the windows, and the extra outputs of each window."""
    from pocketlm_export import quality

    sess = reference.graph_session(graph, level, threads=2)
    tops, outs, nll, count = [], [], 0.0, 0
    for w, t in zip(windows, targets):
        got = sess.run(["logits", *(extra or [])], reference.feeds(folder, w))
        logits = np.asarray(got[0][0], np.float32)
        tops.append(logits.argmax(-1)[: len(t)])
        outs.append(np.array(got[1:], np.float32))
        nll += quality.nll(logits[: len(t)], t)
        count += len(t)
    return Scores(tops, math.exp(nll / count)), outs


def channel_power(folder: Path, window: list[int]) -> dict[str, np.ndarray]:
    """Mean square of every linear input's channels over one window."""
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    inputs = sorted({n.input[0] for n in linears(model)})
    for x in inputs:
        model.graph.output.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, None))
    path = save(model, folder)
    got = reference.graph_session(path, 0, threads=2).run(inputs, reference.feeds(folder, window))
    return {x: (v.reshape(-1, v.shape[-1]) ** 2).mean(0) for x, v in zip(inputs, got)}


def row(label: str, s: Scores, ref: Scores, extra: str = "") -> str:
    return (f"| {label} | {s.agreement(ref):.2%} | {s.ppl:.4f} | {100 * (s.ppl / ref.ppl - 1):+.2f}% |"
            f"{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an nbits export with --logits all")
    parser.add_argument("--keep-float", nargs="*", default=["none", "/down", "/down,/o", "/down,/gate,/up",
                                                            "lm_head,/down,/o"])
    parser.add_argument("--fallback", nargs="*", type=float, default=[], metavar="C")
    parser.add_argument("--outlier-channels", nargs="*", type=int, default=[], metavar="K")
    args = parser.parse_args()
    folder = args.model
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"{folder} holds no model.onnx; give an nbits export (pocketlm export --layout nbits)")
    windows, targets = reference.eval_windows(folder)
    ref, _ = run(folder / "model.onnx", folder, windows, targets)
    print(f"{folder}: {sum(len(t) for t in targets)} positions; float activations: perplexity {ref.ppl:.4f}\n")
    try:
        if args.keep_float:
            print("| linears kept in float (the rest int8) | top-1 agreement | perplexity | change |")
            print("|---|---|---|---|")
            for item in args.keep_float:
                keep = [] if item == "none" else item.split(",")
                s, _ = run(mixed_graph(folder, keep), folder, windows, targets, level=4)
                print(row(item, s, ref), flush=True)
        if args.fallback:
            print("\n| blocks over C x the token's RMS kept in float | top-1 agreement | perplexity | change "
                  "| blocks kept |")
            print("|---|---|---|---|---|")
            for c in args.fallback:
                graph, shares = rounded_graph(folder, fallback=c)
                s, outs = run(graph, folder, windows, targets, extra=shares)
                kept = np.array(outs)  # [windows, linears]
                print(row(f"C = {c:g}", s, ref, f" {kept.mean():.1%} (the most in one linear: {kept.max():.1%}) |"),
                      flush=True)
        if args.outlier_channels:
            power = channel_power(folder, windows[0])
            print("\n| input channels kept in float (most power on window 1) | top-1 agreement | perplexity "
                  "| change | top-1, windows 2 on |")
            print("|---|---|---|---|---|")
            for k in args.outlier_channels:
                graph, _ = rounded_graph(folder, channels={x: np.argsort(p)[len(p) - k:] for x, p in power.items()})
                s, _ = run(graph, folder, windows, targets)
                print(row(f"K = {k}", s, ref, f" {s.agreement(ref, first=1):.2%} |"), flush=True)
    finally:
        (folder / "model_activation_bits.onnx").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

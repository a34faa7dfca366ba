"""Which ONNX operators onnxruntime-web 1.30.0 runs on each browser backend, as data.

How this was established (2026-11, Chromium 156 headless, COOP/COEP on, 2-core x86-64):
every operator below got a one-node ONNX model (all inputs as initializers, ONNX domain
at opset 21 -- opset 23 for ``RMSNormalization``, ``RotaryEmbedding``, ``Attention`` --
``com.microsoft`` at version 1). Each model was run in the page with
``graphOptimizationLevel: 'disabled'`` (so nothing is folded or fused away) and verbose
logging, which prints ORT's node placement ("All nodes placed on [...]"). The output was
compared with native onnxruntime 1.32 on CPU. The scratch probe is described in
``docs/quantization-notes.md``.

- ``wasm``: ``ort.wasm.min.mjs`` with ``executionProviders: ['wasm']`` (the CPU EP
  compiled to WebAssembly). Every operator probed ran and matched the native result.
- ``webgpu``: ``ort.webgpu.min.mjs`` with ``['webgpu']`` (ORT's C++ WebGPU EP, the
  ``asyncify`` build), on Chromium's SwiftShader adapter (``--enable-unsafe-webgpu``).
  Listed: placed on ``WebGpuExecutionProvider`` and correct. Operators in
  :data:`WEBGPU_ON_CPU` still work in a WebGPU session, but ORT runs them on its CPU EP,
  with copies between GPU and CPU memory around them.
- ``webgpu-jsep``: the older JavaScript WebGPU kernels in ``ort.min.mjs`` /
  ``ort.all.min.mjs`` (the ``jsep`` build). It computed wrong results for several probes
  (see :data:`CONDITIONS`); it is listed for comparison, not as a target.

An operator that was not probed is absent, so a check against these sets is conservative:
to allow a new operator, probe it the same way and add it here.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

ORT_WEB_VERSION = "1.30.0"
ONNX = ""  # the default domain, as it appears in NodeProto.domain
MS = "com.microsoft"

OpKey = tuple[str, str]  # (domain, op_type)


def _onnx(*ops: str) -> frozenset[OpKey]:
    return frozenset((ONNX, op) for op in ops)


def _ms(*ops: str) -> frozenset[OpKey]:
    return frozenset((MS, op) for op in ops)


_ELEMENTWISE = _onnx(
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "Where", "And", "Not", "Neg", "Exp", "Sigmoid", "Tanh",
    "Erf", "Cos", "Sin", "Abs", "Relu", "Floor", "Ceil", "Identity", "Softplus", "Sqrt",
    "Reciprocal", "Log", "Cast", "Clip",
)  # fmt: skip
_SHAPES = _onnx(
    "Shape", "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements",
    "Unsqueeze", "Squeeze", "Expand", "Tile", "Split", "Trilu", "ScatterND", "CumSum", "Pad",
)  # fmt: skip
_REDUCE_AND_LINEAR = _onnx(
    "ReduceMean", "ReduceSum", "ReduceMax", "ArgMax", "TopK", "Softmax", "LayerNormalization",
    "MatMul", "Gemm", "Einsum", "DequantizeLinear", "RMSNormalization", "RotaryEmbedding",
)  # fmt: skip
_CONTRIB_ON_GPU = _ms(
    "MatMulNBits",
    "GatherBlockQuantized",
    "GroupQueryAttention",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SkipSimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "QuickGelu",
    "FastGelu",
) | _onnx("SimplifiedLayerNormalization")  # ORT registers it in the ONNX domain, version 1

#: Run in a WebGPU session but placed on ORT's CPU EP.
WEBGPU_ON_CPU: frozenset[OpKey] = _onnx(
    "Or", "Mod", "Range", "ConstantOfShape", "QuantizeLinear", "DynamicQuantizeLinear",
    "MatMulInteger", "Attention",
) | _ms("FusedMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")  # fmt: skip

_WEBGPU = _ELEMENTWISE | _SHAPES | _REDUCE_AND_LINEAR | _CONTRIB_ON_GPU

SUPPORTED: dict[str, frozenset[OpKey]] = {
    # onnxruntime-web 1.30's WASM build registers no GatherBlockQuantized kernel (any layout).
    "wasm": (_WEBGPU | WEBGPU_ON_CPU) - _ms("GatherBlockQuantized"),
    "webgpu": _WEBGPU,
    "webgpu-jsep": (
        (_ELEMENTWISE - _onnx("Max", "Min", "And", "Identity", "Softplus", "Cast"))
        | (_SHAPES - _onnx("Trilu"))
        | (_REDUCE_AND_LINEAR - _onnx("TopK", "DequantizeLinear", "RMSNormalization", "RotaryEmbedding"))
        | (_CONTRIB_ON_GPU - _ms("GatherBlockQuantized"))
    ),
}  # fmt: skip

#: Limits met inside a supported operator: a graph passing the set check can still hit these.
CONDITIONS: dict[str, dict[OpKey, str]] = {
    "wasm": {
        (MS, "MatMulNBits"): (
            "correct for bits 4 and 8, any accuracy_level and zero-point form, but the WASM "
            "build has no quantized MatMulNBits kernel: every call dequantizes the whole "
            "weight to fp32 and runs an fp32 GEMM (about 20x an fp32 MatMul at M=1)"
        ),
        (ONNX, "DequantizeLinear"): (
            "DequantizeLinear -> MatMul is rewritten into MatMulNBits at the default level "
            "'all'; 'basic' keeps it (int4 inputs dequantize slowly, (u)int8 quickly) and "
            "session.disable_quant_qdq=1 folds a constant one to fp32 at load"
        ),
    },
    "webgpu": {
        (MS, "MatMulNBits"): "float zero_points run on the CPU EP; uint8 or absent ones on WebGPU",
        (ONNX, "Cast"): (
            "to float16 needs the adapter's shader-f16 (SwiftShader has none); from int4/uint4 "
            "no kernel at all in this build, session creation fails"
        ),
        (ONNX, "Gather"): "int8 data runs on the CPU EP",
        (MS, "GatherBlockQuantized"): "WebGPU only: this build's CPU EP has no kernel for it",
        (ONNX, "DequantizeLinear"): "not fused with MatMul on WebGPU: it runs at every step",
    },
    "webgpu-jsep": {
        (MS, "MatMulNBits"): "bits=8 fails at session creation; float zero_points fail at run",
        (ONNX, "DequantizeLinear"): "per-tensor int8 gave wrong values; int4 blocks ran on CPU",
        (MS, "GatherBlockQuantized"): "int4 data gave wrong values; uint8 data ran on CPU",
        (ONNX, "Cast"): "float -> float16 gave wrong values on SwiftShader",
    },
}


def graph_ops(model: onnx.ModelProto) -> set[OpKey]:
    """Every (domain, op_type) in the main graph and its subgraphs (``ai.onnx`` spelled ``""``)."""
    found: set[OpKey] = set()

    def visit(nodes: Iterable[onnx.NodeProto]) -> None:
        for node in nodes:
            found.add(("" if node.domain == "ai.onnx" else node.domain, node.op_type))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g.node)
                for sub in attr.graphs:
                    visit(sub.node)

    visit(model.graph.node)
    return found


def unsupported_ops(model: onnx.ModelProto, backend: str) -> list[OpKey]:
    """The model's operators that ``backend`` ("wasm", "webgpu", ...) was not shown to run."""
    if backend not in SUPPORTED:
        raise ValueError(f"unknown backend {backend!r}, expected one of {', '.join(SUPPORTED)}")
    return sorted(graph_ops(model) - SUPPORTED[backend])

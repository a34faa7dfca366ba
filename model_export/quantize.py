"""Quantization modes: how each weight is stored in the graph.

=========  ==============================================================================
mode       storage
=========  ==============================================================================
``exact``  GGUF Q4_0 / Q4_1 / Q5_0 / Q8_0 and K-quant (Q2_K ... Q6_K) blocks carried
           over with the same values (MatMulNBits, :mod:`kquant_blocks` for the K-quants;
           the embedding's rows gathered from the tied LM head's blocks).  Other GGUF types
           are re-quantized to the nearest supported block format and the report says
           which.
``mixed``  4-bit blocks with a float16 minimum each (``d * q + m``, GGUF Q4_1's form;
           block_minima.py) for the matrices, 8-bit blocks for the token embedding / LM
           head (the most sensitive tensors: every token's input and every logit go
           through them) and for each layer's attention values and MLP down projection;
           GGUF blocks of those widths, and 4-bit GGUF blocks of those 8-bit matrices, are
           carried over unchanged (``--symmetric``: symmetric 4-bit blocks instead)
``q4``     4-bit blocks (default 32 wide), symmetric or with zero points
``q8``     8-bit symmetric blocks
``fp16``   half-precision weights, widened to float32 when the session loads
``fp32``   float32 weights
=========  ==============================================================================

Norm weights, biases and RoPE tables stay float32 in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from gguf import GGMLQuantizationType

from .block_minima import quantize_q4_minima
from .errors import ExportError
from .graph import FloatCodec
from .kquant_blocks import k_quant_split
from .onnx_builder import FLOAT, MS_DOMAIN, GraphBuilder
from .quant_blocks import (
    GGUF_BLOCK_SIZE,
    DQWeight,
    NBitsWeight,
    block_zero_points,
    gguf_to_nbits,
    join_dq,
    nbits_to_dq,
    q4_1_split,
    quantize_q4,
    quantize_q8,
)
from .sources import SourceModel
from .sources.weights import Weight

MODES = ("exact", "mixed", "q4", "q8", "fp16", "fp32")
BLOCK_MODES = ("mixed", "q4", "q8")  # modes that quantize to --block-size blocks
EIGHT_BIT_IN_MIXED = ("embed", "lm_head")
K_QUANT_TYPES = {GGMLQuantizationType.Q2_K, GGMLQuantizationType.Q3_K, GGMLQuantizationType.Q4_K,
                 GGMLQuantizationType.Q5_K, GGMLQuantizationType.Q6_K}
# Matrices mixed keeps in 8 bits in every layer (llama.cpp's Q4_K_M gives these more bits
# too): attention values and the MLP's down projection. Measured on Qwen2.5-Coder-0.5B as
# a bf16 source (benchmarks/float_sources.py): 4-bit: +2.61% perplexity; these in 8 bits:
# +1.48%, within the gate's 2%, and 15% smaller than q8.
EIGHT_BIT_LAYER_MATRICES_IN_MIXED = (".v", ".down")
EXACT_TYPES = {GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q5_0,
               GGMLQuantizationType.Q8_0, *K_QUANT_TYPES}
Q5_0_BLOCK_BYTES = 22  # ggml's block_q5_0: fp16 d, 4 bytes of high bits, 16 bytes of low nibbles
BLOCK_BITS = {GGMLQuantizationType.Q4_0: 4, GGMLQuantizationType.Q4_1: 4, GGMLQuantizationType.Q8_0: 8}
# Where a GGUF block type has no exact image: the nearest supported format.
NEAREST = {
    GGMLQuantizationType.Q5_1: "q8",
}


@dataclass
class QuantOptions:
    mode: str = "fp32"
    block_size: int = 32
    symmetric: bool = False
    # MatMulNBits accuracy_level: 0 = float activations, 4 = int8 activations (CPU).
    accuracy_level: int = 0
    # "dq": DequantizeLinear -> MatMul (the page's layout); "nbits": MatMulNBits nodes.
    layout: str = "dq"
    notes: list[str] = field(default_factory=list)


def validate(options: QuantOptions, src: SourceModel) -> None:
    if options.mode not in MODES:
        raise ExportError(f"unknown quantization mode {options.mode!r}; choose one of {', '.join(MODES)} (or auto)")
    if options.accuracy_level not in (0, 1, 2, 3, 4):
        raise ExportError(f"--accuracy-level must be 0-4, got {options.accuracy_level}")
    if options.mode == "exact" and not has_quantized_blocks(src):
        raise ExportError(
            f"--quant exact needs a GGUF whose matrices are quantized blocks "
            f"({', '.join(t.name for t in sorted(EXACT_TYPES))} carry over exactly); this source "
            f"({src.source.get('kind')}) has float weights: use q4, q8, fp16 or fp32"
        )
    if options.mode in BLOCK_MODES:
        bs = options.block_size
        if bs < 16 or bs & (bs - 1):
            raise ExportError(f"--block-size must be a power of two >= 16, got {bs}")
        for dim, what in ((src.config.hidden_size, "hidden size"), (src.config.intermediate_size, "intermediate size")):
            if dim % bs:
                raise ExportError(
                    f"--block-size {bs} does not divide the model's {what} {dim}; "
                    f"choose a block size that divides it (e.g. 32)"
                )


def has_quantized_blocks(src: SourceModel) -> bool:
    return any(w.is_quantized for name, w in src.weights.items() if name.endswith((".q", ".down")))


def has_exact_blocks(src: SourceModel) -> bool:
    return any(w.qtype in EXACT_TYPES for name, w in src.weights.items() if name.endswith((".q", ".down")))


def q5_0_as_q8(weight: Weight) -> NBitsWeight:
    """GGUF Q5_0 blocks (``w = d * (q - 16)``, ``q`` in 0..31, 32 values a block, fp16 ``d``;
    ggml-quants.c) as 8-bit blocks holding exactly the same values: codes ``q - 16`` around
    the default zero point 128, scale ``d``. A few rows at a time."""
    k = weight.shape[1]
    blocks = k // GGUF_BLOCK_SIZE
    parts = []
    for rows in weight.row_chunks():
        part = weight.take_rows(rows)
        raw = np.asarray(part.data, np.uint8).reshape(part.shape[0], blocks, Q5_0_BLOCK_BYTES)
        d = raw[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
        values = part.float32().reshape(part.shape[0], blocks, GGUF_BLOCK_SIZE)
        codes = np.rint(values / np.where(d == 0, 1, d)[..., None]).astype(np.int16)
        parts.append(NBitsWeight(part.shape[0], k, 8, GGUF_BLOCK_SIZE, (codes + 128).astype(np.uint8), d, None))
    return stack_rows(parts)


def k_quant_rows(weight: Weight) -> tuple[NBitsWeight, np.ndarray | None]:
    """A K-quant matrix as MatMulNBits blocks plus minima (:func:`kquant_blocks.k_quant_split`),
    a few rows at a time."""
    k = weight.shape[1]
    parts, minima = [], []
    for rows in weight.row_chunks():
        part = weight.take_rows(rows)
        q, mins = k_quant_split(np.asarray(part.data, np.uint8), weight.qtype.name, part.shape[0], k)
        parts.append(q)
        if mins is not None:
            minima.append(mins)
    return stack_rows(parts), (np.concatenate(minima) if minima else None)


def stack_rows(parts: list[NBitsWeight]) -> NBitsWeight:
    """Row blocks of one matrix, quantized apart, as one :class:`NBitsWeight`."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    zero = None if first.zero_points is None else np.concatenate([p.zero_points for p in parts if p.zero_points is not None])
    return NBitsWeight(sum(p.n for p in parts), first.k, first.bits, first.block_size,
                       np.concatenate([p.b for p in parts]), np.concatenate([p.scales for p in parts]), zero)


class NBitsCodec(FloatCodec):
    """Matrices as MatMulNBits; the embedding gathers and dequantizes rows of the same blocks."""

    def __init__(self, source: SourceModel, options: QuantOptions) -> None:
        super().__init__(source)
        self.options = options
        self.embed_weight: NBitsWeight | None = None
        self.embed_names: tuple[str, str] = ("", "")  # embedding blocks, float32 scales
        self.embed_mins: str | None = None  # float32 block minima [K/bs, vocab], if any
        self.requantized: dict[str, int] = {}

    # -- choosing the stored form ---------------------------------------------------------
    def quantized(self, name: str) -> tuple[NBitsWeight, np.ndarray | None]:
        """The weight as MatMulNBits initializers, plus Q4_1's per-block offsets if any.

        GGUF blocks that already have the mode's bit width and block size are carried over
        unchanged (re-rounding them would add a second quantization error); everything
        else is quantized from its float values.
        """
        weight = self.src.weights[name]
        mode, bits = self.options.mode, self.target_bits(weight.qtype, name)
        carried = BLOCK_BITS.get(weight.qtype)
        # A GGUF's 4-bit blocks of a matrix mixed keeps in 8 bits stay 4-bit: widening them
        # would add bytes and a rounding, never precision.
        kept = carried == bits or (mode == "mixed" and name.endswith(EIGHT_BIT_LAYER_MATRICES_IN_MIXED))
        if carried is not None and (mode == "exact" or (kept and self.options.block_size == GGUF_BLOCK_SIZE)):
            n, k = weight.shape
            if weight.qtype == GGMLQuantizationType.Q4_1:
                return q4_1_split(weight.data, n, k)
            return gguf_to_nbits(weight.data, weight.qtype.name, n, k), None
        if weight.qtype == GGMLQuantizationType.Q5_0 and (mode == "exact" or (bits == 8 and self.options.block_size == GGUF_BLOCK_SIZE)):
            return q5_0_as_q8(weight), None
        if weight.qtype in K_QUANT_TYPES and mode == "exact":
            return k_quant_rows(weight)
        if mode == "exact":
            key = f"{weight.qtype.name} -> q{bits}"
            self.requantized[key] = self.requantized.get(key, 0) + 1
        block = self.options.block_size if mode in BLOCK_MODES else GGUF_BLOCK_SIZE
        symmetric = self.options.symmetric if mode in ("q4", "mixed") else False
        if mode == "mixed" and bits == 4 and not symmetric:
            # Float minima instead of integer zero points (benchmarks/float_sources.py).
            pairs = [quantize_q4_minima(weight.take_rows(rows).float32(), block) for rows in weight.row_chunks()]
            return stack_rows([q for q, _ in pairs]), np.concatenate([m for _, m in pairs])
        # A part of the rows at a time: the rounding works in float64 on whole blocks.
        parts = [quantize_q4(weight.take_rows(rows).float32(), block, symmetric) if bits == 4
                 else quantize_q8(weight.take_rows(rows).float32(), block)
                 for rows in weight.row_chunks()]
        return stack_rows(parts), None

    def note_requantized(self, name: str) -> None:
        """Count a weight of ``exact`` mode that is stored re-rounded (for the report)."""
        if self.options.mode == "exact":
            key = f"{self.src.weights[name].qtype.name} -> q8"
            self.requantized[key] = self.requantized.get(key, 0) + 1

    def target_bits(self, qtype: GGMLQuantizationType, name: str = "") -> int:
        if self.options.mode == "mixed":
            return 8 if name in EIGHT_BIT_IN_MIXED or name.endswith(EIGHT_BIT_LAYER_MATRICES_IN_MIXED) else 4
        if self.options.mode == "q4":
            return 4
        if self.options.mode == "q8":
            return 8
        return 4 if NEAREST.get(qtype) == "q4" else 8

    def scale_table(self, b: GraphBuilder, name: str, values: np.ndarray) -> str:
        """Block scales or minima as a float32 tensor: float16 on disk when every value is
        exactly a float16 (GGUF's Q4_0 ... Q8_0 scales, our quantizers'), widened to float32
        once when the session loads; else float32 (K-quant scales ``d*sc``)."""
        if not fits_float16(values):
            return b.initializer(name, np.ascontiguousarray(values, np.float32))
        stored = b.initializer(name, values.astype(np.float16))
        return b.op("Cast", [stored], to=FLOAT, name=name + "/to_float")

    def nbits_node(self, b: GraphBuilder, x: str, path: str, q: NBitsWeight) -> str:
        inputs = [x, b.initializer(path + "/qweight", q.b), self.scale_table(b, path + "/scales", q.scales.reshape(-1))]
        if q.zero_points is not None:
            inputs.append(b.initializer(path + "/zero_points", q.zero_points.reshape(q.n, -1)))
        return b.op("MatMulNBits", inputs, domain=MS_DOMAIN, name=path,
                    accuracy_level=self.options.accuracy_level, **q.attributes())

    # -- the three questions ----------------------------------------------------------------
    def linear(self, b: GraphBuilder, x: str, name: str) -> str:
        path = name.replace(".", "/")
        q, offsets = self.quantized(name)
        y = self.nbits_node(b, x, path, q)
        if offsets is None:
            return y
        return self.add_block_minima(b, x, y, path, np.ascontiguousarray(offsets.T), q.block_size)

    def joined_linear(self, b: GraphBuilder, x: str, names: list[str], path: str) -> str | None:
        return None  # MatMulNBits keeps one node per weight

    def add_block_minima(self, b: GraphBuilder, x: str, y: str, path: str, mins: np.ndarray | str,
                         block_size: int, rank: int = 3) -> str:
        """Q4_1 is ``d*q + m``: add the ``m`` part, (sum of x over each block) @ mins [K/bs, N].

        ``x`` is ``[B, S, K]`` (``rank`` 3) or ``[rows, K]`` (2, the tied head's input);
        ``mins`` a float table (numpy, stored here as ``path/block_mins``) or the name of one
        already in the graph (the embedding's, for a tied head)."""
        shape = [0] * (rank - 1) + [-1, block_size]
        blocks = b.op("Reshape", [x, b.const(shape, np.int64)])
        sums = b.op("ReduceSum", [blocks, b.const([-1], np.int64)], keepdims=0, name=path + "/block_sums")
        table = mins if isinstance(mins, str) else self.scale_table(b, path + "/block_mins", mins)
        return b.op("Add", [y, b.op("MatMul", [sums, table], name=path + "/offsets")])

    def embed(self, b: GraphBuilder, ids: str) -> str:
        """The token embedding as the stored blocks, GGUF's own where the source has them:
        ``(code - zero_point) * scale (+ minimum)`` for the rows ``ids``. Block minima (GGUF
        Q4_1, Q2_K, Q4_K, Q5_K) are stored as ``embed/block_mins`` ``[K/bs, vocab]``, the
        layout a tied head's offsets read as a MatMul operand."""
        q, minima = self.quantized("embed")
        if q.zero_points is not None and q.zero_points.dtype != np.uint8:
            self.note_requantized("embed")  # float zero points have no stored form
            q, minima = quantize_q8(self.src.float32("embed")), None
        data = b.initializer("embed/qweight", q.b)
        scales = self.scale_table(b, "embed/scales", q.scales[:, :, None])
        zero_points: str | None = None
        if q.zero_points is not None and np.any(q.zero_points):
            zero_points = b.initializer("embed/zero_points", block_zero_points(q)[:, :, None])
        mins = None
        if minima is not None:
            if q.bits == 4 and q.zero_points is None:  # readers take 4-bit blocks with minima as zero point 0
                raise RuntimeError("4-bit embedding blocks with minima need zero points 0")
            mins = self.scale_table(b, "embed/block_mins", np.ascontiguousarray(minima.T))
        self.embed_weight, self.embed_names, self.embed_mins = q, (data, scales), mins
        return self.gather_rows(b, ids, q, data, scales, zero_points, mins)

    def gather_rows(self, b: GraphBuilder, ids: str, q: NBitsWeight, data: str, scales: str,
                    zero_points: str | None, mins: str | None = None) -> str:
        """Rows ``ids`` of the MatMulNBits blocks, dequantized with standard ONNX operators:
        ``(code - zero_point) * scale + minimum`` -> float32 ``[B, S, hidden]``.

        ``data`` is ``q.b`` (uint8 ``[vocab, k_blocks, blob]``, shared with a tied head),
        ``scales`` float32 ``[vocab, k_blocks, 1]``, ``zero_points`` uint8 ``[vocab, k_blocks, 1]``
        one code a byte, or None (``2**(bits-1)``, or 0 when ``q``'s stored zero points are
        all 0); ``mins`` float32 ``[k_blocks, vocab]`` or None. Only Gather, Cast, Floor, Mul,
        Sub, Add, Transpose, Unsqueeze, Concat and Reshape: onnxruntime-web's WASM build has
        no GatherBlockQuantized kernel, and its WebGPU kernel accepts 4-bit zero points only
        in a layout the CPU kernel reads differently; these run alike in native onnxruntime
        and in both browser backends, on the gathered rows only.
        """
        blocks = b.op("Gather", [data, ids], axis=0, name="embed/blocks")  # [B, S, kb, blob]
        codes = b.op("Cast", [blocks], to=FLOAT, name="embed/codes")
        last = b.const([-1], np.int64)
        if q.bits == 4:  # byte = low | high << 4, the first code in the low nibble
            high = b.op("Floor", [b.op("Mul", [codes, b.const(np.float32(1 / 16))])], name="embed/high")
            low = b.op("Sub", [codes, b.op("Mul", [high, b.const(np.float32(16))])], name="embed/low")
            pairs = b.op("Concat", [b.op("Unsqueeze", [low, last]), b.op("Unsqueeze", [high, last])],
                         axis=-1, name="embed/pairs")  # [B, S, kb, blob, 2]
            codes = b.op("Reshape", [pairs, b.const([0, 0, 0, -1], np.int64)])  # [B, S, kb, bs]
        if zero_points is not None:
            zp_rows = b.op("Gather", [zero_points, ids], axis=0, name="embed/zero_point_rows")
            codes = b.op("Sub", [codes, b.op("Cast", [zp_rows], to=FLOAT)])
        elif q.zero_points is None:
            codes = b.op("Sub", [codes, b.const(np.float32(2 ** (q.bits - 1)))])
        scale_rows = b.op("Gather", [scales, ids], axis=0, name="embed/scale_rows")
        rows = b.op("Mul", [codes, scale_rows], name="embed/dequantize")
        if mins is not None:
            columns = b.op("Gather", [mins, ids], axis=1, name="embed/min_columns")  # [kb, B, S]
            min_rows = b.op("Transpose", [columns], perm=[1, 2, 0], name="embed/min_rows")
            rows = b.op("Add", [rows, b.op("Unsqueeze", [min_rows, last])], name="embed/add_minima")
        return b.op("Reshape", [rows, b.const([0, 0, self.src.config.hidden_size], np.int64)], name="embed")

    def tied_head(self, b: GraphBuilder, flat: str) -> str:
        q = self.embed_weight
        if q is None:
            raise RuntimeError("embed() must run before tied_head()")
        data, scales = self.embed_names
        # MatMulNBits wants scales as [N * k_blocks]: a Reshape of the shared table.
        flat_scales = b.op("Reshape", [scales, b.const([-1], np.int64)], name="lm_head/scales")
        inputs = [flat, data, flat_scales]
        if q.zero_points is not None:
            inputs.append(b.initializer("lm_head/zero_points", q.zero_points.reshape(q.n, -1)))
        y = b.op("MatMulNBits", inputs, domain=MS_DOMAIN, name="lm_head",
                 accuracy_level=self.options.accuracy_level, **q.attributes())
        if self.embed_mins is None:
            return y
        return self.add_block_minima(b, flat, y, "lm_head", self.embed_mins, q.block_size, rank=2)


class DequantizeCodec(NBitsCodec):
    """The same blocks as standard ``DequantizeLinear -> MatMul`` (opset 21, blocked).

    This is the default layout: every runtime widens the weights to float32 once at load
    (:func:`session_config`), since onnxruntime-web's WASM build has no quantized MatMul
    kernel and MatMulNBits there widens every weight on every step. See
    docs/quantization-notes.md.
    """

    def dq(self, b: GraphBuilder, path: str, w: DQWeight) -> str:
        inputs = [b.add_tensor(w.codes_tensor(path + "/codes")), self.scale_table(b, path + "/scales", w.scales)]
        zp = w.zero_points_tensor(path + "/zero_points")
        if zp is not None:
            inputs.append(b.add_tensor(zp))
        attrs: dict[str, Any] = dict(w.attributes())
        return b.op("DequantizeLinear", inputs, name=path + "/dequantize", **attrs)

    def as_dq(self, name: str) -> DQWeight:
        q, mins = self.quantized(name)
        return nbits_to_dq(q, mins)

    def matmul(self, b: GraphBuilder, x: str, path: str, w: DQWeight) -> str:
        y = b.op("MatMul", [x, self.dq(b, path, w)], name=path)
        if w.mins is None:
            return y
        return self.add_block_minima(b, x, y, path, w.mins, w.block_size)

    def linear(self, b: GraphBuilder, x: str, name: str) -> str:
        return self.matmul(b, x, name.replace(".", "/"), self.as_dq(name))

    def joined_linear(self, b: GraphBuilder, x: str, names: list[str], path: str) -> str | None:
        w = join_dq([self.as_dq(name) for name in names])
        return None if w is None else self.matmul(b, x, path, w)

    def embed(self, b: GraphBuilder, ids: str) -> str:
        w = self.as_dq("embed")
        if w.mins is not None:  # a Q4_1 / Q4_K embedding: store it as 8-bit blocks instead
            self.note_requantized("embed")
            w = nbits_to_dq(quantize_q8(self.src.float32("embed")))
        if not self.src.config.tie_embeddings and w.onnx_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            return self.gathered_rows(b, ids, w)
        # One [hidden, vocab] table serves the lookup and the tied head. Runtimes widen it to
        # float32 once at load (session.disable_quant_qdq), so both read the same copy.
        self.embed_table = self.dq(b, "embed", w)
        cols = b.op("Gather", [self.embed_table, ids], axis=1, name="embed/gather")  # [H, B, S]
        return b.op("Transpose", [cols], perm=[1, 2, 0], name="embed")

    def gathered_rows(self, b: GraphBuilder, ids: str, w: DQWeight) -> str:
        """An embedding no head shares, kept quantized in memory: gather the rows' 8-bit
        codes and block scales ([vocab, hidden] and [vocab, hidden / bs] tables), then
        DequantizeLinear only the gathered rows (blocked along the last axis). A 150k-row
        vocabulary then costs one byte a value at run time, not four."""
        codes = b.initializer("embed/codes", np.ascontiguousarray(w.codes.T))
        table = np.ascontiguousarray(w.scales.T)
        half = fits_float16(table)
        scales = b.initializer("embed/scales", table.astype(np.float16 if half else np.float32))
        gathered = b.op("Gather", [scales, ids], axis=0, name="embed/gather_scales")
        inputs = [b.op("Gather", [codes, ids], axis=0, name="embed/gather_codes"),
                  b.op("Cast", [gathered], to=FLOAT, name="embed/scales_to_float") if half else gathered]
        if w.zero_points is not None:
            zero = b.initializer("embed/zero_points", np.ascontiguousarray(w.zero_points.T))
            inputs.append(b.op("Gather", [zero, ids], axis=0, name="embed/gather_zero_points"))
        return b.op("DequantizeLinear", inputs, axis=2, block_size=w.block_size, name="embed")

    def tied_head(self, b: GraphBuilder, flat: str) -> str:
        return b.op("MatMul", [flat, self.embed_table], name="lm_head")


def fits_float16(values: np.ndarray) -> bool:
    """Whether every value survives a round trip through float16 unchanged."""
    with np.errstate(over="ignore"):
        return bool(np.array_equal(values.astype(np.float16).astype(np.float32), values.astype(np.float32)))


def session_config(options: QuantOptions) -> dict[str, str]:
    """onnxruntime session config entries a runtime must set for this graph.

    DequantizeLinear layout: widen the weights to float32 once at load (the form every
    backend runs fast and exactly). MatMulNBits layout: keep the chosen accuracy level
    (onnxruntime otherwise picks int8 activations for fused nodes).
    """
    if options.mode in ("exact", *BLOCK_MODES) and options.layout == "dq":
        return {"session.disable_quant_qdq": "1"}
    return {"session.qdq_matmulnbits_accuracy_level": str(options.accuracy_level)}


def codec_for(src: SourceModel, options: QuantOptions) -> FloatCodec:
    validate(options, src)
    if options.mode == "fp32":
        return FloatCodec(src)
    if options.mode == "fp16":
        return FloatCodec(src, np.float16)
    if options.layout == "nbits":
        return NBitsCodec(src, options)
    return DequantizeCodec(src, options)

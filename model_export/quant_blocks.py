"""Block-quantized weights -> initializers of ONNX Runtime's quantized operators, exactly.

Two layouts of the same blocks (32 values along ``K`` of a weight ``W[N, K]``; ``Y = A @ W.T``):

- :class:`NBitsWeight` feeds ``com.microsoft.MatMulNBits``: ``B`` uint8
  ``[N, K/bs, bs*bits/8]`` (codes packed low nibble first), ``scales`` float32
  ``[N, K/bs]``, ``zero_points`` packed uint8 ``[N, ceil(K/bs*bits/8)]``, float32
  ``[N, K/bs]`` or absent (meaning ``2**(bits-1)``); ``W = (code - zero_point) * scale``.
  Its ``B`` also serves the embedding lookup (the exporter gathers rows of it with standard
  operators; :func:`embedding_tables` gives the ``com.microsoft.GatherBlockQuantized`` form),
  so a tied embedding and LM head share one initializer.
- :class:`DQWeight` feeds standard ``DequantizeLinear`` (opset 21, blocked, ``axis=0``) ->
  ``MatMul``: codes ``[K, N]`` as INT4 / UINT4 / INT8 / UINT8, ``scales`` ``[K/bs, N]``.
  Native onnxruntime fuses it into MatMulNBits; onnxruntime-web can fold it to fp32 at load
  or dequantize it at run time.  Which one a backend should use: ``docs/quantization-notes.md``.

GGUF blocks map onto both without rounding (``gguf.quants.dequantize`` equals ORT's
dequantization up to float32 rounding):

- Q4_0 ``d*(q - 8)``: bits=4, scale ``d``, default zero point / INT4 codes ``q - 8``.
- Q8_0 ``d*q``: bits=8, codes ``q + 128`` with the default zero point / INT8 codes ``q``.
- Q4_1 ``d*q + m``: no integer zero point can hold ``m``.  Either float zero points ``-m/d``
  (:func:`q4_1_to_nbits`; ORT's CPU kernel then dequantizes the whole weight on every call),
  or codes ``q`` with scale ``d`` plus a separate term ``S @ m`` where ``S`` sums ``A`` over
  each block (:func:`q4_1_split`, :func:`gguf_to_dq`), which keeps the fast kernels.

GGUF packs a 4-bit block as ``byte j = q[j] | q[j+16] << 4``; MatMulNBits and ONNX INT4
tensors pack ``byte j = q[2j] | q[2j+1] << 4``: the nibbles are reordered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from .errors import ExportError

GGUF_BLOCK_SIZE = 32
# Bytes a GGUF block takes: fp16 scale (+ fp16 min for Q4_1) + packed codes.
_GGUF_BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}

FloatArray = NDArray[np.float32]
ByteArray = NDArray[np.uint8]


@dataclass(frozen=True)
class NBitsWeight:
    """One weight ``W[N, K]`` as the initializers of a ``com.microsoft.MatMulNBits`` node."""

    n: int
    k: int
    bits: int
    block_size: int
    b: ByteArray  # uint8 [N, k_blocks, block_size * bits // 8]
    scales: FloatArray  # float32 [N, k_blocks]
    zero_points: ByteArray | FloatArray | None  # see the module docstring

    @property
    def k_blocks(self) -> int:
        """Blocks along ``K`` (the last block is zero-padded when ``K % block_size``)."""
        return -(-self.k // self.block_size)

    def attributes(self) -> dict[str, int]:
        """The node attributes ``K``, ``N``, ``bits``, ``block_size``."""
        return {"K": self.k, "N": self.n, "bits": self.bits, "block_size": self.block_size}

    @property
    def nbytes(self) -> int:
        """Bytes of all initializers together."""
        zp = 0 if self.zero_points is None else self.zero_points.nbytes
        return self.b.nbytes + self.scales.nbytes + zp


@dataclass(frozen=True)
class EmbeddingTables:
    """The inputs of a ``com.microsoft.GatherBlockQuantized`` node (``gather_axis=0``).

    ``data`` is rank 3 ``[vocab, k_blocks, blob]`` -- the same array as ``NBitsWeight.b``, so
    a tied head shares it -- and ``scales`` is ``[vocab, k_blocks, 1]`` (the head's scales,
    reshaped); use ``quantize_axis=2`` and Reshape the gathered ``[..., k_blocks, bs]`` to
    ``[..., hidden]``.

    4-bit blocks with zero points are gathered as two half blocks (``block_size`` is half the
    weight's): the node's scales are ``scales`` repeated ``scale_repeats`` (2) times along the
    last axis (:meth:`gather_scales`, or a ``Concat`` in the graph), and ``zero_points`` is
    uint8 ``[vocab, k_blocks, 1]`` holding the block's zero point in both nibbles.  This is the
    one zero-point layout that both onnxruntime's CPU kernel (4-bit zero points packed two a
    byte along the quantize axis) and its WebGPU kernel (the zero-point tensor, read as
    4-bit, must have the scales' shape) accept for data shared with MatMulNBits; a
    ``[vocab, k_blocks, 1]`` scale table has no 4-bit zero-point tensor of its shape.  Without
    zero points (or at 8 bits) the blocks are gathered whole and ``scale_repeats`` is 1.
    Source: ``contrib_ops/{cpu,webgpu}/quantization/gather_block_quantized.cc``.
    onnxruntime-web 1.30's WASM build has no GatherBlockQuantized kernel at all, so the
    exporter looks rows up with standard operators instead (``quantize.NBitsCodec``).
    """

    bits: int
    block_size: int
    data: ByteArray
    scales: FloatArray
    zero_points: ByteArray | None  # uint8 [vocab, k_blocks, 1] or None (see above)
    scale_repeats: int = 1

    def attributes(self) -> dict[str, int]:
        """The node attributes for this layout."""
        return {
            "bits": self.bits,
            "block_size": self.block_size,
            "gather_axis": 0,
            "quantize_axis": 2,
        }

    def gather_scales(self) -> FloatArray:
        """The node's ``scales`` input: float32 ``[vocab, k_blocks, scale_repeats]``."""
        return np.ascontiguousarray(np.repeat(self.scales, self.scale_repeats, axis=2))


# --------------------------------------------------------------------------- GGUF blocks


def _gguf_blocks(raw: NDArray[np.uint8], kind: str, n: int, k: int) -> NDArray[np.uint8]:
    """Check and reshape GGUF tensor bytes to ``[N, K/32, block_bytes]``."""
    if k % GGUF_BLOCK_SIZE:
        raise ExportError(f"{kind} weight has K={k}, expected a multiple of {GGUF_BLOCK_SIZE}")
    block_bytes = _GGUF_BLOCK_BYTES[kind]
    expected = n * (k // GGUF_BLOCK_SIZE) * block_bytes
    data = np.ascontiguousarray(raw).view(np.uint8)
    if data.size != expected:
        raise ExportError(
            f"{kind} weight [{n}, {k}] needs {expected} bytes, got {data.size} (shape {raw.shape})"
        )
    return data.reshape(n, k // GGUF_BLOCK_SIZE, block_bytes)


def _fp16(blocks: NDArray[np.uint8], start: int) -> FloatArray:
    """The float16 stored at byte ``start`` of every block, as float32 ``[N, k_blocks]``."""
    pair = np.ascontiguousarray(blocks[..., start : start + 2])
    return pair.view(np.float16)[..., 0].astype(np.float32)


def _gguf_nibbles_to_nbits(qs: NDArray[np.uint8]) -> ByteArray:
    """GGUF 4-bit order (``q[j] | q[j+16] << 4``) -> MatMulNBits order (``q[2j] | q[2j+1] << 4``)."""
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # q[0..31] in order
    return _pack_nibbles(codes)


def q4_0_to_nbits(raw: NDArray[np.uint8], n: int, k: int) -> NBitsWeight:
    """GGUF Q4_0 ``W[N, K]`` -> MatMulNBits bits=4 with the default zero point 8."""
    blocks = _gguf_blocks(raw, "Q4_0", n, k)
    return NBitsWeight(
        n, k, 4, GGUF_BLOCK_SIZE, _gguf_nibbles_to_nbits(blocks[..., 2:]), _fp16(blocks, 0), None
    )


def q8_0_to_nbits(raw: NDArray[np.uint8], n: int, k: int) -> NBitsWeight:
    """GGUF Q8_0 ``W[N, K]`` -> MatMulNBits bits=8, codes ``q + 128`` with the default zero point 128."""
    blocks = _gguf_blocks(raw, "Q8_0", n, k)
    codes = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return NBitsWeight(n, k, 8, GGUF_BLOCK_SIZE, codes, _fp16(blocks, 0), None)


def q4_1_to_nbits(raw: NDArray[np.uint8], n: int, k: int) -> NBitsWeight:
    """GGUF Q4_1 ``W[N, K]`` (``d*q + m``) -> MatMulNBits bits=4 with float zero points ``-m/d``.

    A block with ``d == 0`` holds the constant ``m``: it becomes codes 1, scale ``m``, zero
    point 0, which dequantizes to ``m`` exactly.  Note that ORT's CPU kernel handles float
    zero points by dequantizing the whole weight to fp32 on every call (no prepacking);
    :func:`q4_1_split` avoids that.
    """
    blocks = _gguf_blocks(raw, "Q4_1", n, k)
    d, m = _fp16(blocks, 0), _fp16(blocks, 2)
    codes = _gguf_nibbles_to_nbits(blocks[..., 4:])
    flat = d == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        zero_points = np.where(flat, np.float32(0), -m / d).astype(np.float32)
    scales = np.where(flat, m, d).astype(np.float32)
    if flat.any():
        codes = codes.copy()
        codes[flat] = 0x11  # every nibble 1
    return NBitsWeight(n, k, 4, GGUF_BLOCK_SIZE, codes, scales, zero_points)


def q4_1_split(raw: NDArray[np.uint8], n: int, k: int) -> tuple[NBitsWeight, FloatArray]:
    """GGUF Q4_1 ``W[N, K]`` as ``(d*q part, m)``: ``A @ W.T = MatMulNBits(A) + S @ m.T``.

    The first part is MatMulNBits bits=4 with packed uint8 zero points 0 (so ORT prepacks it
    and uses its quantized kernels); ``m`` is float32 ``[N, K/32]``, and ``S[..., j]`` is the
    sum of ``A`` over block ``j`` (``ReduceSum`` of ``A`` reshaped to ``[..., K/32, 32]``).
    """
    blocks = _gguf_blocks(raw, "Q4_1", n, k)
    kb = k // GGUF_BLOCK_SIZE
    zero_points = np.zeros((n, (kb + 1) // 2), np.uint8)
    weight = NBitsWeight(
        n,
        k,
        4,
        GGUF_BLOCK_SIZE,
        _gguf_nibbles_to_nbits(blocks[..., 4:]),
        _fp16(blocks, 0),
        zero_points,
    )
    return weight, _fp16(blocks, 2)


def gguf_to_nbits(raw: NDArray[np.uint8], type_name: str, n: int, k: int) -> NBitsWeight:
    """Dispatch on the GGUF type name (``gguf.GGMLQuantizationType(...).name``)."""
    converters = {"Q4_0": q4_0_to_nbits, "Q4_1": q4_1_to_nbits, "Q8_0": q8_0_to_nbits}
    if type_name not in converters:
        raise ExportError(
            f"GGUF type {type_name} has no exact MatMulNBits form; expected one of "
            f"{', '.join(converters)} (dequantize it and use quantize_q4/quantize_q8)"
        )
    return converters[type_name](raw, n, k)


def block_zero_points(weight: NBitsWeight) -> ByteArray:
    """The integer zero point of every block, one a byte: uint8 ``[N, k_blocks]``.

    Absent zero points read ``2**(bits-1)``; float ones (Q4_1's ``-m/d``) raise.
    """
    zp = weight.zero_points
    if zp is None:
        return np.full((weight.n, weight.k_blocks), 2 ** (weight.bits - 1), np.uint8)
    if zp.dtype != np.uint8:
        raise ExportError("float zero points have no integer form, expected uint8 ones")
    codes = _unpack_nibbles(np.asarray(zp, np.uint8)) if weight.bits == 4 else np.asarray(zp, np.uint8)
    return np.ascontiguousarray(codes[:, : weight.k_blocks])


def embedding_tables(weight: NBitsWeight) -> EmbeddingTables:
    """GatherBlockQuantized inputs that reuse ``weight.b`` (no copy) for a tied embedding.

    Float zero points cannot be expressed (GatherBlockQuantized takes codes only): such a
    weight raises.  4-bit zero points are gathered as half blocks (see
    :class:`EmbeddingTables`); 8-bit ones are ``[vocab, k_blocks, 1]``, one a byte.
    """
    zp = weight.zero_points
    scales = weight.scales[:, :, None]
    if zp is None:
        return EmbeddingTables(weight.bits, weight.block_size, weight.b, scales, None)
    if zp.dtype != np.uint8:
        raise ExportError("GatherBlockQuantized needs uint8 zero points, got float ones")
    zp_codes = np.asarray(zp, dtype=np.uint8)
    if weight.bits != 4:
        zero_points = np.ascontiguousarray(zp_codes[:, : weight.k_blocks, None])
        return EmbeddingTables(weight.bits, weight.block_size, weight.b, scales, zero_points)
    if weight.block_size < 32:
        raise ExportError(
            f"a 4-bit embedding with zero points needs block_size >= 32 (gathered as half "
            f"blocks of at least 16), got {weight.block_size}"
        )
    per_block = _unpack_nibbles(zp_codes)[:, : weight.k_blocks, None]
    both_halves = np.ascontiguousarray(_pack_nibbles(np.repeat(per_block, 2, axis=2)))
    return EmbeddingTables(4, weight.block_size // 2, weight.b, scales, both_halves, 2)


# --------------------------------------------------------------------------- float weights


def _fp16_exact(scales: NDArray[np.float64]) -> NDArray[np.float64]:
    """Round scales to float16 before the codes are chosen, so half-precision storage of the
    scales loses nothing."""
    return scales.astype(np.float16).astype(np.float64)


# Candidate divisors of a block's extreme value, searched for the least squared error
# (the plain choice, -8 for symmetric 4-bit, is one of them).
_Q4_SYM_DIVISORS = tuple(-8.0 + 0.25 * i for i in range(9))


def quantize_q4(
    w: NDArray[np.floating], block_size: int = 32, symmetric: bool = True
) -> NBitsWeight:
    """Round a float ``W[N, K]`` to 4-bit blocks along ``K``.

    Symmetric: ``scale = v / c`` where ``v`` is the block's value of largest magnitude and
    ``c`` is chosen near -8 for the least squared error of the block; codes
    ``round(w/scale) + 8`` clipped to 0..15, no zero points.
    Asymmetric: ``scale = (max - min) / 15``, packed uint8 zero points ``round(-min/scale)``.
    Scales are float16-exact in both.
    """
    blocks, n, k = _float_blocks(w, block_size)
    if symmetric:
        idx = np.abs(blocks).argmax(axis=-1)[..., None]
        vmax = np.take_along_axis(blocks, idx, axis=-1)
        best_err = np.full(vmax.shape, np.inf)
        best_scale = np.zeros_like(vmax)
        for divisor in _Q4_SYM_DIVISORS:
            scales = _fp16_exact(vmax / divisor)
            inv = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
            codes = np.clip(np.rint(blocks * inv), -8, 7)
            err = np.sum((codes * scales - blocks) ** 2, axis=-1, keepdims=True)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_scale = np.where(better, scales, best_scale)
        inv = np.divide(1.0, best_scale, out=np.zeros_like(best_scale), where=best_scale != 0)
        codes = (np.clip(np.rint(blocks * inv), -8, 7) + 8).astype(np.uint8)
        return NBitsWeight(
            n, k, 4, block_size, _pack_nibbles(codes), best_scale[..., 0].astype(np.float32), None
        )
    lo = np.minimum(blocks.min(axis=-1, keepdims=True), 0.0)
    hi = np.maximum(blocks.max(axis=-1, keepdims=True), 0.0)
    scales = _fp16_exact((hi - lo) / 15.0)
    inv = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
    zp = np.clip(np.rint(-lo * inv), 0, 15)
    codes = np.clip(np.rint(blocks * inv) + zp, 0, 15).astype(np.uint8)
    return NBitsWeight(
        n,
        k,
        4,
        block_size,
        _pack_nibbles(codes),
        scales[..., 0].astype(np.float32),
        _pack_zero_points(zp[..., 0].astype(np.uint8)),
    )


def quantize_q8(w: NDArray[np.floating], block_size: int = 32) -> NBitsWeight:
    """Round a float ``W[N, K]`` to symmetric 8-bit blocks: ``scale = absmax/127``, codes ``+128``."""
    blocks, n, k = _float_blocks(w, block_size)
    scales = _fp16_exact(np.abs(blocks).max(axis=-1, keepdims=True) / 127.0)
    inv = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
    codes = (np.clip(np.rint(blocks * inv), -127, 127) + 128).astype(np.uint8)
    return NBitsWeight(n, k, 8, block_size, codes, scales[..., 0].astype(np.float32), None)


def dequantize_nbits(weight: NBitsWeight) -> FloatArray:
    """``W[N, K]`` as MatMulNBits sees it: ``(code - zero_point) * scale`` (a test reference)."""
    if weight.bits == 4:
        codes = _unpack_nibbles(weight.b.reshape(weight.n, -1)).reshape(
            weight.n, weight.k_blocks, -1
        )
    elif weight.bits == 8:
        codes = weight.b
    else:
        raise ExportError(f"bits={weight.bits} is not supported here, expected 4 or 8")
    zp = weight.zero_points
    if zp is None:
        zero = np.full((weight.n, weight.k_blocks), 2 ** (weight.bits - 1), np.float32)
    elif zp.dtype == np.uint8:
        zp_codes = np.asarray(zp, dtype=np.uint8)
        unpacked = _unpack_nibbles(zp_codes) if weight.bits == 4 else zp_codes
        zero = unpacked[:, : weight.k_blocks].astype(np.float32)
    else:
        zero = zp.astype(np.float32).reshape(weight.n, weight.k_blocks)
    scales = weight.scales.reshape(weight.n, weight.k_blocks)
    w = (codes.astype(np.float32) - zero[..., None]) * scales[..., None]
    return w.reshape(weight.n, -1)[:, : weight.k]


# --------------------------------------------------------------------------- DequantizeLinear form


@dataclass(frozen=True)
class DQWeight:
    """One weight ``W[N, K]`` as ONNX ``DequantizeLinear`` (opset 21, ``axis=0``, blocked) + ``MatMul``.

    ``W.T = DequantizeLinear(codes, scales, zero_points)`` with ``codes`` ``[K, N]`` of ONNX
    type :attr:`onnx_type` (INT4, UINT4, INT8 or UINT8; held here one code a byte) and
    ``scales`` float32 ``[K/bs, N]``; ``zero_points`` (same ONNX type, ``[K/bs, N]``) or None
    for 0.  ``mins`` (GGUF Q4_1) is float32 ``[K/bs, N]``: then
    ``A @ W.T = A @ DQ(...) + S @ mins`` with ``S`` the sums of ``A`` over each block.

    Native onnxruntime fuses ``DequantizeLinear -> MatMul`` into MatMulNBits; in the browser,
    ``session.disable_quant_qdq=1`` folds it to an fp32 weight at load, and
    ``graphOptimizationLevel: 'basic'`` keeps the codes and dequantizes at run time (see
    ``docs/quantization-notes.md``).
    """

    n: int
    k: int
    block_size: int
    onnx_type: int
    codes: NDArray[np.int8] | NDArray[np.uint8]
    scales: FloatArray
    zero_points: NDArray[np.int8] | NDArray[np.uint8] | None = None
    mins: FloatArray | None = None

    def codes_tensor(self, name: str) -> onnx.TensorProto:
        """``codes`` as an initializer of :attr:`onnx_type` (4-bit codes packed two a byte)."""
        return _tensor(name, self.onnx_type, self.codes)

    def zero_points_tensor(self, name: str) -> onnx.TensorProto | None:
        """``zero_points`` as an initializer of :attr:`onnx_type`, or None."""
        zp = self.zero_points
        return None if zp is None else _tensor(name, self.onnx_type, zp)

    def attributes(self) -> dict[str, int]:
        """The ``DequantizeLinear`` attributes."""
        return {"axis": 0, "block_size": self.block_size}


def join_dq(parts: list[DQWeight]) -> DQWeight | None:
    """Weights over the same input side by side (``[K, N1 + N2 + ...]``), or None when their
    block layouts differ (code type, block size, zero points or Q4_1 minima in some only)."""
    first = parts[0]

    def same(w: DQWeight) -> bool:
        return (w.k == first.k and w.block_size == first.block_size and w.onnx_type == first.onnx_type
                and (w.zero_points is None) == (first.zero_points is None)
                and (w.mins is None) == (first.mins is None))

    if not all(same(w) for w in parts):
        return None

    def joined(arrays: list[Any]) -> Any:
        return None if arrays[0] is None else np.ascontiguousarray(np.concatenate(arrays, axis=1))

    return DQWeight(sum(w.n for w in parts), first.k, first.block_size, first.onnx_type,
                    joined([w.codes for w in parts]), joined([w.scales for w in parts]),
                    joined([w.zero_points for w in parts]), joined([w.mins for w in parts]))


def nbits_to_dq(weight: NBitsWeight, mins: FloatArray | None = None) -> DQWeight:
    """Re-lay MatMulNBits initializers as :class:`DQWeight` (codes transposed to ``[K, N]``).

    Absent zero points (``2**(bits-1)``) become signed codes (INT4 / INT8, zero point 0);
    packed uint8 zero points stay unsigned (UINT4 / UINT8, zero point 0 dropped).  Float
    zero points have no DequantizeLinear form: pass GGUF Q4_1 through :func:`gguf_to_dq`.
    """
    if weight.bits not in (4, 8):
        raise ExportError(f"bits={weight.bits} has no DequantizeLinear form here, expected 4 or 8")
    if weight.k % weight.block_size:
        raise ExportError(f"K={weight.k} is not a multiple of block_size={weight.block_size}")
    flat = weight.b.reshape(weight.n, -1)
    codes = (_unpack_nibbles(flat) if weight.bits == 4 else flat)[:, : weight.k]
    scales = np.ascontiguousarray(weight.scales.reshape(weight.n, -1).T)
    mins_kn = None if mins is None else np.ascontiguousarray(mins.T)
    shape = (weight.n, weight.k, weight.block_size)
    zp = weight.zero_points
    if zp is None:
        signed = {4: onnx.TensorProto.INT4, 8: onnx.TensorProto.INT8}[weight.bits]
        offset = np.int16(2 ** (weight.bits - 1))
        signed_codes = np.ascontiguousarray((codes.astype(np.int16) - offset).astype(np.int8).T)
        return DQWeight(*shape, signed, signed_codes, scales, None, mins_kn)
    if zp.dtype != np.uint8:
        raise ExportError(
            "float zero points have no DequantizeLinear form; use gguf_to_dq for Q4_1"
        )
    unsigned = {4: onnx.TensorProto.UINT4, 8: onnx.TensorProto.UINT8}[weight.bits]
    zp_codes = np.asarray(zp, dtype=np.uint8)
    per_block = (_unpack_nibbles(zp_codes) if weight.bits == 4 else zp_codes)[:, : weight.k_blocks]
    zero_points = np.ascontiguousarray(per_block.T) if per_block.any() else None
    return DQWeight(*shape, unsigned, np.ascontiguousarray(codes.T), scales, zero_points, mins_kn)


def gguf_to_dq(raw: NDArray[np.uint8], type_name: str, n: int, k: int) -> DQWeight:
    """GGUF Q4_0 (INT4 codes), Q4_1 (UINT4 codes + ``mins``) or Q8_0 (INT8 codes) -> :class:`DQWeight`."""
    if type_name == "Q4_1":
        weight, mins = q4_1_split(raw, n, k)
        return nbits_to_dq(weight, mins)
    return nbits_to_dq(gguf_to_nbits(raw, type_name, n, k))


def dequantize_dq(weight: DQWeight) -> FloatArray:
    """``W[N, K]`` as ``DequantizeLinear`` plus the ``mins`` term give it (a test reference)."""
    w = weight.codes.astype(np.float32)
    if weight.zero_points is not None:
        w = w - np.repeat(weight.zero_points.astype(np.float32), weight.block_size, axis=0)
    w = w * np.repeat(weight.scales, weight.block_size, axis=0)
    if weight.mins is not None:
        w = w + np.repeat(weight.mins, weight.block_size, axis=0)
    return np.ascontiguousarray(w.T, dtype=np.float32)


def _tensor(
    name: str, onnx_type: int, values: NDArray[np.int8] | NDArray[np.uint8]
) -> onnx.TensorProto:
    """An initializer; 4-bit types packed two codes a byte, first in the low nibble (ONNX order)."""
    dims = list(values.shape)
    if onnx_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        flat = (values.reshape(-1).astype(np.int16) & 0x0F).astype(np.uint8)
        if flat.size % 2:
            flat = np.concatenate([flat, np.zeros(1, np.uint8)])
        return onnx.helper.make_tensor(
            name, onnx_type, dims, _pack_nibbles(flat).tobytes(), raw=True
        )
    return onnx.numpy_helper.from_array(values, name)


# --------------------------------------------------------------------------- helpers


def _float_blocks(w: NDArray[np.floating], block_size: int) -> tuple[NDArray[np.float64], int, int]:
    """``W[N, K]`` -> float64 ``[N, ceil(K/bs), bs]``, zero-padded along ``K``."""
    if w.ndim != 2:
        raise ExportError(f"weight must be 2-D [N, K], got shape {w.shape}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ExportError(f"block_size must be a power of two >= 16, got {block_size}")
    n, k = w.shape
    kb = -(-k // block_size)
    padded = np.zeros((n, kb * block_size), np.float64)
    padded[:, :k] = w
    return padded.reshape(n, kb, block_size), n, k


def _pack_nibbles(codes: NDArray[np.uint8]) -> ByteArray:
    """Pairs along the last axis -> one byte, first code in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _unpack_nibbles(packed: NDArray[np.uint8]) -> ByteArray:
    """Inverse of :func:`_pack_nibbles` along the last axis."""
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def _pack_zero_points(zp: NDArray[np.uint8]) -> ByteArray:
    """4-bit zero points ``[N, k_blocks]`` -> packed ``[N, ceil(k_blocks/2)]``."""
    if zp.shape[-1] % 2:
        zp = np.concatenate([zp, np.zeros(zp.shape[:-1] + (1,), np.uint8)], axis=-1)
    return _pack_nibbles(zp)

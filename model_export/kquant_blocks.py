"""GGUF K-quant blocks -> MatMulNBits initializers plus per-block minima, exactly.

A K-quant super-block holds 256 values of a row ``W[n, :]`` as sub-blocks, each with its own
integer scale (and for Q2_K / Q4_K / Q5_K an integer minimum) multiplied by the super-block's
float16 ``d`` (and ``dmin``).  Source of the layouts: ggml's ``block_q*_K`` structs
(``ggml-common.h``) and ``gguf.quants`` ``Q*_K.dequantize_blocks``, which is the reference the
tests compare with.

=====  =====  ==============================  =====================================================
type   bytes  one value                       MatMulNBits image (block size, bits, codes, zero)
=====  =====  ==============================  =====================================================
Q2_K   84     ``d*sc_j*q - dmin*m_j``, q 0..3  16, 4-bit, ``q``, zero point 0, minima ``-dmin*m_j``
Q3_K   110    ``d*(sc_j - 32)*q``, q -4..3     16, 4-bit, ``q + 8``, default zero point 8
Q4_K   144    ``d*sc_j*q - dmin*m_j``, q 0..15 32, 4-bit, ``q``, zero point 0, minima ``-dmin*m_j``
Q5_K   176    ``d*sc_j*q - dmin*m_j``, q 0..31 32, 8-bit, ``q + 128``, default zero point 128, minima
Q6_K   210    ``d*sc_j*(q - 32)``, q 0..63     16, 8-bit, ``q + 96``, default zero point 128
=====  =====  ==============================  =====================================================

The block scale is ``d*sc_j`` and the minimum ``-dmin*m_j``, computed in float32: ``d`` has
11 significant bits and ``sc_j``, ``m_j`` at most 7, so both products are exact in float32
(and generally not in float16: they are stored as float32).  A weight with minima is
``A @ W.T = MatMulNBits(A) + S @ mins.T`` with ``S[..., j]`` the sum of ``A`` over block ``j``
(as Q4_1's split in :mod:`quant_blocks`).  ``(code - zero_point) * scale + min`` is then the
same float32 expression ``gguf.quants`` evaluates (``scale*q - dmin*m``), so the dequantized
weights are equal bit for bit.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .errors import ExportError
from .quant_blocks import ByteArray, FloatArray, NBitsWeight, _pack_nibbles

QK_K = 256
K_BLOCK_BYTES = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def _super_blocks(raw: NDArray[np.uint8], kind: str, n: int, k: int) -> ByteArray:
    """Check and reshape GGUF tensor bytes to ``[N, K/256, block_bytes]``."""
    if k % QK_K:
        raise ExportError(f"{kind} weight has K={k}, expected a multiple of {QK_K}")
    block_bytes = K_BLOCK_BYTES[kind]
    expected = n * (k // QK_K) * block_bytes
    data = np.ascontiguousarray(raw).view(np.uint8)
    if data.size != expected:
        raise ExportError(
            f"{kind} weight [{n}, {k}] needs {expected} bytes, got {data.size} (shape {raw.shape})"
        )
    return data.reshape(n, k // QK_K, block_bytes)


def _f16_at(blocks: ByteArray, start: int) -> FloatArray:
    """The float16 at byte ``start`` of every super-block: float32 ``[N, K/256, 1]``."""
    pair = np.ascontiguousarray(blocks[..., start : start + 2])
    return pair.view(np.float16).astype(np.float32)


def _scale_min_6bit(packed: ByteArray) -> tuple[ByteArray, ByteArray]:
    """Q4_K / Q5_K ``scales[12]`` -> eight 6-bit scales and eight 6-bit minima ``[..., 8]``.

    Bytes 0-3 hold scales 0-3 (low 6 bits), bytes 4-7 minima 0-3; scales/minima 4-7 take
    their low 4 bits from bytes 8-11 (low / high nibble) and their top 2 bits from the top
    bits of bytes 0-3 / 4-7.
    """
    a, b, c = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    scales = np.concatenate([a & 63, (c & 15) | ((a >> 6) << 4)], axis=-1)
    minima = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=-1)
    return scales, minima


def _low_high_nibbles(qs: ByteArray) -> ByteArray:
    """Q4_K / Q5_K ``qs[128]`` -> the 4-bit codes ``[..., 8, 32]`` of the eight sub-blocks:
    sub-block ``2c`` is the low nibbles of ``qs[32c:32c+32]``, ``2c+1`` their high nibbles."""
    chunks = qs.reshape(*qs.shape[:-1], 4, 1, 32)
    both = np.concatenate([chunks & 15, chunks >> 4], axis=-2)  # [..., 4, 2, 32]
    return both.reshape(*qs.shape[:-1], 8, 32)


def _crumbs(packed: ByteArray, groups: int) -> ByteArray:
    """``[..., groups*32]`` bytes -> their 2-bit fields ``[..., groups, 4, 32]``: field ``s``
    of byte ``l`` of group ``g`` is ``(packed[32g + l] >> 2s) & 3``."""
    chunks = packed.reshape(*packed.shape[:-1], groups, 1, 32)
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    return (chunks >> shifts) & np.uint8(3)


def _with_minima(d: FloatArray, dmin: FloatArray, sc: ByteArray, m: ByteArray,
                 n: int) -> tuple[FloatArray, FloatArray]:
    scales = (d * sc.astype(np.float32)).reshape(n, -1)
    minima = -(dmin * m.astype(np.float32)).reshape(n, -1)
    return np.ascontiguousarray(scales, np.float32), np.ascontiguousarray(minima, np.float32)


def _zero_zero_points(n: int, k_blocks: int) -> ByteArray:
    """Packed 4-bit zero points, all 0 (so the codes are read unsigned)."""
    return np.zeros((n, (k_blocks + 1) // 2), np.uint8)


def q4_k_split(raw: NDArray[np.uint8], n: int, k: int) -> tuple[NBitsWeight, FloatArray]:
    """GGUF Q4_K ``W[N, K]`` -> (4-bit MatMulNBits of ``d*sc_j*q``, block size 32, zero
    points 0; float32 minima ``[N, K/32]`` ``-dmin*m_j``)."""
    blocks = _super_blocks(raw, "Q4_K", n, k)
    sc, m = _scale_min_6bit(blocks[..., 4:16])
    scales, minima = _with_minima(_f16_at(blocks, 0), _f16_at(blocks, 2), sc, m, n)
    codes = _pack_nibbles(_low_high_nibbles(blocks[..., 16:144])).reshape(n, k // 32, 16)
    return NBitsWeight(n, k, 4, 32, codes, scales, _zero_zero_points(n, k // 32)), minima


def q5_k_split(raw: NDArray[np.uint8], n: int, k: int) -> tuple[NBitsWeight, FloatArray]:
    """GGUF Q5_K ``W[N, K]`` -> (8-bit MatMulNBits of ``d*sc_j*q``, block size 32, codes
    ``q + 128`` around the default zero point; float32 minima ``[N, K/32]``).  Bit ``j`` of
    ``qh[l]`` is the fifth bit of value ``l`` of sub-block ``j``."""
    blocks = _super_blocks(raw, "Q5_K", n, k)
    sc, m = _scale_min_6bit(blocks[..., 4:16])
    scales, minima = _with_minima(_f16_at(blocks, 0), _f16_at(blocks, 2), sc, m, n)
    low = _low_high_nibbles(blocks[..., 48:176])  # [N, kb, 8, 32]
    qh = blocks[..., None, 16:48]  # [N, kb, 1, 32]
    high = (qh >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & np.uint8(1)
    codes = (low | (high << np.uint8(4))) + np.uint8(128)
    return NBitsWeight(n, k, 8, 32, codes.reshape(n, k // 32, 32), scales, None), minima


def q6_k_to_nbits(raw: NDArray[np.uint8], n: int, k: int) -> NBitsWeight:
    """GGUF Q6_K ``W[N, K]`` -> 8-bit MatMulNBits, block size 16, codes ``q + 96`` (that is
    ``(q - 32) + 128``) around the default zero point, float32 scales ``d*sc_j``.

    Each half (128 values) of a super-block uses 64 bytes of ``ql`` and 32 of ``qh``: value
    ``32g + l`` takes the low (g = 0, 1) or high (g = 2, 3) nibble of ``ql[l + 32(g % 2)]``
    and bits ``2g, 2g+1`` of ``qh[l]``.
    """
    blocks = _super_blocks(raw, "Q6_K", n, k)
    ql = blocks[..., 0:128].reshape(n, -1, 2, 1, 64)
    low = np.concatenate([ql & 15, ql >> 4], axis=-2).reshape(n, -1, 2, 4, 32)
    high = _crumbs(blocks[..., 128:192], 2)  # [N, kb, 2, 4, 32]
    codes = (low | (high << np.uint8(4))) + np.uint8(96)
    sc = blocks[..., 192:208].view(np.int8).astype(np.float32)
    scales = (_f16_at(blocks, 208) * sc).reshape(n, -1)
    return NBitsWeight(n, k, 8, 16, codes.reshape(n, k // 16, 16),
                       np.ascontiguousarray(scales, np.float32), None)


def q2_k_split(raw: NDArray[np.uint8], n: int, k: int) -> tuple[NBitsWeight, FloatArray]:
    """GGUF Q2_K ``W[N, K]`` -> (4-bit MatMulNBits, block size 16, codes ``q`` with zero
    points 0, scales ``d*(s & 15)``; float32 minima ``[N, K/16]`` ``-dmin*(s >> 4)``).

    ``scales[16]`` holds one byte per sub-block; ``qs[64]`` two halves of 32 bytes whose 2-bit
    field ``f`` of byte ``l`` is value ``32f + l`` of the half.
    """
    blocks = _super_blocks(raw, "Q2_K", n, k)
    packed = blocks[..., 0:16]
    scales, minima = _with_minima(_f16_at(blocks, 80), _f16_at(blocks, 82), packed & np.uint8(15), packed >> np.uint8(4), n)
    codes = _crumbs(blocks[..., 16:80], 2).reshape(n, k // 16, 16)
    return (NBitsWeight(n, k, 4, 16, _pack_nibbles(codes), scales, _zero_zero_points(n, k // 16)),
            minima)


def q3_k_to_nbits(raw: NDArray[np.uint8], n: int, k: int) -> NBitsWeight:
    """GGUF Q3_K ``W[N, K]`` -> 4-bit MatMulNBits, block size 16, codes ``q + 8`` around the
    default zero point 8, float32 scales ``d*(sc_j - 32)``.

    ``q = (2-bit field of qs, laid out as Q2_K's) - 4 * (1 - bit)``, the bit of value
    ``32i + l`` being bit ``i`` of ``hmask[l]``.  The sixteen 6-bit scales: low 4 bits from
    the low (sub-blocks 0-7) or high (8-15) nibbles of ``scales[0:8]``, top 2 bits from the
    2-bit field ``j // 4`` of ``scales[8 + j % 4]``.
    """
    blocks = _super_blocks(raw, "Q3_K", n, k)
    low2 = _crumbs(blocks[..., 32:96], 2).reshape(n, -1, 256)
    hmask = blocks[..., None, 0:32]  # [N, kb, 1, 32]
    bit = ((hmask >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & 1).reshape(n, -1, 256)
    codes = (low2 + np.uint8(4) + (bit << 2)).reshape(n, k // 16, 16)  # q + 8
    packed = blocks[..., 96:108]
    low4 = np.concatenate([packed[..., 0:8] & 15, packed[..., 0:8] >> 4], axis=-1)
    top2 = (packed[..., None, 8:12] >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3  # [N, kb, 4, 4]
    sc = (low4 | (top2.reshape(n, -1, 16) << 4)).astype(np.float32) - np.float32(32)
    scales = (_f16_at(blocks, 108) * sc).reshape(n, -1)
    return NBitsWeight(n, k, 4, 16, _pack_nibbles(codes), np.ascontiguousarray(scales, np.float32), None)


def k_quant_split(raw: NDArray[np.uint8], type_name: str, n: int,
                  k: int) -> tuple[NBitsWeight, FloatArray | None]:
    """Dispatch on the GGUF type name: the MatMulNBits weight and its minima (or None)."""
    if type_name == "Q2_K":
        return q2_k_split(raw, n, k)
    if type_name == "Q3_K":
        return q3_k_to_nbits(raw, n, k), None
    if type_name == "Q4_K":
        return q4_k_split(raw, n, k)
    if type_name == "Q5_K":
        return q5_k_split(raw, n, k)
    if type_name == "Q6_K":
        return q6_k_to_nbits(raw, n, k), None
    raise ExportError(f"GGUF type {type_name} is not a K-quant; expected one of {', '.join(K_BLOCK_BYTES)}")

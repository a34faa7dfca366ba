"""K-quant blocks (Q2_K ... Q6_K) as MatMulNBits blocks plus block minima, against gguf's own
dequantization (``gguf.quants.dequantize``, the reference implementation of the formats).

Blocks are random bytes with chosen ``d`` / ``dmin`` (every bit pattern of the packed scales
and codes is a valid block), so every scale, minimum and code field is exercised.  The
exported weight ``(code - zero_point) * scale + minimum`` must equal gguf's values bit for
bit: ``scale = d*sc`` and ``minimum = -dmin*m`` are exact in float32 (an 11-bit half times an
integer of at most 7 bits), and the remaining product and sum are the very float32
operations gguf performs.  onnxruntime's own MatMulNBits kernel is then checked on the same
blocks (its dequantized weight within a few float32 roundings, a matmul through the
minima split within float32 accumulation error).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, quants
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from pocketlm_export.kquant_blocks import K_BLOCK_BYTES, QK_K, k_quant_split
from pocketlm_export.quant_blocks import NBitsWeight, dequantize_nbits
from pocketlm_export.quantize import fits_float16

from .test_quant_blocks import (
    MS,
    _model,
    _nbits_inits,
    _session,
    assert_equal_to_float_rounding,
    ort_weight,
)

F32 = NDArray[np.float32]
# Byte offsets of the float16 super-block factors (ggml-common.h): d (and dmin).
FACTORS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
# (bits, block size, minima) each type maps to.
LAYOUT = {"Q2_K": (4, 16, True), "Q3_K": (4, 16, False), "Q4_K": (4, 32, True), "Q5_K": (8, 32, True),
          "Q6_K": (8, 16, False)}


def random_k_blocks(qtype: str, n: int, k: int, seed: int) -> NDArray[np.uint8]:
    """``[n, row_bytes]`` random super-blocks whose d / dmin are small finite halves (one
    super-block with d = 0, one with negative factors)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, k // QK_K, K_BLOCK_BYTES[qtype]), dtype=np.uint8)
    for at in FACTORS[qtype]:
        halves = rng.uniform(1e-4, 2e-2, (n, k // QK_K)).astype(np.float16)
        halves[0, 0] = 0.0
        halves[1, -1] = -halves[1, -1]
        raw[..., at:at + 2] = halves.view(np.uint8).reshape(n, k // QK_K, 2)
    return raw.reshape(n, -1)


def exported_values(w: NBitsWeight, mins: F32 | None) -> F32:
    values = dequantize_nbits(w)
    if mins is None:
        return values
    blocks = values.reshape(w.n, -1, w.block_size) + mins[..., None]
    return blocks.reshape(w.n, w.k)


@pytest.mark.parametrize("qtype", sorted(K_BLOCK_BYTES))
def test_k_quant_blocks_dequantize_bit_for_bit_as_gguf(qtype: str) -> None:
    n, k = 12, 768
    raw = random_k_blocks(qtype, n, k, seed=len(qtype) + ord(qtype[1]))
    expected = quants.dequantize(raw, GGMLQuantizationType[qtype]).reshape(n, k)
    w, mins = k_quant_split(raw, qtype, n, k)
    assert (w.bits, w.block_size, mins is not None) == LAYOUT[qtype]
    assert w.scales.dtype == np.float32 and not fits_float16(w.scales)  # float16 would round them
    np.testing.assert_array_equal(exported_values(w, mins), expected)


@pytest.mark.parametrize("qtype", sorted(K_BLOCK_BYTES))
def test_onnxruntime_reads_the_k_quant_blocks_as_gguf_dequantizes_them(qtype: str) -> None:
    n, k = 20, 512
    raw = random_k_blocks(qtype, n, k, seed=7)
    expected = quants.dequantize(raw, GGMLQuantizationType[qtype]).reshape(n, k).astype(np.float32)
    w, mins = k_quant_split(raw, qtype, n, k)
    dq_part = expected if mins is None else (expected.reshape(n, -1, w.block_size) - mins[..., None]).reshape(n, k)
    assert_equal_to_float_rounding(ort_weight(w), dq_part)

    # The whole linear, as the exporter writes it: MatMulNBits + (block sums of A) @ minima.
    names, inits = _nbits_inits(w)
    nodes = [helper.make_node("MatMulNBits", ["A", *names], ["Y" if mins is None else "dq"], domain=MS,
                              **w.attributes())]
    if mins is not None:
        inits += [numpy_helper.from_array(np.ascontiguousarray(mins.T), "mins_t"),
                  numpy_helper.from_array(np.array([0, k // w.block_size, w.block_size], np.int64), "blocks"),
                  numpy_helper.from_array(np.array([-1], np.int64), "last")]
        nodes += [helper.make_node("Reshape", ["A", "blocks"], ["A_blocks"]),
                  helper.make_node("ReduceSum", ["A_blocks", "last"], ["sums"], keepdims=0),
                  helper.make_node("MatMul", ["sums", "mins_t"], ["offset"]),
                  helper.make_node("Add", ["dq", "offset"], ["Y"])]
    model = _model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])], inits)
    a = np.random.default_rng(8).standard_normal((3, k)).astype(np.float32)
    want = a.astype(np.float64) @ expected.T.astype(np.float64)
    got = _session(model).run(None, {"A": a})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_wrong_k_quant_byte_count_names_the_expected_size() -> None:
    from pocketlm_export.errors import ExportError

    with pytest.raises(ExportError, match="needs 288 bytes"):
        k_quant_split(np.zeros((1, 144), np.uint8), "Q4_K", 2, 256)
    with pytest.raises(ExportError, match="multiple of 256"):
        k_quant_split(np.zeros((1, 105), np.uint8), "Q6_K", 1, 128)


def _cached_qwen() -> Path | None:
    from benchmarks.real_models import cache_dir

    path = cache_dir() / "Qwen2.5-Coder-0.5B-Instruct.Q5_0.gguf"
    return path if path.exists() else None


@pytest.mark.slow  # GGUFReader parses the 151,936-token vocabulary: about a minute
@pytest.mark.skipif(_cached_qwen() is None, reason="the real Qwen2.5-Coder-0.5B GGUF is not in the cache "
                    "(tests/export/test_real_qwen.py fetches it)")
def test_real_q4_k_and_q6_k_tensors_dequantize_bit_for_bit_as_gguf() -> None:
    path = _cached_qwen()
    assert path is not None
    reader = GGUFReader(path)
    seen = set()
    for tensor in reader.tensors:
        name = tensor.tensor_type.name
        if name not in K_BLOCK_BYTES or name in seen:
            continue
        seen.add(name)
        k, n = (int(d) for d in tensor.shape)
        rows = np.asarray(tensor.data, np.uint8).reshape(n, -1)[:64]  # 64 rows are plenty
        expected = quants.dequantize(rows, tensor.tensor_type).reshape(64, k)
        w, mins = k_quant_split(rows, name, 64, k)
        np.testing.assert_array_equal(exported_values(w, mins), expected)
    assert seen == {"Q4_K", "Q6_K"}

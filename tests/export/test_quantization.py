"""Quantization modes: exactness of GGUF block import, every mode on every tiny architecture,
the quality gate, the browser operator lists, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pocketlm_build.cli import main
from pocketlm_export.export import ExportOptions, export
from pocketlm_export.web_operators import unsupported_ops
from tests.fixtures.tiny_models import TINY_ARCHS, write_tiny_gguf, write_tiny_hf
from tests.onnx_runner import OnnxDecoder

MODES = ["exact", "mixed", "q4", "q8", "fp16", "fp32"]


def logits_diff(a: Path, b: Path, prompt: list[int], steps: int) -> tuple[float, list[int], list[int]]:
    """Max |logit diff| over a prefill and cached steps, and both greedy continuations."""
    x, y = OnnxDecoder(a, threads=2), OnnxDecoder(b, threads=2)
    la, lb = x.step(prompt), y.step(prompt)
    worst = float(np.max(np.abs(la - lb)))
    ta, tb = [int(np.argmax(la[-1]))], [int(np.argmax(lb[-1]))]
    for _ in range(steps - 1):
        la, lb = x.step([ta[-1]]), y.step([tb[-1]])
        if ta == tb:
            worst = max(worst, float(np.max(np.abs(la - lb))))
        ta.append(int(np.argmax(la[-1])))
        tb.append(int(np.argmax(lb[-1])))
    return worst, ta, tb


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
@pytest.mark.parametrize("mode", ["q4", "q8", "fp16"])
def test_every_mode_runs_and_passes_the_gate_on_tiny_hf_models(arch: str, mode: str, tmp_path: Path) -> None:
    src = write_tiny_hf(arch, tmp_path / "hf", seed=4)
    result = export(src, tmp_path / "out", ExportOptions(quant=mode, progress=False))
    gate = result.report["quality"]["candidates"][-1]
    assert gate["mode"] == mode and gate["passed"], gate
    assert result.report["files"]["model.onnx"] > 0
    assert OnnxDecoder(tmp_path / "out").greedy([1, 5, 9, 12], 4)


@pytest.mark.parametrize("arch", [a for a in sorted(TINY_ARCHS) if a != "mistral"])
def test_exact_mode_reproduces_the_dequantized_gguf(arch: str, tmp_path: Path) -> None:
    src = write_tiny_gguf(arch, tmp_path / "m.gguf", seed=6, matrix_type="Q4_1", embedding_type="Q8_0")
    export(src, tmp_path / "exact", ExportOptions(quant="exact", logits="all", progress=False))
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    worst, a, b = logits_diff(tmp_path / "exact", tmp_path / "fp32", list(range(3, 40)), 16)
    assert worst <= 1e-3 and a == b


@pytest.mark.parametrize("matrix_type", ["Q4_1", "Q4_0", "Q8_0"])
def test_default_export_of_a_quantized_gguf_keeps_its_blocks(matrix_type: str, tmp_path: Path) -> None:
    """No --quant (auto): the GGUF's own blocks, unchanged: the logits of the dequantized
    GGUF (the fp32 export of the same file), not of a second rounding."""
    src = write_tiny_gguf("llama", tmp_path / "m.gguf", seed=6, matrix_type=matrix_type, embedding_type="Q8_0")
    result = export(src, tmp_path / "auto", ExportOptions(logits="all", progress=False, quant="auto"))
    assert result.config["quantization"] == "exact"
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    worst, a, b = logits_diff(tmp_path / "auto", tmp_path / "fp32", list(range(3, 40)), 16)
    assert worst <= 1e-3 and a == b


def test_default_export_of_a_float_source_stays_within_two_percent(tmp_path: Path) -> None:
    src = write_tiny_hf("llama", tmp_path / "hf", seed=4)
    result = export(src, tmp_path / "auto", ExportOptions(progress=False, quant="auto"))
    gate = result.report["quality"]["candidates"][-1]
    assert result.config["quantization"] == gate["mode"] in ("mixed", "q8", "fp16")
    assert gate["passed"] and gate["limit"] == 0.02 and gate["perplexity_rise"] <= 0.02


def test_mixed_mode_keeps_the_embedding_values_and_down_projections_in_eight_bits(tmp_path: Path) -> None:
    src = write_tiny_hf("llama", tmp_path / "hf", seed=4)
    # The DequantizeLinear layout names its tables <path>/codes, with the element type in view.
    export(src, tmp_path / "mixed", ExportOptions(quant="mixed", logits="all", progress=False, layout="dq"))
    export(src, tmp_path / "q4", ExportOptions(quant="q4", logits="all", progress=False, layout="dq"))
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    graph = onnx.load(str(tmp_path / "mixed" / "model.onnx"), load_external_data=False)
    codes = {t.name: t.data_type for t in graph.graph.initializer}
    assert codes.get("embed/codes") in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    for name in ("L0/q", "L0/o", "L1/gate_up"):
        assert codes.get(f"{name}/codes") in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4), name
    for name in ("L0/v", "L1/down"):
        assert codes.get(f"{name}/codes") in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8), name
    mixed, _, _ = logits_diff(tmp_path / "mixed", tmp_path / "fp32", list(range(3, 40)), 1)
    q4, _, _ = logits_diff(tmp_path / "q4", tmp_path / "fp32", list(range(3, 40)), 1)
    assert mixed < q4


def test_mixed_mode_carries_a_ggufs_4_bit_blocks_over(tmp_path: Path) -> None:
    """Q4_1 matrices (values and down projections included) and a Q8_0 embedding already have
    mixed's widths or less: the export reproduces the dequantized GGUF, as exact does."""
    src = write_tiny_gguf("llama", tmp_path / "m.gguf", seed=6, matrix_type="Q4_1", embedding_type="Q8_0")
    export(src, tmp_path / "mixed", ExportOptions(quant="mixed", logits="all", progress=False))
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    worst, a, b = logits_diff(tmp_path / "mixed", tmp_path / "fp32", list(range(3, 40)), 16)
    assert worst <= 1e-3 and a == b


@pytest.mark.parametrize("arch, matrix_type, embedding_type", [
    ("llama", "Q4_0", None), ("llama", "Q8_0", None), ("llama", "Q5_0", None),
    ("llama-wide", "Q4_K", "Q6_K"), ("llama-wide", "Q5_K", "Q8_0"), ("llama-wide", "Q6_K", "Q6_K"),
    ("llama-wide", "Q2_K", "Q3_K"), ("llama-wide", "Q3_K", "Q8_0"),
])
@pytest.mark.parametrize("layout", ["nbits", "dq"])
def test_exact_mode_carries_the_gguf_blocks_over(arch: str, matrix_type: str, embedding_type: str | None,
                                                 layout: str, tmp_path: Path) -> None:
    src = write_tiny_gguf(arch, tmp_path / "m.gguf", seed=6, matrix_type=matrix_type,
                          embedding_type=embedding_type)
    result = export(src, tmp_path / "exact", ExportOptions(quant="exact", logits="all", progress=False,
                                                           layout=layout))
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    assert result.report["quality"]["candidates"][-1]["requantized"] == {}
    worst, a, b = logits_diff(tmp_path / "exact", tmp_path / "fp32", list(range(3, 40)), 8)
    assert worst <= 1e-3 and a == b


@pytest.mark.parametrize("arch, matrix_type, embedding_type", [
    ("llama", "Q4_1", "Q4_1"),  # tied: the head adds the same table's minima
    ("mistral", "Q4_0", "Q4_1"),  # untied: embedding and head each with minima
    ("llama-wide", "Q6_K", "Q4_K"), ("llama-wide", "Q4_K", "Q5_K"), ("llama-wide", "Q3_K", "Q2_K"),
])
def test_exact_mode_keeps_an_embedding_with_block_minima(arch: str, matrix_type: str, embedding_type: str,
                                                        tmp_path: Path) -> None:
    """An embedding whose blocks carry a minimum (``d*q + m``) is stored with its minima, not
    re-rounded: the gathered rows and the (tied) head give the dequantized GGUF's logits."""
    src = write_tiny_gguf(arch, tmp_path / "m.gguf", seed=1, matrix_type=matrix_type, embedding_type=embedding_type)
    result = export(src, tmp_path / "exact", ExportOptions(quant="exact", logits="all", progress=False))
    export(src, tmp_path / "fp32", ExportOptions(quant="fp32", logits="all", progress=False))
    assert result.report["quality"]["candidates"][-1]["requantized"] == {}
    tensors = json.loads((tmp_path / "exact" / "pocketlm.json").read_text())["tensors"]
    assert "embed/block_mins" in tensors and "embed/zero_points" not in tensors
    worst, a, b = logits_diff(tmp_path / "exact", tmp_path / "fp32", list(range(3, 40)), 8)
    assert worst <= 1e-3 and a == b


def test_dq_layout_requantizes_a_q4_k_embedding_and_says_so(tmp_path: Path) -> None:
    # The DequantizeLinear layout has no place for the minima in its embedding table: q8.
    src = write_tiny_gguf("llama-wide", tmp_path / "m.gguf", seed=1, matrix_type="Q6_K", embedding_type="Q4_K")
    result = export(src, tmp_path / "out", ExportOptions(quant="exact", layout="dq", progress=False))
    gate = result.report["quality"]["candidates"][-1]
    assert gate["requantized"] == {"Q4_K -> q8": 1}


@pytest.mark.parametrize("mode, layout", [(m, "dq") for m in MODES] + [("exact", "nbits"), ("q4", "nbits")])
def test_exported_graphs_use_only_operators_the_browser_backends_run(mode: str, layout: str,
                                                                     tmp_path: Path) -> None:
    src = write_tiny_gguf("gemma3", tmp_path / "m.gguf", seed=2, matrix_type="Q4_0", embedding_type="Q8_0")
    export(src, tmp_path / "out", ExportOptions(quant=mode, layout=layout, progress=False,
                                                allow_quality_loss=True))
    model = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert unsupported_ops(model, "wasm") == []
    assert unsupported_ops(model, "webgpu") == []


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", *args, "--quiet"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("args, fragment", [
    (["--quant", "q3"], "unknown quantization mode 'q3'"),
    (["--quant", "q4", "--block-size", "48"], "power of two"),
    (["--quant", "q4", "--block-size", "128"], "does not divide the model's hidden size 64"),
])
def test_bad_quantization_requests_fail_cleanly(args: list[str], fragment: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = write_tiny_hf("llama", tmp_path / "hf")
    code, err = run_cli(capsys, str(src), "-o", str(tmp_path / "out"), *args)
    assert code == 2 and fragment in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_exact_needs_a_source_with_quantized_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_tiny_gguf("llama", tmp_path / "m.gguf", matrix_type="F16")
    code, err = run_cli(capsys, str(src), "-o", str(tmp_path / "out"), "--quant", "exact")
    assert code == 2 and "needs a GGUF whose matrices are quantized" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_default_model_exact_matches_fp32_and_fits_the_size_target(default_export_all: Path, tmp_path: Path) -> None:
    result = export(None, tmp_path / "exact", ExportOptions(quant="exact", logits="all", progress=False))
    assert result.report["total_bytes"] <= 115_000_000
    prompt = OnnxDecoder(default_export_all).step  # noqa: F841  (loads fine)
    text = json.loads((default_export_all / "tokenizer.json").read_text())  # noqa: F841
    worst, a, b = logits_diff(tmp_path / "exact", default_export_all, list(range(500, 560)), 64)
    assert worst <= 1e-3, worst
    assert a == b


@pytest.mark.slow
@pytest.mark.parametrize("mode, limit", [("q4", 90_000_000), ("q8", None), ("fp16", None)])
def test_default_model_modes_pass_the_gate(mode: str, limit: int | None, tmp_path: Path) -> None:
    result = export(None, tmp_path / mode, ExportOptions(quant=mode, progress=False))
    gate = result.report["quality"]["candidates"][-1]
    assert gate["passed"], gate
    if limit:
        assert result.report["total_bytes"] <= limit


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("arch", ["llama", "phi3"])  # a tied and an untied head
def test_nbits_layout_computes_what_the_dequantize_linear_layout_does(arch: str, symmetric: bool,
                                                                       tmp_path: Path) -> None:
    """The same q4 blocks through GatherBlockQuantized + MatMulNBits and through standard
    DequantizeLinear -> Gather / MatMul: two operator paths of onnxruntime, one model."""
    src = write_tiny_hf(arch, tmp_path / "hf", seed=5)
    for layout in ("nbits", "dq"):
        export(src, tmp_path / layout, ExportOptions(quant="q4", symmetric=symmetric, layout=layout,
                                                     logits="all", progress=False))
    worst, a, b = logits_diff(tmp_path / "nbits", tmp_path / "dq", list(range(3, 30)), 8)
    assert worst <= 1e-3 and a == b

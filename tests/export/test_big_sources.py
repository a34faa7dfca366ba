"""Sources as people have them for 0.5B-2B models, on tiny models written by the tests:
split GGUF sets, sharded safetensors folders, bf16/fp16 weights, untied output heads and a
150k-row vocabulary. Each export is checked against the independent numpy forward pass
(tests/reference) of the same weights read whole, or against the exporter's own result
for the unsplit file when the point is that splitting changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pocketlm_build.cli import main
from pocketlm_export.export import ExportOptions, build_into, export
from pocketlm_export.quantize import QuantOptions, codec_for, session_config
from pocketlm_export.sources import load_source
from tests.fixtures.tiny_models import TINY_VARIANTS, write_tiny_gguf, write_tiny_hf
from tests.onnx_runner import OnnxDecoder
from tests.reference.numpy_forward import ReferenceModel

TOLERANCE = 1e-3


def max_logit_error(folder: Path, ref: ReferenceModel, vocab: int, n: int = 24) -> float:
    rng = np.random.default_rng(11)
    prompt = [int(t) for t in rng.integers(0, min(vocab, 300), n)]
    got = OnnxDecoder(folder).step(prompt)
    want, _ = ref.forward(prompt)
    return float(np.max(np.abs(got - want)))


def test_split_gguf_reads_as_one_model(tmp_path: Path) -> None:
    whole = write_tiny_gguf("qwen2", tmp_path / "whole.gguf", seed=4, matrix_type="Q8_0")
    (tmp_path / "split").mkdir()
    first = write_tiny_gguf("qwen2", tmp_path / "split" / "tiny.gguf", seed=4, matrix_type="Q8_0",
                            split_max_tensors=7)
    parts = sorted((tmp_path / "split").glob("tiny-*-of-*.gguf"))
    assert len(parts) >= 3 and first == parts[0]
    result = export(first, tmp_path / "out", ExportOptions(logits="all", progress=False))
    assert result.config["source"]["parts"] == len(parts)
    worst = max_logit_error(tmp_path / "out", ReferenceModel.from_gguf(whole), 300)
    assert worst <= TOLERANCE


def test_split_gguf_with_a_missing_part_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_tiny_gguf("llama", tmp_path / "tiny.gguf", seed=0, split_max_tensors=8)
    last = max(tmp_path.glob("tiny-*-of-*.gguf"))
    last.unlink()
    code = main(["export", str(first), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert last.name in err and "split GGUF" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_sharded_safetensors_folder_exports_like_the_reference(dtype: str, tmp_path: Path) -> None:
    src = write_tiny_hf("llama", tmp_path / "hf", seed=5, shards=3, dtype=dtype)
    assert (src / "model.safetensors.index.json").is_file()
    assert len(list(src.glob("model-*-of-00003.safetensors"))) == 3
    export(src, tmp_path / "out", ExportOptions(logits="all", progress=False))
    # The numpy reference reads the same files (bf16 widened bit by bit, fp16 cast).
    worst = max_logit_error(tmp_path / "out", ReferenceModel.from_hf(src), 300)
    assert worst <= TOLERANCE


def test_sharded_folder_with_a_missing_shard_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_tiny_hf("llama", tmp_path / "hf", seed=5, shards=2)
    (src / "model-00002-of-00002.safetensors").unlink()
    code = main(["export", str(src), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "model-00002-of-00002.safetensors" in err


def initializer_bytes(folder: Path, prefix: str) -> dict[str, int]:
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    sizes = {}
    for tensor in model.graph.initializer:
        if tensor.name.startswith(prefix):
            length = {e.key: e.value for e in tensor.external_data}.get("length")
            sizes[tensor.name] = int(length) if length else len(tensor.raw_data)
    return sizes


@pytest.mark.parametrize("source", ["hf", "gguf"])
def test_big_vocabulary_untied_head_is_stored_and_gathered_quantized(source: str, tmp_path: Path) -> None:
    spec = TINY_VARIANTS["qwen2-big-vocab"]
    if source == "hf":
        src = write_tiny_hf(spec, tmp_path / "hf", seed=6)
        ref = ReferenceModel.from_hf(src)
    else:
        src = write_tiny_gguf(spec, tmp_path / "big.gguf", seed=6)
        ref = ReferenceModel.from_gguf(src)
    fp32 = tmp_path / "fp32"
    export(src, fp32, ExportOptions(logits="all", progress=False))
    assert json.loads((fp32 / "pocketlm.json").read_text())["vocab_size"] == 151_936
    assert max_logit_error(fp32, ref, spec.vocab_size) <= TOLERANCE
    # The q8 graph (built without the gate, which other tests cover): embedding and head
    # as 8-bit blocks, about one byte a value rather than four.
    q8 = tmp_path / "q8"
    options = QuantOptions(mode="q8")
    build_into(q8, load_source(src), codec_for(load_source(src), options), progress=False)
    config = json.loads((fp32 / "pocketlm.json").read_text())
    (q8 / "pocketlm.json").write_text(json.dumps({**config, "session_config": session_config(options)}))
    values = spec.vocab_size * spec.hidden_size
    for prefix in ("embed/", "lm_head/"):
        stored = sum(initializer_bytes(q8, prefix).values())
        assert values <= stored <= 1.2 * values, (prefix, stored, values)
    # The gathered rows and the head's logits stay within 8-bit rounding of the reference.
    assert max_logit_error(q8, ref, spec.vocab_size) <= 0.15

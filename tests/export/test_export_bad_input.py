"""Bad input to `pocketlm export`: one line naming the problem and the fix, exit status 2,
and nothing written (OUT untouched, no temporary folder left behind)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import pytest

from pocketlm_build.cli import main
from tests.fixtures.tiny_models import write_tiny_gguf, write_tiny_hf


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", *map(str, args), "--quiet"])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_clean_failure(code: int, err: str, fragment: str, parent: Path) -> None:
    assert code == 2
    assert "\n" not in err and err.startswith("pocketlm: error: "), err
    assert "Traceback" not in err
    assert fragment in err, err
    leftovers = [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf("llama", tmp_path / "tiny.gguf", seed=0)


def test_missing_source_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, tmp_path / "nope.gguf", "-o", tmp_path / "out")
    assert_clean_failure(code, err, "does not exist", tmp_path)
    assert not (tmp_path / "out").exists()


def test_unreadable_source_file(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = Path.open

    def denied(self: Path, *a: object, **k: object):  # type: ignore[no-untyped-def]
        if self == tiny_gguf:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", denied)
    code, err = run(capsys, tiny_gguf, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "Permission denied", tmp_path)


def test_bad_gguf_magic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 64)
    code, err = run(capsys, bad, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "not a GGUF file", tmp_path)


def test_truncated_tensor_data(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[: len(data) - 5000])
    code, err = run(capsys, tiny_gguf, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "truncated", tmp_path)


def test_unknown_tensor_type(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reader = gguf.GGUFReader(str(tiny_gguf))
    tensor = reader.tensors[0]
    # The tensor info holds: name, n_dims (u32), dims (u64 each), type (u32), offset (u64).
    type_field = tensor.field.parts[-2]
    offset = type_field.ctypes.data - reader.data.ctypes.data
    del reader
    raw = bytearray(tiny_gguf.read_bytes())
    raw[offset:offset + 4] = struct.pack("<I", 99)
    tiny_gguf.write_bytes(bytes(raw))
    code, err = run(capsys, tiny_gguf, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "unknown type", tmp_path)


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "unsupported architecture 'mamba'", tmp_path)
    assert "llama" in err and "qwen2" in err and "gemma3" in err and "phi3" in err


def test_hf_folder_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    code, err = run(capsys, folder, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "no *.safetensors", tmp_path)


def test_hf_folder_without_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    (folder / "tokenizer.json").unlink()
    code, err = run(capsys, folder, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "no tokenizer.json", tmp_path)


def test_hf_folder_of_an_unsupported_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    code, err = run(capsys, folder, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "model_type 'bert'", tmp_path)


def test_existing_out_needs_force_and_is_left_untouched(tmp_path: Path, tiny_gguf: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run(capsys, tiny_gguf, "-o", out)
    assert_clean_failure(code, err, "--force", tmp_path)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_out_in_a_missing_folder(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, tiny_gguf, "-o", tmp_path / "no" / "such" / "out")
    assert_clean_failure(code, err, "does not exist", tmp_path)


def test_out_whose_parent_is_a_file(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, err = run(capsys, tiny_gguf, "-o", tmp_path / "file" / "out")
    assert_clean_failure(code, err, "does not exist", tmp_path)


def test_failure_after_writing_started_leaves_old_out_intact(tmp_path: Path, tiny_gguf: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "pocketlm.json").write_text('{"format": "pocketlm-model"}')  # an earlier export
    from pocketlm_export import export as export_module
    from pocketlm_export.errors import ExportError

    def broken(folder: Path) -> None:
        raise ExportError("the exported graph did not load (simulated)")

    monkeypatch.setattr(export_module, "smoke_test", broken)
    code, err = run(capsys, tiny_gguf, "-o", out, "--force")
    assert_clean_failure(code, err, "simulated", tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "pocketlm.json"]


def test_force_replaces_out(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "pocketlm.json").write_text('{"format": "pocketlm-model"}')  # an earlier export
    code = main(["export", str(tiny_gguf), "-o", str(out), "--force", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "model.onnx.data", "tokenizer.json", "pocketlm.json", "export_report.json",
         "export_report.md"])


# ---- values in config.json and GGUF metadata ----------------------------------------------

@pytest.mark.parametrize("key, value, fragment", [
    ("num_attention_heads", 0, "`num_attention_heads` must be a whole number >= 1, not 0"),
    ("hidden_size", "64", "`hidden_size` must be a whole number >= 1, not '64'"),
    ("num_hidden_layers", -1, "`num_hidden_layers` must be a whole number >= 1, not -1"),
    ("vocab_size", 1.5, "`vocab_size` must be a whole number >= 1, not 1.5"),
    ("num_key_value_heads", 3, "`num_attention_heads` (4) is not a multiple of `num_key_value_heads` (3)"),
    ("max_position_embeddings", None, None),  # absent: the default applies (control)
    ("rms_norm_eps", "tiny", "`rms_norm_eps` must be a finite number > 0, not 'tiny'"),
    ("rope_theta", "ten thousand", "`rope_theta` must be a finite number, not 'ten thousand'"),
    ("rope_scaling", {"rope_type": "linear", "factor": "two"}, "`rope_scaling.factor` must be a finite number, not 'two'"),
    ("rope_scaling", {"rope_type": "linear", "factor": 0}, "`rope_scaling.factor` must be > 0"),
    ("rope_scaling", [1, 2], "`rope_scaling` must be an object or null"),
    ("tie_word_embeddings", "yes", "`tie_word_embeddings` must be true or false"),
    ("max_position_embeddings", 10**12, "is 1,000,000,000,000, more than the 1,048,576 positions"),
    ("rope_scaling", {"rope_type": "longrope", "factor": 2, "short_factor": [1, 2], "long_factor": [1, 2]},
     "`rope_scaling.short_factor` has 2 entries, the heads rotate 8 pairs"),
])
def test_invalid_config_json_values_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 key: str, value: object, fragment: str | None) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    if value is None:
        config.pop(key, None)
    else:
        config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    code, err = run(capsys, folder, "-o", tmp_path / "out", "--quant", "fp32")
    if fragment is None:
        assert code == 0, err
        return
    assert_clean_failure(code, err, fragment, tmp_path)
    assert "config.json" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_gguf_key_is_named_as_gguf_spells_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf.GGUFWriter, "add_block_count", lambda self, count: None)
    path = write_tiny_gguf("llama", tmp_path / "tiny.gguf")
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "GGUF metadata lacks llama.block_count", tmp_path)


def test_a_zero_gguf_head_count_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = gguf.GGUFWriter.add_head_count
    monkeypatch.setattr(gguf.GGUFWriter, "add_head_count", lambda self, count: real(self, 0))
    path = write_tiny_gguf("llama", tmp_path / "tiny.gguf")
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "`llama.attention.head_count` must be a whole number >= 1, not 0", tmp_path)


# ---- NaN and infinity in weights -------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_hf_weights_are_an_error_not_a_quality_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                bad: float) -> None:
    from safetensors.numpy import load_file, save_file

    folder = write_tiny_hf("llama", tmp_path / "hf")
    weights = load_file(str(folder / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    weights[name][3, 5] = bad
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for extra in ([], ["--quant", "q4", "--allow-quality-loss"], ["--quant", "fp32"]):
        code, err = run(capsys, folder, "-o", tmp_path / "out", *extra)
        assert_clean_failure(code, err, "tensor L0.down holds 1 NaN or infinite value(s)", tmp_path)
        assert not (tmp_path / "out").exists()


def test_a_nan_block_scale_in_a_quantized_gguf_is_an_error(tmp_path: Path, tiny_gguf: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write_tiny_gguf("llama", tmp_path / "q8.gguf", matrix_type="Q8_0")
    reader = gguf.GGUFReader(str(path))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    offset = int(tensor.data_offset) + 34 * 2  # the third block's float16 scale
    del reader
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 2] = struct.pack("<e", float("nan"))
    path.write_bytes(bytes(raw))
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert_clean_failure(code, err, "tensor L0.up holds 1 NaN or infinite value(s)", tmp_path)


@pytest.mark.parametrize("method, key", [("add_eos_token_id", "tokenizer.ggml.eos_token_id"),
                                         ("add_bos_token_id", "tokenizer.ggml.bos_token_id")])
def test_a_special_token_id_outside_the_vocabulary_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch, method: str,
                                                            key: str) -> None:
    real = getattr(gguf.GGUFWriter, method)
    monkeypatch.setattr(gguf.GGUFWriter, method, lambda self, token_id: real(self, 10**6))
    path = write_tiny_gguf("llama", tmp_path / "tiny.gguf")
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert_clean_failure(code, err, f"`{key}` is 1000000, not below the vocabulary size", tmp_path)


def test_a_chat_template_that_does_not_parse_is_dropped_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real = gguf.GGUFWriter.add_chat_template
    monkeypatch.setattr(gguf.GGUFWriter, "add_chat_template", lambda self, text: real(self, "{% if %}"))
    path = write_tiny_gguf("llama", tmp_path / "tiny.gguf")
    code, err = run(capsys, path, "-o", tmp_path / "out")
    assert code == 0, err
    warning = caplog.text
    assert "the chat template does not parse (line 1)" in warning and "exported without a chat template" in warning
    assert json.loads((tmp_path / "out" / "pocketlm.json").read_text())["chat_template"] is None


@pytest.mark.parametrize("tokenizer, fragment", [
    ({}, "has an empty vocabulary"),
    ({"model": {"type": "WordPiece", "vocab": {"a": 0}}}, "unsupported tokenizer model 'WordPiece'"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}, "is not usable (ValueError: BPE merge #0"),
    ([], "is not usable (AttributeError"),
])
def test_an_unusable_hf_tokenizer_is_refused_at_export(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       tokenizer: object, fragment: str) -> None:
    folder = write_tiny_hf("llama", tmp_path / "hf")
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    code, err = run(capsys, folder, "-o", tmp_path / "out", "--quant", "fp32")
    if isinstance(tokenizer, list):
        fragment = "must hold a JSON object"
    assert_clean_failure(code, err, fragment, tmp_path)
    assert not (tmp_path / "out").exists()

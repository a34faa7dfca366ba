"""`pocketlm export BASE --lora ADAPTER` against peft's own merge in transformers.

The tests make a tiny base model (HF folder, and the same weights as an F32 GGUF), train
nothing: peft builds a LoRA adapter with random A and B (``init_lora_weights=False``) and
saves it; ``merge_and_unload`` then gives the reference model, whose logits our export of
base + adapter must reproduce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketlm_build.cli import main
from pocketlm_export.export import ExportOptions, export
from tests.fixtures.tiny_models import write_tiny_gguf, write_tiny_hf
from tests.onnx_runner import OnnxDecoder

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-3
PROMPT = [5, 17, 42, 99, 120, 7, 250, 33, 61, 200, 12, 88]


def make_adapter(base: Path, out: Path, arch: str) -> np.ndarray:
    """Save a random LoRA adapter for ``base``; return peft's merged model's logits of PROMPT."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                             init_lora_weights=False, lora_dropout=0.0)
    adapted = peft.get_peft_model(model, config)
    adapted.save_pretrained(out)
    merged = adapted.merge_and_unload()
    with torch.no_grad():
        logits = merged(torch.tensor([PROMPT])).logits[0].numpy()
        base_logits = transformers.AutoModelForCausalLM.from_pretrained(base)(torch.tensor([PROMPT])).logits[0].numpy()
    # The adapter must change the model, or the comparison below proves nothing.
    assert np.max(np.abs(logits - base_logits)) > 0.05
    return logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lora_merge_matches_peft_for_hf_and_gguf_bases(arch: str, tmp_path: Path) -> None:
    hf = write_tiny_hf(arch, tmp_path / "hf", seed=8)
    want = make_adapter(hf, tmp_path / "adapter", arch)
    gguf = write_tiny_gguf(arch, tmp_path / "base.gguf", seed=8)
    for name, base in (("hf", hf), ("gguf", gguf)):
        out = tmp_path / f"out-{name}"
        export(base, out, ExportOptions(logits="all", progress=False, lora=tmp_path / "adapter"))
        got = OnnxDecoder(out).step(PROMPT)
        assert float(np.max(np.abs(got - want))) <= TOLERANCE, name
        lora = json.loads((out / "pocketlm.json").read_text())["source"]["lora"]
        assert lora["adapter"] == "adapter" and lora["merged_weights"] == 2 * 5 and len(lora["sha256"]) == 64
        assert "LoRA adapter | `adapter`" in (out / "export_report.md").read_text()


def test_lora_for_another_model_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hf = write_tiny_hf("llama", tmp_path / "hf", seed=8)
    make_adapter(hf, tmp_path / "adapter", "llama")
    wide = write_tiny_gguf("llama-wide", tmp_path / "wide.gguf", seed=1)
    capsys.readouterr()  # what transformers printed while the adapter was made
    code = main(["export", str(wide), "-o", str(tmp_path / "out"), "--lora", str(tmp_path / "adapter"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "do not fit" in err
    assert not (tmp_path / "out").exists()
    code = main(["export", str(wide), "-o", str(tmp_path / "out"), "--lora", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a LoRA adapter folder" in err

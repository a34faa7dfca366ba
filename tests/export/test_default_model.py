"""The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF) exported at fp32 agrees
with two independent implementations: the numpy forward pass reading the GGUF itself, and
Hugging Face transformers loading the same GGUF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.onnx_runner import OnnxDecoder
from tests.reference.numpy_forward import ReferenceModel

pytestmark = pytest.mark.slow

PROMPT_TEXT = ("The old lighthouse keeper climbed the stairs every evening, counting the steps as "
               "his father had taught him. Tonight the sea was calm, and the lamp")


@pytest.fixture(scope="module")
def hf_model(default_gguf: Path):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(default_gguf.parent), gguf_file=default_gguf.name, torch_dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(str(default_gguf.parent), gguf_file=default_gguf.name)
    model.eval()
    return model, tok


def prompt_ids(tok, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    ids = tok(PROMPT_TEXT * 4, add_special_tokens=False)["input_ids"]
    return list(ids[:n])


def test_fp32_export_matches_numpy_reference_on_the_gguf(default_gguf: Path, default_export_all: Path, hf_model) -> None:  # type: ignore[no-untyped-def]
    _, tok = hf_model
    prompt = prompt_ids(tok, 64)
    ref = ReferenceModel.from_gguf(default_gguf)
    onnx_model = OnnxDecoder(default_export_all, threads=2)
    got = onnx_model.step(prompt)
    want, past = ref.forward(prompt)
    worst = float(np.max(np.abs(got - want)))
    for _ in range(32):
        token = int(np.argmax(want[-1]))
        got = onnx_model.step([token])
        want, past = ref.forward([token], past)
        worst = max(worst, float(np.max(np.abs(got - want))))
    assert worst <= 1e-3, f"max |logit diff| {worst:.2e}"


def test_fp32_export_matches_transformers_logits_and_greedy_tokens(default_export_all: Path, hf_model) -> None:  # type: ignore[no-untyped-def]
    import torch

    model, tok = hf_model
    prompt = prompt_ids(tok, 64)
    onnx_model = OnnxDecoder(default_export_all, threads=2)
    got = onnx_model.step(prompt)
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
    want = out.logits[0].double().numpy()
    worst = float(np.max(np.abs(got - want)))
    past = out.past_key_values
    hf_tokens = [int(np.argmax(want[-1]))]
    ours = [int(np.argmax(got[-1]))]
    for _ in range(63):
        got = onnx_model.step([ours[-1]])
        with torch.no_grad():
            out = model(torch.tensor([[hf_tokens[-1]]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        want = out.logits[0].double().numpy()
        if len(hf_tokens) <= 32:
            worst = max(worst, float(np.max(np.abs(got - want))))
        hf_tokens.append(int(np.argmax(want[-1])))
        ours.append(int(np.argmax(got[-1])))
    assert worst <= 1e-3, f"max |logit diff| {worst:.2e}"
    assert ours == hf_tokens, f"greedy tokens differ:\n{tok.decode(ours)!r}\n{tok.decode(hf_tokens)!r}"

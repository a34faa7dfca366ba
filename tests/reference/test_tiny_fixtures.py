"""The tiny-model writers produce what they claim: valid blocks, llama.cpp's permutation,
a working tokenizer in both formats, readable metadata."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from tokenizers import Tokenizer

from tests.fixtures.kquants import K_QUANTS, quantize_k
from tests.fixtures.tiny_models import (
    HF_ONLY,
    TINY_ARCHS,
    TINY_VARIANTS,
    permute_qk_rows,
    tiny_spec,
    write_tiny_gguf,
    write_tiny_hf,
)
from tests.fixtures.tiny_tokenizer import BOS_ID, EOS_ID, SPECIAL_TOKENS, VOCAB_SIZE, tiny_vocab

from .numpy_forward import RopeSpec, apply_rope, default_inv_freq


@pytest.mark.parametrize("qtype", K_QUANTS, ids=lambda q: q.name)
def test_k_quant_blocks_round_trip_through_gguf_dequantize(qtype: GGMLQuantizationType) -> None:
    data = (np.random.default_rng(0).standard_normal((6, 512)) * 0.1).astype(np.float32)
    packed = quantize_k(data, qtype)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    assert packed.shape == (6, 512 // block_size * type_size)
    error = np.abs(dequantize(packed, qtype) - data).max()
    bits = {"Q2_K": 2, "Q3_K": 3, "Q4_K": 4, "Q5_K": 5, "Q6_K": 6}[qtype.name]
    assert error < np.abs(data).max() * 2.0 ** (1 - bits)


def test_k_quants_refuse_rows_that_are_not_whole_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize_k(np.zeros((2, 64), dtype=np.float32), GGMLQuantizationType.Q4_K)


def test_permuted_rows_with_interleaved_rope_equal_hf_rows_with_rotate_half() -> None:
    heads, head_dim, hidden = 3, 8, 12
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((heads * head_dim, hidden)), rng.standard_normal((5, hidden))
    positions = np.arange(5, dtype=np.int64) + 7
    half = RopeSpec(inv_freq=default_inv_freq(1e4, head_dim), rotary_dim=head_dim)
    pairs = RopeSpec(inv_freq=half.inv_freq, rotary_dim=head_dim, interleaved=True)

    hf = apply_rope((x @ w.T).reshape(5, heads, head_dim), positions, half)
    ggml = apply_rope(
        (x @ permute_qk_rows(w, heads).T).reshape(5, heads, head_dim), positions, pairs
    )
    # the same vectors, in the permuted basis: dot products (attention scores) agree
    np.testing.assert_allclose(
        ggml, permute_qk_rows(hf.reshape(5, -1).T, heads).T.reshape(5, heads, head_dim)
    )
    np.testing.assert_allclose(
        np.einsum("shd,thd->hst", ggml, ggml), np.einsum("shd,thd->hst", hf, hf)
    )


def test_tiny_tokenizer_round_trips_text_and_lists_the_same_tokens_for_gguf() -> None:
    vocab = tiny_vocab()
    tok = Tokenizer.from_str(vocab.tokenizer_json)
    text = "Once upon a time, 2024 modèles 日本"
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert len(vocab.tokens) == tok.get_vocab_size() == VOCAB_SIZE
    assert all(tok.token_to_id(t) == i for i, t in enumerate(vocab.tokens))
    assert vocab.tokens[BOS_ID] == "<|im_start|>" and vocab.tokens[EOS_ID] == "<|im_end|>"
    assert [vocab.token_types[SPECIAL_TOKENS.index(s)] for s in SPECIAL_TOKENS] == [3, 3, 3]
    assert [tok.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2]
    assert tok.encode("123").ids == [tok.token_to_id(d) for d in "123"]  # digits split one by one


@pytest.mark.parametrize("name", [n for n in [*TINY_ARCHS, *TINY_VARIANTS] if n not in HF_ONLY])
def test_tiny_gguf_carries_arch_metadata_and_tokenizer(name: str, tmp_path: Path) -> None:
    spec = tiny_spec(name)
    reader = gguf.GGUFReader(str(write_tiny_gguf(name, tmp_path / "m.gguf", matrix_type="Q8_0")))

    def field(key: str) -> object:
        return reader.fields[key.replace("{arch}", spec.gguf_arch)].contents()

    assert field("general.architecture") == spec.gguf_arch
    assert field("{arch}.block_count") == spec.num_layers
    assert field("{arch}.attention.head_count_kv") == spec.num_kv_heads
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    assert field("tokenizer.ggml.tokens") == tiny_vocab().tokens
    assert "<|im_start|>" in str(field("tokenizer.chat_template"))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert types["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert ("output.weight" in types) == (not spec.tie_embeddings)


def test_tiny_gguf_refuses_a_gemma_query_scale_llama_cpp_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="query_pre_attn_scalar"):
        write_tiny_gguf("gemma3-qscale", tmp_path / "m.gguf")


@pytest.mark.parametrize("name", list(TINY_ARCHS))
def test_tiny_hf_folder_loads_in_transformers_with_its_chat_template(
    name: str, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    folder = write_tiny_hf(name, tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == tiny_spec(name).model_type
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token_id == EOS_ID

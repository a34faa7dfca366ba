"""Every ``tokenizer.ggml.pre`` keyword pocketlm accepts splits text as llama.cpp's regex list
for that keyword does (applied here with the third-party ``regex`` module, llama.cpp's way:
each regex splits the pieces of the one before, every piece kept), through the Rust
``tokenizers`` library reading the tokenizer.json we write; and pocketlm's runtime gives the
library's ids for each of them. Unknown keywords are refused by name."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
import regex
import tokenizers

from pocketlm_export.errors import ExportError
from pocketlm_export.gguf_pre_tokenizers import PRE_TOKENIZERS
from pocketlm_export.tokenizer_json import tokenizer_json_from_gguf
from pocketlm_runtime.pretokenize import to_byte_chars
from pocketlm_runtime.tokenizer import Tokenizer
from tests.data.tokenizer_corpus import CODE, SCRIPTS, corpus_lines

CORPUS = list(corpus_lines())

# llama.cpp (src/llama-vocab.cpp): keyword -> pre-tokenizer type -> regex list, as written there.
_CASE = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = _CASE + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CASE + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_UP, _LO = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_CJK = "[一-龥ࠀ-一가-퟿]+"
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"
LLAMA_CPP: dict[str, list[str]] = {
    "DEFAULT": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    "GPT2": [_GPT2],
    "SMOLLM": [r"\p{N}", _GPT2],
    "LLAMA3": [_LLAMA3],
    "QWEN2": [_QWEN2],
    "QWEN35": [_CASE + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+"],
    "GPT4O": [(rf"[^\r\n\p{{L}}\p{{N}}]?{_UP}*{_LO}+{_CASE}?|[^\r\n\p{{L}}\p{{N}}]?{_UP}+{_LO}*{_CASE}?"
              r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")],
    "TEKKEN": [(rf"[^\r\n\p{{L}}\p{{N}}]?{_UP}*{_LO}+|[^\r\n\p{{L}}\p{{N}}]?{_UP}+{_LO}*"
               r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")],
    "JAIS2": [_CASE + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)"
              r"|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"],
    "SEED_CODER": [_CASE + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+"
                   r"|\s+(?!\S)|\s+"],
    # llama.cpp turns the original's possessive quantifiers into greedy ones; the original's:
    "BAILINGMOE": [(r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                   r"|\s*[\r\n]|\s+(?!\S)|\s+")],
    "EXAONE_MOE": [_CASE + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"],
    "MINICPM5": [r"\p{N}{1,3}", _CASE + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "UFAKZEKA": [r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "LAGUNA": ["[^\\n]+|[\\n]+", _QWEN2],
    "DEEPSEEK_LLM": ["[\r\n]", ("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"
                     "Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ"
                     "\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏"
                     "𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"),
                     "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", _CJK, "\\p{N}+"],
    "DEEPSEEK_CODER": ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", _CJK, "\\p{N}"],
    "DEEPSEEK3": ["\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
                  ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                  "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")],
    "FALCON": [r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"],
    "BLOOM": [_BLOOM],
    "VIKING": [_BLOOM, r"\p{N}"],
}
KEYWORDS: dict[str, str] = {
    "default": "DEFAULT",
    **dict.fromkeys(["gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling",
                     "exaone4", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat",
                     "a.x-4.0", "mellum", "modern-bert"], "GPT2"),
    **dict.fromkeys(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                     "minerva-7b", "mellum2"], "SMOLLM"),
    **dict.fromkeys(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                     "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"], "LLAMA3"),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "megrez", "kormo", "f2llmv2", "stablelm2", "hunyuan",
                     "solar-open", "grok-2"], "QWEN2"),
    "qwen35": "QWEN35",
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], "GPT4O"),
    "tekken": "TEKKEN", "jais-2": "JAIS2", "seed-coder": "SEED_CODER",
    **dict.fromkeys(["bailingmoe", "bailingmoe2", "llada-moe"], "BAILINGMOE"),
    "exaone-moe": "EXAONE_MOE", "minicpm5": "MINICPM5", "ufakzeka": "UFAKZEKA", "laguna": "LAGUNA",
    "deepseek-llm": "DEEPSEEK_LLM", "deepseek-coder": "DEEPSEEK_CODER",
    **dict.fromkeys(["deepseek-v3", "hunyuan-dense", "joyai-llm"], "DEEPSEEK3"),
    "falcon": "FALCON",
    **dict.fromkeys(["bloom", "poro-chat", "gpt3-finnish"], "BLOOM"),
    "viking": "VIKING",
}
# llama.cpp keywords refused: their rule needs what the runtime lacks (scripts, custom digit
# grouping, \b, no byte alphabet) or they are encoders that append separators.
REFUSED = ["kimi-k2", "afmoe", "superbpe", "tiny_aya", "gemma4", "whitespace", "roberta-bpe"]
# (?i:) also folds 'ſ and the Kelvin sign K, which llama.cpp's '[sS] spelling does not.
CASE_FOLDS = regex.compile("['’][\u017f\u212a]", regex.IGNORECASE)


def llama_cpp_split(patterns: list[str], text: str) -> list[str]:
    pieces = [text]
    for pattern in patterns:
        compiled = regex.compile(pattern)
        out = []
        for piece in pieces:
            pos = 0
            for m in compiled.finditer(piece):
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return [to_byte_chars(p) for p in pieces]


@cache
def trained_meta() -> dict[str, Any]:
    """A byte-level GGUF vocabulary trained here (cached: training breaks ties randomly)."""
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([*SCRIPTS, *CODE, *CORPUS[:300]], trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [3 if t in specials else 1 for t in tokens],
            "tokenizer.ggml.merges": [" ".join(m) for m in model["merges"]],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}


def spec_for(keyword: str) -> str:
    return json.dumps(tokenizer_json_from_gguf({**trained_meta(), "tokenizer.ggml.pre": keyword}))


def test_accepted_keywords_are_llama_cpps() -> None:
    assert sorted(PRE_TOKENIZERS) == sorted(KEYWORDS)


@pytest.mark.parametrize("kind", sorted(LLAMA_CPP))
def test_split_matches_llama_cpp_regex_list(kind: str) -> None:
    keyword = next(k for k, v in KEYWORDS.items() if v == kind)
    pre = tokenizers.Tokenizer.from_str(spec_for(keyword)).pre_tokenizer
    assert pre is not None
    lines = [line for line in CORPUS if not CASE_FOLDS.search(line)]
    wrong = [(line, ours, theirs) for line in lines
             if (ours := [p for p, _ in pre.pre_tokenize_str(line)])
             != (theirs := llama_cpp_split(LLAMA_CPP[kind], line))]
    assert wrong[:3] == []


@pytest.mark.parametrize("kind", sorted(LLAMA_CPP))
def test_runtime_ids_match_library_for_every_split(kind: str) -> None:
    keyword = next(k for k, v in KEYWORDS.items() if v == kind)
    text_json = spec_for(keyword)
    lib, ours = tokenizers.Tokenizer.from_str(text_json), Tokenizer.from_str(text_json)
    lines = CORPUS[:600]
    wrong = [(line, ours.encode(line), enc.ids) for line, enc in zip(lines, lib.encode_batch(lines))
             if ours.encode(line) != enc.ids]
    assert wrong[:3] == []


@pytest.mark.parametrize("keyword", ["gpt-4o", "qwen2", "llama-bpe", "smollm", "deepseek-v3",
                                     "deepseek-coder", "deepseek-llm", "deepseek-r1-qwen", "tekken"])
def test_common_keywords_are_accepted(keyword: str) -> None:
    assert tokenizer_json_from_gguf({**trained_meta(), "tokenizer.ggml.pre": keyword})["pre_tokenizer"]


@pytest.mark.parametrize("keyword", [*REFUSED, "no-such-split"])
def test_unknown_keyword_is_refused_in_one_line_naming_the_known_ones(keyword: str) -> None:
    with pytest.raises(ExportError) as caught:
        tokenizer_json_from_gguf({**trained_meta(), "tokenizer.ggml.pre": keyword})
    message = str(caught.value)
    assert "\n" not in message and repr(keyword) in message
    assert all(k in message for k in ("gpt-4o", "qwen2", "llama-bpe", "smollm", "deepseek-v3"))

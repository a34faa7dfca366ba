r"""The text split of every ``tokenizer.ggml.pre`` keyword, as ``tokenizer.json`` pre-tokenizers.

llama.cpp's converter names a byte-level BPE vocabulary's split rule with a keyword
(``tokenizer.ggml.pre``) and llama.cpp maps each keyword to a list of regexes applied one
after the other, every piece kept (llama.cpp ``src/llama-vocab.cpp``, ``llm_tokenizer_bpe``
and the keyword table in ``llama_vocab::impl::load``). Here each keyword becomes the
equivalent Hugging Face pre-tokenizer: a ``Sequence`` of ``Split(..., "Isolated")`` steps
followed by ``ByteLevel(use_regex=False)``, or plain ``ByteLevel`` for the GPT-2 regex.
Where llama.cpp rewrote a model's original regex for its own engine (``(?i:'s|...)`` spelled
``'[sS]|...``, possessive quantifiers dropped), the original regex of the model's
``tokenizer.json`` is used, since that is what the model was trained with.

Keywords whose rule is not expressible here are left out and refused by name: ``\p{Han}``
scripts (kimi-k2), custom digit grouping (afmoe, superbpe, tiny_aya's ``\b``), SentencePiece-
style BPE without the byte alphabet (gemma4, sarvam-moe, whitespace), and the encoder-only
vocabularies that append separators (roberta-bpe, jina-v1-en, jina-v2-code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
GPT4O_SPLIT = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{CONTRACTIONS}?"
               rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{CONTRACTIONS}?"
               r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN_SPLIT = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
                r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
JAIS2_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+" + "".join(rf"|\s{{{n}}}(?!\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4))
               + r"|\s{1,2}(?!\S)|\s{1}")
SEED_CODER_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BAILING_SPLIT = (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                 r"|\s*[\r\n]|\s+(?!\S)|\s+")
EXAONE_MOE_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                    r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+")
MINICPM5_SPLIT = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
UFAKZEKA_SPLIT = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# llama.cpp's own lists where no original is known (its GPT-2 regex without the final
# "|\s+", which keeps the same pieces because every unmatched run is kept as a piece).
_GPT2_BODY = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"
_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+")
_DEEPSEEK3_WORDS = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
                    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTES_ONLY = {**_BYTE_LEVEL, "use_regex": False}


def split_then_bytes(*patterns: str) -> dict[str, Any]:
    """``Split(pattern, "Isolated")`` for each pattern in order, then the byte alphabet."""
    splits = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
              for p in patterns]
    return {"type": "Sequence", "pretokenizers": [*splits, _BYTES_ONLY]}


@dataclass(frozen=True)
class PreTokenizerSpec:
    """How text is split for one ``tokenizer.ggml.pre`` keyword of a byte-level vocabulary."""

    pre_tokenizer: dict[str, Any]
    normalizer: dict[str, Any] | None = None
    ignore_merges: bool = False  # llama.cpp: whole pieces found in the vocab skip merging
    add_bos_default: bool = False  # llama.cpp's default when the file has no add_bos_token


_GPT2 = PreTokenizerSpec(_BYTE_LEVEL)
# llama.cpp "\p{N}" then the GPT-2 regex == HF Digits(individual) then ByteLevel.
_DIGITS_GPT2 = PreTokenizerSpec({"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]})
_LLAMA3 = PreTokenizerSpec(split_then_bytes(LLAMA3_SPLIT), ignore_merges=True, add_bos_default=True)
_LLAMA3_PLAIN = PreTokenizerSpec(split_then_bytes(LLAMA3_SPLIT))
_QWEN2_PLAIN = PreTokenizerSpec(split_then_bytes(QWEN2_SPLIT))
_NFC = {"type": "NFC"}
_GPT4O = PreTokenizerSpec(split_then_bytes(GPT4O_SPLIT))
_DEEPSEEK3 = PreTokenizerSpec(split_then_bytes(r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                                               _DEEPSEEK3_WORDS))
_BLOOM_SPEC = PreTokenizerSpec(split_then_bytes(_BLOOM))


def _names(spec: PreTokenizerSpec, *names: str) -> dict[str, PreTokenizerSpec]:
    return dict.fromkeys(names, spec)


PRE_TOKENIZERS: dict[str, PreTokenizerSpec] = {
    **_names(PreTokenizerSpec(split_then_bytes(r"[\p{P}\$\+<=>\^~\|]+", _GPT2_BODY, r"\p{N}+",
                                               "[0-9][0-9][0-9]")), "default"),
    **_names(_GPT2, "gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling",
             "exaone4", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat", "a.x-4.0",
             "mellum", "modern-bert"),
    **_names(_DIGITS_GPT2, "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
             "minerva-7b", "mellum2"),
    **_names(_LLAMA3, "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
             "midm-2.0", "lfm2", "jina-v5-nano"),
    **_names(_LLAMA3_PLAIN, "dbrx", "smaug-bpe"),
    **_names(PreTokenizerSpec(split_then_bytes(QWEN2_SPLIT), normalizer=_NFC), "qwen2"),
    **_names(PreTokenizerSpec(split_then_bytes(QWEN35_SPLIT), normalizer=_NFC), "qwen35"),
    **_names(_QWEN2_PLAIN, "deepseek-r1-qwen", "megrez", "kormo", "f2llmv2", "stablelm2", "hunyuan",
             "solar-open", "grok-2"),
    **_names(_GPT4O, "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"),
    **_names(PreTokenizerSpec(split_then_bytes(TEKKEN_SPLIT), ignore_merges=True, add_bos_default=True),
             "tekken"),
    **_names(PreTokenizerSpec(split_then_bytes(JAIS2_SPLIT)), "jais-2"),
    **_names(PreTokenizerSpec(split_then_bytes(SEED_CODER_SPLIT)), "seed-coder"),
    **_names(PreTokenizerSpec(split_then_bytes(BAILING_SPLIT)), "bailingmoe", "bailingmoe2", "llada-moe"),
    **_names(PreTokenizerSpec(split_then_bytes(EXAONE_MOE_SPLIT)), "exaone-moe"),
    **_names(PreTokenizerSpec(split_then_bytes(r"\p{N}{1,3}", MINICPM5_SPLIT), ignore_merges=True),
             "minicpm5"),
    **_names(PreTokenizerSpec(split_then_bytes(UFAKZEKA_SPLIT)), "ufakzeka"),
    **_names(PreTokenizerSpec(split_then_bytes("[^\n]+|[\n]+", QWEN2_SPLIT)), "laguna"),
    **_names(PreTokenizerSpec(split_then_bytes("[\r\n]", _DEEPSEEK_LLM_LETTERS,
                                               "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
                                               r"\s+$", _CJK, r"\p{N}+")), "deepseek-llm"),
    **_names(PreTokenizerSpec(split_then_bytes("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}")),
             "deepseek-coder"),
    **_names(_DEEPSEEK3, "deepseek-v3", "hunyuan-dense", "joyai-llm"),
    **_names(PreTokenizerSpec(split_then_bytes(r"[\p{P}\$\+<=>\^~\|`]+", _GPT2_BODY, "[0-9][0-9][0-9]")),
             "falcon"),
    **_names(_BLOOM_SPEC, "bloom", "poro-chat", "gpt3-finnish"),
    **_names(PreTokenizerSpec(split_then_bytes(_BLOOM, r"\p{N}")), "viking"),
}

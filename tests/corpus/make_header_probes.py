"""Generate header_probes.json: requests with odd headers for `pocketlm serve`.

Conditional dates in every format RFC 9110 names and many it does not (no zone, numeric
zones, two-digit years, out-of-range fields, the far past and future), entity tags of every
shape, byte ranges valid and not, Accept-Encoding weights, and methods, each on a file
with a gzip copy, an immutable (hashed) file, the index, a missing file and a hidden one.
test_header_probes.py sends each and checks: no 5xx, the security headers on every
response, and a status among the ones HTTP allows for that request.

    python -m tests.corpus.make_header_probes      # rewrites tests/corpus/header_probes.json
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "header_probes.json"

TARGETS = ["/", "/app.js", "/model.0123456789ab.onnx", "/missing.js", "/.hidden"]
DATES = [
    "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
    "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 -0000", "Sun, 06 Nov 1994 08:49:37 +1400",
    "Fri, 31 Dec 9999 23:59:59 GMT", "Fri, 31 Dec 9999 23:59:59", "Thu, 01 Jan 1970 00:00:00 GMT",
    "Mon, 01 Jan 0001 00:00:00 GMT", "Mon, 32 Jan 2024 25:61:61 GMT", "2024-01-01T00:00:00Z", "yesterday",
    "", " ", "Sun, 06 Nov 1994", "Sun, 06 Nov 1994 08:49:37 XYZ", "0", "-1", "99999999999999999999",
]
ETAGS = ['"x"', "*", 'W/"x"', '"', '""', "x, y, *", ",,,", 'W/', "\"" + "a" * 2000 + "\""]
RANGES = ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=99999999999999999999-", "bytes=-0",
          "bytes=0-1,3-4", "bytes=", "items=0-1", "bytes=a-b", "bytes=0-1,", "bytes=--1"]
ENCODINGS = ["gzip", "gzip;q=0", "*;q=0", "gzip;q=abc", "br, gzip;q=0.5", "identity", "GZIP", ";;;", "*"]
METHODS = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "TRACE", "PROPFIND", "CONNECT"]


def generate() -> list[dict[str, Any]]:
    probes: list[dict[str, Any]] = []
    for target, date, header in product(TARGETS[:3], DATES, ("If-Modified-Since", "If-Unmodified-Since")):
        probes.append({"method": "GET", "target": target, "headers": {header: date}})
    for target, tag in product(TARGETS, ETAGS):
        probes.append({"method": "GET", "target": target, "headers": {"If-None-Match": tag}})
    for target, byte_range in product(TARGETS[1:3], RANGES):
        probes.append({"method": "GET", "target": target, "headers": {"Range": byte_range}})
        probes.append({"method": "GET", "target": target,
                       "headers": {"Range": byte_range, "If-Range": '"stale"'}})
    for target, encoding in product(TARGETS[:2], ENCODINGS):
        probes.append({"method": "GET", "target": target, "headers": {"Accept-Encoding": encoding}})
    for target, method in product(TARGETS, METHODS):
        probes.append({"method": method, "target": "*" if method == "OPTIONS" and target == "/" else target,
                       "headers": {}})
    for index, probe in enumerate(probes):
        probe["id"] = index
    return probes


def main() -> None:
    probes = generate()
    OUT.write_text(json.dumps(probes, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(probes)} probes to {OUT}")


if __name__ == "__main__":
    main()

"""Gzip copies of a built site's files, for servers that send them to browsers that accept it.

Beside each file that gzip makes noticeably smaller, `pocketlm build` writes `NAME.gz`
(http_policy.GZIP_SUFFIX). `pocketlm serve` and the shipped nginx config (`gzip_static on`)
answer a request for NAME with those bytes and `Content-Encoding: gzip`; the browser
unpacks them, so the page, the service worker and manifest.json only ever see NAME. For the
default model this cuts a first visit by about a quarter (onnxruntime-web's and Pyodide's
WebAssembly shrink to a quarter and a third, the model's weights by a tenth).

The copies are written once at build time at the strongest level (a server compressing on
the fly would spend CPU on every visit and use weaker levels), and are byte-reproducible:
no file name and a zero timestamp in the gzip header.
"""

from __future__ import annotations

import gzip
import posixpath
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from .http_policy import GZIP_SUFFIX

#: Extensions worth trying (formats that are already compressed are left alone).
COMPRESSIBLE: Final = frozenset({
    ".html", ".js", ".mjs", ".css", ".json", ".map", ".txt", ".md", ".svg", ".wasm", ".onnx", ".data",
})
#: A copy is kept only when it saves at least this share of the file.
MIN_SAVING: Final = 0.05
_CHUNK: Final = 1 << 22


def gzip_file(source: Path, target: Path) -> int:
    """Write `source` gzip-compressed (level 9, reproducible header) to `target`; its size."""
    with (source.open("rb") as reader, target.open("wb") as raw,
          gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as writer):
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
    return target.stat().st_size


def compress_one(root: Path, relative: str) -> tuple[str, int] | None:
    """Gzip one site file; keeps the copy only when it is worth it. Returns (path, size)."""
    if posixpath.splitext(relative)[1].lower() not in COMPRESSIBLE:
        return None
    source = root / relative
    size = source.stat().st_size
    if size < 1024:
        return None  # headers would eat the saving
    target = source.with_name(source.name + GZIP_SUFFIX)
    packed = gzip_file(source, target)
    if packed > size * (1 - MIN_SAVING):
        target.unlink()
        return None
    return relative, packed


def compress_site(root: Path, paths: Iterable[str], workers: int = 2) -> dict[str, int]:
    """Gzip copies beside the files `paths` (relative to `root`); {path: compressed size}.

    zlib releases the GIL while it compresses, so a few threads share the work.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda relative: compress_one(root, relative), sorted(paths))
        return dict(entry for entry in done if entry is not None)


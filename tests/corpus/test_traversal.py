"""Every target of traversal.txt, sent as is to `pocketlm serve`'s server, is refused (400 or
404) with the security headers, and no response carries a canary planted outside the site,
in its hidden files, its host configs or its gzip copies."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketlm_build.http_policy import SECURITY_HEADERS
from tests.build_tools.live_server import get, running_server
from tests.corpus import make_traversal

TARGETS = make_traversal.OUT.read_text(encoding="utf-8").splitlines()
CANARY = b"CANARY-5f1d"
PUBLIC = b"<!doctype html><title>public page</title>" + b" " * 2000


def test_the_committed_corpus_is_what_the_script_writes() -> None:
    assert TARGETS == make_traversal.generate()
    assert len(TARGETS) >= 300


def plant(root: Path) -> Path:
    """A site folder with canaries around and inside it; returns the site folder."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_bytes(CANARY + b" outside")
    site = root / "site"
    files = {
        "index.html": PUBLIC,
        "manifest.json": b'{"format": "pocketlm-site", "build_id": "x", "files": []}',
        "model/model.onnx": b"public-graph",
        ".canary": CANARY + b" hidden file",
        ".git/canary": CANARY + b" hidden folder",
        "model/.cache/canary": CANARY + b" nested hidden folder",
        "_headers": CANARY + b" headers",
        "pocketlm-nginx.conf": CANARY + b" nginx",
        "index.html.gz": gzip.compress(CANARY + b" gzip copy"),
    }
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    (site / "link-out").symlink_to(outside, target_is_directory=True)
    (site / "model" / "link-file").symlink_to(outside / "canary.txt")
    (site / "link-hidden").symlink_to(site / ".canary")
    return site


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_server(plant(tmp_path_factory.mktemp("traversal"))) as address:
        yield address


def test_the_public_page_is_served(live: tuple[str, int]) -> None:
    status, _, body = get(live, "/index.html", {"Accept-Encoding": "identity"})
    assert (status, body) == (200, PUBLIC)


def test_no_traversal_form_leaks(live: tuple[str, int]) -> None:
    wrong = []
    for target in TARGETS:
        status, headers, body = get(live, target, {"Accept-Encoding": "gzip"})
        leaked = CANARY in body or b"root:" in body or CANARY in _gunzip(body)
        missing = [n for n, v in SECURITY_HEADERS if headers.get(n.lower()) != v]
        if status not in (400, 404) or leaked or missing:
            wrong.append((target, status, leaked, missing))
    assert wrong == []


def _gunzip(body: bytes) -> bytes:
    try:
        return gzip.decompress(body)
    except (OSError, EOFError):
        return b""

"""Every probe of header_probes.json gets a well-formed answer from `pocketlm serve`: no 5xx,
the security headers on every response, and a status HTTP allows for that request."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pocketlm_build.http_policy import SECURITY_HEADERS
from tests.build_tools.live_server import get, running_server
from tests.corpus import make_header_probes

PROBES = json.loads(make_header_probes.OUT.read_text(encoding="utf-8"))
APP_JS = b"export const answer = 42;\n" * 200


def test_the_committed_corpus_is_what_the_script_writes() -> None:
    assert PROBES == make_header_probes.generate()
    assert len(PROBES) >= 200


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    site = tmp_path_factory.mktemp("probes") / "site"
    site.mkdir()
    (site / "index.html").write_bytes(b"<!doctype html><title>probe</title>")
    (site / "app.js").write_bytes(APP_JS)
    (site / "app.js.gz").write_bytes(gzip.compress(APP_JS))
    (site / "model.0123456789ab.onnx").write_bytes(bytes(range(256)) * 4)
    (site / ".hidden").write_bytes(b"secret")
    (site / "manifest.json").write_text('{"format": "pocketlm-site", "build_id": "x", "files": []}')
    with running_server(site) as address:
        yield address


def allowed_statuses(probe: dict[str, Any]) -> set[int]:
    if probe["method"] not in ("GET", "HEAD"):
        return {400, 404, 405}  # 404: `OPTIONS *` names no file
    if probe["target"] in ("/missing.js", "/.hidden"):
        return {404}
    return {200, 206, 304, 412, 416}


def test_every_probe_gets_a_well_formed_answer(live: tuple[str, int]) -> None:
    wrong = []
    for probe in PROBES:
        status, headers, _ = get(live, probe["target"], probe["headers"], method=probe["method"])
        missing = [n for n, v in SECURITY_HEADERS if headers.get(n.lower()) != v]
        if status not in allowed_statuses(probe) or missing:
            wrong.append((probe["id"], probe["method"], probe["target"], probe["headers"], status, missing))
    assert wrong == []

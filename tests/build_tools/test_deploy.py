"""Host configs: `_headers` and pocketlm-nginx.conf say what `pocketlm serve` does.

The nginx tests run Debian's /usr/sbin/nginx on the generated config and compare its
answers with the Starlette server's for the same site.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pocketlm_build.compress import compress_site
from pocketlm_build.deploy import render_nginx_conf, write_host_configs
from pocketlm_build.http_policy import MEDIA_TYPES, SECURITY_HEADERS
from pocketlm_build.server import create_app
from tests.nginx_runner import nginx_serving

NGINX = "/usr/sbin/nginx"
SECRET = b"TOP-SECRET"
WASM = "ort-wasm-simd-threaded.3f2a9c1b.wasm"
IMMUTABLE = "public, max-age=31536000, immutable"
SITE_FILES: dict[str, bytes] = {
    "index.html": b"<!doctype html><title>pocketlm</title>",
    "sw.js": b"self.addEventListener('fetch', () => {});",
    "app.mjs": b"export const app = 1;",
    "app.1234abc.js": b"// 7 hex digits: not a content hash",
    "Upper.DEADBEEF.js": b"// upper-case hex: not a content hash",
    "style.css": b"body { margin: 0 }",
    "icon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "icon.png": b"\x89PNG\r\n\x1a\n",
    "app.webmanifest": b"{}",
    WASM: bytes(range(256)) * 8,
    "python_stdlib.zip": b"PK\x05\x06" + bytes(18),
    "pocketlm_runtime-0.1.0-py3-none-any.whl": b"PK\x05\x06" + bytes(18),
    "model/model.onnx": b"onnx-bytes",
    "model/model.0123abcd.onnx.data": b"onnx-external-data",
    "model/pocketlm.json": b'{"model": "tiny"}',
    "notes.unknownext": b"?",
}
HIDDEN_FILES = {".hidden": SECRET, ".git/config": SECRET, "model/.cache/key": SECRET}
SERVED_PATHS = ["/", "/manifest.json", *(f"/{name}" for name in sorted(SITE_FILES))]
REFUSED_PATHS = [
    "/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/%252e%252e/x",
    "//etc/passwd",
    "/\\..\\outside/secret.txt",
    "/../outside/secret.txt",
    "/.git/config",
    "/.hidden",
    "/model/.cache/key",
    "/model/secret-link",
    "/escape/secret.txt",
    "/model/",
    "/model",
    "/_headers",
    "/pocketlm-nginx.conf",
    "/missing.3f2a9c1b.wasm",
]


def make_site(root: Path, *, with_manifest: bool = True, reverse: bool = False) -> Path:
    """A fake build folder with hidden files and symlinks out of it; returns the folder."""
    outside = root / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    dist = root / "dist"
    items = sorted({**SITE_FILES, **HIDDEN_FILES}.items(), reverse=reverse)
    for name, data in items:
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(data)
    if with_manifest:
        files = [{"path": n, "size": len(d), "sha256": "0" * 64} for n, d in SITE_FILES.items()]
        manifest = {"format": "pocketlm-site", "build_id": "ab12cd34", "files": files}
        (dist / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (dist / "model" / "secret-link").symlink_to(outside / "secret.txt")
    (dist / "escape").symlink_to(outside, target_is_directory=True)
    return dist


def parse_headers_file(text: str) -> dict[str, dict[str, str]]:
    """`_headers` text -> {path pattern: {header name: value}}; fails on a repeated header."""
    rules: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            assert line not in rules, f"pattern {line} appears twice"
            current = rules[line] = {}
            continue
        assert current is not None, "a header line before any path"
        name, value = line.strip().split(": ", 1)
        assert name not in current, f"{name} repeated in one rule"
        current[name] = value
    return rules


# --- write_host_configs ------------------------------------------------------------------


def test_write_host_configs_writes_headers_and_nginx_conf_at_the_site_root(tmp_path: Path) -> None:
    dist = make_site(tmp_path)
    written = write_host_configs(dist)
    assert written == [dist / "_headers", dist / "pocketlm-nginx.conf"]
    assert all(path.is_file() for path in written)


def test_host_configs_are_the_same_bytes_before_and_after_the_manifest(tmp_path: Path) -> None:
    before = make_site(tmp_path / "a", with_manifest=False)
    after = make_site(tmp_path / "b", reverse=True)
    first = [path.read_bytes() for path in write_host_configs(before)]
    second = [path.read_bytes() for path in write_host_configs(after)]
    again = [path.read_bytes() for path in write_host_configs(after)]
    assert first == second == again


def test_write_host_configs_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="nope is not a folder"):
        write_host_configs(tmp_path / "nope")


# --- _headers ----------------------------------------------------------------------------


def test_headers_file_sends_isolation_headers_for_every_path(tmp_path: Path) -> None:
    dist = make_site(tmp_path)
    write_host_configs(dist)
    rules = parse_headers_file((dist / "_headers").read_text())
    assert rules["/*"] == dict(SECURITY_HEADERS)


def test_headers_file_gives_each_served_file_exactly_one_cache_rule(tmp_path: Path) -> None:
    dist = make_site(tmp_path)
    write_host_configs(dist)
    rules = parse_headers_file((dist / "_headers").read_text())
    client = TestClient(create_app(dist))
    assert "Cache-Control" not in rules["/*"]
    assert sorted(path for path in rules if path != "/*") == sorted(SERVED_PATHS)
    for path in SERVED_PATHS:
        assert rules[path] == {"Cache-Control": client.get(path).headers["cache-control"]}
    assert rules[f"/{WASM}"]["Cache-Control"] == IMMUTABLE
    assert rules["/model/model.0123abcd.onnx.data"]["Cache-Control"] == IMMUTABLE


def test_headers_file_names_no_hidden_file_symlink_or_host_config(tmp_path: Path) -> None:
    dist = make_site(tmp_path)
    write_host_configs(dist)
    text = (dist / "_headers").read_text()
    for name in (".hidden", ".git", ".cache", "secret-link", "escape", "_headers\n", "nginx"):
        assert f"/{name}" not in text


def test_headers_file_refuses_a_file_name_patterns_cannot_match(tmp_path: Path) -> None:
    dist = make_site(tmp_path)
    (dist / "my model.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="'/my model.onnx' has characters outside"):
        write_host_configs(dist)


# --- pocketlm-nginx.conf, read as text -----------------------------------------------------


def test_nginx_types_block_lists_every_policy_media_type() -> None:
    block = re.search(r"^types \{\n(.*?)^\}", render_nginx_conf(), re.DOTALL | re.MULTILINE)
    assert block is not None
    declared = {}
    for line in block.group(1).splitlines():
        media_type, *extensions = line.strip().rstrip(";").split()
        declared.update({f".{extension}": media_type for extension in extensions})
    assert declared == MEDIA_TYPES


def test_every_nginx_location_repeats_the_security_headers() -> None:
    # add_header in a location drops the ones inherited from the server block.
    locations = re.findall(
        r"^location [^{]*\{\n(.*?)^\}", render_nginx_conf(), re.DOTALL | re.MULTILINE
    )
    assert len(locations) >= 5
    for body in locations:
        for name, value in SECURITY_HEADERS:
            assert f'add_header {name} "{value}" always;' in body


# --- pocketlm-nginx.conf, served by a real nginx ---------------------------------------------


@pytest.fixture(scope="module")
def nginx_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """Debian's nginx serving a fake site through the shipped pocketlm-nginx.conf."""
    root = tmp_path_factory.mktemp("nginx")
    dist = make_site(root)
    compress_site(dist, [WASM])  # as `pocketlm build` does
    write_host_configs(dist)
    with nginx_serving(dist, root / "nginx") as port:
        yield dist, port


def nginx_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """Send `GET path` exactly as given; returns the status and the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("path", SERVED_PATHS)
def test_nginx_sends_the_same_policy_headers_as_pocketlm_serve(
    nginx_site: tuple[Path, int], path: str
) -> None:
    dist, port = nginx_site
    expected = TestClient(create_app(dist)).get(path)
    status, headers, body = nginx_get(port, path)
    assert status == expected.status_code == 200
    assert body == expected.content
    compared = ["content-type", "cache-control", *(name.lower() for name, _ in SECURITY_HEADERS)]
    assert {name: headers.get(name) for name in compared} == {
        name: expected.headers.get(name) for name in compared
    }


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_nginx_never_serves_paths_outside_hidden_or_folders(
    nginx_site: tuple[Path, int], path: str
) -> None:
    _, port = nginx_site
    status, data = raw_get(port, path)
    assert status in (400, 404)  # nginx answers 400 itself to `..` above the root
    assert SECRET not in data
    assert b"root:" not in data
    assert b"Index of" not in data


def test_nginx_404_carries_isolation_headers_and_no_cache_lifetime(
    nginx_site: tuple[Path, int],
) -> None:
    _, port = nginx_site
    status, headers, _ = nginx_get(port, "/missing.3f2a9c1b.wasm")
    assert status == 404
    assert "cache-control" not in headers
    for name, value in SECURITY_HEADERS:
        assert headers[name.lower()] == value


def test_nginx_range_request_returns_206_with_content_range(nginx_site: tuple[Path, int]) -> None:
    _, port = nginx_site
    status, headers, body = nginx_get(port, f"/{WASM}", {"Range": "bytes=100-199"})
    assert status == 206
    assert headers["content-range"] == f"bytes 100-199/{len(SITE_FILES[WASM])}"
    assert body == SITE_FILES[WASM][100:200]
    status, headers, _ = nginx_get(port, f"/{WASM}", {"Range": "bytes=99999-"})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(SITE_FILES[WASM])}"


def test_nginx_matching_etag_returns_304(nginx_site: tuple[Path, int]) -> None:
    _, port = nginx_site
    _, headers, _ = nginx_get(port, "/sw.js")
    status, not_modified, body = nginx_get(port, "/sw.js", {"If-None-Match": headers["etag"]})
    assert status == 304
    assert body == b""
    assert not_modified["cache-control"] == "no-cache"
    assert not_modified["cross-origin-embedder-policy"] == "require-corp"


def test_nginx_sends_the_gzip_copy_like_pocketlm_serve(nginx_site: tuple[Path, int]) -> None:
    dist, port = nginx_site
    status, headers, body = nginx_get(port, f"/{WASM}", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "application/wasm"
    assert body == (dist / f"{WASM}.gz").read_bytes()
    assert gzip.decompress(body) == SITE_FILES[WASM]
    status, headers, body = nginx_get(port, f"/{WASM}")
    assert "content-encoding" not in headers and body == SITE_FILES[WASM]
    assert nginx_get(port, f"/{WASM}.gz")[0] == 404

"""`pocketlm serve`: headers, media types, caching, ranges, 304, and what is never served."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from pocketlm_build.server import NotASiteError, create_app, serve

SECRET = b"TOP-SECRET"
WASM = "ort-wasm-simd-threaded.3f2a9c1b.wasm"
WASM_BYTES = bytes(range(256)) * 8  # 2048 bytes, every offset recognisable
ISOLATION = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
BUILD_HINT = "run `pocketlm build MODEL_DIR -o DIST` first"

# What a client must never read: outside the site, hidden, folders, host configs.
REFUSED_PATHS = [
    "/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/%252e%252e/x",
    "//etc/passwd",
    "/\\..\\outside/secret.txt",
    "/%5c..%5coutside/secret.txt",
    "/../outside/secret.txt",
    "/model/../../outside/secret.txt",
    "/.git/config",
    "/.hidden",
    "/model/.cache/key",
    "/model/secret-link",
    "/escape/secret.txt",
    "/model/",
    "/model",
    "/index.html/",
    "/_headers",
    "/pocketlm-nginx.conf",
    "/index.html%00.png",
]


def make_site(root: Path) -> Path:
    """A fake build folder (plus secrets around it) under `root`; returns the site folder."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    dist = root / "dist"
    files: dict[str, bytes] = {
        "index.html": b"<!doctype html><title>pocketlm</title>",
        "sw.js": b"self.addEventListener('fetch', () => {});",
        "app.mjs": b"export const app = 1;",
        "worker.js": b"postMessage(1);",
        "app.1234abc.js": b"// 7 hex digits: not a content hash",
        "style.css": b"body { margin: 0 }",
        "icon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "icon.png": b"\x89PNG\r\n\x1a\n",
        "app.webmanifest": b"{}",
        WASM: WASM_BYTES,
        "python_stdlib.zip": b"PK\x05\x06" + bytes(18),
        "pocketlm_runtime-0.1.0-py3-none-any.whl": b"PK\x05\x06" + bytes(18),
        "model/model.onnx": b"onnx-bytes",
        "model/model.onnx.data": b"onnx-external-data",
        "model/pocketlm.json": b'{"model": "tiny"}',
        "_headers": b"/*\n  X-Old: stale\n",
        "pocketlm-nginx.conf": b"# stale\n",
        ".hidden": SECRET,
        ".git/config": SECRET,
        "model/.cache/key": SECRET,
    }
    for name, data in files.items():
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(data)
    listed = [
        {"path": name, "size": len(data), "sha256": "0" * 64}
        for name, data in sorted(files.items())
        if not name.startswith(".")
    ]
    manifest = {"format": "pocketlm-site", "build_id": "ab12cd34", "files": listed}
    (dist / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (dist / "model" / "secret-link").symlink_to(outside / "secret.txt")
    (dist / "escape").symlink_to(outside, target_is_directory=True)
    return dist


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    return make_site(tmp_path)


@pytest.fixture
def client(dist: Path) -> TestClient:
    return TestClient(create_app(dist))


# --- headers, media types, caching -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", {}),
        ("/model/model.onnx", {}),
        ("/nothing-here.js", {}),
        ("/.git/config", {}),
        (f"/{WASM}", {"Range": "bytes=0-9"}),
        (f"/{WASM}", {"Range": "bytes=99999-"}),
    ],
)
def test_every_response_carries_isolation_headers(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = client.get(path, headers=headers)
    for name, value in ISOLATION.items():
        assert response.headers[name] == value


def test_not_modified_response_carries_isolation_headers(client: TestClient) -> None:
    etag = client.get("/sw.js").headers["etag"]
    response = client.get("/sw.js", headers={"If-None-Match": etag})
    assert response.status_code == 304
    for name, value in ISOLATION.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/app.mjs", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        (f"/{WASM}", "application/wasm"),
        ("/model/model.onnx", "application/octet-stream"),
        ("/model/model.onnx.data", "application/octet-stream"),
        ("/model/pocketlm.json", "application/json"),
        ("/manifest.json", "application/json"),
        ("/python_stdlib.zip", "application/zip"),
        ("/pocketlm_runtime-0.1.0-py3-none-any.whl", "application/zip"),
        ("/icon.svg", "image/svg+xml"),
        ("/icon.png", "image/png"),
        ("/app.webmanifest", "application/manifest+json"),
    ],
)
def test_media_type_follows_file_extension(client: TestClient, path: str, media_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type


@pytest.mark.parametrize("path", ["/", "/index.html", "/sw.js", "/manifest.json"])
def test_entry_files_are_revalidated_on_every_visit(client: TestClient, path: str) -> None:
    assert client.get(path).headers["cache-control"] == NO_CACHE


def test_hashed_file_is_cached_as_immutable(client: TestClient) -> None:
    assert client.get(f"/{WASM}").headers["cache-control"] == IMMUTABLE


@pytest.mark.parametrize(
    "path", ["/model/model.onnx", "/model/model.onnx.data", "/app.mjs", "/app.1234abc.js"]
)
def test_unhashed_files_are_revalidated(client: TestClient, path: str) -> None:
    assert client.get(path).headers["cache-control"] == NO_CACHE


def test_error_responses_are_not_given_a_cache_lifetime(client: TestClient) -> None:
    response = client.get("/missing.3f2a9c1b.wasm")
    assert response.status_code == 404
    assert "cache-control" not in response.headers


def test_root_serves_index_html(client: TestClient, dist: Path) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.content == (dist / "index.html").read_bytes()


# --- ranges, conditional requests, methods -----------------------------------------------


def test_range_request_returns_206_with_content_range(client: TestClient) -> None:
    response = client.get(f"/{WASM}", headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-199/{len(WASM_BYTES)}"
    assert response.headers["content-length"] == "100"
    assert response.content == WASM_BYTES[100:200]


def test_suffix_range_returns_the_last_bytes(client: TestClient) -> None:
    response = client.get(f"/{WASM}", headers={"Range": "bytes=-16"})
    assert response.status_code == 206
    assert response.content == WASM_BYTES[-16:]


def test_unsatisfiable_range_returns_416(client: TestClient) -> None:
    response = client.get(f"/{WASM}", headers={"Range": f"bytes={len(WASM_BYTES)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(WASM_BYTES)}"
    assert response.content == b""


def test_matching_etag_returns_304_without_body(client: TestClient) -> None:
    first = client.get(f"/{WASM}")
    response = client.get(f"/{WASM}", headers={"If-None-Match": first.headers["etag"]})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == first.headers["etag"]
    assert response.headers["cache-control"] == IMMUTABLE


def test_stale_etag_returns_the_whole_file(client: TestClient) -> None:
    response = client.get(f"/{WASM}", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == WASM_BYTES


def test_if_modified_since_last_modified_returns_304(client: TestClient) -> None:
    last_modified = client.get("/app.mjs").headers["last-modified"]
    response = client.get("/app.mjs", headers={"If-Modified-Since": last_modified})
    assert response.status_code == 304


def test_changed_file_gets_a_new_etag(client: TestClient, dist: Path) -> None:
    before = client.get("/sw.js").headers["etag"]
    (dist / "sw.js").write_bytes(b"// a new build, longer than before")
    response = client.get("/sw.js", headers={"If-None-Match": before})
    assert response.status_code == 200
    assert response.headers["etag"] != before


def test_head_returns_the_get_headers_without_body(client: TestClient) -> None:
    get = client.get(f"/{WASM}")
    head = client.head(f"/{WASM}")
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "cache-control", *ISOLATION):
        assert head.headers[name] == get.headers[name]


def test_other_methods_are_refused_with_405(client: TestClient) -> None:
    response = client.post("/index.html", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# --- what is never served ----------------------------------------------------------------


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_paths_outside_or_hidden_or_folders_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert SECRET not in response.content
    assert response.content == b"Not Found"


def test_symlink_within_the_site_is_served(client: TestClient, dist: Path) -> None:
    (dist / "alias.mjs").symlink_to(dist / "app.mjs")
    response = client.get("/alias.mjs")
    assert response.status_code == 200
    assert response.content == (dist / "app.mjs").read_bytes()


def test_symlink_to_a_hidden_file_in_the_site_is_404(client: TestClient, dist: Path) -> None:
    (dist / "visible.txt").symlink_to(dist / ".git" / "config")
    assert client.get("/visible.txt").status_code == 404


# --- refusing to start -------------------------------------------------------------------


def test_refuses_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(NotASiteError) as caught:
        create_app(missing)
    assert str(caught.value) == f"{missing} is not a folder; {BUILD_HINT}"


def test_refuses_a_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    with pytest.raises(NotASiteError) as caught:
        create_app(tmp_path)
    message = str(caught.value)
    assert (
        message == f"{tmp_path} has no manifest.json, so it is not a pocketlm build; {BUILD_HINT}"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("manifest", "found"),
    [
        ('{"format": "something-else", "files": []}', "'something-else'"),
        ('{"files": []}', "None"),
        ("[1, 2]", "None"),
    ],
)
def test_refuses_a_manifest_of_another_format(tmp_path: Path, manifest: str, found: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(NotASiteError) as caught:
        create_app(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'manifest.json'} has format {found}, expected 'pocketlm-site'; {BUILD_HINT}"
    )


def test_refuses_a_manifest_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(NotASiteError, match="is not readable JSON .*pocketlm build MODEL_DIR"):
        create_app(tmp_path)


def test_serve_refuses_a_non_site_before_listening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        pytest.fail("uvicorn started on a folder that is not a pocketlm build")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    with pytest.raises(NotASiteError, match="has no manifest.json"):
        serve(tmp_path)


# --- over real HTTP: raw paths that a test client would normalise ------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """uvicorn serving a fake site on 127.0.0.1, on a port the OS picked."""
    dist = make_site(tmp_path_factory.mktemp("live"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_app(dist), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def raw_get(address: tuple[str, int], path: str) -> tuple[int, dict[str, str], bytes]:
    """Send `GET path` with the request target exactly as given (no normalising)."""
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        response = http.client.HTTPResponse(conn)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.mark.parametrize(
    "path", [*REFUSED_PATHS, "/../../../../etc/passwd", "/model/./../../outside/secret.txt"]
)
def test_raw_traversal_over_http_never_leaks(live_server: tuple[str, int], path: str) -> None:
    status, _, body = raw_get(live_server, path)
    assert status == 404
    assert SECRET not in body
    assert b"root:" not in body


def test_real_server_serves_files_with_policy_headers(live_server: tuple[str, int]) -> None:
    status, headers, body = raw_get(live_server, f"/{WASM}")
    assert status == 200
    assert body == WASM_BYTES
    assert headers["content-type"] == "application/wasm"
    assert headers["cache-control"] == IMMUTABLE
    for name, value in ISOLATION.items():
        assert headers[name] == value


# --- gzip copies ---------------------------------------------------------------------------


@pytest.fixture
def packed(dist: Path) -> int:
    """A gzip copy of the WASM file, as `pocketlm build` writes it; returns its size."""
    from pocketlm_build.compress import compress_site

    (dist / WASM).write_bytes(WASM_BYTES * 8)  # repetitive: gzip shrinks it a lot
    return compress_site(dist, [WASM, "app.mjs"])[WASM]


def test_gzip_copy_goes_to_clients_that_accept_gzip(client: TestClient, packed: int) -> None:
    response = client.get(f"/{WASM}", headers={"Accept-Encoding": "br, gzip;q=0.5"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(packed)  # what went over the wire
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == "application/wasm"
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.content == WASM_BYTES * 8  # httpx undid the encoding
    assert gzip.decompress(_raw(client, f"/{WASM}")) == WASM_BYTES * 8


def _raw(client: TestClient, path: str) -> bytes:
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as response:
        return b"".join(response.iter_raw())


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0", "br", "*;q=0"])
def test_plain_file_goes_to_clients_that_refuse_gzip(client: TestClient, packed: int,
                                                     accept: str | None) -> None:
    response = client.get(f"/{WASM}", headers={"Accept-Encoding": accept or ""})
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == WASM_BYTES * 8


def test_range_requests_get_the_plain_file(client: TestClient, packed: int) -> None:
    response = client.get(f"/{WASM}", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert response.status_code == 206
    assert "content-encoding" not in response.headers
    assert response.content == WASM_BYTES[:10]


def test_each_encoding_has_its_own_etag(client: TestClient, packed: int) -> None:
    plain = client.get(f"/{WASM}", headers={"Accept-Encoding": "identity"}).headers["etag"]
    encoded = client.get(f"/{WASM}", headers={"Accept-Encoding": "gzip"}).headers["etag"]
    assert plain != encoded
    again = client.get(f"/{WASM}", headers={"Accept-Encoding": "gzip", "If-None-Match": encoded})
    assert again.status_code == 304
    assert again.headers["vary"] == "Accept-Encoding"


def test_gzip_copies_have_no_url_of_their_own(client: TestClient, packed: int) -> None:
    assert client.get(f"/{WASM}.gz").status_code == 404


def test_files_without_a_copy_are_sent_plain(client: TestClient, packed: int) -> None:
    response = client.get("/app.mjs", headers={"Accept-Encoding": "gzip"})  # too small to pack
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers


# RFC 9110 section 14.2: "An origin server MUST ignore a Range header field that contains a
# range unit it does not understand"; section 14.1: range units are case-insensitive.
@pytest.mark.parametrize("value", ["items=0-9", "pages=1-2", "0-9", "bytesx=0-9"])
def test_range_in_an_unknown_unit_is_ignored(client: TestClient, value: str) -> None:
    response = client.get(f"/{WASM}", headers={"Range": value})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == WASM_BYTES


def test_range_unit_is_case_insensitive(client: TestClient) -> None:
    response = client.get(f"/{WASM}", headers={"Range": "Bytes=10-19"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 10-19/{len(WASM_BYTES)}"
    assert response.content == WASM_BYTES[10:20]

"""`pocketlm serve` under hostile or careless clients: odd dates, errors of every kind, slow
and half-sent requests, and the security headers everywhere."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pocketlm_build import listen, server
from pocketlm_build.http_policy import SECURITY_HEADERS
from tests.build_tools.live_server import get, raw_request, running_server
from tests.build_tools.test_server import WASM, make_site

EXPECTED = {name.lower(): value for name, value in SECURITY_HEADERS}


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, (name, headers)


def test_the_policy_is_strict() -> None:
    csp = dict(part.split(" ", 1) for part in EXPECTED["content-security-policy"].split("; "))
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert csp["worker-src"] == csp["connect-src"] == "'self'"
    assert csp["object-src"] == csp["base-uri"] == csp["frame-ancestors"] == "'none'"
    assert not [v for v in csp.values() if "unsafe-inline" in v or "'unsafe-eval'" in v or "*" in v]
    assert EXPECTED["referrer-policy"] == "no-referrer"
    assert "camera=()" in EXPECTED["permissions-policy"] and "microphone=()" in EXPECTED["permissions-policy"]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(server.create_app(make_site(tmp_path)), raise_server_exceptions=False)


@pytest.mark.parametrize("since", [
    "Sun, 06 Nov 1994 08:49:37",  # no zone at all
    "Sun, 06 Nov 1994 08:49:37 -0000",
    "Sunday, 06-Nov-94 08:49:37",
    "Sun Nov  6 08:49:37 1994",
    "Fri, 31 Dec 9999 23:59:59",
    "garbage",
    "Mon, 32 Foo 2020 99:99:99 GMT",
    "",
])
def test_if_modified_since_without_a_zone_is_200_or_304(client: TestClient, since: str) -> None:
    response = client.get("/index.html", headers={"If-Modified-Since": since})
    assert response.status_code in (200, 304)
    assert_security_headers({k.lower(): v for k, v in response.headers.items()})


def test_a_zoneless_date_after_the_file_gives_304(client: TestClient) -> None:
    response = client.get("/index.html", headers={"If-Modified-Since": "Fri, 31 Dec 9999 23:59:59"})
    assert response.status_code == 304
    response = client.get("/index.html", headers={"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37"})
    assert response.status_code == 200


def test_a_500_carries_the_security_headers(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(root: Path, url_path: str) -> None:
        raise RuntimeError("disk went away")

    monkeypatch.setattr(server, "resolve_file", broken)
    response = client.get("/index.html")
    assert response.status_code == 500
    assert_security_headers({k.lower(): v for k, v in response.headers.items()})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with running_server(make_site(tmp_path_factory.mktemp("hardening"))) as address:
        yield address


@pytest.mark.parametrize("head", [
    b"GARBAGE\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_malformed_requests_get_400_with_the_security_headers(live: tuple[str, int], head: bytes) -> None:
    status, headers, _ = raw_request(live, head)
    assert status == 400
    assert_security_headers(headers)


@pytest.mark.parametrize("method, target, status", [
    ("GET", "/missing.js", 404), ("GET", "/.git/config", 404), ("POST", "/index.html", 405),
    ("DELETE", "/", 405), ("GET", f"/{WASM}", 200), ("HEAD", "/", 200),
])
def test_every_status_carries_the_security_headers(live: tuple[str, int], method: str, target: str,
                                                   status: int) -> None:
    got, headers, _ = get(live, target, method=method)
    assert got == status
    assert_security_headers(headers)
    assert "server" not in headers  # no product banner


def _closed_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_slow_and_half_sent_requests_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listen, "REQUEST_HEAD_TIMEOUT", 1.0)
    with running_server(make_site(tmp_path)) as address:
        started = time.monotonic()
        silent = socket.create_connection(address)
        half = socket.create_connection(address)
        half.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        drip = socket.create_connection(address)
        try:
            for byte in b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Slow: ":
                drip.sendall(bytes([byte]))  # a byte at a time does not buy more time
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass  # already closed: what is wanted
        for conn in (silent, half, drip):
            assert _closed_within(conn, 5), "the connection stayed open"
            conn.close()
        assert time.monotonic() - started < 8
        # A complete request on a fresh connection is still answered.
        status, _, _ = get(address, "/index.html")
        assert status == 200


@pytest.mark.parametrize("byte_range", ["items=0-1", "bytes=5-2", "bytes=", "bytes=a-b", "bytes=-0"])
def test_an_invalid_range_is_ignored_not_a_400(client: TestClient, byte_range: str) -> None:
    whole = client.get(f"/{WASM}").content
    response = client.get(f"/{WASM}", headers={"Range": byte_range})
    assert (response.status_code, response.content) == (200, whole)  # RFC 9110 section 14.2

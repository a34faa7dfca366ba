"""`pocketlm serve`'s server (server.make_server: listen.py's connection rules) on a loopback
port the OS picks, in a thread, and a raw HTTP client that sends bytes exactly as given."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pocketlm_build.server import create_app, make_server


@contextmanager
def running_server(dist: Path, wrap: Callable[[Any], Any] | None = None) -> Iterator[tuple[str, int]]:
    """Serve `dist` (its app passed through `wrap`, if given) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port: int = sock.getsockname()[1]
    app = create_app(dist)
    server = make_server(wrap(app) if wrap else app, log_level="critical")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def raw_request(address: tuple[str, int], head: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line and headers, CRLF-terminated) as is; the parsed response."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(head)
        response = http.client.HTTPResponse(conn, method="HEAD" if head.startswith(b"HEAD ") else None)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def get(address: tuple[str, int], target: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return raw_request(address, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

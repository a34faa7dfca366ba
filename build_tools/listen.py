"""Where and how `pocketlm serve` listens: the address checks, the socket, the connection rules.

- An empty host is refused (it binds every interface); any address that is not loopback
  gets a warning line, since the site is then reachable from other machines.
- The socket is bound before uvicorn starts, so a port in use or an unknown host is one
  line (`ServeError`), not uvicorn's multi-line log and exit status 1.
- Connections (`GuardedH11Protocol`, uvicorn's h11 protocol with two additions):
  a request whose head (request line and headers) is not complete within
  `REQUEST_HEAD_TIMEOUT` seconds of the connection opening, or of the previous response,
  is closed, so slow or half-sent requests cannot hold connections open (idle keep-alive
  connections close after uvicorn's `timeout_keep_alive`); and the 400 that uvicorn writes
  for a malformed request carries the same security headers as every other response.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import UserError
from .http_policy import SECURITY_HEADERS

REQUEST_HEAD_TIMEOUT: Final = 10.0
KEEP_ALIVE_TIMEOUT: Final = 5
LOOPBACK_NAMES: Final = ("localhost", "localhost.localdomain", "ip6-localhost")


class ServeError(UserError):
    """`pocketlm serve` cannot listen where asked; one line with the fix."""


def check_host(host: str) -> str | None:
    """Raise ServeError for an empty host; return a warning line for a non-loopback one."""
    if not host.strip():
        raise ServeError("--host is empty, which would listen on every network interface; "
                         "pass --host 127.0.0.1 (this machine only) or an address to share on")
    if host.lower() in LOOPBACK_NAMES:
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: --host {host} is not a loopback address; other machines on the network "
            "can reach this site")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ServeError (one line) when that is impossible."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f"cannot listen on {host!r}: unknown host ({exc}); pass an address such as "
                         "--host 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = f"stop the other server or pass another --port (e.g. --port {port + 1 if port < 65535 else 8000})"
        if exc.errno in (13,):  # EACCES: ports below 1024 need privileges
            hint = "ports below 1024 need administrator rights; pass --port 8000"
        elif exc.errno == 99:  # EADDRNOTAVAIL
            hint = "this machine has no such address; pass --host 127.0.0.1"
        raise ServeError(f"cannot listen on {host} port {port} ({reason}); {hint}") from None
    sock.set_inheritable(True)
    return sock


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head and headers on its 400s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(REQUEST_HEAD_TIMEOUT, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm_head_deadline()  # the head is complete: the app has the request

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=msg.encode("ascii", "replace")), h11.EndOfMessage()):
            output = self.conn.send(event)
            if output:
                self.transport.write(output)
        self.transport.close()

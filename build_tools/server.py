"""`pocketlm serve DIST`: serve a built pocketlm site as static files, nothing else.

The headers, media types and cache rules come from http_policy.py (shared with the host
configs that deploy.py writes). Range requests (206/416) and HEAD are Starlette's
`FileResponse`; this module adds the path resolution, ETag/304, the policy headers, and
the choice of a file's gzip copy (compress.py) for browsers that accept it.

Why not `StaticFiles`: it serves dotfiles, and needs `html=True` to map `/` to index.html,
which also serves every folder's index.html, redirects `/model` to `/model/` and serves
404.html; its media types come from the machine's /etc/mime.types. Resolving the path here
keeps the rules of what is served in one readable function (`resolve_file`).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http_policy import (
    GZIP_SUFFIX,
    INDEX_FILE,
    SECURITY_HEADERS,
    accepts_gzip,
    byte_range,
    cache_control_for,
    is_public,
    media_type_for,
)
from .listen import KEEP_ALIVE_TIMEOUT, GuardedH11Protocol, bind_socket, check_host

SITE_FORMAT = "pocketlm-site"
MANIFEST_FILE = "manifest.json"
BUILD_HINT = "run `pocketlm build MODEL_DIR -o DIST` first"
_NOT_MODIFIED_HEADERS = ("cache-control", "etag", "last-modified", "vary")


class NotASiteError(Exception):
    """The folder given to `pocketlm serve` is not a pocketlm build; the message names the fix."""


def check_site(dist: Path) -> None:
    """Raise NotASiteError unless `dist` is a folder holding a pocketlm-site manifest.json."""
    if not dist.is_dir():
        raise NotASiteError(f"{dist} is not a folder; {BUILD_HINT}")
    manifest = dist / MANIFEST_FILE
    if not manifest.is_file():
        raise NotASiteError(
            f"{dist} has no {MANIFEST_FILE}, so it is not a pocketlm build; {BUILD_HINT}"
        )
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotASiteError(f"{manifest} is not readable JSON ({exc}); {BUILD_HINT}") from exc
    found = data.get("format") if isinstance(data, dict) else None
    if found != SITE_FORMAT:
        raise NotASiteError(
            f"{manifest} has format {found!r}, expected {SITE_FORMAT!r}; {BUILD_HINT}"
        )


@dataclass(frozen=True)
class SiteFile:
    """A file that may be served: its place on disk and the URL path it answers."""

    path: str
    url_path: str
    stat_result: os.stat_result


def resolve_file(root: Path, url_path: str) -> SiteFile | None:
    """The regular file inside `root` that the decoded URL path names, or None (-> 404).

    `root` must be resolved (no symlinks). The ASGI server has already percent-decoded the
    path once; it is not decoded again, so `%252e` stays a literal `%2e` in a file name.
    """
    if url_path == "/":
        url_path = "/" + INDEX_FILE
    if not url_path.startswith("/") or "\\" in url_path or "\x00" in url_path:
        return None
    relative = url_path[1:]
    if not is_public(relative):  # empty or dot segments (`..` too), trailing `/`, host configs
        return None
    real = os.path.realpath(root.joinpath(*relative.split("/")))
    if os.path.commonpath([real, root]) != str(root):
        return None  # a symlink pointing out of the site
    if not is_public(Path(real).relative_to(root).as_posix()):
        return None  # a symlink pointing at a hidden file
    try:
        stat_result = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(stat_result.st_mode):
        return None
    return SiteFile(path=real, url_path=url_path, stat_result=stat_result)


def gzip_copy(found: SiteFile) -> SiteFile | None:
    """The build's gzip copy of `found` (compress.py), when there is one.

    It has the same URL path: the response is `found` itself, in another encoding. Its ETag
    (from its own size and time) differs from the plain file's, as RFC 9110 asks.
    """
    packed = found.path + GZIP_SUFFIX
    try:
        stat_result = os.stat(packed)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(stat_result.st_mode) or os.path.realpath(packed) != packed:
        return None
    return SiteFile(path=packed, url_path=found.url_path, stat_result=stat_result)


def is_not_modified(request: Headers, response: Headers) -> bool:
    """RFC 9110 conditional GET: If-None-Match wins over If-Modified-Since."""
    if_none_match = request.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or response["etag"] in tags
    if_modified_since = request.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
        modified = parsedate_to_datetime(response["last-modified"])
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # not an HTTP date: ignore the condition (RFC 9110 section 13.1.3)
    if since.tzinfo is None:  # "-0000" or no zone at all: HTTP dates are always GMT
        since = since.replace(tzinfo=UTC)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return since >= modified


_BYTE_RANGE = re.compile(r"(\d+)-(\d*)|-(\d+)")


def valid_range(value: str) -> bool:
    """True when a Range value is a valid `bytes` ranges-specifier (RFC 9110 section 14.1.1):
    each range `first-last` with first <= last, `first-` or `-suffix` (suffix > 0)."""
    unit, _, ranges = value.partition("=")
    if unit.strip().lower() != "bytes":
        return False
    specs = [spec.strip() for spec in ranges.split(",")]
    for spec in specs:
        match = _BYTE_RANGE.fullmatch(spec)
        if match is None:
            return False
        first, last, suffix = match.groups()
        if suffix is not None and int(suffix) == 0:
            return False
        if first is not None and last and int(last) < int(first):
            return False
    return bool(specs)


def without_invalid_range(scope: Scope) -> Scope:
    """The scope minus a Range header that is not a valid bytes range: RFC 9110 section 14.2
    has a server ignore those (a 200 with the whole file) rather than answer 400."""
    headers = scope.get("headers") or []
    if all(name != b"range" or valid_range(value.decode("latin-1")) for name, value in headers):
        return scope
    return {**scope, "headers": [(n, v) for n, v in headers if n != b"range"]}


class SiteFiles:
    """ASGI app serving the files of one site folder by the rules of http_policy."""

    def __init__(self, dist: Path) -> None:
        self.root = dist.resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = without_invalid_range(with_byte_range(scope))
        response = await self.respond(scope)
        await response(scope, receive, send)

    async def respond(self, scope: Scope) -> Response:
        if scope["type"] != "http":
            return PlainTextResponse("Not Found", status_code=404)
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
            )
        found = await anyio.to_thread.run_sync(resolve_file, self.root, route_path(scope))
        if found is None:
            return PlainTextResponse("Not Found", status_code=404)
        request = Headers(scope=scope)
        packed = await anyio.to_thread.run_sync(gzip_copy, found)
        headers = {"Cache-Control": cache_control_for(found.url_path)}
        if packed is not None:
            headers["Vary"] = "Accept-Encoding"
            if accepts_gzip(request.get("accept-encoding")) and "range" not in request:
                found = packed
                headers["Content-Encoding"] = "gzip"
        response = FileResponse(
            found.path,
            stat_result=found.stat_result,
            media_type=media_type_for(found.url_path),
            headers=headers,
        )
        if is_not_modified(request, response.headers):
            kept = {name: response.headers[name] for name in _NOT_MODIFIED_HEADERS if name in response.headers}
            return Response(status_code=304, headers=kept)
        return response


def with_byte_range(scope: Scope) -> Scope:
    """The scope with its Range header in the `bytes` unit, or without it when its unit is
    another (ignored, so the whole file is sent: RFC 9110 section 14.2)."""
    if scope["type"] != "http":
        return scope
    headers = []
    for key, value in scope["headers"]:
        if key.lower() == b"range":
            kept = byte_range(value.decode("latin-1"))
            if kept is None:
                continue
            value = kept.encode("latin-1")
        headers.append((key, value))
    return {**scope, "headers": headers}


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (`root_path`)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


class SecurityHeaders:
    """ASGI middleware: adds SECURITY_HEADERS to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in SECURITY_HEADERS
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(dist: Path) -> ASGIApp:
    """The ASGI app serving `dist`; raises NotASiteError if it is not a pocketlm build.

    SecurityHeaders wraps the whole Starlette app, so the 500 that Starlette's outermost
    error handler writes carries the headers too.
    """
    check_site(dist)
    return SecurityHeaders(Starlette(routes=[Mount("/", app=SiteFiles(dist))]))


def serve(dist: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `dist` until interrupted (listen.py: host checks, the socket, connection rules).

    Raises NotASiteError or ServeError, before listening, for a folder that is no build, an
    empty host, or an address/port that cannot be bound.
    """
    app = create_app(dist)
    warning = check_host(host)
    sock = bind_socket(host, port)
    if warning:
        print(f"pocketlm: {warning}", file=sys.stderr)
    try:
        make_server(app).run(sockets=[sock])
    finally:
        sock.close()


def make_server(app: ASGIApp, log_level: str = "warning") -> uvicorn.Server:
    """uvicorn with listen.py's connection rules, no `Server` header, no lifespan events."""
    config = uvicorn.Config(app, http=GuardedH11Protocol, lifespan="off", server_header=False,
                            timeout_keep_alive=KEEP_ALIVE_TIMEOUT, log_level=log_level)
    return uvicorn.Server(config)

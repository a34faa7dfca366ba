"""How a pocketlm site is served over HTTP: the one table every server and host config uses.

`pocketlm serve` (server.py) applies this policy to each response, and deploy.py writes it
out as `_headers` (Netlify, Cloudflare Pages) and `pocketlm-nginx.conf`, so the local server
and a real host cannot drift apart.

Policy:

- Every response, errors included, carries `SECURITY_HEADERS`: cross-origin isolation
  (COOP + COEP, which onnxruntime-web needs for WASM threads), CORP, `nosniff`, a strict
  Content-Security-Policy (`CSP_DIRECTIVES`: only the site's own files, WebAssembly
  compilation but no JavaScript eval, nothing inline, no framing; a browser test loads the
  page under it on WASM and WebGPU and sees no violation), `Referrer-Policy: no-referrer`
  and a Permissions-Policy denying the features the page does not use.
- Media types come from `MEDIA_TYPES` (not from the machine's /etc/mime.types), matched on
  the lower-cased last extension; `text/*` types carry `; charset=utf-8`; anything else is
  `application/octet-stream`.
- Cache-Control (successful and 304 responses only; errors are never cached):
  1. `NO_CACHE_PATHS` (`/`, `/index.html`, `/sw.js`, `/manifest.json`): `no-cache`, so a
     new build is seen on the next visit;
  2. hashed files: `public, max-age=31536000, immutable`. The one rule: the file name
     (last path segment) has a dot-separated segment of 8 or more lower-case hex digits
     followed by at least one extension, e.g. `ort-wasm-simd-threaded.3f2a9c1b.wasm` or
     `model.0123abcd.onnx.data` (`HASHED_PATH_REGEX`; folder names do not count);
  3. everything else: `no-cache` (revalidate with the ETag every time).
- Compressed copies: the build writes `NAME.gz` beside files that gzip shrinks
  (compress.py). A GET for NAME from a client whose `Accept-Encoding` allows gzip, without
  a `Range` header, gets those bytes with `Content-Encoding: gzip`; responses for such files
  carry `Vary: Accept-Encoding`. The `.gz` files have no URL of their own.
- Range: only the `bytes` unit is understood (case-insensitive). A `Range` header in any
  other unit (`items=0-9`) is ignored, as RFC 9110 section 14.2 requires of an origin
  server: the answer is the whole file (200), and the gzip copy may be chosen.
- Not served (404, never a listing): directories, any path with a segment starting with
  `.`, paths leaving the site folder, `.gz` copies, and the host config files themselves
  (`HOST_CONFIG_FILES`, which the hosts do not serve either).
"""

from __future__ import annotations

import posixpath
import re
from typing import Final

#: Content-Security-Policy: everything from the site itself, nothing inline, no plugins, no
#: framing. 'wasm-unsafe-eval' lets the page compile WebAssembly (onnxruntime-web, Pyodide,
#: any engine under web/) without allowing JavaScript eval. Workers and fetches: same origin.
CSP_DIRECTIVES: Final[tuple[tuple[str, str], ...]] = (
    ("default-src", "'self'"),
    ("script-src", "'self' 'wasm-unsafe-eval'"),
    ("worker-src", "'self'"),
    ("connect-src", "'self'"),
    ("img-src", "'self'"),
    ("style-src", "'self'"),
    ("font-src", "'self'"),
    ("object-src", "'none'"),
    ("base-uri", "'none'"),
    ("form-action", "'none'"),
    ("frame-ancestors", "'none'"),
)
CONTENT_SECURITY_POLICY: Final = "; ".join(f"{name} {value}" for name, value in CSP_DIRECTIVES)
#: Browser features the page never uses, denied to it and to anything it could embed.
PERMISSIONS_DENIED: Final = ("accelerometer", "autoplay", "bluetooth", "camera", "display-capture",
                             "geolocation", "gyroscope", "hid", "magnetometer", "microphone", "midi",
                             "payment", "serial", "usb")
PERMISSIONS_POLICY: Final = ", ".join(f"{feature}=()" for feature in PERMISSIONS_DENIED)

SECURITY_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
)

NO_CACHE: Final = "no-cache"
IMMUTABLE: Final = "public, max-age=31536000, immutable"

NO_CACHE_PATHS: Final[tuple[str, ...]] = ("/", "/index.html", "/sw.js", "/manifest.json")
HASHED_PATH_REGEX: Final = r"/[^/]+\.[0-9a-f]{8,}(\.[0-9A-Za-z]+)+$"
_HASHED_PATH: Final = re.compile(HASHED_PATH_REGEX)

TEXT_CHARSET: Final = "utf-8"
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"
MEDIA_TYPES: Final[dict[str, str]] = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".data": "application/octet-stream",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}

GZIP_SUFFIX: Final = ".gz"

INDEX_FILE: Final = "index.html"
HEADERS_FILE: Final = "_headers"
NGINX_FILE: Final = "pocketlm-nginx.conf"
HOST_CONFIG_FILES: Final[tuple[str, ...]] = (HEADERS_FILE, NGINX_FILE)


def media_type_for(file_name: str) -> str:
    """The full Content-Type value for a file name, charset included for text types."""
    extension = posixpath.splitext(file_name)[1].lower()
    media_type = MEDIA_TYPES.get(extension, DEFAULT_MEDIA_TYPE)
    if media_type.startswith("text/"):
        return f"{media_type}; charset={TEXT_CHARSET}"
    return media_type


def is_hashed(url_path: str) -> bool:
    """True when the URL path names a content-hashed file (see the module docstring)."""
    return _HASHED_PATH.search(url_path) is not None


def cache_control_for(url_path: str) -> str:
    """Cache-Control for a successful response to `url_path` (starts with `/`)."""
    if url_path in NO_CACHE_PATHS:
        return NO_CACHE
    if is_hashed(url_path):
        return IMMUTABLE
    return NO_CACHE


def is_public(relative_path: str) -> bool:
    """True when a `/`-separated path inside the site folder may be served."""
    segments = relative_path.split("/")
    if any(segment == "" or segment.startswith(".") for segment in segments):
        return False
    return relative_path not in HOST_CONFIG_FILES and not relative_path.endswith(GZIP_SUFFIX)


RANGE_UNIT: Final = "bytes"


def byte_range(range_value: str) -> str | None:
    """A Range header value with its unit written `bytes`, or None when the unit is not
    `bytes` (RFC 9110 section 14.1: range units compare case-insensitively; section 14.2: a
    server MUST ignore a Range header whose range unit it does not understand)."""
    unit, equals, ranges = range_value.partition("=")
    if not equals or unit.strip().lower() != RANGE_UNIT:
        return None
    return f"{RANGE_UNIT}={ranges}"


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header value allows gzip (RFC 9110 section 12.5.3)."""
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip().lower()] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0

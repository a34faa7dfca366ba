"""What makes the site installable as an app: a web app manifest and its icons.

``app.webmanifest`` (W3C Web Application Manifest: name, short_name, start_url, scope,
display, theme_color, background_color, icons) takes the title and colour from the page's
settings; a kiosk opens full screen. The icons are drawn here (a white disc on the theme
colour, inside the maskable safe zone) and written as PNG (ISO/IEC 15948) with the
standard library: 8-bit RGB, filter 0 on every row, one zlib stream.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Final

APP_MANIFEST: Final = "app.webmanifest"
ICON_SIZES: Final = (192, 512)


def icon_name(size: int) -> str:
    return f"icon-{size}.png"


def web_app_manifest(page: Mapping[str, Any]) -> bytes:
    """The manifest's JSON for these page settings (title, themeColor, kiosk)."""
    title = str(page.get("title", "pocketlm"))
    colour = str(page.get("themeColor", "#1a5fd0"))
    manifest = {
        "name": title,
        "short_name": title[:12],
        "description": "A language model that runs in this device's browser, offline.",
        "start_url": "./",
        "scope": "./",
        "display": "fullscreen" if page.get("kiosk") else "standalone",
        "theme_color": colour,
        "background_color": "#fbfbfa",
        "icons": [{"src": icon_name(size), "sizes": f"{size}x{size}", "type": "image/png",
                   "purpose": "any maskable"} for size in ICON_SIZES],
    }
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def rgb(colour: str) -> tuple[int, int, int]:
    """#rgb or #rrggbb -> (r, g, b)."""
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def icon_png(size: int, colour: str) -> bytes:
    """A ``size`` x ``size`` PNG: a white disc (radius 0.3 of the side) on ``colour``."""
    background = bytes(rgb(colour))
    white = b"\xff\xff\xff"
    centre, radius = (size - 1) / 2, 0.3 * size
    rows = []
    for y in range(size):
        row = bytearray(b"\x00")  # filter type 0 (None)
        for x in range(size):
            inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius * radius
            row += white if inside else background
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def app_files(page: Mapping[str, Any]) -> dict[str, bytes]:
    """Every file of the installable app: path in the site -> bytes."""
    colour = str(page.get("themeColor", "#1a5fd0"))
    files = {APP_MANIFEST: web_app_manifest(page)}
    files.update({icon_name(size): icon_png(size, colour) for size in ICON_SIZES})
    return files

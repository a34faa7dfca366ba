"""Helpers for the browser tests: a site server, Chromium with request logging, and the page.

The server is the app of `pocketlm serve` under uvicorn; Chromium is Debian's
/usr/bin/chromium driven by Python playwright (which never downloads a browser here).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
READY = "document.body.dataset.ready === 'true' || document.getElementById('status').getAttribute('role') === 'alert'"


class SiteServer:
    """The app of `pocketlm serve` under uvicorn in a thread, on a port the OS picked."""

    def __init__(self, dist: Path) -> None:
        from pocketlm_build.server import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = dist
        self.app = BytesSent(create_app(dist))
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class BytesSent:
    """ASGI wrapper counting the response body bytes the server sent (what went over the wire),
    and the paths of the files it sent (status 200 or 206), in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.total = 0
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.total += len(message.get("body", b""))
            elif message["type"] == "http.response.start" and message["status"] in (200, 206):
                self.paths.append(str(scope.get("path", "")).lstrip("/"))
            await send(message)

        await self.app(scope, receive, counted)


@dataclass
class Traffic:
    """Every request the browser made, and those it made to another origin (refused)."""

    origin: str
    seen: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


class Browsers:
    """Starts Chromium on a fresh (or given) profile and closes every one it started.

    Every request to another origin than the server's is recorded and aborted. Fresh
    profiles (which hold the service worker's copy of the whole site) are deleted after.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.contexts: list[Any] = []
        self.profiles: list[Path] = []

    def __call__(self, origin: str, *, profile: Path | None = None,
                 webgpu: bool = False) -> tuple[Any, Traffic]:
        args = CHROMIUM_ARGS + (["--enable-unsafe-webgpu"] if webgpu else [])
        user_data = profile or Path(tempfile.mkdtemp(prefix="pocketlm-chromium-"))
        if profile is None:
            self.profiles.append(user_data)
        context = self.driver.chromium.launch_persistent_context(
            str(user_data), executable_path=str(CHROMIUM), args=args, headless=True)
        self.contexts.append(context)
        traffic = Traffic(origin)

        def route(route: Any) -> None:
            url = route.request.url
            traffic.seen.append(url)
            if url.startswith((origin + "/", "data:")):
                route.continue_()
            else:
                traffic.foreign.append(url)
                route.abort()

        context.route("**/*", route)
        return context, traffic

    def close_all(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()
        for profile in self.profiles:
            shutil.rmtree(profile, ignore_errors=True)
        self.profiles.clear()


BrowserFactory = Callable[..., tuple[Any, Traffic]]


def wait_until(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Poll `expression` in the page until it is truthy (TimeoutError after `timeout_s`).

    Polled from here with page.evaluate (the DevTools protocol, outside the page's
    Content-Security-Policy): playwright's wait_for_function evaluates its predicate with
    eval inside the page, which the site's policy forbids.
    """
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression} still false after {timeout_s} s")
        time.sleep(0.05)


def open_ready_page(browsers: BrowserFactory, server: Any, query: str = "backend=wasm") -> tuple[Any, Traffic]:
    """A new page of ``server``'s site at ``/?query``, once its engine is ready."""
    context, traffic = browsers(server.url)
    page = context.new_page()
    page.goto(f"{server.url}/?{query}")
    wait_ready(page)
    return page, traffic


def wait_ready(page: Any, timeout_s: float = 600) -> None:
    wait_until(page, READY, timeout_s)
    status = page.inner_text("#status")
    if page.evaluate("document.body.dataset.ready") != "true":
        raise AssertionError(f"the page did not get ready: {status}")


def ask(page: Any, prompt: Any, **options: Any) -> dict[str, Any]:
    """engine.generate(prompt, options) in the page; returns the result object."""
    result: dict[str, Any] = page.evaluate(
        "([prompt, options]) => window.pocketlm.engine.generate(prompt, options)", [prompt, options])
    return result

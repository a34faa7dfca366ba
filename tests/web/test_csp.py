"""The page runs under the site's Content-Security-Policy, on WASM and on WebGPU, with no violation.

The site is served by `pocketlm serve`'s server with its headers unchanged but for one
directive added to the policy, `report-uri`, pointing at a collector in the test: Chromium
reports every violation there, from the page and from its workers alike. The page also
records `securitypolicyviolation` events and the console's CSP errors. A control at the end
of the WASM run breaks the policy on purpose and checks each channel sees it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketlm_build.http_policy import CONTENT_SECURITY_POLICY
from tests.build_tools.live_server import running_server
from tests.web.site_browser import BrowserFactory, ask, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPORT_PATH = "/__csp-report"
WATCH = """() => {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation',
    (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
}"""


class CSPReports:
    """ASGI wrapper: adds `report-uri` to the policy and collects the reports sent to it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.reports: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == REPORT_PATH and scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            self.reports.append(body)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_report_uri(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, value + f"; report-uri {REPORT_PATH}".encode() if name == b"content-security-policy"
                     else value) for name, value in message["headers"]]
            await send(message)

        await self.app(scope, receive, with_report_uri)


@pytest.fixture(scope="module")
def reporting_server(tiny_site: Path) -> Iterator[tuple[str, CSPReports]]:
    collector: list[CSPReports] = []

    def wrap(app: Any) -> CSPReports:
        collector.append(CSPReports(app))
        return collector[0]

    with running_server(tiny_site, wrap) as (host, port):
        yield f"http://{host}:{port}", collector[0]


def open_page(open_browser: BrowserFactory, origin: str, query: str, webgpu: bool) -> tuple[Any, list[str]]:
    context, _ = open_browser(origin, webgpu=webgpu)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("worker", lambda w: w.on("console", lambda m: console.append(m.text)
                                     if "Content Security Policy" in m.text else None))
    page.add_init_script(f"({WATCH})()")
    page.goto(origin + "/" + query)
    return page, console


@pytest.mark.parametrize("query, webgpu, backend", [("?backend=wasm", False, "wasm"),
                                                     ("?backend=webgpu", True, "webgpu")])
def test_the_page_runs_under_the_policy_without_a_violation(
        open_browser: BrowserFactory, reporting_server: tuple[str, CSPReports],
        query: str, webgpu: bool, backend: str) -> None:
    origin, reports = reporting_server
    reports.reports.clear()
    page, console = open_page(open_browser, origin, query, webgpu)
    wait_ready(page)
    assert page.evaluate("window.pocketlm.engine.backend.name") == backend
    assert len(ask(page, "Hello", maxNewTokens=8)["tokens"]) > 0
    if not webgpu:  # once is enough for what the second visit adds
        page.reload()  # the second visit: service worker, cached files, Python's start-up image
        wait_ready(page)
        assert len(ask(page, "Hello again", maxNewTokens=4)["tokens"]) > 0
    time.sleep(1.0)  # reports are sent in the background
    assert page.evaluate("window.__violations") == []
    assert console == []
    assert reports.reports == []
    if not webgpu:
        assert_a_violation_is_seen(page, console, reports)


def assert_a_violation_is_seen(page: Any, console: list[str], reports: CSPReports) -> None:
    """Control: content the policy forbids (an inline script) is seen by all three channels."""
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.__inline = 1'; document.body.append(s); }""")
    deadline = time.monotonic() + 10
    while not reports.reports and time.monotonic() < deadline:
        time.sleep(0.1)
    assert page.evaluate("window.__inline") is None  # blocked
    assert any("script-src" in v for v in page.evaluate("window.__violations"))
    assert any("script-src" in line for line in console)
    assert reports.reports and b"script-src" in reports.reports[0]
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY

"""A site configured at build time and run as a kiosk, with the tiny model: the settings
reach the page, an idle kiosk wipes the conversation (the page's clock is advanced), a dead
worker is replaced without a reload, and the layout fits portrait and landscape screens.

POCKETLM_SCREENSHOTS=1 also writes the kiosk screenshots the README shows (docs/)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import BrowserFactory, SiteServer, wait_ready, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = "!document.getElementById('send').disabled"
DOCS = Path(__file__).resolve().parents[2] / "docs"
SETTINGS = {
    "title": "Museum guide", "welcome": "Ask me about the collection.",
    "system_prompt": "You answer questions about the museum.",
    "suggestions": ["Who painted the ceiling?", "Where is the cafe?"],
    "temperature": 0.0, "max_new_tokens": 6, "max_new_tokens_cap": 16,
    "kiosk": True, "idle_reset": 30, "idle_warning": 10, "theme_color": "#0a7a55",
}


@pytest.fixture(scope="module")
def kiosk_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pocketlm_build.bundle import build_site
    from pocketlm_build.site_page import check_settings, page_settings

    out = tmp_path_factory.mktemp("kiosk-site") / "dist"
    build_site(tiny_model, out, page=page_settings(check_settings(SETTINGS, source="site.toml"), {}))
    server = SiteServer(out)
    yield server
    server.stop()


def open_kiosk(browsers: BrowserFactory, server: SiteServer, size: tuple[int, int] = (1080, 1920),
               fake_clock: bool = False) -> Any:
    context, _ = browsers(server.url)
    page = context.new_page()
    page.set_viewport_size({"width": size[0], "height": size[1]})
    if fake_clock:
        page.clock.install()
    page.goto(server.url + "/?backend=wasm")
    wait_ready(page)
    return page


def native(model: Path, messages: list[dict[str, str]], n: int) -> tuple[str, list[int]]:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    options = SamplingOptions(max_new_tokens=n, temperature=0, top_p=0.9, repetition_penalty=1.1)
    result = load_native(model, threads=1).generate(messages, options)
    return result.text, result.tokens


def test_build_settings_shape_the_page_and_the_answers(open_browser: BrowserFactory, kiosk_server: SiteServer,
                                                       tiny_model: Path) -> None:
    page = open_kiosk(open_browser, kiosk_server)
    assert page.title() == "Museum guide" and page.inner_text("#title") == "Museum guide"
    assert page.inner_text("#welcome-text") == SETTINGS["welcome"]
    assert page.locator(".suggestion").all_inner_texts() == SETTINGS["suggestions"]
    assert page.evaluate("getComputedStyle(document.getElementById('send')).backgroundColor") == "rgb(10, 122, 85)"
    assert page.locator("#settings").count() == 0  # a kiosk has no settings
    assert page.inner_text("#new-chat") == "Start over"
    page.click(".suggestion >> nth=1")
    wait_until(page, "window.pocketlm.history.length === 2")
    history = page.evaluate("window.pocketlm.history")
    assert history[0] == {"role": "user", "content": "Where is the cafe?"}
    # The system prompt goes first, and the build's default answer length applies.
    asked = [{"role": "system", "content": SETTINGS["system_prompt"]}, history[0]]
    assert history[1]["content"] == native(tiny_model, asked, 6)[0]
    assert page.is_hidden("#welcome")


def test_an_idle_kiosk_counts_down_then_wipes_the_conversation(open_browser: BrowserFactory,
                                                               kiosk_server: SiteServer) -> None:
    page = open_kiosk(open_browser, kiosk_server, fake_clock=True)
    page.fill("#prompt", "hello world")
    page.press("#prompt", "Enter")
    wait_until(page, "window.pocketlm.history.length === 2")
    wait_until(page, IDLE)
    conversation = page.evaluate("window.pocketlm.history")
    page.clock.fast_forward(15_000)
    assert page.is_hidden("#idle-banner")  # still 15 s to go: no countdown yet
    page.clock.fast_forward(8_000)
    page.wait_for_selector("#idle-banner", state="visible")
    # 7 s left, less whatever real time passed since (the page's clock also runs on its own)
    left = re.match(r"Starting over in (\d+) s for the next visitor", page.inner_text("#idle-banner"))
    assert left is not None and 0 < int(left.group(1)) <= 7
    page.mouse.click(5, 5)  # a touch: the countdown goes away and starts again
    page.wait_for_selector("#idle-banner", state="hidden")
    page.clock.fast_forward(25_000)
    page.wait_for_selector("#idle-banner", state="visible")
    page.clock.fast_forward(6_000)
    wait_until(page, "document.querySelectorAll('#messages li').length === 0")
    assert page.evaluate("window.pocketlm.history") == []
    assert page.is_hidden("#idle-banner") and page.is_visible("#welcome")
    # The engine forgot it too: the same conversation is read again from nothing.
    wait_until(page, "window.pocketlm.engine.ping()")
    again = page.evaluate("(messages) => window.pocketlm.engine.generate(messages, {maxNewTokens: 2})",
                          [*conversation, {"role": "user", "content": "more"}])
    assert again["timing"]["reusedTokens"] == 0


def test_a_dead_worker_is_replaced_and_the_visitor_gets_an_answer(open_browser: BrowserFactory,
                                                                  kiosk_server: SiteServer,
                                                                  tiny_model: Path) -> None:
    page = open_kiosk(open_browser, kiosk_server)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.pocketlm.engine.first = true; window.pocketlm.engine.worker.terminate()")
    page.fill("#prompt", "hello world")
    page.press("#prompt", "Enter")
    wait_until(page, "window.pocketlm.history.length === 2", 120)
    history = page.evaluate("window.pocketlm.history")
    asked = [{"role": "system", "content": SETTINGS["system_prompt"]}, history[0]]
    assert history[1]["content"] == native(tiny_model, asked, 6)[0]
    assert page.evaluate("window.pocketlm.engine.first") is None  # a new engine answered
    assert navigations == []  # no reload
    assert page.locator("#messages .error").count() == 0
    # A worker that dies mid-conversation: the next question is answered too, and the
    # conversation goes on (read again by the new engine).
    page.evaluate("window.pocketlm.engine.worker.terminate()")
    page.fill("#prompt", "the cat")
    page.press("#prompt", "Enter")
    wait_until(page, "window.pocketlm.history.length === 4", 120)
    history = page.evaluate("window.pocketlm.history")
    assert history[3]["content"] == native(tiny_model, [asked[0], *history[:3]], 6)[0]


@pytest.mark.parametrize("size", [(1080, 1920), (1920, 1080)], ids=["portrait", "landscape"])
def test_the_kiosk_fits_the_screen_without_scrollbars(open_browser: BrowserFactory, kiosk_server: SiteServer,
                                                      size: tuple[int, int]) -> None:
    page = open_kiosk(open_browser, kiosk_server, size)
    portrait = size[1] > size[0]
    if os.environ.get("POCKETLM_SCREENSHOTS") and portrait:
        page.screenshot(path=str(DOCS / "kiosk-portrait-welcome.png"))
    for prompt in ["Who painted the ceiling?", "hello world " * 30, "Where is the cafe?"]:
        page.fill("#prompt", prompt)
        page.press("#prompt", "Enter")
        wait_until(page, IDLE)
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    sizes = page.evaluate("""() => ({
        width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
        wide: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > innerWidth + 1).length,
        composer: document.getElementById('composer').getBoundingClientRect().bottom,
        last: document.querySelector('#messages li:last-child').getBoundingClientRect().bottom,
        top: document.getElementById('composer').getBoundingClientRect().top })""")
    assert sizes["width"] <= size[0] and sizes["height"] <= size[1] and sizes["wide"] == 0
    assert sizes["composer"] <= size[1] and sizes["last"] <= sizes["top"] + 1
    if os.environ.get("POCKETLM_SCREENSHOTS") and not portrait:
        page.screenshot(path=str(DOCS / "kiosk-landscape.png"))


ICON_PIXELS = """async () => {
    const image = new Image();
    image.src = 'icon-512.png';
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const at = (x, y) => [...context.getImageData(x, y, 1, 1).data.slice(0, 3)];
    return { size: [image.width, image.height], corner: at(2, 2), centre: at(256, 256) };
}"""


def test_the_site_is_installable_with_the_build_title_and_colour(open_browser: BrowserFactory,
                                                                  kiosk_server: SiteServer) -> None:
    page = open_kiosk(open_browser, kiosk_server)
    wait_until(page, "navigator.serviceWorker.controller !== null")
    cdp = page.context.new_cdp_session(page)
    assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
    manifest = json.loads(cdp.send("Page.getAppManifest")["data"])
    assert (manifest["name"], manifest["display"], manifest["theme_color"]) == ("Museum guide", "fullscreen", "#0a7a55")
    # The icons decode in the browser: the theme colour around a white disc.
    pixels = page.evaluate(ICON_PIXELS)
    assert pixels == {"size": [512, 512], "corner": [10, 122, 85], "centre": [255, 255, 255]}

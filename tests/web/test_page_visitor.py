"""The chat page as a careless visitor uses it, with a tiny model (context 256 tokens):
prompts that cannot fit, invalid settings, Escape, New chat mid-answer, broken pastes, and
what must stay in view. The native runtime is the reference for the tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import BrowserFactory, SiteServer, wait_ready, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = "!document.getElementById('send').disabled"


@pytest.fixture(scope="module")
def page(module_browser: BrowserFactory, tiny_server: SiteServer) -> Any:
    context, _ = module_browser(tiny_server.url)
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 700})  # a phone
    page.goto(tiny_server.url + "/?backend=wasm")
    wait_ready(page)
    return page


@pytest.fixture(autouse=True)
def fresh_chat(page: Any) -> None:
    wait_until(page, IDLE)
    page.click("#new-chat")
    setting(page, "temperature", "0")
    setting(page, "max-tokens", "8")


def setting(page: Any, name: str, value: str) -> None:
    """A settings field as the visitor left it (the Settings panel may be closed)."""
    page.evaluate("([name, value]) => { document.getElementById(name).value = value; }", [name, value])


def native_text(model: Path, messages: list[dict[str, str]], n: int) -> str:
    """What the page answers, computed outside it: the page's CPU engine run in node (its
    int16 activations can pick another token than native float ones in the random tiny model)."""
    from pocketlm_runtime.sampling import SamplingOptions
    from tests.web.references import engine_text

    # The page's defaults (web/site_page.js), with the temperature the tests set.
    options = SamplingOptions(max_new_tokens=n, temperature=0, top_p=0.9, repetition_penalty=1.1)
    return engine_text(model, messages, options)


def native(model: Path, messages: list[dict[str, str]], n: int) -> list[int]:
    from pocketlm_runtime.native import load_native
    from pocketlm_runtime.sampling import SamplingOptions

    return load_native(model, threads=1).generate(messages, SamplingOptions(max_new_tokens=n)).tokens


def in_view(page: Any, selector: str) -> bool:
    """The element lies inside the window and above the input area, once the page has drawn
    its next frame."""
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return bool(page.evaluate("""(selector) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        const composer = document.getElementById('composer').getBoundingClientRect();
        return box.top >= 0 && box.bottom <= composer.top + 1 && box.height > 0;
    }""", selector))


def test_a_prompt_that_cannot_fit_gets_the_context_error_next_to_it(page: Any, tiny_model: Path) -> None:
    from pocketlm_runtime.native import load_native

    for _ in range(3):  # earlier messages, so the page has scrolled
        page.fill("#prompt", "hello world")
        page.click("#send")
        wait_until(page, IDLE)
    text = "the cat sat on the mat " * 120
    page.fill("#prompt", text)
    page.click("#send")
    page.wait_for_selector("#messages li.user .error", timeout=30_000)
    error = page.inner_text("#messages li.user:last-of-type .error")
    count = len(load_native(tiny_model).prompt_ids(page.evaluate("window.pocketlm.history")
                                                   + [{"role": "user", "content": text.strip()}]))
    assert error == f"{count} tokens do not fit the model's context of 256; shorten the prompt or start a new chat"
    assert in_view(page, "#messages li.user:last-of-type .error")
    assert page.locator("#messages li.assistant").count() == 3  # no empty answer left behind
    assert len(page.evaluate("window.pocketlm.history")) == 6  # the refused prompt is not kept
    # The page stays usable: a new chat answers as native does.
    page.click("#new-chat")
    page.fill("#prompt", "hello")
    page.focus("#prompt")
    page.keyboard.press("Enter")
    wait_until(page, IDLE)
    history = page.evaluate("window.pocketlm.history")
    assert history[0] == {"role": "user", "content": "hello"}
    assert page.evaluate("window.pocketlm.engine.generate([{role: 'user', content: 'hello'}], "
                         "{maxNewTokens: 8})")["tokens"] == native(tiny_model, history[:1], 8)


@pytest.mark.parametrize("how", ["button", "enter"])
def test_invalid_settings_are_clamped_and_said_the_same_for_enter_and_the_button(page: Any, how: str) -> None:
    assert page.evaluate("document.querySelector('details').open") is False  # settings closed
    setting(page, "temperature", "-1")
    setting(page, "max-tokens", "100000")
    page.fill("#prompt", "hello world")
    if how == "button":
        page.click("#send")
    else:
        page.focus("#prompt")
        page.keyboard.press("Enter")
    page.wait_for_selector("#messages li.assistant")
    wait_until(page, IDLE)
    notes = page.locator("#messages li.user .note").all_inner_texts()
    assert notes == ["Temperature -1 is below 0; used 0", "Max new tokens 100000 is above 4096; used 4096"]
    assert (page.input_value("#temperature"), page.input_value("#max-tokens")) == ("0", "4096")
    assert len(page.evaluate("window.pocketlm.history")) == 2  # answered
    page.click("#new-chat")  # the tiny model's answer may have filled its context
    setting(page, "max-tokens", "0")
    page.fill("#prompt", "hello")
    page.click("#send")
    wait_until(page, IDLE)
    assert page.locator("#messages li.user .note").all_inner_texts() == ["Max new tokens 0 is below 1; used 1"]
    assert len(page.evaluate("window.pocketlm.history")) == 2


def test_escape_right_after_send_stops_the_answer(page: Any) -> None:
    # Escape read in the same moment as Send, while the page is still checking the engine:
    # the answer has not reached the engine yet and must stop all the same. (Escape during
    # a long answer: tests/web/test_page_long_prompts.py, on a model slow enough to catch.)
    setting(page, "max-tokens", "4000")
    page.fill("#prompt", "hello world")
    page.evaluate("""() => {
        document.getElementById('send').click();
        document.getElementById('prompt').dispatchEvent(
            new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));
    }""")
    wait_until(page, IDLE)
    assert page.inner_text("#status").startswith("stopped;")
    assert page.inner_text("#messages li.assistant .note") == "Stopped before the answer began."
    assert len(page.evaluate("window.pocketlm.history")) == 2  # the stopped answer is kept


def test_new_chat_mid_answer_clears_at_once_and_the_next_question_is_answered(page: Any,
                                                                              tiny_model: Path) -> None:
    setting(page, "max-tokens", "4000")
    page.fill("#prompt", "hello world")
    page.click("#send")
    wait_until(page, "document.querySelector('#messages li.assistant .text').textContent.length > 0")
    page.click("#new-chat")
    assert page.locator("#messages li").count() == 0  # at once, not after the answer
    assert page.evaluate("window.pocketlm.history") == []
    setting(page, "max-tokens", "8")
    page.fill("#prompt", "the cat")
    page.click("#send")
    wait_until(page, "window.pocketlm.history.length === 2")
    wait_until(page, IDLE)
    history = page.evaluate("window.pocketlm.history")
    assert history[0] == {"role": "user", "content": "the cat"}
    assert page.locator("#messages li").count() == 2  # the stopped answer never came back
    # The answer was read from a fresh cache: the text of a fresh native run.
    assert history[1]["content"] == native_text(tiny_model, history[:1], 8)


def test_a_lone_surrogate_in_the_box_is_cleaned_not_an_error(page: Any) -> None:
    page.evaluate("document.getElementById('prompt').value = 'hello \\ud800 world \\udc00'")
    page.click("#send")
    wait_until(page, IDLE)
    history = page.evaluate("window.pocketlm.history")
    assert history[0]["content"] == "hello \ufffd world \ufffd"
    assert page.locator("#messages .error").count() == 0


def test_the_box_cannot_grow_over_the_page_and_the_newest_text_stays_above_it(page: Any) -> None:
    setting(page, "max-tokens", "8")  # four turns stay within the tiny model's context
    for _ in range(4):
        page.fill("#prompt", "hello world\n" * 2)
        page.click("#send")
        wait_until(page, IDLE)
    assert page.locator("#messages .error").count() == 0, page.locator("#messages .error").all_inner_texts()
    assert in_view(page, "#messages li:last-child")
    page.fill("#prompt", "line\n" * 200)
    page.dispatch_event("#prompt", "input")
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    sizes = page.evaluate("""() => ({
        box: document.getElementById('prompt').getBoundingClientRect().height,
        composer: document.getElementById('composer').getBoundingClientRect().bottom,
        window: innerHeight, scroll: document.documentElement.scrollHeight })""")
    assert sizes["box"] <= 0.3 * sizes["window"] + 1
    assert sizes["composer"] <= sizes["window"] and sizes["scroll"] <= sizes["window"]
    assert in_view(page, "#messages li:last-child")


def test_regenerate_and_edit_take_the_last_turn_back(page: Any, tiny_model: Path) -> None:
    page.fill("#prompt", "hello world")
    page.click("#send")
    wait_until(page, IDLE)
    first = page.evaluate("window.pocketlm.history")
    page.click("#messages li.assistant .turn-action")  # Regenerate
    wait_until(page, "window.pocketlm.history.length === 2")
    wait_until(page, IDLE)
    again = page.evaluate("window.pocketlm.history")
    assert page.locator("#messages li").count() == 2
    assert again == first  # greedy: the same answer, from a conversation without the old turn
    assert again[1]["content"] == native_text(tiny_model, again[:1], 8)
    page.click("#messages li.user .turn-action")  # Edit
    assert page.input_value("#prompt") == "hello world"
    assert page.locator("#messages li").count() == 0 and page.evaluate("window.pocketlm.history") == []
    page.fill("#prompt", "the cat")
    page.click("#send")
    wait_until(page, "window.pocketlm.history.length === 2")
    history = page.evaluate("window.pocketlm.history")
    assert history[1]["content"] == native_text(tiny_model, [{"role": "user", "content": "the cat"}], 8)
    assert page.locator("#messages .turn-action").count() == 2  # only on the last turn


def test_forget_this_site_deletes_caches_service_worker_and_conversation(open_browser: BrowserFactory,
                                                                          tiny_server: SiteServer) -> None:
    context, _ = open_browser(tiny_server.url)
    page = context.new_page()
    page.goto(tiny_server.url + "/?backend=wasm")
    wait_ready(page)
    page.fill("#prompt", "hello world")
    page.click("#send")
    wait_until(page, "window.pocketlm.history.length === 2")
    assert page.evaluate("caches.keys()") != []
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#settings summary")
    page.click("#forget")
    wait_until(page, "document.getElementById('status').textContent.startsWith('Forgotten')")
    assert page.evaluate("caches.keys()") == []
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then((r) => r.length)") == 0
    assert page.evaluate("window.pocketlm.history") == [] and page.locator("#messages li").count() == 0

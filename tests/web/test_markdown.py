"""Answers rendered as Markdown in the page (web/markdown.js over markdown-it): the usual
blocks come out as HTML elements, and hostile model output stays inert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.site_browser import (
    BrowserFactory,
    SiteServer,
    open_ready_page,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RENDER = """async (sources) => {
    const m = await import('/markdown.js');
    await m.loadMarkdown();
    return sources.map((source) => {
        const box = document.createElement('div');
        document.body.append(box);
        m.renderMarkdown(box, source);
        const found = {
            html: box.innerHTML,
            tags: [...box.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
            handlers: [...box.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.name))
                .filter((name) => name.startsWith('on')),
            hrefs: [...box.querySelectorAll('[href], [src]')].map((e) => e.getAttribute('href') ?? e.getAttribute('src')),
            text: box.textContent,
        };
        box.remove();
        return found;
    });
}"""

HOSTILE = [
    '<img src=x onerror="window.injected=1">',
    '<script>window.injected=1</script>',
    '[click](javascript:window.injected=1)',
    '[click](JAVASCRIPT:window.injected=1)',
    '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
    '![x](http://127.0.0.2/track.png)',
    '`<b onmouseover="window.injected=1">code</b>`',
    '```html\n<iframe src="javascript:window.injected=1"></iframe>\n```',
    '<a href="javascript:window.injected=1">x</a>',
    '<svg onload="window.injected=1"></svg>',
    '| a | b |\n|---|---|\n| <img src=x onerror=window.injected=1> | [y](vbscript:msgbox) |',
    '<details open ontoggle="window.injected=1">x</details>',
]


@pytest.fixture(scope="module")
def page(module_browser: BrowserFactory, tiny_server: SiteServer) -> Any:
    page, traffic = open_ready_page(module_browser, tiny_server)
    page.traffic = traffic
    return page


def test_markdown_blocks_become_elements(page: Any) -> None:
    source = ("# Title\n\nSome *emphasis* and **bold**.\n\n- one\n- two\n\n1. first\n\n"
              "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n\n[site](https://example.org)")
    [found] = page.evaluate(RENDER, [source])
    for tag in ("h1", "em", "strong", "ul", "ol", "li", "table", "th", "td", "pre", "code", "a"):
        assert tag in found["tags"], tag
    assert "print('hi')" in found["text"]
    assert found["hrefs"] == ["https://example.org"]
    assert 'rel="noopener noreferrer"' in found["html"]
    assert found["tags"].count("button") == 1  # the code block's copy button


def test_table_alignment_is_kept_without_inline_styles(page: Any) -> None:
    # The site's CSP (style-src 'self') drops style attributes: alignment must come from CSS.
    found = page.evaluate("""async () => {
        const m = await import('/markdown.js');
        await m.loadMarkdown();
        const box = document.createElement('div');
        document.body.append(box);
        m.renderMarkdown(box, '| left | middle | right |\\n|:---|:---:|---:|\\n| a | b | c |');
        const cells = [...box.querySelectorAll('td')];
        const result = { styles: box.querySelectorAll('[style]').length,
                         align: cells.map((cell) => getComputedStyle(cell).textAlign) };
        box.remove();
        return result;
    }""")
    assert found == {"styles": 0, "align": ["left", "center", "right"]}


def test_hostile_output_renders_inert(page: Any) -> None:
    results = page.evaluate(RENDER, HOSTILE)
    for source, found in zip(HOSTILE, results):
        assert not {"img", "script", "iframe", "svg", "details", "object", "embed"} & set(found["tags"]), source
        assert found["handlers"] == [], source
        assert all(not h.lower().startswith(("javascript:", "vbscript:", "data:")) for h in found["hrefs"]), source
    # Markup in a code span is shown as text.
    code = results[6]
    assert code["tags"] == ["p", "code"] and code["text"].strip() == '<b onmouseover="window.injected=1">code</b>'
    page.wait_for_timeout(200)
    assert page.evaluate("window.injected") is None
    assert not [url for url in page.traffic.seen if "track.png" in url]  # no image was requested


def test_a_streamed_answer_is_markdown_with_a_copy_button_and_keeps_its_source(page: Any) -> None:
    page.fill("#prompt", "hello world")
    page.click("#send")
    wait_until(page, "!document.getElementById('send').disabled")
    history = page.evaluate("window.pocketlm.history")
    assert page.evaluate("document.querySelector('#messages li.assistant .text').markdown") == history[1]["content"]
    assert page.locator("#messages li.assistant .copy-answer").count() == (1 if history[1]["content"] else 0)


AXE = Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js"  # npm, pinned


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # over DevTools: the site's CSP allows no inline script
    found = page.evaluate("""async () => (await axe.run(document)).violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)""")
    return list(found)


def test_the_page_has_no_serious_accessibility_violations(page: Any) -> None:
    page.fill("#prompt", "hello world")
    page.click("#send")
    wait_until(page, "!document.getElementById('send').disabled")
    page.fill("#prompt", "the cat " * 200)  # refused: an error under the message
    page.click("#send")
    page.wait_for_selector("#messages .error")
    assert serious_violations(page) == []

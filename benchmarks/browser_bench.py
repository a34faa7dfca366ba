"""Browser benchmark: the default model in headless Chromium (WASM, 1 and 2 threads) next
to native onnxruntime on the same graph, in one run. Prints a Markdown table.

    make bench        (or: python -m benchmarks.browser_bench)

Figures: the bytes a first visit downloads (counted by the server: page, service-worker
precache and engine), cold load to ready (fresh profile), warm load to ready (service-worker cache),
time to first token for a 16- and a 256-token prompt (and for the 256-token one
after `engine.prefill`, as the page calls it while the prompt is typed), prefill tokens/s (256-token prompt),
decode tokens/s over 128 new tokens (greedy, and with the page's sampling settings) with
Python's share of a decode step, the tab's memory
(measureUserAgentSpecificMemory: the page's and its worker's JS and WebAssembly memory; and
the resident memory of every Chromium process), and the native ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from pocketlm_build.bundle import build_site
from pocketlm_export.export import ExportOptions, export
from tests.web.site_browser import Browsers, SiteServer, ask, wait_ready

from .native_speed import measure, prompt_of

# The chat page's settings (web/app.js): temperature from its field (0.3), topP, penalty.
PAGE_SAMPLING = {"temperature": 0.3, "topP": 0.9, "repetitionPenalty": 1.1}


def chromium_rss_mb() -> float:
    """Resident memory of every running Chromium process, in MB."""
    out = subprocess.run(["ps", "-C", "chromium", "-o", "rss="], capture_output=True, text=True, check=False).stdout
    return sum(int(x) for x in out.split()) / 1024


def load(browsers: Browsers, url: str, profile: Path) -> tuple[Any, Any, float]:
    context, _ = browsers(url.split("/?")[0], profile=profile)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    wait_ready(page)
    return context, page, time.perf_counter() - started


def run_threads(browsers: Browsers, server: SiteServer, threads: int, prompts: dict[int, str]) -> dict[str, float]:
    url = f"{server.url}/?backend=wasm&threads={threads}"
    profile = Path(tempfile.mkdtemp(prefix="pocketlm-bench-"))
    idle = chromium_rss_mb()
    sent = server.app.total
    context, page, cold = load(browsers, url, profile)
    context.close()
    downloaded = server.app.total - sent  # the page, the service worker's precache, the engine
    context, page, warm = load(browsers, url, profile)
    figures: dict[str, float] = {"first visit MB": downloaded / 1e6, "cold load s": cold, "warm load s": warm}
    ask(page, "Hello", maxNewTokens=4)
    for n, prompt in prompts.items():
        ttft = []
        for _ in range(3):
            page.evaluate("window.pocketlm.engine.newChat()")
            ttft.append(ask(page, prompt, maxNewTokens=1)["timing"])
        figures[f"TTFT {n}-token prompt s"] = statistics.median(t["timeToFirstToken"] for t in ttft)
        if n == max(prompts):
            figures["prefill tok/s"] = statistics.median(t["prefillTokensPerSecond"] for t in ttft)
            typed = []
            for _ in range(3):  # as the page does while the prompt is typed: its settled words first
                page.evaluate("window.pocketlm.engine.newChat()")
                page.evaluate("(prompt) => window.pocketlm.engine.prefill(prompt)", prompt)
                typed.append(ask(page, prompt, maxNewTokens=1)["timing"])
            figures[f"TTFT {n}-token prompt, typed s"] = statistics.median(t["timeToFirstToken"] for t in typed)
    decode = []
    for _ in range(3):
        page.evaluate("window.pocketlm.engine.newChat()")
        timing = ask(page, "Once upon a time", maxNewTokens=128)["timing"]
        decode.append(timing)
    figures["decode tok/s"] = statistics.median(t["decodeTokensPerSecond"] for t in decode)
    figures["Python share of a step"] = statistics.median(t["pythonShare"] for t in decode)
    sampled = []
    for seed in range(3):  # the page's own settings: sampling over the whole row in JS
        page.evaluate("window.pocketlm.engine.newChat()")
        sampled.append(ask(page, "Once upon a time", maxNewTokens=128, **PAGE_SAMPLING, seed=seed)["timing"])
    figures["decode tok/s, page sampling"] = statistics.median(t["decodeTokensPerSecond"] for t in sampled)
    figures["Python share, page sampling"] = statistics.median(t["pythonShare"] for t in sampled)
    # The page's own memory (JS heaps and WebAssembly memories of the page and its worker).
    figures["tab memory MB"] = page.evaluate(
        "performance.measureUserAgentSpecificMemory().then(r => r.bytes)") / 1e6
    figures["Chromium RSS MB"] = chromium_rss_mb() - idle
    context.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-browser"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model, site = args.workdir / "model", args.workdir / "site"
    if not (model / "pocketlm.json").is_file():
        export(None, model, ExportOptions(quant="auto", force=True, progress=False))
    built = build_site(model, site, force=True)
    prompts = {n: prompt_of(model, n) for n in (16, 256)}
    server = SiteServer(site)
    rows: dict[str, dict[str, float]] = {}
    try:
        with sync_playwright() as driver:
            browsers = Browsers(driver)
            try:
                for threads in (1, 2):
                    rows[f"browser WASM {threads}T"] = run_threads(browsers, server, threads, prompts)
            finally:
                browsers.close_all()
    finally:
        server.stop()
    for threads in (1, 2):
        native = measure(model, threads, new_tokens=128, prompt_tokens=256)
        rows[f"native {threads}T"] = {"decode tok/s": native["decode"], "prefill tok/s": native["prefill"]}
    config = json.loads((model / "pocketlm.json").read_text())
    print(f"\nDefault model ({config['quantization']}): the site is {built.total_bytes / 1e6:.1f} MB in "
          f"{built.files} files, {built.gzip_bytes / 1e6:.1f} MB with gzip\n")
    keys = ["first visit MB", "cold load s", "warm load s", "TTFT 16-token prompt s", "TTFT 256-token prompt s",
            "TTFT 256-token prompt, typed s", "prefill tok/s",
            "decode tok/s", "Python share of a step", "decode tok/s, page sampling",
            "Python share, page sampling", "tab memory MB", "Chromium RSS MB"]
    cols = list(rows)
    print("| measure | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for key in keys:
        cells = [f"{rows[c][key]:.2f}" if key in rows[c] else "" for c in cols]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for threads in (1, 2):
        b, n = rows[f"browser WASM {threads}T"], rows[f"native {threads}T"]
        print(f"\n{threads} thread(s): browser / native decode = {b['decode tok/s'] / n['decode tok/s']:.2f}x, "
              f"prefill = {b['prefill tok/s'] / n['prefill tok/s']:.2f}x")


if __name__ == "__main__":
    main()

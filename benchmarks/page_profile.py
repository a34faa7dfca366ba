"""Where the page's time goes while it reads a prompt: Chromium's sampling profiler over
every thread of the page (the page, the worker that runs Pyodide and the engine's calling
thread, the engine's other threads), through the DevTools protocol's tracing.

    python -m benchmarks.page_profile --model EXACT_EXPORT [--threads 2] [--prompt-tokens 195]

Builds the site of the exported folder, opens it in headless Chromium with ``?backend=wasm
&threads=N``, warms it up (a short answer and two reads of the prompt), then records the
profile while the page answers the prompt three times with one new token each, and prints,
for every thread that was sampled, the functions by share of its samples (self time; the
engine's WebAssembly functions by their C names). The profiler slows the page: the rates it
prints are not the benchmark's (``make bench``).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from pocketlm_build.bundle import build_site
from tests.web.site_browser import Browsers, SiteServer, ask

from .browser_bench import load
from .native_speed import prompt_of

CATEGORIES = "disabled-by-default-v8.cpu_profiler,v8,toplevel"
INTERVAL_US = 100  # the profiler's sampling interval


def record(page: Any, context: Any, prompt: str, runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trace events of ``runs`` answers to ``prompt`` (one new token each), and their timings."""
    cdp = context.new_cdp_session(page)
    events: list[dict[str, Any]] = []
    done: list[bool] = []
    cdp.on("Tracing.dataCollected", lambda e: events.extend(e["value"]))
    cdp.on("Tracing.tracingComplete", lambda e: done.append(True))
    cdp.send("Tracing.start", {"categories": CATEGORIES, "transferMode": "ReportEvents",
                               "options": f"sampling-frequency={1_000_000 // INTERVAL_US}"})
    timings = []
    for _ in range(runs):
        page.evaluate("window.pocketlm.engine.newChat()")
        timings.append(ask(page, prompt, maxNewTokens=1)["timing"])
    cdp.send("Tracing.end")
    while not done:
        page.wait_for_timeout(100)
    return events, timings


def self_time(events: list[dict[str, Any]]) -> dict[tuple[Any, Any], collections.Counter[str]]:
    """Samples per function name, per profiled thread (the ProfileChunk events' trees)."""
    nodes: dict[tuple[Any, Any], dict[int, str]] = collections.defaultdict(dict)
    samples: dict[tuple[Any, Any], list[int]] = collections.defaultdict(list)
    for event in events:
        if event.get("name") != "ProfileChunk":
            continue
        key = (event.get("pid"), event.get("id"))
        profile = event["args"]["data"].get("cpuProfile", {})
        for node in profile.get("nodes", []):
            frame = node.get("callFrame", {})
            nodes[key][node["id"]] = frame.get("functionName") or frame.get("url") or "(anonymous)"
        samples[key] += profile.get("samples", [])
    out: dict[tuple[Any, Any], collections.Counter[str]] = {}
    for key, ids in samples.items():
        out[key] = collections.Counter(nodes[key].get(i, "?") for i in ids)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=195)
    parser.add_argument("--top", type=int, default=12, help="functions shown a thread")
    parser.add_argument("--workdir", type=Path, default=Path("out/page-profile"))
    args = parser.parse_args()
    if not (args.model / "pocketlm.json").is_file():
        raise SystemExit(f"page_profile: {args.model} has no pocketlm.json: give an exported model folder")
    args.workdir.mkdir(parents=True, exist_ok=True)
    site = args.workdir / "site"
    build_site(args.model, site, force=True)
    prompt = prompt_of(args.model, args.prompt_tokens)
    server = SiteServer(site)
    try:
        with sync_playwright() as driver:
            browsers = Browsers(driver)
            try:
                url = f"{server.url}/?backend=wasm&threads={args.threads}"
                context, page, _ = load(browsers, url, Path(tempfile.mkdtemp(prefix="pocketlm-profile-")))
                ask(page, "Hello", maxNewTokens=4)
                for _ in range(2):
                    page.evaluate("window.pocketlm.engine.newChat()")
                    ask(page, prompt, maxNewTokens=1)
                events, timings = record(page, context, prompt, 3)
            finally:
                browsers.close_all()
    finally:
        server.stop()
    rates = ", ".join(f"{t['prefillTokensPerSecond']:.0f} tok/s in {t['promptRuns']} chunks" for t in timings)
    print(f"{args.prompt_tokens}-token prompt, {args.threads} thread(s), under the profiler: {rates}")
    for (pid, profile), counts in self_time(events).items():
        total = sum(counts.values())
        if total < 100 or counts.most_common(1)[0][0] == "(idle)" and counts["(idle)"] > 0.95 * total:
            continue  # threads that were not sampled enough or only idled
        print(f"\nthread {profile} of process {pid}: {total} samples ({total * INTERVAL_US / 1e6:.2f} s)")
        for name, count in counts.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()

"""Browser benchmark: the default model in headless Chromium (our page on the chosen
backends, 1 and 2 threads) next to wllama (llama.cpp compiled to WebAssembly, running the
source GGUF, from node_modules/@wllama/wllama) and native onnxruntime on the same graph, in
one run. Prints a Markdown table.

    make bench        (or: python -m benchmarks.browser_bench [--backends wasm,webgpu])
    python -m benchmarks.browser_bench --sampling-cost 8 --threads 2 --decode-tokens 128

The second form measures only what the page's default sampling (temperature 0.3, top-k 50,
top-p 0.9, repetition penalty 1.1, over the whole row in web/sampler.js) costs a decode step
of the CPU engine against greedy decoding without a penalty: same page, prompt and token
count, answers alternating, ms/token of both, their ratio, and Python's share of a step.

Figures: the bytes a first visit downloads (counted by the server: page, service-worker
precache and engine), cold load to ready (fresh profile), warm load to ready (service-worker cache),
time to first token for a 16- and a 195-token prompt (and for the 195-token one
after `engine.prefill`, as the page calls it while the prompt is typed), prefill tokens/s (195-token prompt;
also how many chunks the page read it in, the first of the three runs alone (it starts at
the chunk size the shorter prompts left, the others at the size it reached), and the
tokens/s of the time inside the model runtime's runs alone, the rest being tokenizing, the
chat template, Python and sampling),
decode tokens/s over 64 greedy tokens (medians of 3 runs, and the best of the 3 for prefill
and decode: on a shared machine a slow run is mostly other work on the cores), the tab's memory
(measureUserAgentSpecificMemory: the page's and its worker's JS and WebAssembly memory; and
the resident memory of every Chromium process), and the native ratios.

wllama's page (benchmarks/wllama/index.html) is served by the same server from the built
site's `bench/wllama/` folder with the GGUF beside it, cross-origin isolated, so its
multi-thread build runs, under the site's Content-Security-Policy plus the `blob:` workers
wllama makes (`WLLAMA_CSP`; our page keeps the strict policy); its prefill and decode rates are llama.cpp's own timings of the
same prompts (prompt cache off, end of text ignored), its time to first token is measured
in the page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from pocketlm_build.bundle import build_site
from pocketlm_build.http_policy import CSP_DIRECTIVES
from pocketlm_export.default_model import default_model_path
from pocketlm_export.export import ExportOptions, export
from tests.web.site_browser import Browsers, SiteServer, ask, wait_ready, wait_until

from .native_speed import measure, prompt_of

# The chat page's settings (web/app.js): temperature from its field (0.3), topP, penalty.
PAGE_SAMPLING = {"temperature": 0.3, "topP": 0.9, "repetitionPenalty": 1.1}


def chromium_rss_mb() -> float:
    """Resident memory of every running Chromium process, in MB."""
    out = subprocess.run(["ps", "-C", "chromium", "-o", "rss="], capture_output=True, text=True, check=False).stdout
    return sum(int(x) for x in out.split()) / 1024


def load(browsers: Browsers, url: str, profile: Path, webgpu: bool = False) -> tuple[Any, Any, float]:
    context, _ = browsers(url.split("/?")[0], profile=profile, webgpu=webgpu)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    wait_ready(page)
    return context, page, time.perf_counter() - started


def settle() -> None:
    """Lets the machine settle after a browser closes: the cold visit wrote the whole model
    into the profile's Cache Storage, and the kernel's writeback of it (and the release of
    the closed tab's memory) would otherwise take CPU time from the timed runs after it."""
    os.sync()
    time.sleep(2)


def run_page(browsers: Browsers, server: SiteServer, backend: str, threads: int,
             prompts: dict[int, str], decode_tokens: int) -> dict[str, float]:
    """Our page with ``?backend=BACKEND&threads=N``."""
    url = f"{server.url}/?backend={backend}&threads={threads}"
    profile = Path(tempfile.mkdtemp(prefix="pocketlm-bench-"))
    webgpu = backend == "webgpu"
    idle = chromium_rss_mb()
    sent = server.app.total
    context, page, cold = load(browsers, url, profile, webgpu)
    context.close()
    downloaded = server.app.total - sent  # the page, the service worker's precache, the engine
    settle()
    context, page, warm = load(browsers, url, profile, webgpu)
    used = page.evaluate("window.pocketlm.engine.backend")
    if used["name"] != backend or used["threads"] != threads:
        raise SystemExit(f"asked for {backend} on {threads} thread(s), the page runs {used}")
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
            figures["prefill tok/s, best run"] = max(t["prefillTokensPerSecond"] for t in ttft)
            # The first of the three starts at the chunk size the 16-token prompts left (the
            # page carries it from prompt to prompt); the others at the size it reached.
            figures["prefill tok/s, first run"] = ttft[0]["prefillTokensPerSecond"]
            figures["prefill chunks, first run"] = ttft[0]["promptRuns"]
            # The model runtime's own share: the prompt's chunks, their count and tok/s.
            figures["prefill chunks"] = statistics.median(t["promptRuns"] for t in ttft)
            figures["prefill tok/s inside the runtime"] = statistics.median(
                t["promptTokens"] / t["promptRunSeconds"] for t in ttft)
            typed = []
            for _ in range(3):  # as the page does while the prompt is typed: its settled words first
                page.evaluate("window.pocketlm.engine.newChat()")
                page.evaluate("(prompt) => window.pocketlm.engine.prefill(prompt)", prompt)
                typed.append(ask(page, prompt, maxNewTokens=1)["timing"])
            figures[f"TTFT {n}-token prompt, typed s"] = statistics.median(t["timeToFirstToken"] for t in typed)
    decode = []
    for _ in range(3):
        page.evaluate("window.pocketlm.engine.newChat()")
        timing = ask(page, "Once upon a time", maxNewTokens=decode_tokens)["timing"]
        decode.append(timing)
    figures["decode tok/s"] = statistics.median(t["decodeTokensPerSecond"] for t in decode)
    # The best run too: on a shared machine a slow run is mostly other work on the cores.
    figures["decode tok/s, best run"] = max(t["decodeTokensPerSecond"] for t in decode)
    figures["decoded tokens"] = statistics.median(t["newTokens"] for t in decode)
    figures["Python share of a step"] = statistics.median(t["pythonShare"] for t in decode)
    sampled = []
    for seed in range(3):  # the page's own settings: sampling over the whole row in JS
        page.evaluate("window.pocketlm.engine.newChat()")
        sampled.append(ask(page, "Once upon a time", maxNewTokens=decode_tokens, **PAGE_SAMPLING, seed=seed)["timing"])
    figures["decode tok/s, page sampling"] = statistics.median(t["decodeTokensPerSecond"] for t in sampled)
    figures["Python share, page sampling"] = statistics.median(t["pythonShare"] for t in sampled)
    # The page's own memory (JS heaps and WebAssembly memories of the page and its worker).
    memory = page.evaluate("performance.measureUserAgentSpecificMemory()")
    figures["tab memory MB"] = memory["bytes"] / 1e6
    for where, size in memory_breakdown(memory).items():
        figures[f"tab memory: {where} MB"] = size / 1e6
    figures["Chromium RSS MB"] = chromium_rss_mb() - idle
    context.close()
    return figures


def memory_breakdown(memory: dict[str, Any]) -> dict[str, int]:
    """measureUserAgentSpecificMemory()'s breakdown summed by where the bytes live: the page
    (Window) or a worker (by its script's file name: worker.js runs Pyodide and the engine's
    first thread, cpu_engine_worker.js the other threads), and by type (JavaScript, DOM,
    Shared: the engine's WebAssembly memory is a SharedArrayBuffer)."""
    sums: dict[str, int] = {}
    for entry in memory.get("breakdown", []):
        if not entry.get("bytes"):
            continue
        places = [f"{a.get('scope', '?')} {a.get('url', '').rsplit('/', 1)[-1].split('?')[0]}".strip()
                  for a in entry.get("attribution", [])] or ["unattributed"]
        label = f"{' + '.join(sorted(set(places)))} ({'/'.join(entry.get('types', [])) or 'other'})"
        sums[label] = sums.get(label, 0) + int(entry["bytes"])
    return dict(sorted(sums.items(), key=lambda item: -item[1]))


#: Greedy decoding without a penalty: the sampler is one argmax over the row.
GREEDY = {"temperature": 0, "repetitionPenalty": 1}


def sampling_cost(browsers: Browsers, server: SiteServer, threads: int, tokens: int,
                  repeats: int) -> dict[str, list[dict[str, float]]]:
    """The page's CPU engine decoding the same prompt with the page's default sampling and
    greedily, alternating (ABBA order, so a drift of the machine's load falls on both).
    Each answer gives ms/token over its decode steps and Python's share of a step."""
    url = f"{server.url}/?backend=wasm&threads={threads}"
    context, page, _ = load(browsers, url, Path(tempfile.mkdtemp(prefix="pocketlm-bench-")))
    settle()
    settings: dict[str, dict[str, Any]] = {"page default": PAGE_SAMPLING, "greedy, no penalty": GREEDY}
    for options in settings.values():  # warm up both paths
        page.evaluate("window.pocketlm.engine.newChat()")
        ask(page, "Once upon a time", maxNewTokens=8, **options)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for repeat in range(repeats):
        order = list(settings) if repeat % 2 == 0 else list(settings)[::-1]
        for name in order:
            page.evaluate("window.pocketlm.engine.newChat()")
            timing = ask(page, "Once upon a time", maxNewTokens=tokens, seed=repeat, **settings[name])["timing"]
            runs[name].append({"ms/token": 1000 / timing["decodeTokensPerSecond"],
                               "Python share": timing["pythonShare"],
                               "Python ms/step": timing["pythonMsPerStep"],
                               "engine ms/step": timing["ortMsPerStep"], "tokens": timing["newTokens"]})
    context.close()
    return runs


def print_sampling_cost(threads: int, tokens: int, runs: dict[str, list[dict[str, float]]]) -> None:
    names = list(runs)
    keys = list(runs[names[0]][0])
    print(f"\nThe page's CPU engine, {threads} thread(s), {tokens} tokens after \"Once upon a time\", "
          f"{len(runs[names[0]])} alternating answers each (medians):\n")
    print("| settings | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in names:
        cells = [f"{statistics.median(r[k] for r in runs[name]):.3f}" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
    sampled, greedy = (runs[n] for n in names)

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    for name in names:
        print(f"{name}, ms/token per answer in order: " + " ".join(f"{r['ms/token']:.1f}" for r in runs[name]))
    paired = [a["ms/token"] / b["ms/token"] for a, b in zip(sampled, greedy)]
    extra = median(sampled, "Python ms/step") - median(greedy, "Python ms/step")
    print(f"\n{names[0]} / {names[1]}: ms/token {median(sampled, 'ms/token') / median(greedy, 'ms/token'):.4f} "
          f"(median of the paired ratios {statistics.median(paired):.4f}). The sampling happens outside "
          f"the engine's step, in Python's share: {extra:+.3f} ms/step there, "
          f"{100 * extra / median(greedy, 'ms/token'):+.2f}% of a greedy step (the steadier figure when "
          "the machine is shared: the engine's own time moves with the load)")


WLLAMA_PAGE = Path(__file__).with_name("wllama") / "index.html"
WLLAMA_PACKAGE = Path(__file__).resolve().parents[1] / "node_modules" / "@wllama" / "wllama"


def place_wllama(site: Path, gguf: Path) -> str:
    """Copy wllama's module, its WebAssembly and the GGUF under ``site/bench/wllama/``
    (the server serves nothing outside the site folder); returns the page's URL path."""
    esm = WLLAMA_PACKAGE / "esm"
    if not (esm / "index.js").is_file():
        raise SystemExit(f"{esm / 'index.js'} is missing: run `make setup` (npm ci)")
    folder = site / "bench" / "wllama"
    (folder / "esm" / "wasm").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WLLAMA_PAGE, folder / "index.html")
    shutil.copyfile(WLLAMA_PAGE.with_name("bench.js"), folder / "bench.js")
    shutil.copyfile(esm / "index.js", folder / "esm" / "index.js")
    shutil.copyfile(esm / "wasm" / "wllama.wasm", folder / "esm" / "wasm" / "wllama.wasm")
    shutil.copyfile(gguf, folder / "model.gguf")
    return WLLAMA_PREFIX + "index.html"


#: The Content-Security-Policy wllama's page is served with: the site's, plus the blob: URLs
#: wllama builds its workers (and the module code they import) from. Our page keeps the
#: site's strict policy; only responses under WLLAMA_PREFIX get this one.
WLLAMA_PREFIX = "/bench/wllama/"
WLLAMA_CSP = "; ".join(
    f"{name} {value} blob:" if name in ("script-src", "worker-src") else f"{name} {value}"
    for name, value in CSP_DIRECTIVES)


class PeerPolicy:
    """ASGI wrapper: responses for paths under WLLAMA_PREFIX carry WLLAMA_CSP."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WLLAMA_PREFIX):
            await self.app(scope, receive, send)
            return

        async def relaxed(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, WLLAMA_CSP.encode() if k.lower() == b"content-security-policy" else v)
                                      for k, v in message.get("headers", [])]
            await send(message)

        await self.app(scope, receive, relaxed)


def run_wllama(browsers: Browsers, server: SiteServer, page_path: str, threads: int,
               prompts: dict[int, str], decode_tokens: int) -> dict[str, float]:
    """wllama on the source GGUF: load, time to first token, prefill and decode rates."""
    context, traffic = browsers(server.url)
    page = context.new_page()
    page.goto(server.url + page_path)
    wait_until(page, "window.ready === true")  # polled from outside: no 'unsafe-eval' for wait_for_function
    loaded = page.evaluate("(threads) => window.loadWllama(threads)", threads)
    if loaded["threads"] != threads:
        raise SystemExit(f"wllama runs {loaded} instead of {threads} thread(s)")
    complete = "([prompt, n]) => window.completeWllama(prompt, n)"
    page.evaluate(complete, ["Hello", 4])  # warm up
    figures: dict[str, float] = {"cold load s": loaded["seconds"]}
    for n, prompt in prompts.items():
        runs = [page.evaluate(complete, [prompt, 1]) for _ in range(3)]
        figures[f"TTFT {n}-token prompt s"] = statistics.median(r["timeToFirstToken"] for r in runs)
        if n == max(prompts):
            figures["prefill tok/s"] = statistics.median(r["timings"]["prompt_per_second"] for r in runs)
            figures["wllama prompt tokens"] = runs[0]["timings"]["prompt_n"]
    runs = [page.evaluate(complete, ["Once upon a time", decode_tokens]) for _ in range(3)]
    figures["decode tok/s"] = statistics.median(r["timings"]["predicted_per_second"] for r in runs)
    figures["tab memory MB"] = page.evaluate("window.tabMemory()") / 1e6
    context.close()
    if traffic.foreign:
        raise SystemExit(f"the wllama page asked for other origins: {traffic.foreign}")
    return figures


def progress(name: str, rows: dict[str, dict[str, float]]) -> None:
    """One finished column on stderr, so a long run shows where it is."""
    cells = ", ".join(f"{key} {value:.2f}" for key, value in rows[name].items())
    print(f"{name}: {cells}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-browser"))
    parser.add_argument("--model", type=Path, help="an exported model folder (default: export the "
                        "default model with --quant auto and --layout into WORKDIR/model-LAYOUT)")
    parser.add_argument("--layout", choices=["dq", "nbits"], default="nbits",
                        help="the layout of the default model's export: nbits (MatMulNBits, the "
                        "export's default: what the page's CPU engine runs, and onnxruntime-web "
                        "as its fallback) or dq (widened to float32 at load; onnxruntime-web only)")
    parser.add_argument("--backends", default="wasm",
                        help="comma-separated backends of our page (its ?backend= values), e.g. wasm,webgpu")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=195)
    parser.add_argument("--no-wllama", action="store_true", help="leave wllama out")
    parser.add_argument("--gguf", type=Path, help="the GGUF wllama runs (default: the default model's; "
                        "needed with --model, e.g. ~/.cache/pocketlm/Qwen2.5-Coder-0.5B-Instruct.Q5_0.gguf)")
    parser.add_argument("--no-native", action="store_true", help="leave native onnxruntime out (its "
                        "MatMulNBits dequantizes 8-bit weights on every call: 0.1 tok/s on Qwen2.5-Coder-0.5B)")
    parser.add_argument("--sampling-cost", type=int, metavar="REPEATS", default=0,
                        help="only the cost of the page's default sampling: the CPU engine "
                        "decoding with it and greedily, REPEATS alternating answers each, at "
                        "each --threads count (--decode-tokens tokens)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    args.workdir.mkdir(parents=True, exist_ok=True)
    model, site = args.model or args.workdir / f"model-{args.layout}", args.workdir / "site"
    if not (model / "pocketlm.json").is_file():
        if args.model:
            raise SystemExit(f"{model} has no pocketlm.json: give an exported model folder")
        export(None, model, ExportOptions(quant="auto", layout=args.layout, force=True, progress=False))
    config = json.loads((model / "pocketlm.json").read_text())
    source = args.gguf or default_model_path()  # wllama runs the model's source GGUF
    if not (args.no_wllama or args.sampling_cost) and (config.get("source") or {}).get("file") != source.name:
        raise SystemExit(f"wllama runs the model's source GGUF, and {model} was not exported from {source.name}: "
                         "give the source as --gguf, or leave wllama out (--no-wllama)")
    built = build_site(model, site, force=True)
    long = args.prompt_tokens
    prompts = {n: prompt_of(model, n) for n in (16, long)}
    wllama_path = None if args.no_wllama or args.sampling_cost else place_wllama(site, source)
    server = SiteServer(site)
    server.app.app = PeerPolicy(server.app.app)
    rows: dict[str, dict[str, float]] = {}
    if args.sampling_cost:
        try:
            with sync_playwright() as driver:
                browsers = Browsers(driver)
                try:
                    for threads in thread_counts:
                        runs = sampling_cost(browsers, server, threads, args.decode_tokens, args.sampling_cost)
                        print_sampling_cost(threads, args.decode_tokens, runs)
                finally:
                    browsers.close_all()
        finally:
            server.stop()
        return
    try:
        with sync_playwright() as driver:
            browsers = Browsers(driver)
            try:
                for threads in thread_counts:
                    for backend in backends:
                        rows[f"page {backend} {threads}T"] = run_page(
                            browsers, server, backend, threads, prompts, args.decode_tokens)
                        progress(f"page {backend} {threads}T", rows)
                    if wllama_path:
                        rows[f"wllama {threads}T"] = run_wllama(
                            browsers, server, wllama_path, threads, prompts, args.decode_tokens)
                        progress(f"wllama {threads}T", rows)
            finally:
                browsers.close_all()
    finally:
        server.stop()
    for threads in [] if args.no_native else thread_counts:
        native = measure(model, threads, new_tokens=args.decode_tokens, prompt_tokens=long)
        rows[f"native {threads}T"] = {"decode tok/s": native["decode"], "prefill tok/s": native["prefill"]}
    print(f"\n{config.get('name', 'The model')} ({config['quantization']}, {config.get('export_options', {}).get('layout', 'dq')} "
          f"layout): the site is {built.total_bytes / 1e6:.1f} MB in {built.files} files, "
          f"{built.gzip_bytes / 1e6:.1f} MB with gzip; {long}-token prompt, {args.decode_tokens} greedy tokens\n")
    keys = ["first visit MB", "cold load s", "warm load s", "TTFT 16-token prompt s", f"TTFT {long}-token prompt s",
            f"TTFT {long}-token prompt, typed s", "prefill tok/s", "prefill tok/s, best run",
            "prefill tok/s, first run", "prefill chunks, first run", "prefill chunks",
            "prefill tok/s inside the runtime",
            "decode tok/s", "decode tok/s, best run", "decoded tokens", "Python share of a step", "decode tok/s, page sampling",
            "Python share, page sampling", "tab memory MB", "Chromium RSS MB", "wllama prompt tokens"]
    cols = list(rows)
    keys += sorted({k for c in cols for k in rows[c] if k.startswith("tab memory: ")},
                   key=lambda k: -max(rows[c].get(k, 0) for c in cols))
    print("| measure | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for key in keys:
        if not any(key in rows[c] for c in cols):
            continue
        cells = [f"{rows[c][key]:.2f}" if key in rows[c] else "" for c in cols]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for threads in [] if args.no_native else thread_counts:
        n = rows[f"native {threads}T"]
        for backend in backends:
            b = rows[f"page {backend} {threads}T"]
            line = (f"\n{threads} thread(s), page {backend}: / native decode = "
                    f"{b['decode tok/s'] / n['decode tok/s']:.2f}x, prefill = {b['prefill tok/s'] / n['prefill tok/s']:.2f}x")
            w = rows.get(f"wllama {threads}T")
            if w:
                line += (f"; / wllama decode = {b['decode tok/s'] / w['decode tok/s']:.2f}x, "
                         f"prefill = {b['prefill tok/s'] / w['prefill tok/s']:.2f}x")
            print(line)


if __name__ == "__main__":
    main()

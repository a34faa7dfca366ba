"""Prefill GEMM over int16 activation blocks against the same over int8 blocks, the kernel alone.

    python -m benchmarks.int8_gemm

Builds benchmarks/int8_gemm/probe.c with clang-19 into a temporary directory and runs
probe.mjs on it in node. The probe holds the 4-bit x int16 micro-kernel of
web/engine/kernels/gemm16.c (i32x4.dot_i16x8_s, 8 rows x 3 tokens a tile), the same with 4
tokens, the tile it replaced (4 rows x 6 tokens) and a 4-bit x int8 one
(i16x8.relaxed_dot_i8x16_i7x16 into int16 block sums, 4 and 6 tokens a tile): the last one's
rate is the multiply-add rate an int8-activation prefill would have. Each kernel's outputs are checked bit for bit against
its scalar reference, then the kernels are timed alternating (best of 5 rounds, 64 tokens,
1536x576 and 576x1536, blocks of 32). Prints a markdown table: GMAC/s a shape and the ratio
to the engine's int16 kernel. A second table gives the kernels' inner loops alone (weight
vectors, then each token's splat and multiply-adds, all in L1, with no unpacking, block
scales or stores), and the same loop with float32 multiply-adds (f32x4.relaxed_madd, and
f32x4.mul + f32x4.add): the ceiling each instruction sets.

``--browser``: the same run in a headless Chromium page (the V8 the page's engine runs in,
which can compile the kernels differently from node's); the page is served to Chromium
from memory, nothing is fetched from the network.

A probe of the kernel alone (one thread, no quantization of activations, no engine around
it), not of the engine's prefill.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.engine.node_engine import NODE_FLAGS
from tests.web.site_browser import CHROMIUM, CHROMIUM_ARGS

HERE = Path(__file__).with_name("int8_gemm")
CC = "clang-19"
CFLAGS = ["--target=wasm32", "-O3", "-ffreestanding", "-fno-builtin-memset", "-msimd128",
          "-mrelaxed-simd", "-Wall", "-Wextra", "-nostdlib", "-Wl,--no-entry",
          "-Wl,--initial-memory=67108864", "-Wl,-z,stack-size=1048576"]


# The page that runs probe_run.mjs on probe.wasm and leaves its lines in window.probeLines.
PAGE = """<!doctype html><meta charset="utf-8"><title>int8_gemm probe</title>
<script type="module">
import { runProbe } from './probe_run.mjs';
const lines = [];
try {
  await runProbe(await (await fetch('probe.wasm')).arrayBuffer(), (line) => lines.push(line));
} catch (error) {
  lines.push(`int8_gemm: the probe failed in the page: ${error}`);
}
window.probeLines = lines;
</script>"""
ORIGIN = "http://probe.invalid"


def run_in_chromium(wasm: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise SystemExit(f"int8_gemm: {CHROMIUM} not found; install Chromium (apt-get install chromium)")
    files = {"/index.html": (PAGE.encode(), "text/html"), "/probe.wasm": (wasm.read_bytes(), "application/wasm"),
             "/probe_run.mjs": ((HERE / "probe_run.mjs").read_bytes(), "text/javascript")}

    def serve(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path not in files:
            route.fulfill(status=404, body=b"")
            return
        body, kind = files[path]
        route.fulfill(status=200, body=body, headers={"content-type": kind})

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/index.html")
            print(f"Chromium {browser.version}")
            page.wait_for_function("window.probeLines !== undefined", timeout=600_000)
            lines = page.evaluate("window.probeLines")
        finally:
            browser.close()
    print("\n".join(lines))
    if lines and lines[-1].startswith("int8_gemm: the probe failed"):
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description="The prefill GEMM kernels alone, in node or Chromium.")
    parser.add_argument("--browser", action="store_true", help="run in a headless Chromium page instead of node")
    args = parser.parse_args()
    cc, node = shutil.which(CC), shutil.which("node")
    if cc is None:
        raise SystemExit(f"int8_gemm: {CC} not found; install clang-19 and lld-19 "
                         "(apt-get install clang-19 lld-19)")
    if node is None and not args.browser:
        raise SystemExit("int8_gemm: node not found; install Node.js (20 or newer)")
    with tempfile.TemporaryDirectory() as tmp:
        wasm = Path(tmp) / "probe.wasm"
        built = subprocess.run([cc, *CFLAGS, "-o", str(wasm), str(HERE / "probe.c")], check=False)
        if built.returncode:
            raise SystemExit(f"int8_gemm: {CC} failed ({built.returncode})")
        if args.browser:
            run_in_chromium(wasm)
            return
        assert node is not None
        ran = subprocess.run([node, *NODE_FLAGS, str(HERE / "probe.mjs"), str(wasm)], check=False)
        if ran.returncode:
            raise SystemExit(f"int8_gemm: the probe failed ({ran.returncode})")


if __name__ == "__main__":
    main()

"""Load test of `pocketlm serve`: N requests over C keep-alive connections on loopback, every
body's sha256 checked against manifest.json. Prints figures; asserts nothing but the hashes.

    make bench-serve        (or: python -m benchmarks.serve_bench [--site DIST])

The server is the real CLI in a child process. Without --site, a site is built from a tiny
random Llama (tests/fixtures) with the real node_modules. Requests cycle through every
file of the manifest up to --max-file-bytes (the page, scripts, the model, the runtime's
smaller files); the multi-megabyte WebAssembly files are left out so the test measures
request handling rather than loopback copying. Reported: throughput, latency percentiles,
errors, hash mismatches, and the server's memory and open descriptors before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_tiny_site(root: Path) -> Path:
    from pocketlm_build.bundle import build_site
    from pocketlm_export.export import ExportOptions, export
    from tests.fixtures.tiny_models import write_tiny_gguf

    gguf = write_tiny_gguf("llama", root / "tiny.gguf", seed=0)
    model = export(gguf, root / "model", ExportOptions(progress=False)).out
    return build_site(model, root / "dist").out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_figures(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and open file descriptors of a process (Linux /proc)."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def connection(address: tuple[str, int], jobs: list[tuple[str, str]],
                     latencies: list[float], failures: list[str]) -> None:
    reader, writer = await asyncio.open_connection(*address)
    try:
        for path, sha256 in jobs:
            started = time.perf_counter()
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            try:
                status, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                failures.append(f"{path}: {type(exc).__name__}")
                reader, writer = await asyncio.open_connection(*address)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(f"{path}: HTTP {status}")
            elif hashlib.sha256(body).hexdigest() != sha256:
                failures.append(f"{path}: sha256 mismatch")
    finally:
        writer.close()


async def load(address: tuple[str, int], files: list[tuple[str, str, int]], requests: int,
               connections: int) -> tuple[float, list[float], list[str], int]:
    per = requests // connections
    latencies: list[float] = []
    failures: list[str] = []
    plans = [[(files[(c + i * connections) % len(files)][0], files[(c + i * connections) % len(files)][1])
              for i in range(per)] for c in range(connections)]
    sizes = {path: size for path, _, size in files}
    started = time.perf_counter()
    await asyncio.gather(*(connection(address, plan, latencies, failures) for plan in plans))
    seconds = time.perf_counter() - started
    return seconds, latencies, failures, sum(sizes[p] for plan in plans for p, _ in plan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="a built site (default: build a tiny one)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--max-file-bytes", type=int, default=1 << 20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pocketlm-serve-bench-") as tmp:
        site = args.site or build_tiny_site(Path(tmp))
        manifest = json.loads((site / "manifest.json").read_text())
        files = [(e["path"], e["sha256"], e["size"]) for e in manifest["files"] if e["size"] <= args.max_file_bytes]
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "pocketlm_build.cli", "serve", str(site),
                                   "--port", str(port)], cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            rss_before, fds_before = process_figures(server.pid)
            seconds, latencies, failures, body_bytes = asyncio.run(
                load(("127.0.0.1", port), files, args.requests, args.connections))
            time.sleep(6)  # past the keep-alive timeout: idle connections are closed
            rss_after, fds_after = process_figures(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    done = len(latencies)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(f"pocketlm serve: {done:,} requests over {args.connections} keep-alive connections on loopback, "
          f"{len(files)} files of the site (<= {args.max_file_bytes / 1e6:.1f} MB), bodies checked by sha256")
    print(f"  {seconds:.1f} s, {done / seconds:,.0f} requests/s, {body_bytes / seconds / 1e6:.1f} MB/s of bodies")
    print(f"  latency p50 {quantiles[49] * 1000:.0f} ms, p90 {quantiles[89] * 1000:.0f} ms, "
          f"p99 {quantiles[98] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    print(f"  errors {len(failures)} (hash mismatches {sum('sha256' in f for f in failures)})")
    print(f"  server RSS {rss_before:.0f} MB -> {rss_after:.0f} MB, open descriptors {fds_before} -> {fds_after}")
    for failure in failures[:10]:
        print(f"  ! {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

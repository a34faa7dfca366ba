"""Debian's nginx serving a built site through the shipped pocketlm-nginx.conf, on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def nginx_serving(dist: Path, prefix: Path) -> Iterator[int]:
    """Start nginx on a free loopback port with ``dist`` as its root; yields the port."""
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed (apt-get install -y nginx)")
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read tmp_path
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log stderr warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n    access_log off;\n" + temp_paths + "    server {\n"
        f"        listen 127.0.0.1:{port};\n        root {dist};\n"
        f"        include {dist / 'pocketlm-nginx.conf'};\n    }}\n}}\n"
    )
    command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr
    log = prefix / "stderr.log"  # a file, not a pipe nobody reads, which could fill and block
    with log.open("wb") as stderr:
        process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    pytest.fail(f"nginx did not start: {log.read_text(errors='replace')}")
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

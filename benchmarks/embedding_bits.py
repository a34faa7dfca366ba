"""What a 4-bit token embedding would cost the default model: its exact export against the
same export with the Q8_0 embedding (and so the tied LM head) rounded to 4-bit blocks with a
float minimum each (block_minima.py, the better of the 4-bit forms), side by side.

    python -m benchmarks.embedding_bits [--workdir out/bench-embedding]

Prints, from each export's own quality gate against the source's float32 model: the model
folder's bytes and gzip bytes, perplexity on the held-out text and its rise, top-1 and greedy
agreement. The 4-bit variant is not a mode of the exporter (its gate fails); it exists only
here, to measure the download a 4-bit embedding would save against what it would cost.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pocketlm_export import quantize
from pocketlm_export.block_minima import quantize_q4_minima
from pocketlm_export.export import ExportOptions, export


@contextmanager
def four_bit_embedding() -> Iterator[None]:
    """The embedding rounded to 4-bit blocks of 32 with float minima while the block is open."""
    original = quantize.NBitsCodec.quantized

    def quantized(self: quantize.NBitsCodec, name: str) -> Any:
        if name == "embed":
            return quantize_q4_minima(self.src.float32("embed"), 32)
        return original(self, name)

    quantize.NBitsCodec.quantized = quantized  # type: ignore[method-assign]
    try:
        yield
    finally:
        quantize.NBitsCodec.quantized = original  # type: ignore[method-assign]


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix != ".md"]
    raw = sum(p.stat().st_size for p in files)
    packed = sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)
    return raw, packed


def run(out: Path, four_bit: bool) -> dict[str, Any]:
    options = ExportOptions(quant="exact", force=True, progress=False, allow_quality_loss=True)
    if four_bit:
        with four_bit_embedding():
            result = export(None, out, options)
    else:
        result = export(None, out, options)
    gate = result.report["quality"]["candidates"][-1]
    raw, packed = folder_bytes(out)
    return {"MB": raw / 1e6, "gzip MB": packed / 1e6, **gate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-embedding"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = {"exact (Q8_0 embedding, the source's)": run(args.workdir / "exact", False),
            "exact, embedding in 4-bit blocks with minima": run(args.workdir / "embed4", True)}
    keys = [k for k in next(iter(rows.values())) if isinstance(next(iter(rows.values()))[k], int | float)]
    print("| export | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                                         for k in keys) + " |")
    print(json.dumps(rows, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()

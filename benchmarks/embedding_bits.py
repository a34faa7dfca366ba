"""What a 4-bit token embedding would cost the default model: its exact export against the
same export with the Q8_0 embedding (and so the tied LM head) rounded to 4-bit blocks with a
float minimum each (block_minima.py, the better of the 4-bit forms), side by side.

    python -m benchmarks.embedding_bits [--workdir out/bench-embedding] [--split-ranks 5000 ...]

Prints, from each export's own quality gate against the source's float32 model: the model
folder's bytes and gzip bytes, perplexity on the held-out text and its rise, top-1 and greedy
agreement. The 4-bit variant is not a mode of the exporter (its gate fails); it exists only
here, to measure the download a 4-bit embedding would save against what it would cost.

``--split-ranks R`` adds, for each R, an embedding split by token id: the rows of ids below R
(a byte-level BPE numbers its tokens in merge order, so the most frequent come first) keep
the source's 8-bit blocks, the rest are rounded to 4-bit blocks with minima. Only its
accuracy is measured exactly: the rounded rows are stored back in 8-bit blocks (Q8_0 of
Q8_0 values is exact, of the 4-bit ones it adds at most half an 8-bit step), since no single
MatMulNBits or GatherBlockQuantized holds two bit widths. Its download is estimated from the
two whole exports: the 4-bit one's gzip bytes plus the 8-bit rows' share of the difference.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pocketlm_export import quantize
from pocketlm_export.block_minima import quantize_q4_minima
from pocketlm_export.export import ExportOptions, export
from pocketlm_export.quant_blocks import dequantize_nbits, quantize_q8


@contextmanager
def four_bit_embedding(split_rank: int | None = None) -> Iterator[None]:
    """The embedding rounded to 4-bit blocks of 32 with float minima while the block is open;
    with ``split_rank``, only the rows of ids from it on (see the module doc)."""
    original = quantize.NBitsCodec.quantized

    def quantized(self: quantize.NBitsCodec, name: str) -> Any:
        if name != "embed":
            return original(self, name)
        if split_rank is None:
            return quantize_q4_minima(self.src.float32("embed"), 32)
        w = self.src.float32("embed").copy()
        q4, mins = quantize_q4_minima(w[split_rank:], 32)
        w[split_rank:] = dequantize_nbits(q4) + np.repeat(mins, 32, axis=1)
        return quantize_q8(w, 32), None

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


def run(out: Path, four_bit: bool, split_rank: int | None = None) -> dict[str, Any]:
    options = ExportOptions(quant="exact", force=True, progress=False, allow_quality_loss=True)
    if four_bit:
        with four_bit_embedding(split_rank):
            result = export(None, out, options)
    else:
        result = export(None, out, options)
    gate = result.report["quality"]["candidates"][-1]
    raw, packed = folder_bytes(out)
    return {"MB": raw / 1e6, "gzip MB": packed / 1e6, **gate, "vocab": result.report["vocab_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-embedding"))
    parser.add_argument("--split-ranks", type=int, nargs="*", default=[], metavar="R",
                        help="also measure embeddings whose ids from R on are 4-bit (see above)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    eight, four = "exact (Q8_0 embedding, the source's)", "exact, embedding in 4-bit blocks with minima"
    rows = {eight: run(args.workdir / "exact", False), four: run(args.workdir / "embed4", True)}
    for rank in args.split_ranks:
        row = run(args.workdir / f"split{rank}", True, rank)
        # The download of a real split: the 4-bit export plus the 8-bit rows' share of the gap.
        for key in ("MB", "gzip MB"):
            row[key] = rows[four][key] + (rows[eight][key] - rows[four][key]) * rank / row["vocab"]
        rows[f"ids below {rank} 8-bit, the rest 4-bit (size estimated)"] = row
    keys = [k for k in next(iter(rows.values())) if isinstance(next(iter(rows.values()))[k], int | float)]
    print("| export | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                                         for k in keys) + " |")
    print(json.dumps(rows, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()

"""Prefill GEMM over int16 activation blocks against the same over int8 blocks, the kernel alone.

    python -m benchmarks.int8_gemm

Builds benchmarks/int8_gemm/probe.c with clang-19 into a temporary directory and runs
probe.mjs on it in node. The probe holds the 4-bit x int16 micro-kernel of
web/engine/kernels/gemm16.c (i32x4.dot_i16x8_s, 6 tokens a tile) and a 4-bit x int8 one
(i16x8.relaxed_dot_i8x16_i7x16 into int16 block sums, 4 and 6 tokens a tile): the second's
rate is the multiply-add rate an int8-activation prefill would have. Each kernel's outputs
are checked bit for bit against its scalar reference, then the kernels are timed alternating
(best of 5 rounds, 64 tokens, 1536x576 and 576x1536, blocks of 32). Prints a markdown table:
GMAC/s a shape and the ratio to the int16 kernel. A second table gives each kernel's inner
loop alone (a weight vector, then 6 tokens' splat and multiply-add, all in L1, with no
unpacking, block scales or stores), and the same loop with float32 multiply-adds
(f32x4.relaxed_madd, and f32x4.mul + f32x4.add): the ceiling each instruction sets.

A probe of the kernel alone (one thread, no quantization of activations, no engine around
it), not of the engine's prefill.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.engine.node_engine import NODE_FLAGS

HERE = Path(__file__).with_name("int8_gemm")
CC = "clang-19"
CFLAGS = ["--target=wasm32", "-O3", "-ffreestanding", "-fno-builtin-memset", "-msimd128",
          "-mrelaxed-simd", "-Wall", "-Wextra", "-nostdlib", "-Wl,--no-entry",
          "-Wl,--initial-memory=67108864", "-Wl,-z,stack-size=1048576"]


def main() -> None:
    cc, node = shutil.which(CC), shutil.which("node")
    if cc is None:
        raise SystemExit(f"int8_gemm: {CC} not found; install clang-19 and lld-19 "
                         "(apt-get install clang-19 lld-19)")
    if node is None:
        raise SystemExit("int8_gemm: node not found; install Node.js (20 or newer)")
    with tempfile.TemporaryDirectory() as tmp:
        wasm = Path(tmp) / "probe.wasm"
        built = subprocess.run([cc, *CFLAGS, "-o", str(wasm), str(HERE / "probe.c")], check=False)
        if built.returncode:
            raise SystemExit(f"int8_gemm: {CC} failed ({built.returncode})")
        ran = subprocess.run([node, *NODE_FLAGS, str(HERE / "probe.mjs"), str(wasm)], check=False)
        if ran.returncode:
            raise SystemExit(f"int8_gemm: the probe failed ({ran.returncode})")


if __name__ == "__main__":
    main()

#!/bin/sh
# Builds the engine's two WebAssembly modules from source with Debian's clang-19 and
# lld-19 (no emscripten, no libc): engine-relaxed.wasm (relaxed SIMD) and engine-simd.wasm
# (plain SIMD128). Usage: web/engine/build.sh OUT_DIR
set -eu
out=${1:-build/engine}
here=$(dirname "$0")
mkdir -p "$out"
CC=${CC:-clang-19}
command -v "$CC" >/dev/null || { echo "build.sh: $CC not found; install clang-19 and lld-19 (apt-get install clang-19 lld-19)" >&2; exit 2; }
sources="$here/runtime.c $here/threads.c $here/loader.c $here/model.c $here/kernels/act.c $here/kernels/qmatmul.c $here/kernels/gemm.c $here/kernels/gemm16.c $here/kernels/vec.c $here/kernels/attention.c"
flags="--target=wasm32 -O3 -ffreestanding -fno-builtin-memset -msimd128 -matomics -mbulk-memory -Wall -Wextra -Wno-unused-parameter -nostdlib
  -Wl,--no-entry -Wl,--import-memory -Wl,--shared-memory -Wl,--max-memory=4294967296
  -Wl,--export=__stack_pointer -Wl,--export=__heap_base -Wl,-z,stack-size=1048576 -Wl,--initial-memory=16777216"
$CC $flags -mrelaxed-simd -o "$out/engine-relaxed.wasm" $sources
$CC $flags -o "$out/engine-simd.wasm" $sources

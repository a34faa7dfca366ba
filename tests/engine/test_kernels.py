"""Every SIMD kernel of the engine against its scalar reference, in node, in both builds.

The driver fills random weight blocks and activations, runs the SIMD kernel, the scalar C
reference and a float computation in JavaScript (weights dequantized, activations
quantized per block the same way: an independent check of the integer arithmetic), with
int8 and int16 activation blocks, and float activations through the prefill GEMM.
"""

from __future__ import annotations

import pytest

from .node_engine import BUILDS, NodeEngine

# bits, block size, zero points, block minima, float32 scales and minima
FORMATS = [
    (4, 32, False, False, False),  # symmetric q4 (default zero point 8), GGUF Q4_0
    (4, 32, True, False, False),  # asymmetric q4
    (4, 32, True, True, False),  # GGUF Q4_1: codes, zero points 0, block minima
    (8, 32, False, False, False),  # q8, GGUF Q8_0
    (4, 64, True, False, False),
    (4, 128, False, False, False),
    (4, 16, True, False, False),  # blocks shorter than a SIMD chunk: the reference path
    (8, 64, False, False, False),
    (4, 32, True, True, True),  # GGUF Q4_K
    (8, 32, False, True, True),  # GGUF Q5_K
    (8, 16, False, False, True),  # GGUF Q6_K
    (4, 16, True, True, True),  # GGUF Q2_K
    (4, 16, False, False, True),  # GGUF Q3_K
]


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"q{f[0]}-bs{f[1]}{'-zp' if f[2] else ''}{'-mins' if f[3] else ''}"
                                                      f"{'-f32' if f[4] else ''}")
@pytest.mark.parametrize("tokens", [1, 3, 11])
@pytest.mark.parametrize("act_bits", [8, 16, 32])
def test_simd_kernel_matches_scalar_reference(node: NodeEngine, build: str, fmt: tuple, tokens: int,
                                             act_bits: int) -> None:
    bits, bs, zero_points, mins, float32 = fmt
    k = 576 if 576 % bs == 0 else 512  # 576 = 18 blocks of 32: a tail of 2 after groups of 4
    r = node.call("kernel", wasm=str(BUILDS[build]), bits=bits, bs=bs, n=44, k=k, m=tokens,
                  zero_points=zero_points, mins=mins, bias=True, seed=bs + tokens, reps=1, act_bits=act_bits,
                  float32=float32)
    assert r["relaxed"] == (build == "relaxed")
    assert r["finite"]
    # Same integer sums; only the float accumulation order differs (a few ulps of the sum).
    tol = 1e-5 * max(1.0, r["scale"])
    assert r["max_simd_vs_ref"] <= tol, r
    assert r["max_ref_vs_float"] <= tol, r
    assert r["max_simd_vs_float"] <= tol, r


def test_relaxed_simd_detection(node: NodeEngine) -> None:
    # The driver runs node with relaxed SIMD on and Liftoff off: the dot product is right.
    assert node.call("relaxedSimdSupported") is True


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("tokens", [1, 7])
@pytest.mark.parametrize("act_bits", [16, 32])
def test_simd_kernel_rows_past_the_last_full_tile(node: NodeEngine, build: str, tokens: int, act_bits: int) -> None:
    # 47 rows: the kernels take rows in tiles (4 a pass for one token, 2 in the prefill GEMM)
    # and tokens in tiles of 4; the last rows and tokens take the kernels' tail paths.
    r = node.call("kernel", wasm=str(BUILDS[build]), bits=4, bs=32, n=47, k=576, m=tokens, zero_points=True,
                  mins=True, bias=True, seed=5 + tokens, reps=1, act_bits=act_bits)
    tol = 1e-5 * max(1.0, r["scale"])
    assert r["finite"]
    assert r["max_simd_vs_ref"] <= tol, r
    assert r["max_simd_vs_float"] <= tol, r


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("tokens", [1, 7])
@pytest.mark.parametrize("act_bits", [8, 16, 32])
def test_simd_kernel_with_all_zero_zero_points(node: NodeEngine, build: str, tokens: int, act_bits: int) -> None:
    # GGUF Q4_1 exports carry zero points that are all 0 beside the block minima; the loader
    # drops them and the kernels skip the zero-point term: still the float computation's sums.
    r = node.call("kernel", wasm=str(BUILDS[build]), bits=4, bs=32, n=44, k=576, m=tokens, zero_points="zeros",
                  mins=True, bias=False, seed=9 + tokens, reps=1, act_bits=act_bits)
    tol = 1e-5 * max(1.0, r["scale"])
    assert r["finite"]
    assert r["max_simd_vs_ref"] <= tol, r
    assert r["max_simd_vs_float"] <= tol, r


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f[1] % 32 == 0],
                         ids=lambda f: f"q{f[0]}-bs{f[1]}{'-zp' if f[2] else ''}{'-mins' if f[3] else ''}"
                                       f"{'-f32' if f[4] else ''}")
@pytest.mark.parametrize("tokens", [1, 6, 11])
@pytest.mark.parametrize("rows", [44, 47])
def test_int16_prefill_gemm_matches_scalar_reference(node: NodeEngine, build: str, fmt: tuple, tokens: int,
                                                     rows: int) -> None:
    # qgemm_i16 (rows 8 at a time, tokens 3 at a time; 44 and 47 rows and 1 or 11 tokens take the
    # partial tiles) against qmatmul_ref on the same int16 blocks and the float computation.
    bits, bs, zero_points, mins, float32 = fmt
    r = node.call("kernel", wasm=str(BUILDS[build]), bits=bits, bs=bs, n=rows, k=576 if 576 % bs == 0 else 512,
                  m=tokens, zero_points=zero_points, mins=mins, bias=True, seed=bs + tokens + rows, reps=1,
                  act_bits=16, float32=float32, gemm16=True)
    tol = 1e-5 * max(1.0, r["scale"])
    assert r["finite"]
    assert r["max_simd_vs_ref"] <= tol, r
    assert r["max_simd_vs_float"] <= tol, r

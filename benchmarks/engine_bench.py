"""pocketlm's WebAssembly CPU engine in node, beside native onnxruntime, in one run.

Default model (SmolLM2-135M-Instruct) exported with ``--layout nbits`` (q4 unless
``--quant``): decode tok/s (64 greedy tokens after "Once upon a time"), prefill tok/s
(a 195-token prompt, one run), at 1 and 2 threads, relaxed-SIMD and plain SIMD128 builds;
native onnxruntime on the same folder with float activations (accuracy_level 0, as
exported) and with int8 activations (accuracy_level 4, the engine's arithmetic). Plus the
4-bit kernel alone on a 1536x576 block (one token and 16 tokens; the prefill GEMM on 64
tokens of float activations), GMAC/s by wall clock
and by the process's CPU time (the machine is shared: CPU time is the steadier figure).

The engine's loop runs in JavaScript (tests/engine/engine_driver.mjs ``generate``, the
engine API as the page calls it); the native figures come from the Python generation loop
(benchmarks/native_speed.py). Usage: ``python -m benchmarks.engine_bench [--quant q4]``.

``--quick`` (for big models, e.g. the Qwen2.5-Coder-0.5B export): only the relaxed build
with int16 activations at each ``--threads`` count (no native rows: onnxruntime's
MatMulNBits at accuracy_level 0 dequantizes 8-bit weights on every call, 0.1 tok/s on that
model here), then the decode kernel on the model's own MLP shapes (their bits and block
size), so the figures say how much of a decode step the kernels take.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from pocketlm_runtime.native import load_native
from tests.engine import reference
from tests.engine.node_engine import BUILDS, NodeEngine, build_engine

from .native_speed import measure, prompt_of

NEW_TOKENS = 64
PROMPT_TOKENS = 195


def export_model(workdir: Path, quant: str) -> Path:
    from pocketlm_export.export import ExportOptions, export

    out = workdir / f"default-{quant}-nbits"
    if not (out / "pocketlm.json").is_file():
        export(None, out, ExportOptions(quant=quant, layout="nbits", progress=False, force=True))
    return out


def engine_figures(node: NodeEngine, model: Path, build: str, threads: int, short: list[int],
                   long: list[int], repeats: int, activations: int = 16) -> dict[str, float]:
    info = node.load(model, build, threads, activations)
    node.call("generate", prompt_ids=short, new_tokens=4)  # warm-up: compile tiers, grow the cache
    decode, prefill = [], []
    for _ in range(repeats):
        r = node.call("generate", prompt_ids=short, new_tokens=NEW_TOKENS)
        decode.append((NEW_TOKENS - 1) / (r["decode_ms"] / 1000))
        r = node.call("generate", prompt_ids=long, new_tokens=1)
        prefill.append(len(long) / (r["prefill_ms"] / 1000))
    return {"decode tok/s": statistics.median(decode), "prefill tok/s": statistics.median(prefill),
            "decode CPU ms/token": r_decode_cpu(node, short), "load s": info["load_ms"] / 1000,
            "memory MB": r["bytes"] / 1e6}


def r_decode_cpu(node: NodeEngine, short: list[int]) -> float:
    """CPU time of the process a decode step (every thread's time added up)."""
    r = node.call("generate", prompt_ids=short, new_tokens=32)
    return float(r["decode_cpu_ms"]) / 31


def native_figures(model: Path, threads: int, accuracy_level: int, repeats: int) -> dict[str, float]:
    folder = model
    if accuracy_level:
        reference.session(model, accuracy_level)  # writes model_level4.onnx beside model.onnx
        folder = model / f"level{accuracy_level}"
        folder.mkdir(exist_ok=True)
        for name in ("pocketlm.json", "tokenizer.json"):
            (folder / name).write_bytes((model / name).read_bytes())
        graph = folder / "model.onnx"
        if not graph.exists():
            graph.symlink_to(model / f"model_level{accuracy_level}.onnx")
        data = folder / "model.onnx.data"
        if not data.exists():
            data.symlink_to(model / "model.onnx.data")
    figures = measure(folder, threads, new_tokens=NEW_TOKENS, prompt_tokens=PROMPT_TOKENS, repeats=repeats)
    return {"decode tok/s": figures["decode"], "prefill tok/s": figures["prefill"]}


def kernel_figures(node: NodeEngine) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for build, wasm in BUILDS.items():
        for tokens, act_bits in ((1, 8), (16, 8), (1, 16), (16, 16), (64, 32)):
            runs = [node.call("kernel", wasm=str(wasm), bits=4, bs=32, n=1536, k=576, m=tokens, zero_points=True,
                              mins=False, bias=False, seed=1, reps=max(20, 400 // tokens), act_bits=act_bits)
                    for _ in range(3)]
            kind = "float activations (prefill GEMM)" if act_bits == 32 else f"int{act_bits} activations"
            rows.append((f"{build}, {kind}, {tokens} token{'s' if tokens > 1 else ''}",
                         {"GMAC/s wall": max(r["gmacs"] for r in runs), "GMAC/s CPU": max(r["cpu_gmacs"] for r in runs)}))
    return rows


def model_kernel_figures(node: NodeEngine, model: Path) -> list[tuple[str, dict[str, Any]]]:
    """The decode kernel (one token, int16 activations) on layer 0's MLP gate and down
    projections and on the LM head, with the model's own bits and block size (random codes
    and scales). A layer's matrices fit in the CPU's caches when run again and again; the
    LM head of a 150k vocabulary does not, so its rate is bound by memory bandwidth, as
    every matrix is in a real decode step (each is read once a token)."""
    import json

    config = json.loads((model / "pocketlm.json").read_text())
    tensors, mc = config["tensors"], config["model_config"]
    rows = []
    head = "lm_head" if "lm_head/qweight" in tensors else "embed"
    for name, k in (("L0/gate", mc["hidden_size"]), ("L0/down", mc["intermediate_size"]), (head, mc["hidden_size"])):
        n, blocks, blob = tensors[f"{name}/qweight"]["shape"]
        bs = k // blocks
        bits = blob * 8 // bs
        float32 = tensors[f"{name}/scales"]["dtype"] == "float32"
        runs = [node.call("kernel", wasm=str(BUILDS["relaxed"]), bits=bits, bs=bs, n=n, k=k, m=1,
                          zero_points=f"{name}/zero_points" in tensors, mins=f"{name}/block_mins" in tensors,
                          bias=False, seed=1, reps=20 if n < 65536 else 3, act_bits=16, float32=float32)
                for _ in range(3 if n < 65536 else 1)]
        rows.append((f"{name} {n}x{k}, {bits}-bit blocks of {bs}, int16 activations, 1 token",
                     {"GMAC/s wall": max(r["gmacs"] for r in runs), "GMAC/s CPU": max(r["cpu_gmacs"] for r in runs)}))
    return rows


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    keys = list(dict.fromkeys(k for _, row in rows for k in row))
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, row in rows:
        cells = [f"{row[k]:.1f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quant", default="q4", choices=["q4", "exact", "q8"])
    parser.add_argument("--workdir", type=Path, default=Path("out/engine-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="an existing --layout nbits export (default: export one)")
    parser.add_argument("--quick", action="store_true", help="relaxed build, int16 activations, and the "
                        "kernel on the model's own MLP shapes only (big models)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    build_engine()
    model = args.model or export_model(args.workdir, args.quant)
    tokenizer = load_native(model, threads=1).tokenizer
    short = tokenizer.encode("Once upon a time", add_special_tokens=False)
    long = tokenizer.encode(prompt_of(model, PROMPT_TOKENS), add_special_tokens=False)[:PROMPT_TOKENS]
    rows: list[tuple[str, dict[str, Any]]] = []
    node = NodeEngine()
    try:
        for threads in thread_counts:
            if args.quick:
                rows.append((f"engine relaxed {threads}T",
                             engine_figures(node, model, "relaxed", threads, short, long, args.repeats)))
                continue
            for build in BUILDS:
                rows.append((f"engine {build} {threads}T",
                             engine_figures(node, model, build, threads, short, long, args.repeats)))
            rows.append((f"engine relaxed {threads}T, int8 activations",
                         engine_figures(node, model, "relaxed", threads, short, long, args.repeats, 8)))
            for level in (0, 4):
                rows.append((f"native onnxruntime acc{level} {threads}T",
                             native_figures(model, threads, level, args.repeats)))
        kernels = model_kernel_figures(node, model) if args.quick else kernel_figures(node)
    finally:
        node.close()
    print(f"{model}: {len(long)}-token prompt, {NEW_TOKENS} greedy tokens, medians of {args.repeats}; "
          "engine rows: int16 activations unless said\n")
    print(table(rows))
    print("\nThe model's decode kernels:\n" if args.quick else "\n4-bit kernel (zero points, blocks of 32), 1536x576:\n")
    print(table(kernels))


if __name__ == "__main__":
    main()

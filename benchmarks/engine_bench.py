"""pocketlm's WebAssembly CPU engine in node, beside native onnxruntime, in one run.

Default model (SmolLM2-135M-Instruct) exported with ``--layout nbits`` (q4 unless
``--quant``): decode tok/s (64 greedy tokens after "Once upon a time"), prefill tok/s
(a 195-token prompt, one run), at 1 and 2 threads, relaxed-SIMD and plain SIMD128 builds;
native onnxruntime on the same folder with float activations (accuracy_level 0, as
exported) and with int8 activations (accuracy_level 4, the engine's arithmetic). Plus the
4-bit kernel alone on a 1536x576 block (one token and 16 tokens), and the two prefill
GEMMs side by side (float32 activations and int16 blocks, 98 tokens, Q4_1 blocks, 1536x576
and 576x1536; each row's prefill tok/s is also given for both), GMAC/s by wall clock and by
the process's CPU time (the machine is shared: CPU time is the steadier figure). Decode rows
count the pool's sleeps a token (waits that went past the spin).

The engine's loop runs in JavaScript (tests/engine/engine_driver.mjs ``generate``, the
engine API as the page calls it); the native figures come from the Python generation loop
(benchmarks/native_speed.py). Usage: ``python -m benchmarks.engine_bench [--quant q4]``.

``--quick`` (for big models, e.g. the Qwen2.5-Coder-0.5B export): only the relaxed build
with int16 activations at each ``--threads`` count (no native rows: onnxruntime's
MatMulNBits at accuracy_level 0 dequantizes 8-bit weights on every call, 0.1 tok/s on that
model here), then the decode kernel on the model's own MLP shapes (their bits and block
size), so the figures say how much of a decode step the kernels take.

``--against DIR`` (with ``--quick``): the relaxed build in DIR (e.g. an older checkout's,
built by ``web/engine/build.sh DIR``) beside this checkout's, each in its own node process,
their decode and prefill runs alternating, so a change is measured side by side on a
shared machine; the kernel rows are given for both. ``--prompt-chunk N`` feeds the prompt
in runs of N tokens there, as the page feeds a prompt in chunks (browser_bench prints how
many).
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
    """Decode and prefill figures; in the int16 mode the prompt is prefilled by both prefill
    GEMMs (float32 activations, int16 blocks) in turn, the build's default first."""
    info = node.load(model, build, threads, activations)
    node.call("generate", prompt_ids=short, new_tokens=4)  # warm-up: compile tiers, grow the cache
    gemms = {"": None} if activations != 16 else {" f32 GEMM": False, " int16 GEMM": True}
    decode, sleeps = [], []
    prefill: dict[str, list[float]] = {name: [] for name in gemms}
    prefill_cpu: dict[str, list[float]] = {name: [] for name in gemms}
    for _ in range(repeats):
        r = node.call("generate", prompt_ids=short, new_tokens=NEW_TOKENS)
        decode.append((NEW_TOKENS - 1) / (r["decode_ms"] / 1000))
        sleeps.append((r["decode_sleeps_main"] + r["decode_sleeps_workers"]) / (NEW_TOKENS - 1))
        for name, int16 in gemms.items():
            if int16 is not None:
                node.call("setPrefillInt16", on=int16)
            r = node.call("generate", prompt_ids=long, new_tokens=1)
            prefill[name].append(len(long) / (r["prefill_ms"] / 1000))
            prefill_cpu[name].append(r["prefill_cpu_ms"] / len(long))
    figures = {"decode tok/s": statistics.median(decode), "decode CPU ms/token": r_decode_cpu(node, short),
               "decode sleeps/token": statistics.median(sleeps)}
    for name in gemms:
        figures[f"prefill tok/s{name}"] = statistics.median(prefill[name])
        figures[f"prefill CPU ms/token{name}"] = statistics.median(prefill_cpu[name])
    figures |= {"load s": info["load_ms"] / 1000, "memory MB": r["bytes"] / 1e6}
    return figures


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
        for tokens, act_bits, gemm16 in ((1, 8, False), (16, 8, False), (1, 16, False), (16, 16, False)):
            runs = [node.call("kernel", wasm=str(wasm), bits=4, bs=32, n=1536, k=576, m=tokens, zero_points=True,
                              mins=False, bias=False, seed=1, reps=max(20, 400 // tokens), act_bits=act_bits)
                    for _ in range(3)]
            rows.append((f"{build}, int{act_bits} activations, {tokens} token{'s' if tokens > 1 else ''}",
                         {"GMAC/s wall": max(r["gmacs"] for r in runs), "GMAC/s CPU": max(r["cpu_gmacs"] for r in runs)}))
        # The two prefill GEMMs side by side, alternating, on a chunk of the size a 195-token
        # prompt is cut into (98 tokens), the default model's format (Q4_1: codes and minima).
        gemms = {"float32 activations (qgemm_f32)": {"act_bits": 32},
                 "int16 blocks (qgemm_i16)": {"act_bits": 16, "gemm16": True}}
        for n, k in ((1536, 576), (576, 1536)):
            best: dict[str, dict[str, float]] = {name: {"GMAC/s wall": 0.0, "GMAC/s CPU": 0.0} for name in gemms}
            for _ in range(5):
                for name, kind in gemms.items():
                    r = node.call("kernel", wasm=str(wasm), bits=4, bs=32, n=n, k=k, m=98, zero_points="zeros",
                                  mins=True, bias=False, seed=1, reps=8, **kind)
                    best[name]["GMAC/s wall"] = max(best[name]["GMAC/s wall"], r["gmacs"])
                    best[name]["GMAC/s CPU"] = max(best[name]["GMAC/s CPU"], r["cpu_gmacs"])
            rows += [(f"{build}, prefill GEMM {n}x{k} x 98 tokens, {name}", best[name]) for name in gemms]
    return rows


def compare_builds(builds: dict[str, Path], model: Path, threads: int, short: list[int], long: list[int],
                   repeats: int, prompt_chunk: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """Decode and prefill of each build (int16 activations, default prefill GEMM), each in
    its own node process, the builds' runs alternating within every repeat. prompt_chunk:
    the long prompt fed in runs of that many tokens (0: one run)."""
    nodes = {name: NodeEngine() for name in builds}
    decode: dict[str, list[float]] = {name: [] for name in builds}
    prefill: dict[str, list[float]] = {name: [] for name in builds}
    prefill_cpu: dict[str, list[float]] = {name: [] for name in builds}
    try:
        for name, wasm in builds.items():
            nodes[name].call("init", wasm=str(wasm), model_dir=str(model), threads=threads, activations=16)
            nodes[name].call("generate", prompt_ids=short, new_tokens=4)
        for _ in range(repeats):
            for name, node in nodes.items():
                r = node.call("generate", prompt_ids=short, new_tokens=NEW_TOKENS)
                decode[name].append((NEW_TOKENS - 1) / (r["decode_ms"] / 1000))
                r = node.call("generate", prompt_ids=long, new_tokens=1, prompt_chunks=prompt_chunk)
                prefill[name].append(len(long) / (r["prefill_ms"] / 1000))
                prefill_cpu[name].append(r["prefill_cpu_ms"] / len(long))
    finally:
        for node in nodes.values():
            node.close()
    return [(f"{name} {threads}T", {"decode tok/s": statistics.median(decode[name]),
                                    "decode tok/s, each run": " ".join(f"{v:.1f}" for v in decode[name]),
                                    "prefill tok/s": statistics.median(prefill[name]),
                                    "prefill tok/s, best": max(prefill[name]),
                                    "prefill CPU ms/token": statistics.median(prefill_cpu[name]),
                                    "prefill CPU ms/token, least": min(prefill_cpu[name])})
            for name in builds]


def model_kernel_figures(node: NodeEngine, model: Path, wasm: Path = BUILDS["relaxed"],
                         label: str = "") -> list[tuple[str, dict[str, Any]]]:
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
        runs = [node.call("kernel", wasm=str(wasm), bits=bits, bs=bs, n=n, k=k, m=1,
                          zero_points=f"{name}/zero_points" in tensors, mins=f"{name}/block_mins" in tensors,
                          bias=False, seed=1, reps=20 if n < 65536 else 3, act_bits=16, float32=float32)
                for _ in range(3 if n < 65536 else 1)]
        rows.append((f"{label}{name} {n}x{k}, {bits}-bit blocks of {bs}, int16 activations, 1 token",
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
    parser.add_argument("--against", type=Path, metavar="DIR", help="with --quick: the relaxed build in "
                        "DIR (web/engine/build.sh DIR) beside this checkout's, alternating")
    parser.add_argument("--prompt-chunk", type=int, default=0, metavar="TOKENS", help="with --against: feed "
                        "the 195-token prompt in runs of this many tokens, as the page's chunks do")
    args = parser.parse_args()
    if args.against and not (args.quick and (args.against / "engine-relaxed.wasm").is_file()):
        raise SystemExit(f"--against needs --quick and a build in {args.against} (web/engine/build.sh {args.against})")
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
            if args.against:
                builds = {"this build": BUILDS["relaxed"], str(args.against): args.against / "engine-relaxed.wasm"}
                rows += compare_builds(builds, model, threads, short, long, args.repeats, args.prompt_chunk)
                continue
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
        if args.against:
            kernels += model_kernel_figures(node, model, args.against / "engine-relaxed.wasm", f"{args.against}: ")
    finally:
        node.close()
    print(f"{model}: {len(long)}-token prompt, {NEW_TOKENS} greedy tokens, medians of {args.repeats}; "
          "engine rows: int16 activations unless said\n")
    print(table(rows))
    print("\nThe model's decode kernels:\n" if args.quick else "\n4-bit kernels (blocks of 32; best of runs):\n")
    print(table(kernels))


if __name__ == "__main__":
    main()

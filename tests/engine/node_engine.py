"""The CPU engine (web/engine/cpu_engine.js) in node, driven from Python.

:class:`NodeEngine` talks to ``engine_driver.mjs`` (one JSON request a line);
:class:`EngineSession` puts the engine behind the session protocol
(:mod:`pocketlm_runtime.session`) the way ``pocketlm_runtime/browser.py`` puts
``web/ort_backend.js`` behind it, so the one generation loop drives the engine here too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocketlm_runtime.sampling import Distribution, SamplingOptions

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("engine_driver.mjs")
BUILD = ROOT / "build" / "engine"
BUILDS = {"relaxed": BUILD / "engine-relaxed.wasm", "plain": BUILD / "engine-simd.wasm"}
# Node 20's baseline WebAssembly compiler (Liftoff, V8 11.3) computes
# i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly; its optimizing compiler is right.
NODE_FLAGS = ["--experimental-wasm-relaxed-simd", "--no-liftoff"]


def build_engine() -> dict[str, Path]:
    """Build both modules from source (web/engine/build.sh) when a source is newer."""
    sources = list((ROOT / "web" / "engine").rglob("*.[ch]"))
    newest = max(p.stat().st_mtime for p in sources)
    if not all(p.is_file() and p.stat().st_mtime >= newest for p in BUILDS.values()):
        subprocess.run(["sh", str(ROOT / "web" / "engine" / "build.sh"), str(BUILD)], check=True)
    return BUILDS


class EngineError(RuntimeError):
    pass


class NodeEngine:
    """One node process holding at most one engine; ``call`` is one request."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise EngineError("node is not installed")
        self.proc = subprocess.Popen([node, *NODE_FLAGS, str(DRIVER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def call(self, method: str, **params: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"method": method, "params": params}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise EngineError(f"the engine driver exited ({self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise EngineError(reply["error"])
        return reply["result"]

    def load(self, model_dir: Path, build: str = "relaxed", threads: int = 1) -> dict[str, Any]:
        info: dict[str, Any] = self.call("init", wasm=str(build_engine()[build]), model_dir=str(model_dir),
                                         threads=threads)
        return info

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("release")
            finally:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=30)


class EngineSession:
    """:class:`pocketlm_runtime.session.Session` over the engine in node."""

    def __init__(self, engine: NodeEngine) -> None:
        self.engine = engine
        self.feed_names: tuple[str, ...] = ()
        self.output_names: list[str] = engine.call("outputNames")

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        names = tuple(feeds)
        if names != self.feed_names:
            self.engine.call("setFeedNames", names=list(names))
            self.feed_names = names
        handles = self.engine.call("run", handles=list(feeds.values()))
        return dict(zip(self.output_names, handles))

    def int64(self, values: list[int], shape: tuple[int, ...]) -> Any:
        return self.engine.call("int64", values=list(values), dims=list(shape))

    def empty_kv(self) -> Any:
        return self.engine.call("emptyKV")

    @staticmethod
    def settings(options: SamplingOptions) -> dict[str, float]:
        return {"temperature": options.temperature, "topK": options.top_k, "topP": options.top_p,
                "repetitionPenalty": options.repetition_penalty}

    def pick(self, logits: Any, options: SamplingOptions, history: Sequence[int], uniform: float) -> int:
        token: int = self.engine.call("pick", handle=logits, settings=self.settings(options),
                                      previous=list(history), uniform=uniform)
        return token

    def distribution(self, logits: Any, options: SamplingOptions, history: Sequence[int]) -> Distribution:
        kept = self.engine.call("distribution", handle=logits, settings=self.settings(options),
                                previous=list(history))
        return kept["ids"], kept["probs"]

    def release(self, tensors: list[Any]) -> None:
        if tensors:
            self.engine.call("dispose", handles=list(tensors))

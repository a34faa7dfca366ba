"""The engine's thread pool over many jobs: the workers keep joining the jobs.

A job's generation is kept, mod 2^16, in the high half of the pool's ``join`` word
(web/engine/threads.c); generations 0x8000 to 0xffff set that word's sign bit. The pool's
counters (``engine_thread_stats``) give the jobs run, the jobs the workers joined and the
generation, so a pool whose workers stop joining (and leave every job to the calling thread,
at one thread's speed) shows it here, whatever the machine's speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_gguf

from .node_engine import NodeEngine

HALF = 0x8000  # generations from here to 0xffff have the sign bit of `join` set


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pocketlm_export.export import ExportOptions, export

    folder = tmp_path_factory.mktemp("engine-threads")
    gguf = write_tiny_gguf("llama", folder / "m.gguf", seed=3, matrix_type="Q4_1", embedding_type="Q8_0")
    out = folder / "model"
    export(gguf, out, ExportOptions(quant="exact", layout="nbits", progress=False, allow_quality_loss=True))
    return out


def test_workers_join_jobs_past_every_generation(node: NodeEngine, tiny: Path) -> None:
    info = node.load(tiny, "relaxed", threads=2)
    assert info["threads"] == 2
    prompt = [5, 17, 42, 9, 100, 7, 3, 64]
    calls: list[tuple[int, int, int]] = []  # (generation after the call, decode jobs, jobs joined by a worker)
    while not calls or calls[-1][0] < 2 * HALF + 2000:
        r = node.call("generate", prompt_ids=prompt, new_tokens=200)
        calls.append((r["generation"], r["decode_jobs"], r["decode_joins"]))
    # Each range: the calls whose every job had a generation in it.
    ranges = {"below 0x8000": (0, HALF), "0x8000 to 0xffff": (HALF, 2 * HALF),
              "past 0x10000": (2 * HALF, 4 * HALF)}
    for name, (lo, hi) in ranges.items():
        inside = [(jobs, joins) for gen, jobs, joins in calls if gen - jobs >= lo and gen < hi]
        assert inside, f"no call ran entirely in generations {name}"
        jobs = sum(j for j, _ in inside)
        joins = sum(j for _, j in inside)
        # The worker spins about a millisecond between jobs, so it joins nearly every one;
        # a tenth leaves room for a machine busy enough to deschedule it now and then.
        assert joins >= jobs / 10, f"generations {name}: the worker joined {joins} of {jobs} jobs"

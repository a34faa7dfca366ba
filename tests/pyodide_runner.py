"""Runs pocketlm_runtime's tokenizer under the Pyodide Python (node + the pinned ``pyodide``
npm package), as the page does, through tests/pyodide_tokenize.mjs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pyodide_ids(tokenizer_json: str, texts: list[str], tmp_path: Path) -> dict[str, Any]:
    if shutil.which("node") is None or not (ROOT / "node_modules/pyodide").is_dir():
        pytest.skip("node and node_modules/pyodide (npm ci) are needed")
    (tmp_path / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    job = {"runtime_dir": str(ROOT / "pocketlm_runtime"), "texts": texts,
           "tokenizer_json": str(tmp_path / "tokenizer.json")}
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(["node", str(ROOT / "tests/pyodide_tokenize.mjs"),
                           str(tmp_path / "job.json")], capture_output=True, text=True, timeout=300,
                          check=False,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result

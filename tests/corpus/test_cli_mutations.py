"""Every damaged model folder of cli_mutations.json is refused by `generate`, `chat` and `build`:
exit status 2, one line on stderr, no traceback, and the previous site left intact.

The corpus is written by make_cli_mutations.py (seeded); the first test checks the committed
file is what the script writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pocketlm_build.bundle import build_site
from pocketlm_build.cli import main
from tests.corpus import make_cli_mutations
from tests.fixtures.fake_node_modules import write_fake_node_modules

CORPUS = json.loads(make_cli_mutations.OUT.read_text(encoding="utf-8"))
CANARY = b"CANARY-outside-the-model-folder"


def test_the_committed_corpus_is_what_the_script_writes() -> None:
    assert CORPUS == make_cli_mutations.generate()
    assert len(CORPUS) >= 100


def _set(data: Any, dotted: str, value: Any, delete: bool = False) -> Any:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if delete:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def damage(folder: Path, entry: dict[str, Any], canary: Path) -> None:
    """Apply one corpus entry to the model folder `folder`."""
    path = folder / entry["file"]
    op = entry["op"]
    if op == "remove":
        path.unlink()
    elif op == "directory":
        path.unlink()
        path.mkdir()
        (path / "x").write_bytes(b"x")
    elif op == "symlink_outside":
        path.unlink()
        path.symlink_to(canary)
    elif op == "empty":
        path.write_bytes(b"")
    elif op == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * entry["fraction"])])
    elif op == "append":
        with path.open("ab") as handle:
            handle.write(b"\0" * entry["size"])
    elif op == "random_bytes":
        path.write_bytes(random.Random(entry["seed"]).randbytes(entry["size"]))
    elif op == "invalid_utf8":
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
    elif op == "json_whole":
        path.write_text(json.dumps(entry["value"]))
    elif op in ("json_set", "json_delete"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(_set(data, entry["key"], entry.get("value"), op == "json_delete")))
    else:
        raise AssertionError(f"unknown op {op}")


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good_site(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site built from the intact model (fake node_modules, as in test_bundle)."""
    root = tmp_path_factory.mktemp("good-site")
    modules = write_fake_node_modules(root)
    return build_site(tiny_export, root / "dist", node_modules=modules).out


@pytest.mark.parametrize("entry", CORPUS, ids=[f"{e['id']}-{e['command']}-{e['op']}-{e['file']}" for e in CORPUS])
def test_a_damaged_model_folder_is_refused_in_one_line(
        entry: dict[str, Any], tiny_export: Path, good_site: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_bytes(CANARY)
    model = Path(shutil.copytree(tiny_export, tmp_path / "model"))
    damage(model, entry, canary)
    site = Path(shutil.copytree(good_site, tmp_path / "site", symlinks=True))
    before = tree_digest(site)
    command = entry["command"]
    if command == "build":
        argv = ["build", str(model), "-o", str(site), "--force"]
    else:
        argv = [command, str(model), *(["hello"] if command == "generate" else []), "--max-new-tokens", "2"]
        monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (entry, err, captured.out)
    assert err.startswith("pocketlm: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert tree_digest(site) == before  # the previous site is untouched
    assert sorted(os.listdir(tmp_path)) == ["canary.txt", "model", "site"]  # no temporary folders

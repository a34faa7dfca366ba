"""`pocketlm build` publishes only what pocketlm.json names, and only from inside the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from pocketlm_build.bundle import BuildError, build_site
from pocketlm_build.model_folder import named_files
from tests.fixtures.fake_node_modules import write_fake_node_modules

SECRET = b"root:x:0:0:SECRET-CANARY"


@pytest.fixture
def model_dir(tmp_path: Path, tiny_export: Path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "model"))


@pytest.fixture
def node_modules(tmp_path: Path) -> Path:
    return write_fake_node_modules(tmp_path)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def site_bytes(dist: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(dist.rglob("*")) if p.is_file())


def test_files_not_named_by_pocketlm_json_stay_out_of_the_site(
        model_dir: Path, node_modules: Path, secret: Path, tmp_path: Path) -> None:
    (model_dir / "passwd").symlink_to(secret)
    (model_dir / "notes.txt").write_bytes(SECRET)
    (model_dir / ".env").write_bytes(SECRET)
    dist = build_site(model_dir, tmp_path / "dist", node_modules=node_modules).out
    config = json.loads((model_dir / "pocketlm.json").read_text())
    site = json.loads((dist / "site.json").read_text())
    assert sorted(site["models"][0]["files"]) == sorted(named_files(config))
    assert sorted(site["models"][0]["files"]) == ["model.onnx", "model.onnx.data", "pocketlm.json",
                                              "tokenizer.json"]
    manifest = json.loads((dist / "manifest.json").read_text())
    assert not [e for e in manifest["files"] if "passwd" in e["path"] or "notes" in e["path"]]
    assert SECRET not in site_bytes(dist)  # not in the site, the manifest or sw.js


@pytest.mark.parametrize("name", ["model.onnx", "model.onnx.data", "tokenizer.json", "pocketlm.json"])
def test_a_named_file_that_is_a_symlink_is_refused(model_dir: Path, node_modules: Path, tmp_path: Path,
                                                   name: str) -> None:
    real = tmp_path / f"real-{name}"
    shutil.move(model_dir / name, real)
    (model_dir / name).symlink_to(real)
    with pytest.raises(BuildError, match="is a symbolic link"):
        build_site(model_dir, tmp_path / "dist", node_modules=node_modules)
    assert not (tmp_path / "dist").exists()


def _point_external_data_at(model_dir: Path, location: str) -> None:
    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(model_dir / "model.onnx"))


@pytest.mark.parametrize("location", ["../outside/passwd", "/etc/passwd", "tokenizer.json",
                                      "model.onnx.data/../../outside/passwd"])
def test_external_data_leaving_the_named_file_is_refused(model_dir: Path, node_modules: Path, secret: Path,
                                                         tmp_path: Path, location: str) -> None:
    _point_external_data_at(model_dir, location)
    with pytest.raises(BuildError, match=r"reads its bytes from .* not from 'model.onnx.data'"):
        build_site(model_dir, tmp_path / "dist", node_modules=node_modules)


def test_a_damaged_folder_never_replaces_a_good_site(model_dir: Path, node_modules: Path,
                                                     tmp_path: Path) -> None:
    dist = build_site(model_dir, tmp_path / "dist", node_modules=node_modules).out
    before = site_bytes(dist)
    data = (model_dir / "model.onnx.data").read_bytes()
    (model_dir / "model.onnx.data").write_bytes(data[:-100])
    with pytest.raises(BuildError, match="model.onnx.data is truncated"):
        build_site(model_dir, dist, force=True, node_modules=node_modules)
    (model_dir / "model.onnx.data").write_bytes(data)
    (model_dir / "tokenizer.json").write_bytes(b"\x00garbage{")
    with pytest.raises(BuildError, match="tokenizer.json is not a usable tokenizer"):
        build_site(model_dir, dist, force=True, node_modules=node_modules)
    assert site_bytes(dist) == before


def test_alignment_padding_between_tensors_is_accepted_but_trailing_bytes_are_not(
        model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    """A data file with unused bytes between tensors (as an aligning writer leaves) builds; one
    with bytes past its last tensor does not."""
    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    external = [t for t in model.graph.initializer if t.external_data]
    last = max(external, key=lambda t: int({e.key: e.value for e in t.external_data}["offset"]))
    entry = next(e for e in last.external_data if e.key == "offset")
    offset = int(entry.value)
    data = (model_dir / "model.onnx.data").read_bytes()
    (model_dir / "model.onnx.data").write_bytes(data[:offset] + b"\0" * 4096 + data[offset:])
    entry.value = str(offset + 4096)
    onnx.save_model(model, str(model_dir / "model.onnx"))
    build_site(model_dir, tmp_path / "dist", node_modules=node_modules)
    with (model_dir / "model.onnx.data").open("ab") as handle:
        handle.write(b"\0" * 16)
    with pytest.raises(BuildError, match="model.onnx.data has .* bytes but the graph's tensors use"):
        build_site(model_dir, tmp_path / "dist2", node_modules=node_modules)

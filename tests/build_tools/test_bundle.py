"""`pocketlm build`: what the site holds, its manifest, determinism, atomicity, errors.

Fast: the model folder is a tiny real export, node_modules a small fake written here. One test checks the real node_modules from `npm ci`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from pocketlm_build import bundle
from pocketlm_build.bundle import BuildError, build_site, check_node_modules
from pocketlm_build.http_policy import HOST_CONFIG_FILES, is_hashed
from pocketlm_build.server import create_app
from tests.fixtures.fake_node_modules import pinned, write_fake_node_modules

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "package-lock.json"
NOT_LISTED = {"manifest.json", "sw.js", *HOST_CONFIG_FILES}


@pytest.fixture
def node_modules(tmp_path: Path) -> Path:
    """A stand-in for node_modules: the pinned versions, each file a few recognisable bytes."""
    return write_fake_node_modules(tmp_path)


@pytest.fixture
def model_dir(tmp_path: Path, tiny_export: Path) -> Path:
    """A real exported model folder (tiny Llama), copied so a test may change it."""
    return Path(shutil.copytree(tiny_export, tmp_path / "model"))


def build(model_dir: Path, node_modules: Path, out: Path, **kwargs: Any) -> bundle.BuildResult:
    return build_site(model_dir, out, node_modules=node_modules, **kwargs)


def site_files(dist: Path) -> dict[str, bytes]:
    return {p.relative_to(dist).as_posix(): p.read_bytes() for p in sorted(dist.rglob("*")) if p.is_file()}


def manifest_of(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dist / "manifest.json").read_text())
    return data


def test_build_writes_the_page_runtime_model_and_host_configs(model_dir: Path, node_modules: Path,
                                                               tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = build(model_dir, node_modules, dist)
    files = site_files(dist)
    for name in ["index.html", "app.js", "engine.js", "worker.js", "ort_backend.js", "backends.js",
                 "model_backend.js", "engine/cpu_engine.js", "style.css",
                 "site.json", "sw.js", "manifest.json", "_headers", "pocketlm-nginx.conf",
                 "runtime/ort/ort.jspi.min.mjs", "runtime/pyodide/pyodide.asm.wasm"]:
        assert name in files, name
    assert "service_worker.js" not in files  # the template becomes sw.js
    site = json.loads((dist / "site.json").read_text())
    [model] = site["models"]
    assert re.fullmatch(rf"models/{model['id']}/pocketlm\.[0-9a-f]{{12}}\.json", model["config"])
    assert model["config"] in files
    for kind in ("relaxed", "plain"):
        assert site["engine"][kind] in files and site["engine"][kind].startswith("runtime/engine/")
    assert not [n for n in files if n.endswith((".c", ".h"))]  # the engine's sources stay home
    assert not any(name.endswith((".map", ".wasm")) and "jsep" in name for name in files)
    assert result.files == len(manifest_of(dist)["files"])
    assert result.build_id in result.summary


def test_manifest_lists_every_served_file_with_size_and_sha256(model_dir: Path, node_modules: Path,
                                                               tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    manifest = manifest_of(dist)
    assert manifest["format"] == "pocketlm-site"
    assert re.fullmatch(r"[0-9a-f]{16}", manifest["build_id"])
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {name: data for name, data in site_files(dist).items()
               if name not in NOT_LISTED and not name.endswith(".gz")}
    assert sorted(listed) == sorted(on_disk)
    assert [entry["path"] for entry in manifest["files"]] == sorted(listed)
    for name, data in on_disk.items():
        assert listed[name]["size"] == len(data)
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_gzip_copies_hold_the_listed_files_and_only_where_they_save(model_dir: Path, node_modules: Path,
                                                                   tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = build(model_dir, node_modules, dist)
    files = site_files(dist)
    listed = {entry["path"]: entry["size"] for entry in manifest_of(dist)["files"]}
    copies = {name.removesuffix(".gz"): data for name, data in files.items() if name.endswith(".gz")}
    assert any(re.fullmatch(r"models/[^/]+/model\.[0-9a-f]{12}\.onnx", name) for name in copies)
    for name, data in copies.items():
        assert name in listed  # a copy of a listed file, never listed itself
        assert gzip.decompress(data) == files[name]
        assert len(data) <= 0.95 * listed[name]
    assert not any(name.endswith((".zip", ".png")) for name in copies)  # already compressed
    lazy = {entry["path"] for entry in manifest_of(dist)["files"] if entry.get("lazy")}
    assert result.gzip_bytes == sum(len(copies[n]) if n in copies else size
                                    for n, size in listed.items() if n not in lazy)
    assert result.gzip_bytes < result.total_bytes


def test_the_same_inputs_give_a_byte_identical_site(model_dir: Path, node_modules: Path,
                                                    tmp_path: Path) -> None:
    build(model_dir, node_modules, tmp_path / "one")
    os.utime(model_dir / "model.onnx", (1, 1))  # times on disk do not matter
    build(model_dir, node_modules, tmp_path / "two")
    assert site_files(tmp_path / "one") == site_files(tmp_path / "two")


def test_any_changed_file_gives_a_new_build_id(model_dir: Path, node_modules: Path,
                                               tmp_path: Path) -> None:
    build(model_dir, node_modules, tmp_path / "one")
    tokenizer_spec = json.loads((model_dir / "tokenizer.json").read_text())
    (model_dir / "tokenizer.json").write_text(json.dumps({**tokenizer_spec, "version": "changed"}))
    build(model_dir, node_modules, tmp_path / "two")
    one, two = manifest_of(tmp_path / "one"), manifest_of(tmp_path / "two")
    assert one["build_id"] != two["build_id"]
    renamed = {e["path"] for e in two["files"]} - {e["path"] for e in one["files"]}
    tokenizer = json.loads((tmp_path / "two/site.json").read_text())["models"][0]["files"]["tokenizer.json"]
    assert renamed == {tokenizer}  # only the changed file gets a new name


def test_big_files_are_named_by_their_content_and_site_json_finds_them(
        model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    site = json.loads((dist / "site.json").read_text())
    named = [site["ort"]["glue"], site["ort"]["wasm"], site["python"]["archive"],
             site["models"][0]["files"]["model.onnx"], site["models"][0]["files"]["tokenizer.json"]]
    for path in named:
        digest = hashlib.sha256((dist / path).read_bytes()).hexdigest()
        assert is_hashed("/" + path), path
        assert f".{digest[:12]}." in path
    model = site["models"][0]
    assert model["config"] == model["files"]["pocketlm.json"] and is_hashed("/" + model["config"])
    assert site["pyodide"]["index"] == "runtime/pyodide/"
    assert all((dist / path).is_file() for path in site["pyodide"]["files"])


def test_service_worker_precaches_the_manifest_but_models_and_lazy_files(model_dir: Path, node_modules: Path,
                                                       tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    manifest = manifest_of(dist)
    text = (dist / "sw.js").read_text()
    line = next(line for line in text.splitlines() if line.startswith("const BUILD = "))
    embedded = json.loads(line.removeprefix("const BUILD = ").removesuffix(";"))
    assert embedded["build_id"] == manifest["build_id"]
    assert embedded["files"] == [[e["path"], e["size"], e["sha256"]] for e in manifest["files"]
                                 if not e.get("lazy") and "model" not in e]
    # The model goes into its own cache when the page chooses it (web/model_cache.js).
    [model] = json.loads((dist / "site.json").read_text())["models"]
    assert embedded["models"] == {path: model["cache"] for path in model["files"].values()}
    # onnxruntime-web is used only with WebGPU: cached when first fetched, not at install.
    assert embedded["lazy"] == [e["path"] for e in manifest["files"] if e.get("lazy")]
    assert embedded["lazy"] and all(path.startswith("runtime/ort/") for path in embedded["lazy"])
    assert "// pocketlm:build\n" not in text  # the marked line was replaced


def test_pyodide_lock_file_keeps_only_its_header(model_dir: Path, node_modules: Path,
                                                 tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    lock = json.loads((dist / "runtime/pyodide/pyodide-lock.json").read_text())
    assert lock == {"info": {"abi_version": "x", "python": "3.14"}, "packages": {}}


def test_python_zip_is_pure_python_sorted_and_dated_1980() -> None:
    data = bundle.python_zip()
    assert data == bundle.python_zip()
    names = zipfile.ZipFile(BytesIO(data)).namelist()
    assert names == sorted(names)
    for needed in ["pocketlm_runtime/browser.py", "pocketlm_runtime/generator.py",
                   "jinja2/environment.py", "markupsafe/__init__.py", "markupsafe/_native.py"]:
        assert needed in names, needed
    assert not [n for n in names if n.endswith((".so", ".c", ".pyc"))]
    assert any(n.startswith("jinja2-") and "LICENSE" in n for n in names)
    assert any(n.startswith("markupsafe-") and "LICENSE" in n for n in names)
    infos = zipfile.ZipFile(BytesIO(data)).infolist()
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_an_existing_output_needs_force(model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    (dist / "old.txt").write_text("old")
    with pytest.raises(BuildError, match="already exists; pass --force"):
        build(model_dir, node_modules, dist)
    build(model_dir, node_modules, dist, force=True)
    assert not (dist / "old.txt").exists()
    assert (dist / "manifest.json").is_file()


def test_force_refuses_a_folder_pocketlm_did_not_write(model_dir: Path, node_modules: Path,
                                                       tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    (thesis / "manifest.json").write_text('{"format": "someone-else"}')
    with pytest.raises(BuildError, match="--force replaces only folders pocketlm wrote"):
        build(model_dir, node_modules, thesis, force=True)
    assert (thesis / "chapter1.tex").read_text() == "precious"


def test_a_failed_build_leaves_nothing_behind(model_dir: Path, node_modules: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    before = site_files(dist)

    def broken(_: Path) -> list[Path]:
        raise OSError("disk full")

    monkeypatch.setattr(bundle, "write_host_configs", broken)
    with pytest.raises(OSError):
        build(model_dir, node_modules, dist, force=True)
    assert site_files(dist) == before  # the old site is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "model", "node_modules"]


@pytest.mark.parametrize("damage, message", [
    ("no-config", "has no pocketlm.json, so it is not an exported model folder; run `pocketlm export"),
    ("no-tokenizer", "lacks tokenizer.json, which the model needs; re-export the model"),
    ("bad-config", "has format 'something-else', expected 'pocketlm-model'; re-export the model"),
])
def test_a_broken_model_folder_is_refused_in_one_line(model_dir: Path, node_modules: Path,
                                                      tmp_path: Path, damage: str, message: str) -> None:
    if damage == "no-config":
        (model_dir / "pocketlm.json").unlink()
    elif damage == "no-tokenizer":
        (model_dir / "tokenizer.json").unlink()
    else:
        (model_dir / "pocketlm.json").write_text('{"format": "something-else"}')
    with pytest.raises(BuildError, match=re.escape(message)) as error:
        build(model_dir, node_modules, tmp_path / "dist")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "dist").exists()


def test_missing_node_modules_name_npm_ci(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"npm packages not installed\); run `npm ci` in "):
        build(model_dir, tmp_path / "nowhere", tmp_path / "dist")


def test_other_package_versions_name_npm_ci(model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    (node_modules / "pyodide/package.json").write_text(json.dumps({"version": "0.0.1"}))
    with pytest.raises(BuildError, match=r"has pyodide 0\.0\.1 but package-lock\.json pins .*`npm ci`"):
        build(model_dir, node_modules, tmp_path / "dist")


def test_output_over_the_model_folder_is_refused(model_dir: Path, node_modules: Path) -> None:
    with pytest.raises(BuildError, match="would replace"):
        build(model_dir, node_modules, model_dir, force=True)
    assert (model_dir / "model.onnx").is_file()


def test_pocketlm_serve_accepts_the_site(model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build(model_dir, node_modules, dist)
    site = json.loads((dist / "site.json").read_text())
    with TestClient(create_app(dist)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert client.get("/sw.js").headers["cache-control"] == "no-cache"
        wasm = client.get("/" + site["ort"]["wasm"])
        assert wasm.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert wasm.headers["content-type"] == "application/wasm"
    headers_file = (dist / "_headers").read_text()
    assert "\n/sw.js\n" in headers_file


def test_the_real_node_modules_hold_every_runtime_file() -> None:
    if not (REPO / "node_modules").is_dir():
        pytest.skip("node_modules is not installed: run `npm ci`")
    check_node_modules(REPO / "node_modules", LOCK)
    assert pinned("onnxruntime-web") == "1.30.0"
    assert pinned("pyodide") == "314.0.7"


def test_several_models_each_get_a_folder_a_cache_and_only_the_first_counts_for_a_first_visit(
        model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    second = Path(shutil.copytree(model_dir, tmp_path / "second"))
    config = json.loads((second / "pocketlm.json").read_text())
    config["source"] = {**config.get("source", {}), "license": "mit"}
    (second / "pocketlm.json").write_text(json.dumps(config))
    one = build(model_dir, node_modules, tmp_path / "one")
    dist = tmp_path / "dist"
    both = build_site([model_dir, second], dist, node_modules=node_modules)
    site = json.loads((dist / "site.json").read_text())
    first, other = site["models"]
    # The same name twice: the second id gets a suffix; each model has its own folder and cache.
    assert other["id"] == first["id"] + "-2" and other["name"] == first["name"]
    assert first["cache"] != other["cache"] and first["cache"].startswith("pocketlm-model-")
    assert other["license"] == "mit"  # the source's licence, as the export recorded it
    files = manifest_of(dist)["files"]
    for model in (first, other):
        paths = set(model["files"].values())
        assert all(path.startswith(f"models/{model['id']}/") for path in paths)
        assert {e["path"] for e in files if e.get("model") == model["id"]} == paths
        assert model["bytes"] == sum(e["size"] for e in files if e["path"] in paths)
    # sw.js: models are not precached at install; each file is routed to its model's cache.
    sw = (dist / "sw.js").read_text()
    data = json.loads(next(line for line in sw.splitlines() if line.startswith("const BUILD = "))
                      .removeprefix("const BUILD = ").removesuffix(";"))
    precached = {path for path, _, _ in data["files"]}
    assert not precached & {e["path"] for e in files if "model" in e}
    assert data["models"] == {e["path"]: (first if e["model"] == first["id"] else other)["cache"]
                              for e in files if "model" in e}
    # A first visit downloads the runtime and one model, whatever else the site offers.
    # (site.json grows by the second model's entry: a few hundred bytes)
    assert both.gzip_bytes - one.gzip_bytes < 1_000 < other["bytes"]
    assert both.total_bytes - one.total_bytes > other["bytes"]
    assert "2 models" in both.summary


def test_a_model_folder_named_twice_is_refused(model_dir: Path, node_modules: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="given twice"):
        build_site([model_dir, model_dir], tmp_path / "dist", node_modules=node_modules)
    assert not (tmp_path / "dist").exists()

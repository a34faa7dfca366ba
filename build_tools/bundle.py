"""`pocketlm build MODEL_DIR -o DIST`: model + runtime + page -> one static site folder.

What DIST holds (every file listed in manifest.json with its size and sha256)::

    index.html app.js engine.js worker.js ...   the page (web/, minus the sw template)
    site.json                                   how the page finds the files below
    runtime/ort/         onnxruntime-web: the JSPI build only (WebGPU and WASM in one .wasm)
    runtime/pyodide/     Pyodide's loader, WebAssembly and standard library
    runtime/python/      pocketlm_runtime + jinja2 + markupsafe (pure Python), one zip
    runtime/probe.onnx   a tiny graph timed on WebGPU and WASM to pick the backend
    model/               the exported model folder
    sw.js                service worker generated from the manifest (web/service_worker.js)
    manifest.json        {"format": "pocketlm-site", "build_id", "files": [...]}
    NAME.gz              gzip copies of the files it shrinks, sent by servers instead of
                         NAME with Content-Encoding: gzip (compress.py); not in the manifest
    _headers, pocketlm-nginx.conf   host configs (deploy.py), not served

Big files the page reaches through site.json carry their content hash in their name
(`model.3f2a9c1b0d4e.onnx`): hosts may cache them forever (http_policy), and a new build
only downloads what changed. The runtime files come from node_modules, installed from the
repository's package-lock.json with `npm ci`; nothing is fetched from a CDN.

Same inputs give a byte-identical DIST (sorted entries, fixed zip timestamps); DIST is
written beside its destination and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from pocketlm_export import atomic
from pocketlm_runtime.model_info import CONFIG_FILE, ModelInfo

from .app_manifest import app_files
from .compress import compress_site
from .deploy import write_host_configs
from .http_policy import HOST_CONFIG_FILES
from .server import MANIFEST_FILE, SITE_FORMAT  # what `pocketlm serve` checks for
from .site_page import page_settings, render_index

REPO: Final = Path(__file__).resolve().parent.parent
WEB_DIR: Final = REPO / "web"
SW_TEMPLATE: Final = "service_worker.js"
WEB_NOT_SHIPPED: Final = (SW_TEMPLATE, "jsconfig.json")  # a template; the type-check settings
SW_MARKER: Final = "// pocketlm:build"
SW_FILE: Final = "sw.js"
SITE_CONFIG: Final = "site.json"
PYTHON_PACKAGES: Final = ("pocketlm_runtime", "jinja2", "markupsafe")
PROBE_SHAPE: Final = (1, 576)
PROBE_LAYERS: Final = 12
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class NodeFile:
    """A file the page uses from an npm package."""

    package: str
    source: str  # path inside the package
    dest: str  # path inside DIST
    hashed: bool = False


NODE_FILES: Final = (
    NodeFile("onnxruntime-web", "dist/ort.jspi.min.mjs", "runtime/ort/ort.jspi.min.mjs"),
    NodeFile("onnxruntime-web", "dist/ort-wasm-simd-threaded.jspi.mjs",
             "runtime/ort/ort-wasm-simd-threaded.jspi.mjs", hashed=True),
    NodeFile("onnxruntime-web", "dist/ort-wasm-simd-threaded.jspi.wasm",
             "runtime/ort/ort-wasm-simd-threaded.jspi.wasm", hashed=True),
    # loadPyodide() looks these up by name under its indexURL: they keep their names.
    NodeFile("pyodide", "pyodide.mjs", "runtime/pyodide/pyodide.mjs"),
    NodeFile("pyodide", "pyodide.asm.mjs", "runtime/pyodide/pyodide.asm.mjs"),
    NodeFile("pyodide", "pyodide.asm.wasm", "runtime/pyodide/pyodide.asm.wasm"),
    NodeFile("pyodide", "python_stdlib.zip", "runtime/pyodide/python_stdlib.zip"),
    # Markdown for answers (web/markdown.js): the self-contained browser build, and its licence.
    NodeFile("markdown-it", "dist/browser/markdown-it.esm.min.mjs", "runtime/markdown-it/markdown-it.mjs"),
    NodeFile("markdown-it", "LICENSE", "runtime/markdown-it/LICENSE"),
)
PYODIDE_LOCK: Final = "runtime/pyodide/pyodide-lock.json"


class BuildError(Exception):
    """Bad input to `pocketlm build`; one line naming the problem and the fix."""


@dataclass(frozen=True)
class BuildResult:
    out: Path
    build_id: str
    files: int
    total_bytes: int
    gzip_bytes: int  # what a browser accepting gzip downloads (compress.py)

    @property
    def summary(self) -> str:
        return (f"{self.files} files, {self.total_bytes / 1e6:.1f} MB "
                f"({self.gzip_bytes / 1e6:.1f} MB to download with gzip), build {self.build_id}")


def build_site(model_dir: Path, out: Path, *, force: bool = False,
               node_modules: Path | None = None, page: Mapping[str, Any] | None = None) -> BuildResult:
    """Bundle `model_dir` (an exported model folder) with the page into the site `out`.
    ``page``: the page's settings (site_page.page_settings; default: the defaults)."""
    page = page if page is not None else page_settings({}, {})
    info = check_model_folder(model_dir)
    modules = node_modules if node_modules is not None else REPO / "node_modules"
    check_node_modules(modules, REPO / "package-lock.json")
    check_destination(out, force, model_dir)
    with atomic.staged_folder(out, force, error=BuildError) as root:
        stage = Stage(root)
        copy_web(stage, WEB_DIR)
        index = render_index((WEB_DIR / "index.html").read_text(encoding="utf-8"), page)
        stage.write("index.html", index.encode("utf-8"))
        for path, data in app_files(page).items():  # installable: web app manifest, icons
            stage.write(path, data)
        ort, pyodide = copy_runtime(stage, modules)
        site = {
            "format": "pocketlm-site-config",
            "ort": ort,
            "pyodide": pyodide,
            "python": {"archive": stage.write("runtime/python/site-packages.zip", python_zip(),
                                              hashed=True)},
            "probe": {"model": stage.write("runtime/probe.onnx", probe_model()),
                      "shape": list(PROBE_SHAPE)},
            "model": copy_model(stage, model_dir, info),
        }
        stage.write(SITE_CONFIG, json_bytes(site))
        entries = stage.entries()
        packed = compress_site(root, [str(entry["path"]) for entry in entries])
        manifest = {"format": SITE_FORMAT, "build_id": build_id_of(entries), "files": entries}
        (root / SW_FILE).write_bytes(render_service_worker(WEB_DIR / SW_TEMPLATE, manifest))
        write_host_configs(root)  # after sw.js, so _headers has a rule for it too
        (root / MANIFEST_FILE).write_bytes(json_bytes(manifest))
    total = sum(int(entry["size"]) for entry in entries)
    wire = sum(packed.get(str(entry["path"]), int(entry["size"])) for entry in entries)
    return BuildResult(out=out, build_id=str(manifest["build_id"]), files=len(entries),
                       total_bytes=total, gzip_bytes=wire)


# ---- checks ------------------------------------------------------------------------------

def check_model_folder(model_dir: Path) -> ModelInfo:
    """The folder's pocketlm.json, after checking every file it names is there."""
    export_hint = f"run `pocketlm export SOURCE -o {model_dir}` first"
    if not model_dir.is_dir():
        raise BuildError(f"model folder {model_dir} does not exist or is not a folder; {export_hint}")
    config = model_dir / CONFIG_FILE
    if not config.is_file():
        raise BuildError(f"{model_dir} has no {CONFIG_FILE}, so it is not an exported model folder; "
                         f"{export_hint}")
    try:
        info = ModelInfo.from_text(config.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{config} is not a usable model description ({exc}); re-export the model") from None
    needed = [info.model_file, "tokenizer.json"]
    if info.raw.get("external_data"):
        needed.append(str(info.raw["external_data"]))
    for name in needed:
        if not (model_dir / name).is_file():
            raise BuildError(f"{model_dir} lacks {name}, which the model needs; re-export the model")
    return info


def check_node_modules(modules: Path, lock_file: Path) -> None:
    """The npm packages are installed, at the versions package-lock.json pins."""
    fix = f"run `npm ci` in {REPO}"
    try:
        lock = json.loads(lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {lock_file} ({exc}); restore it from git, then {fix}") from None
    for package in sorted({f.package for f in NODE_FILES}):
        pinned = lock.get("packages", {}).get(f"node_modules/{package}", {}).get("version")
        try:
            installed = json.loads((modules / package / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BuildError(f"{modules} has no {package} (npm packages not installed); {fix}") from None
        if installed.get("version") != pinned:
            raise BuildError(f"{modules} has {package} {installed.get('version')} but package-lock.json "
                             f"pins {pinned}; {fix}")
    for node_file in NODE_FILES:
        if not (modules / node_file.package / node_file.source).is_file():
            raise BuildError(f"{modules / node_file.package / node_file.source} is missing; {fix}")


def check_destination(out: Path, force: bool, model_dir: Path) -> None:
    target = out.resolve()
    for precious in (model_dir.resolve(), REPO):
        if target == precious or target in precious.parents:
            raise BuildError(f"-o {out} would replace {precious}; choose a new folder such as dist/")
    atomic.check_destination(out, force, "site folder", error=BuildError)


# ---- writing files -----------------------------------------------------------------------

class Stage:
    """The site being written; remembers each file's sha256 so nothing is hashed twice."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}

    def copy(self, source: Path, dest: str, *, hashed: bool = False) -> str:
        """Copy `source` (following symlinks) to `dest`; returns the path actually used."""
        target = self.root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with source.open("rb") as reader, target.open("wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
        return self._place(dest, digest.hexdigest(), hashed)

    def write(self, dest: str, data: bytes, *, hashed: bool = False) -> str:
        target = self.root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return self._place(dest, hashlib.sha256(data).hexdigest(), hashed)

    def _place(self, dest: str, sha256: str, hashed: bool) -> str:
        if hashed:
            final = hashed_name(dest, sha256)
            (self.root / dest).rename(self.root / final)
            dest = final
        self.digests[dest] = sha256
        return dest

    def entries(self) -> list[dict[str, str | int]]:
        """Every file the site serves: path, size, sha256, sorted by path."""
        entries: list[dict[str, str | int]] = []
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            relative = path.relative_to(self.root).as_posix()
            if relative in (MANIFEST_FILE, SW_FILE, *HOST_CONFIG_FILES):
                continue
            sha256 = self.digests.get(relative) or hashlib.sha256(path.read_bytes()).hexdigest()
            entries.append({"path": relative, "size": path.stat().st_size, "sha256": sha256})
        return entries


def hashed_name(path: str, sha256: str) -> str:
    """`model/model.onnx` -> `model/model.<12 hex>.onnx` (http_policy's hashed-file rule)."""
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem}.{sha256[:12]}{pure.suffix}"))


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def build_id_of(entries: list[dict[str, str | int]]) -> str:
    """16 hex digits of sha256 over every file's path, size and sha256."""
    lines = "".join(f"{e['path']}\0{e['size']}\0{e['sha256']}\n" for e in entries)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()[:16]


def copy_web(stage: Stage, web: Path) -> None:
    """The page: every file of web/ but the sw template, the tsc settings and hidden files."""
    for path in sorted(web.rglob("*")):
        relative = path.relative_to(web).as_posix()
        if path.is_file() and relative not in WEB_NOT_SHIPPED and not any(
                part.startswith(".") for part in relative.split("/")):
            stage.copy(path, relative)


def copy_runtime(stage: Stage, modules: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """onnxruntime-web and Pyodide files; returns their site.json sections."""
    placed = {f.dest: stage.copy(modules / f.package / f.source, f.dest, hashed=f.hashed)
              for f in NODE_FILES}
    lock = json.loads((modules / "pyodide/pyodide-lock.json").read_text(encoding="utf-8"))
    # No package is loaded from the lock file: keep its header only (119 kB -> 200 bytes).
    placed[PYODIDE_LOCK] = stage.write(PYODIDE_LOCK, json_bytes({"info": lock["info"], "packages": {}}))
    ort = {
        "version": _version(modules, "onnxruntime-web"),
        "module": placed["runtime/ort/ort.jspi.min.mjs"],
        "glue": placed["runtime/ort/ort-wasm-simd-threaded.jspi.mjs"],
        "wasm": placed["runtime/ort/ort-wasm-simd-threaded.jspi.wasm"],
    }
    pyodide = {
        "version": _version(modules, "pyodide"),
        "index": "runtime/pyodide/",
        "files": sorted(path for path in placed.values() if path.startswith("runtime/pyodide/")),
    }
    return ort, pyodide


def _version(modules: Path, package: str) -> str:
    return str(json.loads((modules / package / "package.json").read_text(encoding="utf-8"))["version"])


def copy_model(stage: Stage, model_dir: Path, info: ModelInfo) -> dict[str, Any]:
    """The model folder under model/; every file but pocketlm.json gets a hashed name."""
    files: dict[str, str] = {}
    for path in sorted(model_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        files[path.name] = stage.copy(path, f"model/{path.name}", hashed=path.name != CONFIG_FILE)
    return {"config": files[CONFIG_FILE], "name": info.name, "files": files}


def python_zip() -> bytes:
    """pocketlm_runtime, jinja2 and markupsafe as pure Python, with the libraries' licenses.

    markupsafe's wheels are platform-specific; without its C `_speedups` it uses its
    pure-Python code. Entries are sorted and dated 1980-01-01, so the bytes are reproducible.
    """
    files: dict[str, bytes] = {}
    for package in PYTHON_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise BuildError(f"Python package {package} is not installed; run `pip install -e .`")
        folder = Path(spec.origin).parent
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts:
                files[f"{package}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
        if package == "pocketlm_runtime":
            continue
        dist = importlib.metadata.distribution(package)
        for record in dist.files or []:
            if record.name == "METADATA" or "LICENSE" in record.name.upper():
                files[str(record)] = Path(str(dist.locate_file(record))).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.create_system = 3
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[name], compresslevel=9)
    return buffer.getvalue()


def probe_model() -> bytes:
    """A small ONNX graph shaped like a decoder step's MLPs, timed on each backend.

    Twelve residual up/down MatMul pairs on one position, like a decode step; the 576x1536
    weights are outer products of short vectors, folded into constants when the session is
    created, so the file is 17 kB.
    """
    import onnx
    from onnx import TensorProto, helper

    hidden, inner = PROBE_SHAPE[1], 1536

    def vector(name: str, n: int, shape: list[int], step: int) -> onnx.TensorProto:
        values = [(((i * step) % 101) - 50) / 2048 for i in range(n)]  # exact in float32
        return helper.make_tensor(name, TensorProto.FLOAT, shape, values)

    nodes = [helper.make_node("Mul", ["a", "b"], ["up"]), helper.make_node("Mul", ["c", "d"], ["down"])]
    last = "x"
    for layer in range(PROBE_LAYERS):  # t = tanh(x + x @ up @ down): the signal stays alive
        nodes += [
            helper.make_node("MatMul", [last, "up"], [f"h{layer}"]),
            helper.make_node("MatMul", [f"h{layer}", "down"], [f"o{layer}"]),
            helper.make_node("Add", [f"o{layer}", last], [f"r{layer}"]),
            helper.make_node("Tanh", [f"r{layer}"], [f"t{layer}"]),
        ]
        last = f"t{layer}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes, "pocketlm-probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(PROBE_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(PROBE_SHAPE))],
        initializer=[vector("a", hidden, [hidden, 1], 37), vector("b", inner, [1, inner], 53),
                     vector("c", inner, [inner, 1], 61), vector("d", hidden, [1, hidden], 71)],
    )
    model = helper.make_model(graph, producer_name="pocketlm", ir_version=8,
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def render_service_worker(template: Path, manifest: dict[str, Any]) -> bytes:
    """sw.js: the template with its `pocketlm:build` line holding this build's file list."""
    text = template.read_text(encoding="utf-8")
    files = [[e["path"], e["size"], e["sha256"]] for e in manifest["files"]]
    data = json.dumps({"build_id": manifest["build_id"], "files": files}, separators=(",", ":"))
    lines = text.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(SW_MARKER)]
    if len(marked) != 1:
        raise BuildError(f"{template} must have exactly one line ending in {SW_MARKER!r}; restore it from git")
    lines[marked[0]] = f"const BUILD = {data};\n"
    return "".join(lines).encode("utf-8")

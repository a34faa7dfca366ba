"""`pocketlm build MODEL_DIR [MODEL_DIR ...] -o DIST`: models + runtime + page -> one static site folder.

What DIST holds (every file listed in manifest.json with its size and sha256)::

    index.html app.js engine.js worker.js ...   the page (web/'s .html/.js/.css, minus the sw template)
    site.json                                   how the page finds the files below
    runtime/engine/      pocketlm's CPU engine: relaxed-SIMD and plain-SIMD WebAssembly
                         builds (compiled from web/engine/ by `make setup`)
    runtime/ort/         onnxruntime-web: the JSPI build only (WebGPU and WASM in one .wasm);
                         fetched only when the page uses WebGPU, so not precached
    runtime/pyodide/     Pyodide's loader, WebAssembly and standard library
    runtime/python/      pocketlm_runtime + jinja2 + markupsafe (pure Python), one zip
    models/ID/           each exported model folder (ID from its name); a page with several
                         offers a picker and downloads only the chosen one, into a cache of
                         its own (web/model_cache.js), not at the service worker's install
    sw.js                service worker generated from the manifest (web/service_worker.js)
    manifest.json        {"format": "pocketlm-site", "build_id", "files": [...]}; a model's
                         files carry `"model": ID`
    NAME.gz              gzip copies of the files it shrinks, sent by servers instead of
                         NAME with Content-Encoding: gzip (compress.py); not in the manifest
    _headers, pocketlm-nginx.conf   host configs (deploy.py), not served

Big files the page reaches through site.json carry their content hash in their name
(`models/ID/model.3f2a9c1b0d4e.onnx`): hosts may cache them forever (http_policy), and a new build
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
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from pocketlm_export import atomic
from pocketlm_runtime.model_info import CONFIG_FILE, ModelInfo

from .app_manifest import app_files
from .compress import compress_site
from .deploy import write_host_configs
from .http_policy import HOST_CONFIG_FILES
from .model_folder import ModelFolderError, check_inside, named_files, validate_model_folder
from .server import MANIFEST_FILE, SITE_FORMAT  # what `pocketlm serve` checks for
from .site_page import page_settings, render_index

REPO: Final = Path(__file__).resolve().parent.parent
WEB_DIR: Final = REPO / "web"
SW_TEMPLATE: Final = "service_worker.js"
WEB_NOT_SHIPPED: Final = (SW_TEMPLATE, "jsconfig.json")  # a template; the type-check settings
# What the page is made of: web/'s sources of other kinds (the engine's C) are not shipped.
WEB_SUFFIXES: Final = (".html", ".js", ".css", ".png", ".svg", ".ico")
# Files the service worker does not precache: the page fetches them only on some machines,
# and they are cached when first used.
LAZY_PREFIXES: Final = ("runtime/ort/",)
ENGINE_BUILD_DIR: Final = REPO / "build" / "engine"
ENGINE_BUILDS: Final = {"relaxed": "engine-relaxed.wasm", "plain": "engine-simd.wasm"}
SW_MARKER: Final = "// pocketlm:build"
SW_FILE: Final = "sw.js"
SITE_CONFIG: Final = "site.json"
PYTHON_PACKAGES: Final = ("pocketlm_runtime", "jinja2", "markupsafe")
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
    gzip_bytes: int  # what a first visit downloads with gzip (compress.py): lazy files and
    #                  all models but the first aside
    models: int = 1

    @property
    def summary(self) -> str:
        models = f"{self.models} models, " if self.models > 1 else ""
        return (f"{models}{self.files} files, {self.total_bytes / 1e6:.1f} MB "
                f"({self.gzip_bytes / 1e6:.1f} MB for a first visit with gzip), build {self.build_id}")


def build_site(model_dirs: Path | Sequence[Path], out: Path, *, force: bool = False,
               node_modules: Path | None = None, engine_dir: Path | None = None,
               page: Mapping[str, Any] | None = None, compress: bool = True) -> BuildResult:
    """Bundle exported model folders (one, or several for the page's picker, first listed
    first) with the page into the site `out`.
    ``page``: the page's settings (site_page.page_settings; default: the defaults).
    ``compress``: write the gzip copies (compress.py); False leaves them out, for a site
    served only over loopback (gzip at level 9 takes about a minute a 700 MB model)."""
    page = page if page is not None else page_settings({}, {})
    folders = [model_dirs] if isinstance(model_dirs, Path) else list(model_dirs)
    if not folders:
        raise BuildError("no model folder given; name at least one exported model folder")
    infos = [check_model_folder(folder) for folder in folders]
    ids = model_ids(folders, infos)
    modules = node_modules if node_modules is not None else REPO / "node_modules"
    check_node_modules(modules, REPO / "package-lock.json")
    engine_builds = check_engine_builds(engine_dir if engine_dir is not None else ENGINE_BUILD_DIR)
    for folder in folders:
        check_destination(out, force, folder)
    with atomic.staged_folder(out, force, error=BuildError) as root:
        stage = Stage(root)
        copy_web(stage, WEB_DIR)
        index = render_index((WEB_DIR / "index.html").read_text(encoding="utf-8"), page)
        stage.write("index.html", index.encode("utf-8"))
        for path, data in app_files(page).items():  # installable: web app manifest, icons
            stage.write(path, data)
        ort, pyodide = copy_runtime(stage, modules)
        engine = copy_engine(stage, engine_builds)
        python_archive = stage.write("runtime/python/site-packages.zip", python_zip(), hashed=True)
        models: list[dict[str, Any]] = [copy_model(stage, folder, info, model_id)
                                        for folder, info, model_id in zip(folders, infos, ids, strict=True)]
        site: dict[str, Any] = {
            "format": "pocketlm-site-config",
            "engine": engine,
            "ort": ort,
            "pyodide": pyodide,
            "python": {"archive": python_archive},
            "models": models,
        }
        stage.write(SITE_CONFIG, json_bytes(site))
        entries = stage.entries()
        owner = {path: str(model["id"]) for model in models for path in model["files"].values()}
        for entry in entries:
            if entry["path"] in owner:
                entry["model"] = owner[str(entry["path"])]
        packed = compress_site(root, [str(entry["path"]) for entry in entries]) if compress else {}
        manifest = {"format": SITE_FORMAT, "build_id": build_id_of(entries), "files": entries}
        (root / SW_FILE).write_bytes(render_service_worker(WEB_DIR / SW_TEMPLATE, manifest, site))
        write_host_configs(root)  # after sw.js, so _headers has a rule for it too
        (root / MANIFEST_FILE).write_bytes(json_bytes(manifest))
    total = sum(int(entry["size"]) for entry in entries)
    # A first visit: the page and runtime, and one model (the first; each is fetched when chosen).
    first = models[0]["id"]
    wire = sum(packed.get(str(entry["path"]), int(entry["size"])) for entry in entries
               if not entry.get("lazy") and entry.get("model", first) == first)
    return BuildResult(out=out, build_id=str(manifest["build_id"]), files=len(entries),
                       total_bytes=total, gzip_bytes=wire, models=len(folders))


# ---- checks ------------------------------------------------------------------------------

def check_model_folder(model_dir: Path) -> ModelInfo:
    """The folder's pocketlm.json, after model_folder.py's checks of everything it names."""
    try:
        return validate_model_folder(model_dir)
    except ModelFolderError as exc:
        raise BuildError(str(exc)) from None


def model_ids(folders: Sequence[Path], infos: Sequence[ModelInfo]) -> list[str]:
    """Each model's id in URLs and cache names: its name in lower case, letters, digits and
    dashes (``SmolLM2-135M-Instruct`` -> ``smollm2-135m-instruct``); the same folder twice is
    refused, two models of one name get ``-2``, ``-3``."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        resolved = folder.resolve()
        if resolved in seen:
            raise BuildError(f"{folder} is given twice (as {seen[resolved]} too); name each model folder once")
        seen[resolved] = folder
    ids: list[str] = []
    for folder, info in zip(folders, infos, strict=True):
        base = re.sub(r"[^a-z0-9]+", "-", (info.name or folder.name).lower()).strip("-")[:48] or "model"
        model_id, n = base, 1
        while model_id in ids:
            n += 1
            model_id = f"{base}-{n}"
        ids.append(model_id)
    return ids


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


def check_engine_builds(folder: Path) -> dict[str, Path]:
    """The CPU engine's two WebAssembly builds, compiled by `make setup`."""
    builds = {kind: folder / name for kind, name in ENGINE_BUILDS.items()}
    for path in builds.values():
        if not path.is_file():
            raise BuildError(f"the CPU engine is not built ({path} is missing); run `make setup`")
    return builds


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

    def entries(self) -> list[dict[str, str | int | bool]]:
        """Every file the site serves: path, size, sha256 (and `lazy` for files the service
        worker caches when first used rather than at install), sorted by path."""
        entries: list[dict[str, str | int | bool]] = []
        files = {p.relative_to(self.root).as_posix(): p for p in self.root.rglob("*") if p.is_file()}
        for relative, path in sorted(files.items()):
            if relative in (MANIFEST_FILE, SW_FILE, *HOST_CONFIG_FILES):
                continue
            sha256 = self.digests.get(relative) or hashlib.sha256(path.read_bytes()).hexdigest()
            entry: dict[str, str | int | bool] = {"path": relative, "size": path.stat().st_size, "sha256": sha256}
            if relative.startswith(LAZY_PREFIXES):
                entry["lazy"] = True
            entries.append(entry)
        return entries


def hashed_name(path: str, sha256: str) -> str:
    """`model/model.onnx` -> `model/model.<12 hex>.onnx` (http_policy's hashed-file rule)."""
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem}.{sha256[:12]}{pure.suffix}"))


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def build_id_of(entries: list[dict[str, str | int | bool]]) -> str:
    """16 hex digits of sha256 over every file's path, size and sha256."""
    lines = "".join(f"{e['path']}\0{e['size']}\0{e['sha256']}\n" for e in entries)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()[:16]


def copy_web(stage: Stage, web: Path) -> None:
    """The page: web/'s page files (WEB_SUFFIXES) but the sw template and hidden files."""
    for path in sorted(web.rglob("*")):
        relative = path.relative_to(web).as_posix()
        if path.is_file() and path.suffix in WEB_SUFFIXES and relative not in WEB_NOT_SHIPPED and not any(
                part.startswith(".") for part in relative.split("/")):
            stage.copy(path, relative)


def copy_engine(stage: Stage, builds: dict[str, Path]) -> dict[str, str]:
    """The CPU engine's builds, content-hashed; returns site.json's `engine` section."""
    section = {kind: stage.copy(path, f"runtime/engine/{path.name}", hashed=True)
               for kind, path in builds.items()}
    section["module"] = "engine/cpu_engine.js"
    return section


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


def copy_model(stage: Stage, model_dir: Path, info: ModelInfo, model_id: str) -> dict[str, Any]:
    """The files pocketlm.json names (model_folder.named_files), under models/ID/, each with
    its content hash in its name. Nothing else in the folder reaches the site.

    Returns site.json's entry for the model: id, name, licence (the source's, when it states
    one), bytes (what choosing it downloads), files (name in the folder -> path in the site)
    and cache, the browser cache that holds it (web/model_cache.js): the files' names pin
    their content, so a rebuild downloads only the files that changed."""
    files: dict[str, str] = {}
    for name in sorted(named_files(info.raw)):
        source = check_inside(model_dir, name)  # again: no symlink swapped in since the check
        files[name] = stage.copy(source, f"models/{model_id}/{name}", hashed=True)
    size = sum((stage.root / path).stat().st_size for path in files.values())
    licence = (info.raw.get("source") or {}).get("license")
    return {"id": model_id, "name": info.name or model_dir.name, "license": licence if isinstance(licence, str) else None,
            "bytes": size, "config": files[CONFIG_FILE], "files": files, "cache": f"pocketlm-model-{model_id}"}


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


def render_service_worker(template: Path, manifest: dict[str, Any], site: dict[str, Any]) -> bytes:
    """sw.js: the template with its `pocketlm:build` line holding this build's file list:
    the files precached at install (models aside), the lazy ones, and each model file's cache."""
    text = template.read_text(encoding="utf-8")
    files = [[e["path"], e["size"], e["sha256"]] for e in manifest["files"] if not e.get("lazy") and "model" not in e]
    lazy = [e["path"] for e in manifest["files"] if e.get("lazy")]
    models = {str(model["id"]): str(model["cache"]) for model in site["models"]}
    owned = {e["path"]: models[e["model"]] for e in manifest["files"] if "model" in e}
    data = json.dumps({"build_id": manifest["build_id"], "files": files, "lazy": lazy, "models": owned},
                      separators=(",", ":"))
    lines = text.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(SW_MARKER)]
    if len(marked) != 1:
        raise BuildError(f"{template} must have exactly one line ending in {SW_MARKER!r}; restore it from git")
    lines[marked[0]] = f"const BUILD = {data};\n"
    return "".join(lines).encode("utf-8")

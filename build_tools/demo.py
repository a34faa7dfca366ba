"""``pocketlm demo``: export the embedded default model, build the page, serve it.

An earlier export is reused when it came from the same source file (same sha256) with
the same options, so a second run starts serving in seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pocketlm_export.default_model import default_model_path
from pocketlm_export.export import ExportOptions, export
from pocketlm_export.sources.model import sha256_of

from .bundle import build_site
from .listen import check_host
from .server import serve

log = logging.getLogger("pocketlm")
OPTIONS = ExportOptions(quant="auto", force=True)


def reusable(model_dir: Path, source_sha256: str) -> bool:
    try:
        config = json.loads((model_dir / "pocketlm.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (config.get("source", {}).get("sha256") == source_sha256
            and config.get("export_options", {}).get("quant") == OPTIONS.quant)


def run_demo(workdir: Path, host: str = "127.0.0.1", port: int = 8000) -> int:
    check_host(host)  # an empty host is refused before minutes of export
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, site = workdir / "model", workdir / "site"
    source = default_model_path()
    if reusable(model_dir, sha256_of([source])):
        print(f"reusing the export in {model_dir} (same source file)")
    else:
        print(f"exporting {source.name} to {model_dir} ...")
        result = export(source, model_dir, OPTIONS)
        print(f"exported: {result.report['quantization']}, {result.report['total_bytes'] / 1e6:.1f} MB")
    built = build_site(model_dir, site, force=True)
    print(f"built {site}: {built.summary}")
    print(f"serving on http://{host}:{port}/  (Ctrl-C stops; the page keeps working offline)")
    serve(site, host=host, port=port)
    return 0

"""Write a folder next to its destination and move it into place only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ExportError


def check_destination(out: Path, force: bool, what: str = "output folder",
                      error: type[Exception] = ExportError) -> None:
    """Fail before any work if ``out`` cannot be (re)written."""
    if out.exists() and not force:
        raise error(f"{what} {out} already exists; pass --force to replace it or choose another -o")
    if out.exists() and not out.is_dir():
        raise error(f"{out} exists and is not a folder; choose another -o")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise error(f"cannot create {out}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"cannot write to {parent} (permission denied); choose a writable -o")


@contextmanager
def staged_folder(out: Path, force: bool, error: type[Exception] = ExportError) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out``."""
    check_destination(out, force, error=error)
    parent = out.resolve().parent
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise error(f"cannot write to {parent} ({exc.strerror}); choose a writable -o") from None
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp made it private; give it a normal folder's mode
        old: Path | None = None
        if out.exists():
            old = parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        stage.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise

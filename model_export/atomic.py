"""Write a folder next to its destination and move it into place only when complete.

The folder is written as ``.NAME.tmp-PID-XXXX`` beside ``NAME``; when it is complete the old
``NAME`` (if any) is renamed to ``.NAME.old-PID``, the new one takes its place, and the old
one is deleted. If that last rename fails, the old folder is put back.

- ``--force`` replaces only an empty folder or one that pocketlm wrote: it holds a
  ``pocketlm.json`` of format ``pocketlm-model`` or a ``manifest.json`` of format
  ``pocketlm-site`` (``OWN_MARKERS``). Anything else is refused in one line.
- The CLI turns SIGTERM and SIGHUP into :class:`Terminated`, so an interrupted run removes its
  temporary folder like any other failure. A run killed outright (SIGKILL, power loss)
  cannot; the next run that writes beside the same destination removes the folders whose
  process (the PID in the name) is gone, and puts an orphaned ``.NAME.old-PID`` back when
  ``NAME`` itself is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from .errors import ExportError

#: (file, its "format" value): a folder holding one of these was written by pocketlm.
OWN_MARKERS: Final = (("pocketlm.json", "pocketlm-model"), ("manifest.json", "pocketlm-site"))


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (args: the signal number); raised in the main thread so
    clean-up code runs (exit status 128 + the signal number)."""


def is_ours(folder: Path) -> bool:
    """True when ``folder`` is empty or carries one of pocketlm's own markers."""
    try:
        if not any(folder.iterdir()):
            return True
    except OSError:
        return False
    for name, fmt in OWN_MARKERS:
        marker = folder / name
        if marker.is_symlink() or not marker.is_file():
            continue
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == fmt:
            return True
    return False


def check_destination(out: Path, force: bool, what: str = "output folder",
                      error: type[Exception] = ExportError) -> None:
    """Fail before any work if ``out`` cannot be (re)written."""
    target = out.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise error(f"-o {out} is the current folder or one above it; name a new folder such as -o dist")
    if out.exists() and not force:
        raise error(f"{what} {out} already exists; pass --force to replace it or choose another -o")
    if out.exists() and (out.is_symlink() or not out.is_dir()):
        raise error(f"{out} exists and is not a folder; choose another -o")
    if out.exists() and not is_ours(out):
        raise error(f"--force replaces only folders pocketlm wrote, and {out} holds other files "
                    "(no pocketlm.json or manifest.json of ours); choose another -o")
    parent = target.parent
    if not parent.is_dir():
        raise error(f"cannot create {out}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"cannot write to {parent} (permission denied); choose a writable -o")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale(target: Path) -> list[Path]:
    """Remove temporary folders beside ``target`` left by runs that no longer exist.

    Returns what was removed (or restored). ``target`` must be resolved.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(tmp|old)-(\d+)(-.*)?")
    swept = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return []
    for path in siblings:
        match = pattern.fullmatch(path.name)
        if match is None or _pid_alive(int(match.group(2))) or path.is_symlink() or not path.is_dir():
            continue
        if match.group(1) == "old" and not target.exists():
            path.rename(target)  # killed between the two renames: the old output comes back
        else:
            shutil.rmtree(path, ignore_errors=True)
        swept.append(path)
    return swept


@contextmanager
def staged_folder(out: Path, force: bool, error: type[Exception] = ExportError) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out``."""
    target = out.resolve()
    sweep_stale(target)
    check_destination(out, force, error=error)
    parent = target.parent
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise error(f"cannot write to {parent} ({exc.strerror}); choose a writable -o") from None
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp made it private; give it a normal folder's mode
        _replace(stage, target, error)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _replace(stage: Path, target: Path, error: type[Exception]) -> None:
    """Move ``stage`` to ``target``; the old ``target`` is deleted, or put back on failure."""
    old: Path | None = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    try:
        stage.rename(target)
    except OSError as exc:
        if old is not None:
            old.rename(target)
        raise error(f"cannot move the new output into {target} ({exc.strerror}); "
                    "the previous one is unchanged") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

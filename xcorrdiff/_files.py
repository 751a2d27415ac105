"""Publishing a folder written beside its destination: readable as any new file, then renamed."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def new_file_mode() -> int:
    """The permissions the process's umask gives a new file (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def publish_dir(staging: Path, target: Path) -> None:
    """Move the finished folder ``staging`` to ``target``, replacing an existing one.

    ``staging`` (made by :func:`tempfile.mkdtemp`, so private) and its files (safetensors
    writes 0600) get the permissions the process's umask gives new files and folders. An
    existing ``target`` is renamed aside first and removed only once ``staging`` is in place,
    so a crash never leaves neither.
    """
    umask = _umask()
    for file in staging.iterdir():
        if file.is_file():
            file.chmod(0o666 & ~umask)
    staging.chmod(0o777 & ~umask)
    if target.exists():
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, target)

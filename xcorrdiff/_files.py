"""Files we write and read back: publishing a folder atomically, checksums, paths kept inside a folder."""

from __future__ import annotations

import hashlib
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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, int | str]:
    """``{"bytes": size, "sha256": hex}`` of a file, as stored in a model's config."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def member_path(root: Path, name: object, *, where: str) -> Path:
    """``root / name`` for a plain file name that stays inside ``root`` (links resolved).

    Raises
    ------
    ValueError
        ``name`` is not a non-empty plain file name, or resolves outside ``root``.
    """
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise ValueError(
            f"{where}: file name {name!r} is not a plain file name inside the directory; "
            "a model's files must sit in its own folder (the config is damaged or was edited)"
        )
    path = root / name
    if path.resolve().parent != root.resolve():
        raise ValueError(
            f"{where}: {name!r} links outside the directory ({path.resolve()}); a model's files "
            "must sit in its own folder"
        )
    return path


def verify_file(path: Path, record: object, *, where: str) -> None:
    """Check a file's size and SHA-256 against its ``{"bytes", "sha256"}`` record.

    Raises
    ------
    FileNotFoundError
        The file is missing.
    ValueError
        The record is malformed, or the file's size or hash differs (damaged or replaced).
    """
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise ValueError(f"{where}: the record of {path.name!r} is malformed: {record!r}")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; {where} lists it. Restore the directory from a backup or "
            "save the model again"
        )
    size = path.stat().st_size
    if size != record.get("bytes", size) or sha256_file(path) != record["sha256"]:
        raise ValueError(
            f"{path} is damaged: its {'size' if size != record.get('bytes', size) else 'SHA-256'} "
            f"differs from the one {where} records (truncated, altered or replaced since it "
            "was saved); restore it from a backup or save the model again"
        )


def write_text_atomic(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through ``.<name>.<pid>.tmp`` and a rename: a reader (or a
    crash) sees the old file or the new one, never half of one."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)

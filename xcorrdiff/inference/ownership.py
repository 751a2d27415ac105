"""Which output paths downscaling may write, and which stores it may replace.

xcorrdiff only ever deletes what it wrote. A store is replaced (``overwrite=True``,
``--mode w``) only if it carries the request record that :func:`~xcorrdiff.inference.api.downscale_to_zarr`
writes (``.xcorrdiff/request.json``) and holds nothing but the arrays that record lists
and zarr's own metadata, or if it is an empty folder. Paths that could never be a store of
ours are refused outright, before anything is written: an empty path, the working
directory or one of its parents, the home directory, the file system root, and any
folder holding the input.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from xcorrdiff.inference.store import MARKER_DIR, read_request

__all__ = ["check_store_path", "input_sources", "remove_own_store"]

_ZARR_METADATA = frozenset({"zarr.json", ".zgroup", ".zattrs", ".zmetadata"})


def input_sources(obj: object) -> list[str]:
    """The files an xarray object was opened from (``encoding["source"]``), if any."""
    sources = []
    for item in (obj, *getattr(obj, "variables", {}).values()):
        source = getattr(item, "encoding", {}).get("source")
        if isinstance(source, str) and source:
            sources.append(source)
    return sorted(set(sources))


def check_store_path(
    store: object, *, protected: Iterable[str] = (), argument: str = "store"
) -> Path:
    """The absolute path of an output store, refusing paths that cannot be ours.

    Parameters
    ----------
    store : path-like
        The requested store.
    protected : iterable of str
        Input files: the store may be neither one of them nor a folder holding one.
    argument : str
        How the caller names the argument (``"store"``, ``"--out"``), for messages.

    Raises
    ------
    ValueError
        An empty path, the working directory or a parent of it, the home directory, the
        root, an input file or a folder holding one, or a path whose parent folder does
        not exist.
    TypeError
        ``store`` is not a path.
    """
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"{argument}={store!r} is invalid; expected a path (str or os.PathLike)")
    text = os.fspath(store)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{argument}={text!r} is empty; name the zarr store to write, e.g. 'ensemble.zarr'"
        )
    path = Path(text).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise ValueError(
            f"{argument}={text!r} is the working directory or one of its parents ({path}); "
            "name a new store inside it instead, e.g. 'ensemble.zarr'"
        )
    if path == Path.home().resolve() or path == Path(path.anchor):
        raise ValueError(f"{argument}={text!r} is {path}; name a new store, e.g. 'ensemble.zarr'")
    for source in protected:
        source_path = Path(source).expanduser().resolve()
        if path == source_path or path in source_path.parents:
            raise ValueError(
                f"{argument}={text!r} is the input {source!r} or a folder holding it; write "
                "the ensemble to a new store"
            )
    if not path.parent.is_dir():
        raise ValueError(
            f"{argument}={text!r}: the folder {path.parent} does not exist; create it first"
        )
    return path


def _recorded_arrays(path: Path) -> set[str] | None:
    request = read_request(path)
    if request is None:
        return None
    arrays = request.get("arrays")
    if isinstance(arrays, list):
        return {str(a) for a in arrays}
    # A store of an older xcorrdiff records no array list: its arrays are its zarr arrays.
    return {
        p.name for p in path.iterdir() if (p / "zarr.json").is_file() or (p / ".zarray").is_file()
    }


def remove_own_store(path: Path, *, argument: str = "store") -> None:
    """Delete ``path`` if it is an empty folder or a store xcorrdiff wrote, else refuse.

    Raises
    ------
    FileExistsError
        ``path`` is not a folder, or a folder xcorrdiff did not write (no request record),
        or a store that also holds other files or folders (they are named).
    """
    if not path.is_dir() or path.is_symlink():
        raise FileExistsError(
            f"{argument}={os.fspath(path)!r} exists and is not a folder; xcorrdiff replaces only "
            "stores it wrote. Remove it yourself or choose another path"
        )
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        arrays = _recorded_arrays(path)
        if arrays is None:
            raise FileExistsError(
                f"{argument}={os.fspath(path)!r} is a folder xcorrdiff did not write (no "
                f"{MARKER_DIR}/request.json); refusing to replace it. Remove it yourself or "
                "choose another path"
            )
        foreign = [e for e in entries if e not in arrays | _ZARR_METADATA | {MARKER_DIR}]
        if foreign:
            raise FileExistsError(
                f"{argument}={os.fspath(path)!r} is an xcorrdiff store but also holds "
                f"{foreign[:5]}, which xcorrdiff did not write; refusing to replace it. Move "
                "them out, or choose another path"
            )
    shutil.rmtree(path)

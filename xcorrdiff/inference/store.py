"""Resumable zarr output: one zarr region per ``time`` chunk, a checked marker per chunk.

A store written by :func:`xcorrdiff.inference.api.downscale_to_zarr` looks like::

    OUT.zarr/                            the zarr group: ensemble arrays and coordinates;
                                         its attribute ``xcorrdiff_status`` says
                                         "complete" or "incomplete: ..."
    OUT.zarr/.xcorrdiff/request.json     the request (model hash, seed, sampler, steps,
                                         members, time stamps, input grid, ...), written
                                         last when the store is set up
    OUT.zarr/.xcorrdiff/done/000012      chunk 12 is complete: its time range, the
                                         fingerprint of the input it was computed from and
                                         the SHA-256 of each variable's block as written
                                         (written atomically after its region)

The arrays are chunked along ``time`` exactly as the tasks are, so each task writes whole
zarr chunks of its own region and no two tasks touch the same file; a task that dies
between its region and its marker is simply recomputed. A resumed run trusts a finished
chunk only if its input fingerprint equals the new input's and its blocks still hash to
the recorded SHA-256. The hidden ``.xcorrdiff`` folders are empty zarr groups, which
``xr.open_zarr`` skips. Stores must be on a file system every worker sees (a local path,
or a shared one such as Lustre/GPFS/NFS on a cluster).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from xcorrdiff._files import write_text_atomic

#: Hidden folder inside a store holding the request and the completion markers.
MARKER_DIR = ".xcorrdiff"

__all__ = [
    "MARKER_DIR",
    "STATUS_ATTR",
    "check_request",
    "chunk_bounds",
    "damaged_chunks",
    "done_chunks",
    "forget_chunks",
    "init_store",
    "read_markers",
    "read_request",
    "remove_orphan_markers",
    "request_record",
    "set_status",
    "time_axes",
    "write_tasks",
]

#: Global attribute of the store saying whether every chunk is written.
STATUS_ATTR = "xcorrdiff_status"
#: Private fault injection for tests: a task raises once the store has this many chunks.
_FAIL_ENV = "XCORRDIFF_TEST_FAIL_AFTER_CHUNKS"


def chunk_bounds(n_times: int, time_chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each time chunk: ``time_chunk`` times each, the last one shorter."""
    return [(a, min(a + time_chunk, n_times)) for a in range(0, n_times, time_chunk)]


def _time_digest(times: np.ndarray) -> str:
    values = np.asarray(times)
    if values.dtype.kind in "mM":
        payload = values.astype(f"{values.dtype.kind}8[ns]").astype(np.int64).tobytes()
    else:
        payload = "\n".join(map(str, values.tolist())).encode()
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def request_record(
    ens: xr.Dataset, fingerprint: Mapping[str, Any], *, time_chunk: int, input_grid_digest: str
) -> dict[str, Any]:
    """The request a store is written for, as JSON-able values.

    Parameters
    ----------
    ens : xarray.Dataset
        The lazy ensemble of :func:`~xcorrdiff.inference.api.downscale` (its variables,
        provenance attrs and ``time`` coordinate are read).
    fingerprint : mapping
        :meth:`~xcorrdiff.inference.request.DownscaleRequest.fingerprint` of the call: every
        setting that changes the numbers.
    time_chunk : int
        Times per task and per zarr chunk.
    input_grid_digest : str
        Fingerprint of the input's coordinates (:func:`~xcorrdiff.inference.scan.grid_digest`).

    Returns
    -------
    dict
        The fingerprint and the store's own settings (variables, time chunk, time stamps,
        input grid), the names of all these under ``"checked"`` (what a resumed run must
        match, by rule), and informative keys (first and last time, library version,
        model id) with ``arrays``, every array the store holds.
    """
    times = ens["time"].values
    checked = {
        **fingerprint,
        "variables": sorted(map(str, ens.data_vars)),
        "time_chunk": int(time_chunk),
        "n_times": len(times),
        "time_digest": _time_digest(times),
        "input_grid_digest": input_grid_digest,
    }
    return {
        **checked,
        "checked": list(checked),
        "arrays": sorted(map(str, ens.variables)),
        "first_time": str(times[0]),
        "last_time": str(times[-1]),
        "model_id": ens.attrs.get("model_id"),
        "xcorrdiff_version": ens.attrs["xcorrdiff_version"],
    }


def read_request(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The request recorded in a store, or ``None`` when it has none."""
    record = Path(path) / MARKER_DIR / "request.json"
    if not record.is_file():
        return None
    try:
        result = json.loads(record.read_text())
    except (OSError, ValueError):  # unreadable or damaged: no usable record
        return None
    return result if isinstance(result, dict) else None


#: Request keys added after stores were first written, with the value every store written
#: before them had: such a store resumes under a request that sets them so.
ADDED_KEYS: dict[str, Any] = {"student": False}


def check_request(path: str | os.PathLike[str], request: Mapping[str, Any]) -> None:
    """Refuse to resume a store written for another request.

    Raises
    ------
    ValueError
        The store has no completed setup, or its recorded request differs from ``request``
        in any key ``request`` lists as checked (all differing keys are named).
    """
    stored = read_request(path)
    if stored is None:
        raise ValueError(
            f"store={os.fspath(path)!r} exists but holds no xcorrdiff request record "
            f"({MARKER_DIR}/request.json): it was not written by downscale_to_zarr or its "
            "setup was interrupted; pass overwrite=True to replace it or choose another path"
        )
    stored = {**ADDED_KEYS, **stored}
    diffs = [
        f"{key}: store has {stored.get(key)!r}, this call {request[key]!r}"
        for key in request["checked"]
        if stored.get(key) != request[key]
    ]
    if diffs:
        raise ValueError(
            f"store={os.fspath(path)!r} was written for a different request, so it cannot be "
            f"resumed: {'; '.join(diffs)}. Repeat the original arguments, or pass "
            "overwrite=True to start again (or choose another path)"
        )


# --- markers --------------------------------------------------------------------------------


def _done_dir(path: str | os.PathLike[str]) -> Path:
    return Path(path) / MARKER_DIR / "done"


def read_markers(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """The marker of each finished time chunk (unreadable markers count as not finished)."""
    folder = _done_dir(path)
    if not folder.is_dir():
        return {}
    markers = {}
    for p in folder.iterdir():
        if not p.name.isdigit():
            continue
        try:
            marker = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict):
            markers[int(p.name)] = marker
    return markers


def done_chunks(path: str | os.PathLike[str]) -> set[int]:
    """Indices of the time chunks whose region is completely written."""
    return set(read_markers(path))


def forget_chunks(path: str | os.PathLike[str], indices: Sequence[int]) -> None:
    """Remove the markers of ``indices``: those chunks are computed again."""
    for index in indices:
        with contextlib.suppress(FileNotFoundError):
            (_done_dir(path) / f"{index:06d}").unlink()


def remove_orphan_markers(path: str | os.PathLike[str]) -> None:
    """Remove temporary marker files a killed task left (``.<name>.<pid>.tmp``)."""
    folder = Path(path) / MARKER_DIR
    for orphan in (*folder.glob(".*.tmp"), *_done_dir(path).glob(".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            orphan.unlink()


def _block_digest(block: np.ndarray) -> str:
    values = np.ascontiguousarray(block)
    return "sha256:" + hashlib.sha256(values.tobytes()).hexdigest()


def _region(ndim: int, axis: int, start: int, stop: int) -> tuple[slice, ...]:
    region: list[slice] = [slice(None)] * ndim
    region[axis] = slice(start, stop)
    return tuple(region)


def _chunk_is_intact(path: str, marker: Mapping[str, Any], time_axes: Mapping[str, int]) -> bool:
    import zarr

    recorded = marker.get("sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(time_axes):
        return False
    group = zarr.open_group(path, mode="r")
    for name, axis in time_axes.items():
        array = group[name]
        if not isinstance(array, zarr.Array):
            return False
        region = _region(array.ndim, axis, int(marker["start"]), int(marker["stop"]))
        if _block_digest(np.asarray(array[region])) != recorded[name]:
            return False
    return True


def damaged_chunks(
    path: str | os.PathLike[str],
    markers: Mapping[int, Mapping[str, Any]],
    time_axes: Mapping[str, int],
) -> list[int]:
    """Finished chunks whose blocks no longer hash to their markers' SHA-256 (read in parallel)."""
    check = dask.delayed(_chunk_is_intact, pure=False)
    indices = sorted(markers)
    intact = dask.compute(*[check(os.fspath(path), markers[i], time_axes) for i in indices])
    return [i for i, ok in zip(indices, intact, strict=True) if not ok]


# --- setting up and writing ----------------------------------------------------------------


def set_status(path: str | os.PathLike[str], done: int, total: int) -> None:
    """Record in the store's attributes whether all ``total`` chunks are written."""
    import zarr

    status = (
        "complete"
        if done >= total
        else f"incomplete: {done} of {total} time chunks written (unwritten times are NaN); "
        "resume with downscale_to_zarr(..., resume=True) or xcorrdiff downscale --resume"
    )
    zarr.open_group(os.fspath(path), mode="r+").attrs.update({STATUS_ATTR: status})


def init_store(
    template: xr.Dataset,
    path: str | os.PathLike[str],
    request: Mapping[str, Any],
    *,
    time_chunk: int,
    n_chunks: int,
) -> None:
    """Create the store: metadata and coordinates (no data), then its request record.

    Parameters
    ----------
    template : xarray.Dataset
        The lazy ensemble; its dask-backed variables are not computed.
    path : path-like
        The store; must not exist.
    request : mapping
        :func:`request_record` of the run, also stored as the ``xcorrdiff_request`` attr.
    time_chunk : int
        Zarr chunk length along ``time``; every other dimension is one chunk.
    n_chunks : int
        Time chunks of the run (for the status attribute).
    """
    root = Path(path)
    # Coordinates are written here, in full (a lazy one would be left as fill values: the
    # regions written later hold data variables only).
    template = template.assign_coords({n: c.compute() for n, c in template.coords.items()})
    encoding: dict[Hashable, dict[str, Any]] = {}
    for name, var in template.variables.items():
        var.encoding = {}
        if name in template.data_vars:
            encoding[name] = {
                "chunks": tuple(time_chunk if d == "time" else n for d, n in var.sizes.items())
            }
    template.attrs = {
        **template.attrs,
        "xcorrdiff_request": json.dumps(dict(request)),
        STATUS_ATTR: f"incomplete: 0 of {n_chunks} time chunks written",
    }
    template.to_zarr(root, mode="w-", compute=False, encoding=encoding, consolidated=False)
    # Empty zarr groups, so that zarr sees the folders as part of the hierarchy.
    v3 = (root / "zarr.json").is_file()
    for folder in (root / MARKER_DIR, root / MARKER_DIR / "done"):
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {}} if v3 else None
        name, text = ("zarr.json", json.dumps(meta)) if v3 else (".zgroup", '{"zarr_format": 2}')
        write_text_atomic(folder / name, text)
    write_text_atomic(root / MARKER_DIR / "request.json", json.dumps(dict(request), indent=1))


def _write_chunk(
    path: str,
    index: int,
    start: int,
    stop: int,
    blocks: dict[str, np.ndarray],
    time_axes: dict[str, int],
    input_digest: str,
    score: Callable[..., None] | None = None,
    truth: Any = None,
) -> int:
    """Write one chunk's blocks into their region, then (with ``score``, scoring what was
    written against ``truth``, :mod:`xcorrdiff.inference.scoring`) mark the chunk done."""
    import zarr

    limit = os.environ.get(_FAIL_ENV)
    if limit is not None and len(done_chunks(path)) >= int(limit):
        raise RuntimeError(f"{_FAIL_ENV}={limit}: injected failure before chunk {index}")
    group = zarr.open_group(path, mode="r+")
    digests, written = {}, {}
    for name, block in blocks.items():
        array = group[name]
        if not isinstance(array, zarr.Array):
            raise TypeError(f"store={path!r} holds a group at {name!r}; expected an array")
        written[name] = np.ascontiguousarray(block, dtype=array.dtype)
        array[_region(block.ndim, time_axes[name], start, stop)] = written[name]
        digests[name] = _block_digest(written[name])
    if score is not None:
        score(path, index, start, written, truth)
    marker = {"start": start, "stop": stop, "input_digest": input_digest, "sha256": digests}
    write_text_atomic(_done_dir(path) / f"{index:06d}", json.dumps(marker))
    return index


def time_axes(ens: xr.Dataset) -> dict[str, int]:
    """Axis of ``time`` in each data variable."""
    return {str(name): var.dims.index("time") for name, var in ens.data_vars.items()}


def write_tasks(
    ens: xr.Dataset,
    path: str | os.PathLike[str],
    bounds: Sequence[tuple[int, int]],
    pending: Sequence[int],
    input_digests: Sequence[str],
    score: Callable[..., None] | None = None,
    truth: Callable[[int, int], Any] | None = None,
) -> list[Any]:
    """One delayed task per pending chunk: compute its blocks, write its region, mark it.

    Parameters
    ----------
    ens : xarray.Dataset
        The lazy ensemble, chunked along ``time`` exactly as ``bounds`` (one block along
        every other dimension).
    path : path-like
        The initialised store (absolute, seen by every worker).
    bounds : sequence of (int, int)
        :func:`chunk_bounds` of the run.
    pending : sequence of int
        Indices of the chunks to compute.
    input_digests : sequence of str
        Fingerprint of each chunk's input, recorded in its marker.
    score, truth : callable, optional
        ``score(path, index, start, written, truth(start, stop))`` runs in the task after
        the region is written, before the marker (:func:`xcorrdiff.inference.scoring.score_chunk`).

    Returns
    -------
    list of dask.delayed.Delayed
        Each returns its chunk index when computed.
    """
    blocks: dict[str, np.ndarray] = {}
    axes = time_axes(ens)
    for name, var in ens.data_vars.items():
        delayed = var.data.to_delayed(optimize_graph=False)
        blocks[str(name)] = np.moveaxis(delayed, axes[str(name)], 0).reshape(len(bounds), -1)[:, 0]
    write = dask.delayed(_write_chunk, pure=False)
    token = dask.base.tokenize(os.fspath(path), uuid.uuid4().hex)
    return [
        write(
            os.fspath(path),
            i,
            *bounds[i],
            {name: per_chunk[i] for name, per_chunk in blocks.items()},
            axes,
            input_digests[i],
            score,
            truth(*bounds[i]) if truth is not None else None,
            dask_key_name=f"xcorrdiff-write-{i:06d}-{token}",
        )
        for i in pending
    ]

"""Resumable zarr output: one zarr region per ``time`` chunk, a completion marker per chunk.

A store written by :func:`xcorrdiff.downscale.downscale_to_zarr` looks like::

    OUT.zarr/                            the zarr group: ensemble arrays and coordinates
    OUT.zarr/.xcorrdiff/request.json     the request (model hash, seed, sampler, steps,
                                         members, time stamps, ...), written last when
                                         the store is set up
    OUT.zarr/.xcorrdiff/done/000012      chunk 12 is complete (written atomically after
                                         its region)

The arrays are chunked along ``time`` exactly as the tasks are, so each task writes whole
zarr chunks of its own region and no two tasks touch the same file; a task that dies
between its region and its marker is simply recomputed. The hidden ``.xcorrdiff`` folders are empty zarr
groups, which ``xr.open_zarr`` skips. Stores must be on a file system every worker sees (a local path,
or a shared one such as Lustre/GPFS/NFS on a cluster).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

__all__ = [
    "MARKER_DIR",
    "check_request",
    "chunk_bounds",
    "done_chunks",
    "init_store",
    "read_request",
    "request_record",
    "write_tasks",
]

#: Hidden folder inside the store holding the request and the completion markers.
MARKER_DIR = ".xcorrdiff"
#: Request keys that must match for a store to be resumed (they change the numbers).
_CHECKED = (
    "model_hash",
    "variables",
    "n_ensemble",
    "seed",
    "sampler",
    "num_steps",
    "s_churn",
    "sigma_min",
    "sigma_max",
    "rho",
    "patch_shape",
    "overlap",
    "dtype",
    "time_chunk",
    "n_times",
    "time_digest",
)
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


def request_record(ens: xr.Dataset, *, time_chunk: int, dtype: str) -> dict[str, Any]:
    """The request a store is written for, as JSON-able values.

    Parameters
    ----------
    ens : xarray.Dataset
        The lazy ensemble of :func:`~xcorrdiff.downscale.downscale` (its provenance attrs
        and ``time`` coordinate are read).
    time_chunk : int
        Times per task and per zarr chunk.
    dtype : str
        Network precision of the run.

    Returns
    -------
    dict
        The keys of ``_CHECKED`` plus informative ones (first and last time, library
        version, model id).
    """
    attrs = ens.attrs
    times = ens["time"].values
    return {
        "model_hash": attrs["model_hash"],
        "model_id": attrs["model_id"],
        "variables": sorted(map(str, ens.data_vars)),
        "n_ensemble": int(attrs["n_ensemble"]),
        "seed": int(attrs["seed"]),
        "sampler": attrs["sampler"],
        "num_steps": int(attrs["num_steps"]),
        "s_churn": float(attrs["s_churn"]),
        "sigma_min": float(attrs["sigma_min"]),
        "sigma_max": float(attrs["sigma_max"]),
        "rho": float(attrs["rho"]),
        "patch_shape": attrs["patch_shape"],
        "overlap": int(attrs["overlap"]),
        "dtype": dtype,
        "time_chunk": int(time_chunk),
        "n_times": len(times),
        "time_digest": _time_digest(times),
        "first_time": str(times[0]),
        "last_time": str(times[-1]),
        "xcorrdiff_version": attrs["xcorrdiff_version"],
    }


def read_request(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The request recorded in a store, or ``None`` when it has none."""
    record = Path(path) / MARKER_DIR / "request.json"
    if not record.is_file():
        return None
    result: dict[str, Any] = json.loads(record.read_text())
    return result


def check_request(path: str | os.PathLike[str], request: Mapping[str, Any]) -> None:
    """Refuse to resume a store written for another request.

    Raises
    ------
    ValueError
        The store has no completed setup, or its recorded request differs from ``request``
        in any key that changes the numbers (all differing keys are named).
    """
    stored = read_request(path)
    if stored is None:
        raise ValueError(
            f"store={os.fspath(path)!r} exists but holds no xcorrdiff request record "
            f"({MARKER_DIR}/request.json): it was not written by downscale_to_zarr or its "
            "setup was interrupted; pass overwrite=True to replace it or choose another path"
        )
    diffs = [
        f"{key}: store has {stored.get(key)!r}, this call {request[key]!r}"
        for key in _CHECKED
        if stored.get(key) != request[key]
    ]
    if diffs:
        raise ValueError(
            f"store={os.fspath(path)!r} was written for a different request, so it cannot be "
            f"resumed: {'; '.join(diffs)}. Repeat the original arguments, or pass "
            "overwrite=True to start again (or choose another path)"
        )


def done_chunks(path: str | os.PathLike[str]) -> set[int]:
    """Indices of the time chunks whose region is completely written."""
    folder = Path(path) / MARKER_DIR / "done"
    if not folder.is_dir():
        return set()
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()}


def _atomic_write(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def init_store(
    template: xr.Dataset,
    path: str | os.PathLike[str],
    request: Mapping[str, Any],
    *,
    time_chunk: int,
    overwrite: bool,
) -> None:
    """Write the store's metadata and coordinates (no data), then its request record.

    Parameters
    ----------
    template : xarray.Dataset
        The lazy ensemble; its dask-backed variables are not computed.
    path : path-like
        The store.
    request : mapping
        :func:`request_record` of the run, also stored as the ``xcorrdiff_request`` attr.
    time_chunk : int
        Zarr chunk length along ``time``; every other dimension is one chunk.
    overwrite : bool
        Replace an existing store.
    """
    root = Path(path)
    if overwrite and (root / MARKER_DIR).exists():
        shutil.rmtree(root / MARKER_DIR)
    template = template.copy()
    encoding: dict[Hashable, dict[str, Any]] = {}
    for name, var in template.variables.items():
        var.encoding = {}
        if name in template.data_vars:
            encoding[name] = {
                "chunks": tuple(time_chunk if d == "time" else n for d, n in var.sizes.items())
            }
    template.attrs = {**template.attrs, "xcorrdiff_request": json.dumps(dict(request))}
    template.to_zarr(
        root, mode="w" if overwrite else "w-", compute=False, encoding=encoding, consolidated=False
    )
    # Empty zarr groups, so that zarr sees the folders as part of the hierarchy.
    v3 = (root / "zarr.json").is_file()
    for folder in (root / MARKER_DIR, root / MARKER_DIR / "done"):
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {}} if v3 else None
        name, text = ("zarr.json", json.dumps(meta)) if v3 else (".zgroup", '{"zarr_format": 2}')
        _atomic_write(folder / name, text)
    _atomic_write(root / MARKER_DIR / "request.json", json.dumps(dict(request), indent=1))


def _write_chunk(
    path: str,
    index: int,
    start: int,
    stop: int,
    blocks: dict[str, np.ndarray],
    time_axes: dict[str, int],
) -> int:
    """Write one chunk's blocks into their region, then mark the chunk done."""
    import zarr

    limit = os.environ.get(_FAIL_ENV)
    if limit is not None and len(done_chunks(path)) >= int(limit):
        raise RuntimeError(f"{_FAIL_ENV}={limit}: injected failure before chunk {index}")
    group = zarr.open_group(path, mode="r+")
    for name, block in blocks.items():
        region: list[slice] = [slice(None)] * block.ndim
        region[time_axes[name]] = slice(start, stop)
        array = group[name]
        if not isinstance(array, zarr.Array):
            raise TypeError(f"store={path!r} holds a group at {name!r}; expected an array")
        array[tuple(region)] = block
    marker = {"start": start, "stop": stop}
    _atomic_write(Path(path) / MARKER_DIR / "done" / f"{index:06d}", json.dumps(marker))
    return index


def write_tasks(
    ens: xr.Dataset,
    path: str | os.PathLike[str],
    bounds: Sequence[tuple[int, int]],
    pending: Sequence[int],
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

    Returns
    -------
    list of dask.delayed.Delayed
        Each returns its chunk index when computed.
    """
    blocks: dict[str, np.ndarray] = {}
    axes: dict[str, int] = {}
    for name, var in ens.data_vars.items():
        axis = var.dims.index("time")
        delayed = var.data.to_delayed(optimize_graph=False)
        blocks[str(name)] = np.moveaxis(delayed, axis, 0).reshape(len(bounds), -1)[:, 0]
        axes[str(name)] = axis
    write = dask.delayed(_write_chunk, pure=False)
    token = dask.base.tokenize(os.fspath(path), uuid.uuid4().hex)
    return [
        write(
            os.fspath(path),
            i,
            *bounds[i],
            {name: per_chunk[i] for name, per_chunk in blocks.items()},
            axes,
            dask_key_name=f"xcorrdiff-write-{i:06d}-{token}",
        )
        for i in pending
    ]

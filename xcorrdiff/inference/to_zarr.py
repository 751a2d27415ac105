"""Resumable output: an ensemble written to zarr one time chunk at a time.

:func:`downscale_to_zarr` runs :func:`~xcorrdiff.inference.pipeline.downscale` chunk by
chunk into a store whose request record and completion markers make an interrupted run
resumable (:mod:`xcorrdiff.inference.store`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import torch
import xarray as xr

from xcorrdiff._checks import check_int
from xcorrdiff.data.conventions import standardize
from xcorrdiff.inference.handles import (
    ModelRef,
    resolve_model,
)
from xcorrdiff.inference.ownership import check_store_path, input_sources, remove_own_store
from xcorrdiff.inference.pipeline import downscale
from xcorrdiff.inference.scan import check_scans, grid_digest, scan_input
from xcorrdiff.inference.settings import (
    TIME,
    input_ranges,
    inputs_in_model_units,
    model_of,
    resolve_device_option,
    resolve_dtype,
)
from xcorrdiff.inference.store import (
    check_request,
    chunk_bounds,
    damaged_chunks,
    done_chunks,
    forget_chunks,
    init_store,
    read_markers,
    remove_orphan_markers,
    request_record,
    set_status,
    time_axes,
    write_tasks,
)
from xcorrdiff.model import CorrDiffModel

# --- resumable output to zarr -------------------------------------------------------------


@dataclass(frozen=True)
class ZarrRun:
    """What :func:`downscale_to_zarr` did.

    Attributes
    ----------
    store : str
        Absolute path of the zarr store.
    n_chunks : int
        Time chunks of the request.
    computed : tuple of int
        Chunks computed and written by this call.
    skipped : tuple of int
        Chunks already complete in the store (resumed, verified), not recomputed.
    changed : tuple of int
        Finished chunks recomputed because their input changed (``recompute_changed=True``).
    repaired : tuple of int
        Finished chunks recomputed because their blocks no longer matched their checksums.
    """

    store: str
    n_chunks: int
    computed: tuple[int, ...]
    skipped: tuple[int, ...]
    changed: tuple[int, ...] = ()
    repaired: tuple[int, ...] = ()

    def open(self) -> xr.Dataset:
        """The ensemble in the store, lazily (``xr.open_zarr``)."""
        return xr.open_zarr(self.store, consolidated=False)


def _check_flags(**flags: object) -> None:
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r} is invalid; expected True or False")


def _changed_chunks(
    markers: dict[int, dict[str, Any]], digests: Sequence[str], times: np.ndarray,
    bounds: Sequence[tuple[int, int]], recompute: bool, path: Path,
) -> list[int]:  # fmt: skip
    """Finished chunks whose recorded input fingerprint differs from the new input's."""
    changed = sorted(i for i, m in markers.items() if m.get("input_digest") != digests[i])
    if changed and not recompute:
        first, last = times[bounds[changed[0]][0]], times[bounds[changed[-1]][1] - 1]
        raise ValueError(
            f"the input differs from the one store={os.fspath(path)!r} was written from, at "
            f"{len(changed)} of its {len(markers)} finished time chunks (times {first} to "
            f"{last}); resuming would mix results of two inputs. Pass recompute_changed=True "
            "(CLI: --recompute-changed) to recompute those chunks, overwrite=True to start "
            "again, or write to another store"
        )
    return changed


def _resume_state(
    path: Path, ens: xr.Dataset, request: dict[str, Any], digests: Sequence[str],
    bounds: Sequence[tuple[int, int]], recompute_changed: bool,
) -> tuple[set[int], list[int], list[int]]:  # fmt: skip
    """``(done, changed, damaged)`` of an existing store, after checking it may be resumed."""
    check_request(path, request)
    remove_orphan_markers(path)
    markers = {i: m for i, m in read_markers(path).items() if i < len(bounds)}
    times = ens[TIME].values
    changed = _changed_chunks(markers, digests, times, bounds, recompute_changed, path)
    kept = {i: m for i, m in markers.items() if i not in changed}
    damaged = damaged_chunks(path, kept, time_axes(ens))
    if damaged:
        warnings.warn(
            f"store={os.fspath(path)!r}: {len(damaged)} finished time chunks {damaged[:5]} no "
            "longer match their checksums (damaged on disk); computing them again",
            UserWarning,
            stacklevel=3,
        )
    forget_chunks(path, [*changed, *damaged])
    return set(kept) - set(damaged), changed, damaged


def downscale_to_zarr(
    lr: xr.Dataset,
    store: str | os.PathLike[str],
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
    n_ensemble: int = 32,
    *,
    time_chunk: int = 1,
    resume: bool = True,
    overwrite: bool = False,
    recompute_changed: bool = False,
    check_plausibility: bool = True,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **options: Any,
) -> ZarrRun:
    """Downscale into a zarr store chunk by chunk, resuming where an earlier run stopped.

    Before anything is written, the whole input is read once (one dask computation, a time
    chunk per task): NaN/inf values and implausible values are refused, and each chunk's
    values are fingerprinted. Each ``time`` chunk is then one task: it samples its members,
    writes its own region of the store (whole zarr chunks, so tasks never share a file)
    and marks the chunk done, recording its input fingerprint and the SHA-256 of what it
    wrote. A killed run leaves finished chunks marked; calling again with the same
    arguments computes only the others. The store's ``xcorrdiff_status`` attribute says
    "complete" once every chunk is written, and "incomplete: ..." until then. The tasks
    run on the active dask scheduler: the default threaded one, or a
    ``dask.distributed`` ``Client`` (one model load per worker; with ``device="cuda"`` or
    CUDA auto-detected, each worker pins its own GPU, see
    :func:`xcorrdiff.inference.handles.worker_device`).

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with a ``time`` dimension (see :func:`downscale`);
        numpy- or dask-backed, rechunked to ``time_chunk``.
    store : path-like
        Output zarr store, on a file system every worker sees. Its folder must exist. The
        working directory, its parents, the home directory and folders holding the input
        are refused.
    model, n_ensemble, check_plausibility, device, dtype
        As for :func:`downscale`.
    **options
        The other options of :func:`downscale` (``seed``, ``sampler``, ``num_steps``,
        ``s_churn``, ``patch_shape``, ``overlap``, ``member_batch_size``,
        ``return_mean``).
    time_chunk : int, default 1
        Times per task and per zarr chunk.
    resume : bool, default True
        If ``store`` exists, continue it: check that it was written for the same request
        (model hash, variables, members, seed, sampler, steps, churn, sigmas, patches,
        precision, time chunk, time stamps and input grid), that each finished chunk was
        computed from the same input values (fingerprints) and still holds what was
        written (checksums; damaged chunks are computed again, with a warning), then
        compute only the chunks not done.
    overwrite : bool, default False
        Replace an existing ``store`` (takes precedence over ``resume``). Only a store
        xcorrdiff wrote (holding nothing else) or an empty folder is ever replaced.
    recompute_changed : bool, default False
        When resuming, recompute the finished chunks whose input changed instead of
        refusing to resume.

    Returns
    -------
    ZarrRun
        The store's path, the number of chunks, and which chunks this call computed, found
        done, found changed and repaired; ``run.open()`` opens the ensemble.

    Raises
    ------
    ValueError
        Bad arguments (as for :func:`downscale`); no ``time`` dimension; NaN/inf or
        implausible input values; a refused ``store`` path; ``store`` exists but records
        another request (every differing key is named) or no request, or its finished
        chunks were computed from other input values.
    FileExistsError
        ``store`` exists and both ``resume`` and ``overwrite`` are False, or ``overwrite``
        would replace something xcorrdiff did not write.

    Notes
    -----
    The request is recorded in ``store/.xcorrdiff/request.json`` (and as the JSON attr
    ``xcorrdiff_request``); a chunk is done once ``store/.xcorrdiff/done/<index>`` exists,
    written atomically after its region. A call that fails before any chunk is finished
    removes the store it created. The member batch size and the device are not part of
    the request: resuming on another device gives members that are equally valid but may
    differ in the last bits from those of an uninterrupted run.

    Examples
    --------
    >>> run = xcorrdiff.downscale_to_zarr(lr, "ens.zarr", "model_dir", 8, time_chunk=4)  # doctest: +SKIP
    >>> run.computed, run.skipped  # doctest: +SKIP
    """
    time_chunk = check_int("time_chunk", time_chunk, minimum=1)
    _check_flags(resume=resume, overwrite=overwrite, recompute_changed=recompute_changed)
    if isinstance(lr, xr.Dataset):
        lr = standardize(lr, role="lr")  # ERA5's valid_time, WRF's Time, ...
    if not isinstance(lr, xr.Dataset) or TIME not in lr.dims:
        dims = tuple(lr.dims) if isinstance(lr, xr.Dataset) else type(lr).__name__
        raise ValueError(
            f"lr has dimensions {dims}; downscale_to_zarr needs an xarray.Dataset with a "
            "'time' dimension (use lr.expand_dims('time') for a single time)"
        )
    path = check_store_path(store, protected=input_sources(lr))
    exists = path.exists() or path.is_symlink()
    if exists and not (resume or overwrite):
        raise FileExistsError(
            f"store={os.fspath(store)!r} already exists; pass resume=True to continue it, "
            "overwrite=True to replace it, or choose another path"
        )
    ref = resolve_model(model)  # its files are hashed once, here
    ens = downscale(
        lr.chunk({TIME: time_chunk}), ref, n_ensemble, device=device, dtype=dtype,
        check_plausibility=check_plausibility, **options,
    )  # fmt: skip
    bounds = chunk_bounds(ens.sizes[TIME], time_chunk)
    ens = _chunked_like(ens, bounds, time_chunk)
    resolved = model_of(ref)
    inputs = inputs_in_model_units(lr, resolved)
    scans = scan_input(inputs.chunk({TIME: time_chunk}), bounds)
    check_scans(scans, bounds, ens[TIME].values, input_ranges(resolved, check_plausibility))
    digests = [s.digest for s in scans]
    request = request_record(
        ens, time_chunk=time_chunk, dtype=resolve_dtype(dtype, resolve_device_option(device)),
        input_grid_digest=grid_digest(inputs),
    )  # fmt: skip
    if exists and overwrite:
        remove_own_store(path)
    changed: list[int] = []
    damaged: list[int] = []
    resumed = path.exists()
    if resumed:
        done, changed, damaged = _resume_state(
            path, ens, request, digests, bounds, recompute_changed
        )
    else:
        _create_store(ens, path, request, time_chunk=time_chunk, n_chunks=len(bounds))
        done = set()
    pending = [i for i in range(len(bounds)) if i not in done]
    _write_pending(ens, path, bounds, pending, digests, created=not resumed)
    return ZarrRun(
        store=os.fspath(path), n_chunks=len(bounds), computed=tuple(pending),
        skipped=tuple(sorted(done)), changed=tuple(changed), repaired=tuple(damaged),
    )  # fmt: skip


def _chunked_like(
    ens: xr.Dataset, bounds: Sequence[tuple[int, int]], time_chunk: int
) -> xr.Dataset:
    """``ens`` with one dask chunk per time chunk and one along every other dimension."""
    wanted: dict[Hashable, tuple[int, ...]] = {d: (ens.sizes[d],) for d in ens.dims if d != TIME}
    wanted[TIME] = tuple(b - a for a, b in bounds)
    if dict(ens.chunksizes) != wanted:
        ens = ens.chunk({d: c[0] if d != TIME else time_chunk for d, c in wanted.items()})
    return ens


def _create_store(ens: xr.Dataset, path: Path, request: dict[str, Any], **kw: int) -> None:
    """Create the store; a failure half-way (a full or read-only disk) removes what it made."""
    try:
        init_store(ens, path, request, **kw)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # it did not exist: all of it is ours
        raise


def _write_pending(
    ens: xr.Dataset, path: Path, bounds: Sequence[tuple[int, int]], pending: Sequence[int],
    digests: Sequence[str], *, created: bool,
) -> None:  # fmt: skip
    """Compute and write the pending chunks; mark the store complete at the end.

    If this call created the store and fails before any chunk is finished, the store (ours,
    holding nothing of value) is removed.
    """
    n = len(bounds)
    try:
        if pending:
            set_status(path, n - len(pending), n)
            dask.compute(*write_tasks(ens, path, bounds, pending, digests))
    except BaseException:
        if created and not done_chunks(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
    set_status(path, n, n)

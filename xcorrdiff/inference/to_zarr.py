"""Resumable output: an ensemble written to zarr one time chunk at a time.

:func:`downscale_to_zarr` runs :func:`~xcorrdiff.inference.pipeline.downscale` chunk by
chunk into a store whose request record and completion markers make an interrupted run
resumable (:mod:`xcorrdiff.inference.store`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from xcorrdiff._checks import check_bool, check_int
from xcorrdiff.data.conventions import standardize
from xcorrdiff.inference.ownership import check_store_path, input_sources, remove_own_store
from xcorrdiff.inference.pipeline import diffusion_model, run_request
from xcorrdiff.inference.request import make_request
from xcorrdiff.inference.scan import check_scans, grid_digest, scan_input
from xcorrdiff.inference.scoring import ScorePlan, collect, plan_scoring, score_chunk, truth_blocks
from xcorrdiff.inference.settings import (
    TIME,
    input_ranges,
    inputs_in_model_units,
    prepare_input,
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
    verification : xarray.Dataset or None
        With ``verify_against``: the sums of the scores of the whole store against the
        truth (:func:`xcorrdiff.verify.scores_from_sums` turns them into scores).
    """

    store: str
    n_chunks: int
    computed: tuple[int, ...]
    skipped: tuple[int, ...]
    changed: tuple[int, ...] = ()
    repaired: tuple[int, ...] = ()
    verification: xr.Dataset | None = None

    def open(self) -> xr.Dataset:
        """The ensemble in the store, lazily (``xr.open_zarr``)."""
        return xr.open_zarr(self.store, consolidated=False)


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


def run_to_zarr(
    lr: xr.Dataset,
    store: str | os.PathLike[str],
    model: Any,
    *,
    time_chunk: int,
    resume: bool,
    overwrite: bool,
    recompute_changed: bool,
    options: Mapping[str, Any],
    verify_against: xr.Dataset | None = None,
) -> ZarrRun:
    """:func:`~xcorrdiff.inference.api.downscale_to_zarr` with the request's ``options``."""
    time_chunk = check_int("time_chunk", time_chunk, minimum=1)
    for name, flag in (("resume", resume), ("overwrite", overwrite),
                       ("recompute_changed", recompute_changed)):  # fmt: skip
        check_bool(name, flag)
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
    ref, resolved = diffusion_model(model)  # its files are hashed once, here
    request = make_request(ref, resolved, options)
    lr = prepare_input(lr, resolved, request)
    observations = options.get("observations")
    ens = run_request(lr.chunk({TIME: time_chunk}), ref, resolved, request, observations)
    bounds = chunk_bounds(ens.sizes[TIME], time_chunk)
    ens = _chunked_like(ens, bounds, time_chunk)
    inputs = inputs_in_model_units(lr, resolved)
    scans = scan_input(inputs.chunk({TIME: time_chunk}), bounds)
    ranges = input_ranges(resolved, request.inputs.check_plausibility)
    check_scans(scans, bounds, ens[TIME].values, ranges)
    scoring = plan_scoring(ens, verify_against) if verify_against is not None else None
    digests = [s.digest for s in scans]
    record = request_record(
        ens, request.fingerprint(), time_chunk=time_chunk, input_grid_digest=grid_digest(inputs)
    )
    if exists and overwrite:
        remove_own_store(path)
    changed: list[int] = []
    damaged: list[int] = []
    resumed = path.exists()
    if resumed:
        done, changed, damaged = _resume_state(
            path, ens, record, digests, bounds, recompute_changed
        )
    else:
        _create_store(ens, path, record, time_chunk=time_chunk, n_chunks=len(bounds))
        done = set()
    pending = [i for i in range(len(bounds)) if i not in done]
    _write_pending(ens, path, bounds, pending, digests, created=not resumed, scoring=scoring)
    return ZarrRun(
        store=os.fspath(path), n_chunks=len(bounds), computed=tuple(pending),
        skipped=tuple(sorted(done)), changed=tuple(changed), repaired=tuple(damaged),
        verification=collect(scoring, path, bounds) if scoring is not None else None,
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
    digests: Sequence[str], *, created: bool, scoring: ScorePlan | None = None,
) -> None:  # fmt: skip
    """Compute and write the pending chunks; mark the store complete at the end.

    If this call created the store and fails before any chunk is finished, the store (ours,
    holding nothing of value) is removed.
    """
    n = len(bounds)
    try:
        if pending:
            set_status(path, n - len(pending), n)
            score = truth = None
            if scoring is not None:
                # The tasks get the truth's chunks as arguments, not the whole truth.
                score = functools.partial(score_chunk, dataclasses.replace(scoring, truth=()))
                truth = functools.partial(truth_blocks, scoring)
            dask.compute(*write_tasks(ens, path, bounds, pending, digests, score, truth))
    except BaseException:
        if created and not done_chunks(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
    set_status(path, n, n)

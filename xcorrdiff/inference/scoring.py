"""Scoring a store while it is written: ``downscale_to_zarr(..., verify_against=truth)``.

Each write task, once its chunk's region is written, sums the scores of what it wrote
against the truth's chunk (:func:`xcorrdiff.verify.streaming.chunk_sums`: CRPS, errors,
spread, ranks, histograms, moments, spectra) and saves them beside its marker
(``store/.xcorrdiff/verify/<index>.npz``, atomically, before the marker), so scoring costs
no second pass over the store. :func:`collect` adds the chunks' sums up at the end; a chunk
finished by an earlier run that did not score (or scored against other truth) is read back
from the store and scored then.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.inference.settings import MEMBER, TIME
from xcorrdiff.inference.store import MARKER_DIR
from xcorrdiff.verify.streaming import (
    add_sums,
    add_total,
    chunk_sums,
    load_sums,
    prepare,
    save_sums,
    sums_dataset,
)

__all__ = ["ScorePlan", "collect", "plan_scoring", "score_chunk"]


@dataclass(frozen=True)
class ScorePlan:
    """What each write task scores: the sums' record (:func:`prepare`), the variables, the
    transpose of each written block to (member, time, *point), and the truth's data laid
    out (time, *point), numpy or dask."""

    meta: dict[str, Any]
    names: tuple[str, ...]
    axes: dict[str, tuple[int, ...]]
    truth: tuple[Any, ...]


def _spatial(ens: xr.Dataset, truth: xr.Dataset, names: Sequence[str]) -> Any:
    """The grid's two dims for the spectra, or None (with a warning) without a spacing."""
    from xcorrdiff.verify.spectra import grid_spacing

    dims = (ens[names[0]].dims[-2], ens[names[0]].dims[-1])
    try:
        grid_spacing(truth[names[0]], dims)
    except ValueError as exc:
        warnings.warn(
            f"verify_against: no spectra ({exc}); the other scores are summed", stacklevel=4
        )
        return None
    return dims


def plan_scoring(ens: xr.Dataset, truth: xr.Dataset) -> ScorePlan:
    """Check ``truth`` against the lazy ensemble before anything is written: every member
    variable it holds is scored; it must cover every time and point of the output."""
    if not isinstance(truth, xr.Dataset):
        raise TypeError(
            f"verify_against must be an xarray.Dataset of the truth on the output grid, got "
            f"{type(truth).__name__}"
        )
    names = [str(n) for n, v in ens.data_vars.items() if MEMBER in v.dims and n in truth]
    if not names:
        raise ValueError(
            f"verify_against holds none of the output variables {list(map(str, ens.data_vars))} "
            f"(it has {list(map(str, truth.data_vars))}); rename its variables to the outputs'"
        )
    variables, meta = prepare(
        ens[names], truth[names], member_dim=MEMBER, dim=TIME, edges=None, bins=50,
        spatial_dims=_spatial(ens, truth, names), spacing=None, seed=0,
    )  # fmt: skip
    for name, f, _ in variables:
        short = {d: (ens.sizes[d], f.sizes[d]) for d in f.dims if f.sizes[d] != ens.sizes[d]}
        if short:
            raise ValueError(
                f"verify_against: the truth of {name!r} covers only part of the output "
                f"(dim: (output, shared) sizes {short}); give the truth at every output time "
                "and grid point"
            )
    axes = {str(n): tuple(ens[str(n)].dims.index(d) for d in f.dims) for n, f, _ in variables}
    return ScorePlan(meta, tuple(names), axes, tuple(o.data for _, _, o in variables))


def _sums_path(path: str | os.PathLike[str], index: int) -> Path:
    return Path(path) / MARKER_DIR / "verify" / f"{index:06d}.npz"


def score_chunk(
    plan: ScorePlan, path: str, index: int, start: int, written: dict[str, np.ndarray],
    truth: Sequence[np.ndarray],
) -> None:  # fmt: skip
    """Sum the scores of the blocks a write task just wrote; save them for :func:`collect`."""
    target = _sums_path(path, index)
    target.parent.mkdir(exist_ok=True)
    save_sums(target, _sums(plan, start, written, truth), {**plan.meta, "chunk": index})


def _sums(
    plan: ScorePlan, start: int, written: dict[str, np.ndarray], truth: Sequence[Any]
) -> dict[str, np.ndarray]:
    """Every variable's sums of one chunk: the ensemble's blocks as written, the truth's."""
    arrays: dict[str, np.ndarray] = {}
    for k, name in enumerate(plan.names):
        f = np.transpose(written[name], plan.axes[name]).astype(np.float64)
        o = np.asarray(truth[k], dtype=np.float64)
        add_sums(arrays, k, chunk_sums(plan.meta, k, f, o, start), len(plan.names))
    return arrays


def truth_blocks(plan: ScorePlan, start: int, stop: int) -> tuple[Any, ...]:
    """The truth of the times ``start:stop``, per variable (dask arrays stay lazy)."""
    return tuple(o[start:stop] for o in plan.truth)


def collect(
    plan: ScorePlan, path: str | os.PathLike[str], bounds: Sequence[tuple[int, int]]
) -> xr.Dataset:
    """The sums of every chunk: saved by the write tasks, else scored from the store."""
    total: dict[str, np.ndarray] = {}
    store = xr.open_zarr(path, consolidated=False)
    for index, (start, stop) in enumerate(bounds):
        saved = _sums_path(path, index)
        if saved.is_file():
            arrays, meta = load_sums(saved)
            if meta["signature"] == plan.meta["signature"] and meta["times"] == plan.meta["times"]:
                add_total(total, arrays)
                continue
        written = {n: store[n].isel({TIME: slice(start, stop)}).values for n in plan.names}
        add_total(total, _sums(plan, start, written, truth_blocks(plan, start, stop)))
    meta = {**plan.meta, "starts": [b[0] for b in bounds] + [bounds[-1][1]], "done": len(bounds)}
    return sums_dataset(total, meta, store)

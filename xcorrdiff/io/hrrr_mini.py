"""The HRRR-Mini data set of CorrDiff-Mini: one netCDF file with groups, plus ``stats.json``.

Layout (from PhysicsNeMo's ``datasets/hrrrmini.py``): groups ``input`` (coarse fields
``(time, y, x)``), ``output`` (HR fields ``(time, y, x)``, 64×64) and ``invariant`` (static
fields on a larger domain, ``elev_mean``, ``lsm_mean``); root variables ``time`` and
``coord(time, 2)``: each sample's ``(row, column)`` offset into the invariants. The
upsampling factor is the output width over the input width. The file has no latitude or
longitude.

The reference brings each input onto the output grid with bilinear interpolation between
cell centres, extrapolated linearly at the edges; the reader does the same (lazily), so the
returned ``lr`` lies on the HR grid. The invariants under each sample (its ``coord`` window)
become time-varying inputs when the windows differ, static invariants when they are one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.io.paired import PairedData, fill_units

__all__ = ["read_hrrr_mini"]

_DIMS = ("time", "y", "x")


def _group(path: str, group: str, variables: Sequence[str] | None) -> xr.Dataset:
    ds = xr.open_dataset(path, group=group, chunks={})
    names = list(map(str, ds.data_vars)) if variables is None else list(variables)
    missing = sorted(set(names) - set(map(str, ds.data_vars)))
    if missing:
        raise KeyError(
            f"group {group!r} of {path!r} has no variables {missing}; it has "
            f"{sorted(map(str, ds.data_vars))}"
        )
    return ds[names]


def _upsample(coarse: xr.Dataset, shape: tuple[int, int], factor: int) -> xr.Dataset:
    """Bilinear between cell centres, extrapolated at the edges, onto ``shape``."""
    dims = ["y", "x"]
    centres = {d: (np.arange(coarse.sizes[d]) + 0.5) * factor - 0.5 for d in dims}
    coarse = coarse.assign_coords(centres)
    targets = {d: np.arange(n, dtype=np.float64) for d, n in zip(dims, shape, strict=True)}
    fine = coarse.interp(targets, method="linear", kwargs={"fill_value": "extrapolate"})
    return fine.drop_vars(dims).astype(np.float32)


def _windows(invariants: xr.Dataset, coord: np.ndarray, shape: tuple[int, int]) -> xr.Dataset:
    """The invariants under each sample's window, ``(time, y, x)``."""
    dims = list(invariants[next(iter(invariants.data_vars))].dims)
    rows = xr.DataArray(coord[:, :1] + np.arange(shape[0]), dims=("time", "y"))
    cols = xr.DataArray(coord[:, 1:] + np.arange(shape[1]), dims=("time", "x"))
    return invariants.isel({dims[0]: rows, dims[1]: cols})


def read_hrrr_mini(
    path: str | os.PathLike[str],
    stats_path: str | os.PathLike[str] | None = None,
    *,
    input_variables: Sequence[str] | None = None,
    output_variables: Sequence[str] | None = None,
    invariant_variables: Sequence[str] | None = ("elev_mean", "lsm_mean"),
    units: Mapping[str, str] | None = None,
) -> PairedData:
    """Read the HRRR-Mini netCDF (and its ``stats.json``) as ``(lr, hr, invariants, stats)``.

    Parameters
    ----------
    path : path-like
        The netCDF file with ``input``/``output``/``invariant`` groups.
    stats_path : path-like, optional
        Its ``stats.json``; returned as ``stats``.
    input_variables, output_variables, invariant_variables : sequence of str, optional
        Variables of each group; default every input and output, ``elev_mean`` and
        ``lsm_mean``.
    units : mapping, optional
        Units of variables the reader does not know (see :mod:`xcorrdiff.io.paired`).

    Returns
    -------
    PairedData
        ``lr`` on the HR grid ``(time, y, x)``, ``hr`` ``(time, y, x)``; the invariants as
        static fields when every sample has the same window, else as time-varying inputs
        in ``lr`` (``invariants`` is then None).
    """
    path = os.fspath(path)
    hr = _standard_dims(_group(path, "output", output_variables))
    return _assemble(path, stats_path, hr, input_variables, invariant_variables, units)


def _standard_dims(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its variables' ``(sample, row, column)`` dims named ``(time, y, x)``."""
    dims = ds[next(iter(ds.data_vars))].dims
    if len(dims) != 3:
        raise ValueError(f"expected HRRR-Mini fields on (time, y, x), got dims {dims}")
    return ds.rename({a: b for a, b in zip(dims, _DIMS, strict=True) if a != b})


def _assemble(
    path: str,
    stats_path: str | os.PathLike[str] | None,
    hr: xr.Dataset,
    input_variables: Sequence[str] | None,
    invariant_variables: Sequence[str] | None,
    units: Mapping[str, str] | None,
) -> PairedData:
    with xr.open_dataset(path) as root:
        times = root["time"].values
        coord = np.asarray(root["coord"].values, dtype=np.int64)
    shape = (hr.sizes["y"], hr.sizes["x"])
    coarse = _standard_dims(_group(path, "input", input_variables))
    factor = shape[1] // coarse.sizes["x"]
    lr = _upsample(coarse, shape, factor).assign_coords(time=times)
    hr = hr.assign_coords(time=times)
    invariants = None
    if invariant_variables:
        fields = _group(path, "invariant", invariant_variables).load()
        windows = _windows(fields, coord, shape)
        if (coord == coord[:1]).all():
            invariants = windows.isel(time=0, drop=True)
        else:
            lr = lr.assign(windows.assign_coords(time=times))
    fill_units(lr, hr, *([invariants] if invariants is not None else []), units=units)
    stats: dict[str, Any] | None = None
    if stats_path is not None:
        with open(stats_path, encoding="utf-8") as f:
            stats = json.load(f)
    return PairedData(lr, hr, invariants, stats)

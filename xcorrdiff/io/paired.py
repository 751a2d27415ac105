"""What the readers of published data sets return, and the units they fill in.

The published CorrDiff data sets store bare arrays (no CF ``units``); each reader fills the
units of the variable names it knows (:data:`KNOWN_UNITS`) and leaves the others unset, so
that :func:`~xcorrdiff.train.fit` names them (pass ``units={...}`` to a reader to set them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import xarray as xr

__all__ = ["KNOWN_UNITS", "PairedData", "fill_units"]

#: Units by exact name, then by pattern (first match wins).
KNOWN_UNITS: dict[str, str] = {
    "10u": "m s-1",
    "10v": "m s-1",
    "2t": "K",
    "u10m": "m s-1",
    "v10m": "m s-1",
    "t2m": "K",
    "q2m": "kg kg-1",
    "sp": "Pa",
    "msl": "Pa",
    "tcwv": "kg m-2",
    "precipitable_water": "kg m-2",
    "total_column_water_vapour": "kg m-2",
    "refc": "dBZ",
    "maximum_radar_reflectivity": "dBZ",
    "elev_mean": "m",
    "lsm_mean": "1",
}
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^[uv]\d+$", "m s-1"),
    (r"^t\d+$", "K"),
    (r"^cat_\w+$", "1"),
    (r"^(eastward|northward)_wind", "m s-1"),
    (r"^temperature", "K"),
    (r"^geopotential_height", "m"),
)


def _units_of(name: str) -> str | None:
    if name in KNOWN_UNITS:
        return KNOWN_UNITS[name]
    for pattern, units in _PATTERNS:
        if re.match(pattern, name):
            return units
    return None


def fill_units(*datasets: xr.Dataset, units: Mapping[str, str] | None = None) -> None:
    """Set a ``units`` attribute, in place, on each variable ``units`` names or the reader
    knows (a variable's own ``units`` attribute is kept unless ``units`` names it).

    Raises
    ------
    KeyError
        ``units`` names a variable none of the datasets holds.
    """
    given = dict(units or {})
    present = {str(n) for ds in datasets for n in ds.data_vars}
    unknown = sorted(set(given) - present)
    if unknown:
        raise KeyError(
            f"units={given!r} names {unknown}, which are not variables of the data set; it "
            f"has {sorted(present)}"
        )
    for ds in datasets:
        for name, var in ds.data_vars.items():
            value = given.get(str(name), var.attrs.get("units") or _units_of(str(name)))
            if value is not None:
                var.attrs["units"] = value


class PairedData(NamedTuple):
    """A published data set as :func:`~xcorrdiff.train.fit` takes it.

    Attributes
    ----------
    lr : xarray.Dataset
        Inputs ``(time, ...)``, lazily (dask).
    hr : xarray.Dataset
        Targets ``(time, y, x)`` with latitude/longitude where the data set has them.
    invariants : xarray.Dataset or None
        Static fields on the HR grid.
    stats : dict or None
        The data set's own normalization statistics, ``{"input"|"output"|"invariant":
        {variable: {"mean", "std"}}}`` (informative: ``fit`` computes its own).
    """

    lr: xr.Dataset
    hr: xr.Dataset
    invariants: xr.Dataset | None
    stats: dict[str, Any] | None

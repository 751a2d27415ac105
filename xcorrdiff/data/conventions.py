"""Files as they come: the conventions of ERA5, CMIP6 and WRF/HRRR mapped onto ours.

:func:`standardize` is the first step of training, downscaling and verification. It changes
names and layout only, never values:

- **time**: the dimension holding the times becomes ``time`` — ERA5's ``valid_time``, WRF's
  ``Time`` (indexed by ``XTIME`` when present), any dimension whose coordinate holds
  datetimes or cftime dates, or that CF marks as time (``axis="T"``,
  ``standard_name="time"``). Several candidates raise an error naming them.
- **CF metadata are not data**: grid-mapping variables (``crs``,
  ``lambert_conformal_conic``: a ``grid_mapping_name`` attribute, or named by a variable's
  ``grid_mapping``) become coordinates, so the projection travels to the output; cell
  bounds (``lat_bnds``, ``time_bnds``: named by a ``bounds`` attribute or on a
  ``bnds``/``nv`` dimension) and character variables (WRF's ``Times``) are dropped. This holds
  whether or not the file was opened with ``decode_coords="all"``.
- **forecast steps** on a timedelta dimension named ``step`` (cfgrib), ``forecast_period``,
  ``lead``... become ``lead_time`` (an ``init_time`` dimension becomes ``time`` as above).
- **size-one dimensions** other than time and forecast ``lead_time`` (a CMIP6 ``height`` or
  a single pressure level kept as a dimension) are squeezed into scalar coordinates.
- **latitude/longitude stored per time** (WRF's ``XLAT(Time, south_north, west_east)``)
  become static when they do not move; a moving grid raises an error.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.data.grids import latlon_names
from xcorrdiff.data.lead_time import LEAD

__all__ = ["calendar_of", "check_calendars", "standardize", "time_dim_of"]

TIME = "time"
_TIME_NAMES = ("valid_time", "Time", "time_counter", "t")
_BOUNDS_DIMS = ("bnds", "nv", "bounds", "nbnd", "nbounds", "axis_nbounds", "vertices")


def _is_datetime(var: xr.DataArray) -> bool:
    if np.issubdtype(var.dtype, np.datetime64):
        return True
    if var.dtype == object and var.size:
        first = var.values.ravel()[0]
        return type(first).__module__.startswith("cftime")
    return False


def _says_time(var: xr.DataArray) -> bool:
    attrs = var.attrs
    return attrs.get("axis") == "T" or attrs.get("standard_name") == "time"


def time_dim_of(ds: xr.Dataset | xr.DataArray, *, role: str = "data") -> Hashable | None:
    """The dimension of ``ds`` that holds its times, or None when it has none.

    Raises
    ------
    ValueError
        Several dimensions could be time.
    """
    if TIME in ds.dims:
        return TIME
    found: dict[Hashable, None] = {}
    for coord in ds.coords.values():
        if coord.ndim == 1 and (_is_datetime(coord) or _says_time(coord)):
            found[coord.dims[0]] = None
    for dim in ds.dims:
        if dim in _TIME_NAMES and dim not in found and ds.sizes[dim] >= 1:
            found[dim] = None
    if len(found) > 1:
        raise ValueError(
            f"{role} has several dimensions that could be time: {sorted(map(str, found))}; "
            f"rename the one holding the samples to 'time' (e.g. {role}.rename("
            f"{{{str(next(iter(found)))!r}: 'time'}})) and select or drop the others"
        )
    return next(iter(found), None)


def _time_coordinate(ds: xr.Dataset, dim: Hashable) -> Hashable | None:
    """The coordinate that labels ``dim`` with dates (``XTIME`` for WRF's ``Time``)."""
    if dim in ds.coords and (_is_datetime(ds[dim]) or _says_time(ds[dim])):
        return dim
    for name, coord in ds.coords.items():
        if coord.dims == (dim,) and _is_datetime(coord):
            return name
    return None


def _rename_time(ds: xr.Dataset, role: str) -> xr.Dataset:
    dim = time_dim_of(ds, role=role)
    if dim is None or dim == TIME:
        return ds
    label = _time_coordinate(ds, dim)
    if label is not None and label != dim:
        ds = ds.swap_dims({dim: label})
        dim = label
    if TIME in ds.variables:  # a non-dimension 'time' (ERA5 GRIB's initial time): keep it
        ds = ds.rename_vars({TIME: f"{TIME}_{role}_original"})
    return ds.rename({dim: TIME})


_LEAD_NAMES = ("step", "lead", "leadtime", "lead_time", "forecast_period", "fcst_hour")


def _rename_lead(ds: xr.Dataset) -> xr.Dataset:
    """A forecast-step dimension (cfgrib's ``step``, ``forecast_period``...) with timedelta
    values becomes ``lead_time``."""
    if LEAD in ds.dims:
        return ds
    found = [
        d for d in ds.dims
        if str(d).lower() in _LEAD_NAMES and d in ds.coords
        and np.issubdtype(ds[d].dtype, np.timedelta64)
    ]  # fmt: skip
    return ds.rename({found[0]: LEAD}) if len(found) == 1 else ds


def _referenced(ds: xr.Dataset, attr: str) -> set[str]:
    """Names that variables point to in ``attr`` (``grid_mapping``, ``bounds``)."""
    names: set[str] = set()
    for var in ds.variables.values():
        value = var.attrs.get(attr, var.encoding.get(attr))
        if isinstance(value, str):
            # "crs" or the CF extended form "crs: x y lambert: lat lon"
            names.update(
                w.rstrip(":") for w in value.split() if w.endswith(":") or ":" not in value
            )
    return {n for n in names if n in ds.variables}


def _is_bounds(name: Hashable, var: xr.Variable, referenced: set[str]) -> bool:
    return (
        str(name) in referenced
        or any(d in _BOUNDS_DIMS for d in var.dims)
        or (str(name).endswith(("_bnds", "_bounds")) and var.ndim >= 1 and var.shape[-1] == 2)
    )


def _metadata(ds: xr.Dataset) -> tuple[list[Hashable], list[Hashable]]:
    """``(grid mappings, variables to drop)`` among the data variables and coordinates."""
    mappings = _referenced(ds, "grid_mapping")
    bounds = _referenced(ds, "bounds") | _referenced(ds, "climatology")
    keep, drop = [], []
    for name, var in ds.variables.items():
        if name in ds.dims:
            continue
        if str(name) in mappings or "grid_mapping_name" in var.attrs:
            keep.append(name)
        elif _is_bounds(name, var, bounds) or var.dtype.kind in "SU":
            drop.append(name)
    return [n for n in keep if n in ds.data_vars], drop


def _static_latlon(ds: xr.Dataset, role: str) -> xr.Dataset:
    """Latitude/longitude coordinates stored per time made static (WRF's ``XLAT``)."""
    try:
        names = latlon_names(ds, role=role)
    except ValueError:
        return ds
    for name in names:
        coord = ds[name]
        if TIME not in coord.dims:
            continue
        values = np.asarray(coord.values, dtype=np.float64)
        axis = coord.dims.index(TIME)
        first = np.take(values, [0], axis=axis)
        if not np.allclose(values, first, equal_nan=True):
            raise ValueError(
                f"{role} coordinate {str(name)!r} changes along time (a moving grid); "
                "xcorrdiff needs one grid for all times: select the times of one grid"
            )
        ds = ds.assign_coords({name: coord.isel({TIME: 0}, drop=True)})
    return ds


def standardize(ds: xr.Dataset, *, role: str = "data") -> xr.Dataset:
    """``ds`` in xcorrdiff's conventions; see the module docstring.

    Parameters
    ----------
    ds : xarray.Dataset
        Data as opened from its file (ERA5, CMIP6, WRF/HRRR, ...).
    role : str
        What ``ds`` is (``"lr"``, ``"hr"``, ``"truth"``), named in error messages.

    Returns
    -------
    xarray.Dataset
        The same values, lazily: time on ``time``, CF metadata as coordinates or dropped.

    Raises
    ------
    ValueError
        Several dimensions could be time, or latitude/longitude move along time.
    """
    if not isinstance(ds, xr.Dataset):
        return ds
    mappings, drop = _metadata(ds)
    ds = ds.set_coords(mappings).drop_vars(drop)
    ds = _rename_time(ds, role)
    ds = _rename_lead(ds)
    squeeze = [
        d for d, n in ds.sizes.items() if n == 1 and d not in (TIME, LEAD) and _extra_dim(ds, d)
    ]
    if squeeze:
        ds = ds.squeeze(squeeze)
    return _static_latlon(ds, role)


def _extra_dim(ds: xr.Dataset, dim: Hashable) -> bool:
    """Whether ``dim`` is a third dimension of some data variable besides time and space."""
    return any(
        dim in var.dims and var.ndim > 2 + (TIME in var.dims) for var in ds.data_vars.values()
    )


def calendar_of(ds: xr.Dataset | xr.DataArray) -> str | None:
    """The calendar of ``ds``'s ``time`` (``"proleptic_gregorian"`` for datetime64)."""
    if TIME not in ds.coords or ds[TIME].size == 0:
        return None
    try:
        return str(ds[TIME].dt.calendar)
    except (AttributeError, TypeError):
        return None


def check_calendars(**datasets: Any) -> None:
    """Raise when the named datasets' times use different calendars.

    Raises
    ------
    ValueError
        Naming each dataset's calendar and the conversion to apply.
    """
    calendars = {name: calendar_of(ds) for name, ds in datasets.items()}
    known = {name: c for name, c in calendars.items() if c is not None}
    if len(set(known.values())) > 1:
        (first, calendar), *_ = known.items()
        others = ", ".join(f"{name} uses {c!r}" for name, c in known.items() if name != first)
        raise ValueError(
            f"mixed calendars: {first} uses {calendar!r}, {others}; convert to one calendar "
            f"first, e.g. other = other.convert_calendar({calendar!r}, align_on='year')"
        )

"""Grids for regridding: finding latitude/longitude, describing source and target grids,
and checking that a target lies within its source.

Shared by the backends of :mod:`xcorrdiff.data.regrid`. Latitude and longitude are found by
name (``lat``/``latitude``, ``lon``/``longitude``, WRF's ``XLAT``/``XLONG``, NEMO's
``nav_lat``/``nav_lon``) or by CF attributes (``standard_name``, ``units`` such as
``degrees_north``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from cf_xarray.criteria import coordinate_criteria

__all__ = [
    "SourceGrid",
    "TargetGrid",
    "bbox_text",
    "cell_bounds",
    "check_inside",
    "latlon_names",
    "prepare_source",
    "prepare_target",
    "target_cells_inside",
    "target_points_inside",
    "wrap_longitude",
]

_NAMES = {
    "latitude": ("lat", "latitude", "xlat", "xlat_m", "nav_lat"),
    "longitude": ("lon", "longitude", "xlong", "xlong_m", "nav_lon"),
}
_CF_UNITS = {"latitude": "degrees_north", "longitude": "degrees_east"}
TOLERANCE_DEG = 1e-6

# --- finding latitude and longitude ------------------------------------------------------


def _is_axis(name: Hashable, var: xr.DataArray, axis: str) -> bool:
    """Whether ``var`` is a latitude/longitude by name or CF attributes."""
    if str(name).lower() in _NAMES[axis]:
        return True
    return any(
        str(var.attrs.get(attr, "")) in values
        for attr, values in coordinate_criteria[axis].items()
        if attr != "long_name"
    )


def latlon_names(obj: xr.Dataset | xr.DataArray, *, role: str = "obj") -> tuple[Hashable, Hashable]:
    """Return the names of the latitude and longitude variables of ``obj``.

    Coordinates and (for a Dataset) data variables are searched. A variable is a
    latitude if it is named ``lat``/``latitude`` (any case) or has CF attributes saying so
    (``standard_name="latitude"``, ``units="degrees_north"`` and spellings, or
    ``_CoordinateAxisType="Lat"``), and likewise for longitude.

    Parameters
    ----------
    obj
        A Dataset or DataArray carrying a grid.
    role
        What ``obj`` is (``"source"``, ``"target"``), named in error messages.

    Returns
    -------
    tuple
        ``(latitude_name, longitude_name)``.

    Raises
    ------
    ValueError
        If no latitude or longitude is found, or several candidates are found and none is
        named ``lat``/``latitude`` (``lon``/``longitude``).
    """
    candidates: dict[Hashable, xr.DataArray] = dict(obj.coords)
    if isinstance(obj, xr.Dataset):
        candidates.update(obj.data_vars)
    names: list[Hashable] = []
    for axis in ("latitude", "longitude"):
        found = [name for name, var in candidates.items() if _is_axis(name, var, axis)]
        if len(found) > 1:
            by_name = [name for name in found if str(name).lower() in _NAMES[axis]]
            found = by_name if len(by_name) == 1 else found
        if not found:
            raise ValueError(
                f"{role} has no {axis} coordinate; expected one named "
                f"{' or '.join(repr(n) for n in _NAMES[axis])} or with CF attributes "
                f"(standard_name={axis!r}, units={_CF_UNITS[axis]!r}); "
                f"found coordinates {sorted(map(str, obj.coords))}"
            )
        if len(found) > 1:
            raise ValueError(
                f"{role} has several {axis} candidates {sorted(map(str, found))}; expected "
                f"one. Rename the one to use to {_NAMES[axis][0]!r} or drop the others"
            )
        names.append(found[0])
    return names[0], names[1]


# --- grid descriptions -----------------------------------------------------------------


@dataclass(frozen=True)
class SourceGrid:
    """A rectilinear source grid, made increasing in both axes (and wrapped if global)."""

    obj: xr.Dataset | xr.DataArray
    lat: Hashable
    lon: Hashable
    lat_values: np.ndarray
    lon_values: np.ndarray
    is_global_lon: bool


@dataclass(frozen=True)
class TargetGrid:
    """A target grid: rectilinear (lat and lon on their own dims) or pointwise (same dims)."""

    lat: xr.DataArray
    lon: xr.DataArray
    coords: dict[Hashable, xr.DataArray]

    @property
    def is_rectilinear(self) -> bool:
        return self.lat.ndim == 1 and self.lon.ndim == 1 and self.lat.dims != self.lon.dims


def bbox_text(lat: np.ndarray, lon: np.ndarray) -> str:
    return (
        f"lat [{np.nanmin(lat):.4f}, {np.nanmax(lat):.4f}], "
        f"lon [{np.nanmin(lon):.4f}, {np.nanmax(lon):.4f}]"
    )


def _strictly_monotonic(values: np.ndarray) -> int:
    """Return 1 if strictly increasing, -1 if strictly decreasing, 0 otherwise."""
    if values.size < 2:
        return 0
    steps = np.diff(values)
    if np.all(steps > 0):
        return 1
    if np.all(steps < 0):
        return -1
    return 0


def prepare_source(source: xr.Dataset | xr.DataArray) -> SourceGrid:
    lat, lon = latlon_names(source, role="source")
    obj: Any = source
    if isinstance(obj, xr.Dataset):
        obj = obj.set_coords([name for name in (lat, lon) if name in obj.data_vars])
    for name in (lat, lon):
        coord = obj[name]
        if coord.ndim != 1:
            raise ValueError(
                f"source coordinate {name!r} has dims {coord.dims}; expected a rectilinear "
                "source with 1-D latitude and longitude for backend='xesmf'; leave backend=None "
                "to regrid a curvilinear source by triangulation"
            )
        (dim,) = coord.dims
        if dim != name:
            obj = obj.swap_dims({dim: name})
    if obj[lat].dims == obj[lon].dims:
        raise ValueError(
            f"source latitude {lat!r} and longitude {lon!r} share the dimension "
            f"{obj[lat].dims}; expected a rectilinear grid with one dimension each"
        )
    for name, axis in ((lat, "latitude"), (lon, "longitude")):
        values = np.asarray(obj[name].values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"source {axis} {name!r} contains NaN or infinite values")
        if values.size < 2:
            raise ValueError(
                f"source {axis} {name!r} has {values.size} point(s); expected at least 2 "
                "to interpolate between"
            )
        direction = _strictly_monotonic(values)
        if direction == 0:
            raise ValueError(
                f"source {axis} {name!r} is not strictly monotonic (values "
                f"{values[:3].tolist()}...{values[-3:].tolist()}, size {values.size}); "
                f"expected increasing or decreasing values; sort it with "
                f"source.sortby({name!r}) and drop duplicates"
            )
        if direction < 0:
            obj = obj.isel({name: slice(None, None, -1)})

    lat_values = np.asarray(obj[lat].values, dtype=np.float64)
    lon_values = np.asarray(obj[lon].values, dtype=np.float64)
    if lat_values.min() < -90 - TOLERANCE_DEG or lat_values.max() > 90 + TOLERANCE_DEG:
        raise ValueError(
            f"source latitude {lat!r} spans [{lat_values.min()}, {lat_values.max()}]; "
            "expected degrees within [-90, 90]"
        )
    step = float(np.median(np.diff(lon_values)))
    is_global = bool(lon_values[-1] - lon_values[0] + step >= 360 - TOLERANCE_DEG)
    if is_global:
        # Wrap one column on each side so that targets between the last and first
        # columns (and across the seam) interpolate instead of falling outside.
        obj = obj.pad({lon: (1, 1)}, mode="wrap")
        lon_values = np.concatenate([[lon_values[-1] - 360.0], lon_values, [lon_values[0] + 360.0]])
        obj = obj.assign_coords({lon: (lon, lon_values, source[lon].attrs)})
    return SourceGrid(obj, lat, lon, lat_values, lon_values, is_global)


def prepare_target(target: xr.Dataset | xr.DataArray) -> TargetGrid:
    if not isinstance(target, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"target must be an xarray Dataset or DataArray carrying the grid, got "
            f"{type(target).__name__}"
        )
    lat_name, lon_name = latlon_names(target, role="target")
    lat, lon = target[lat_name], target[lon_name]
    rectilinear = lat.ndim == 1 and lon.ndim == 1 and lat.dims != lon.dims
    if not rectilinear and lat.dims != lon.dims:
        raise ValueError(
            f"target latitude {lat_name!r} has dims {lat.dims} and longitude {lon_name!r} "
            f"has dims {lon.dims}; expected 1-D coordinates on their own dims (rectilinear) "
            "or both on the same dims, e.g. ('y', 'x') (curvilinear)"
        )
    for name, values in ((lat_name, lat.values), (lon_name, lon.values)):
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"target coordinate {name!r} contains NaN or infinite values")
        if rectilinear and values.size > 1 and _strictly_monotonic(values) == 0:
            raise ValueError(
                f"target coordinate {name!r} of a rectilinear grid is not strictly "
                f"monotonic (size {values.size}); expected increasing or decreasing values. "
                "For a grid crossing the 0/360 seam use longitudes in -180..180"
            )
    if np.abs(lat.values).max() > 90 + TOLERANCE_DEG:
        raise ValueError(
            f"target latitude {lat_name!r} has values beyond ±90 (max |lat| "
            f"{np.abs(lat.values).max()}); expected degrees_north"
        )
    grid_dims = {*lat.dims, *lon.dims}
    coords = {
        name: coord.variable
        for name, coord in target.coords.items()
        if coord.dims and set(coord.dims) <= grid_dims
    }
    for name, var in ((lat_name, lat), (lon_name, lon)):
        coords.setdefault(name, var.variable)
    return TargetGrid(
        lat=lat.rename(None).reset_coords(drop=True),
        lon=lon.rename(None).reset_coords(drop=True),
        coords={name: xr.DataArray(var) for name, var in coords.items()},
    )


def wrap_longitude(values: np.ndarray, start: float) -> np.ndarray:
    """Map longitudes into ``[start, start + 360)`` (with a small tolerance below start)."""
    return start + np.mod(values - start + TOLERANCE_DEG, 360.0) - TOLERANCE_DEG


def cell_bounds(centers: np.ndarray) -> np.ndarray:
    """Outer bounds of cells around increasing or decreasing centers (midpoints)."""
    if centers.size == 1:
        return np.array([centers[0], centers[0]])
    mid = (centers[:-1] + centers[1:]) / 2
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def check_inside(
    source: SourceGrid,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    what: str,
    lat_range: tuple[float, float],
    lon_range: tuple[float, float],
) -> None:
    outside = (
        (lat < lat_range[0] - TOLERANCE_DEG)
        | (lat > lat_range[1] + TOLERANCE_DEG)
        | (lon < lon_range[0] - TOLERANCE_DEG)
        | (lon > lon_range[1] + TOLERANCE_DEG)
    )
    if np.any(outside):
        source_box = (
            f"lat [{lat_range[0]:.4f}, {lat_range[1]:.4f}], "
            f"lon [{lon_range[0]:.4f}, {lon_range[1]:.4f}]"
        )
        raise ValueError(
            f"target grid extends outside the source domain: {int(outside.sum())} of "
            f"{outside.size} target {what} lie outside. Target {bbox_text(lat, lon)}; "
            f"source {source_box} (longitudes in the source's convention"
            f"{', global' if source.is_global_lon else ''}). Crop the target to the source "
            "domain or supply a larger source"
        )


def target_points_inside(source: SourceGrid, target: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    """Target latitudes and longitudes (in the source's convention), checked and clipped."""
    lat = np.asarray(target.lat.values, dtype=np.float64)
    lon = wrap_longitude(np.asarray(target.lon.values, dtype=np.float64), source.lon_values[0])
    lat_range = (float(source.lat_values[0]), float(source.lat_values[-1]))
    lon_range = (float(source.lon_values[0]), float(source.lon_values[-1]))
    if target.is_rectilinear:
        lat_check, lon_check = np.meshgrid(lat, lon, indexing="ij")
    else:
        lat_check, lon_check = lat, lon
    check_inside(
        source, lat_check, lon_check, what="points", lat_range=lat_range, lon_range=lon_range
    )
    # Points within the tolerance of an edge would interpolate to NaN: clip them onto it.
    return np.clip(lat, *lat_range), np.clip(lon, *lon_range)


def target_cells_inside(source: SourceGrid, target: TargetGrid) -> None:
    """Check that every rectilinear target cell lies within the source cells."""
    src_lat_bounds = cell_bounds(source.lat_values)
    src_lon_bounds = cell_bounds(source.lon_values)
    lat_bounds = cell_bounds(np.sort(np.asarray(target.lat.values, dtype=np.float64)))
    lon_bounds = wrap_longitude(
        cell_bounds(np.sort(np.asarray(target.lon.values, dtype=np.float64))),
        src_lon_bounds[0],
    )
    lat_check, lon_check = np.meshgrid(lat_bounds, lon_bounds, indexing="ij")
    check_inside(
        source,
        lat_check,
        lon_check,
        what="cell edges",
        lat_range=(float(src_lat_bounds[0]), float(src_lat_bounds[-1])),
        lon_range=(float(src_lon_bounds[0]), float(src_lon_bounds[-1])),
    )

"""Grids: finding latitude/longitude, when two grids are one, describing source and target
grids for regridding, and checking that a target lies within its source.

Latitude and longitude are found by name (``lat``/``latitude``, ``lon``/``longitude``, WRF's
``XLAT``/``XLONG``, NEMO's ``nav_lat``/``nav_lon``) or by CF attributes (``standard_name``,
``units`` such as ``degrees_north``).

**One grid, one rule.** Coordinates computed on two machines (another BLAS, no AVX-512) or
read from two files differ in their last bits. Two grids are the same grid when they have the
same shape and every coordinate they share agrees within :func:`coordinate_tolerance`: 16
units in the last place of the coarser dtype at the coordinates' magnitude, or a 10⁻⁵
fraction of the grid spacing, whichever is larger. Every place that puts model output next to
user data asks :func:`grid_mismatch` (or :func:`same_grid`) and then carries the model's
coordinates; a grid that differs by more is regridded or refused with both values shown,
never labelled as the model's grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from cf_xarray.criteria import coordinate_criteria

T = TypeVar("T", xr.Dataset, xr.DataArray)

__all__ = [
    "EDGE_HINT",
    "SourceGrid",
    "TargetGrid",
    "bbox_text",
    "cell_bounds",
    "check_inside",
    "check_same_grid",
    "coordinate_mismatch",
    "coordinate_period",
    "coordinate_tolerance",
    "coordinates_agree",
    "grid_mismatch",
    "latlon_names",
    "prepare_source",
    "prepare_target",
    "same_grid",
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
#: Coordinates agreeing within this many units in the last place (of the coarser dtype, at
#: the coordinates' magnitude) are equal ...
ULPS = 16
#: ... and so are coordinates agreeing within this fraction of the grid spacing.
SPACING_FRACTION = 1e-5
#: How to regrid onto a target whose outer ring the source's cell centres stop short of.
EDGE_HINT = (
    ", or pass edge='nearest' to regrid() to take the target points within one source "
    "cell of the source's edge from the edge (before downscaling: "
    "lr.corrdiff.regrid(model.grid, edge='nearest'), then downscale that)"
)

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


# --- one grid, one rule ------------------------------------------------------------------


def _spacing(values: np.ndarray) -> float:
    """The grid spacing of ``values``: the largest median step along any of its axes."""
    steps = [
        float(np.nanmedian(np.abs(np.diff(values, axis=axis))))
        for axis in range(values.ndim)
        if values.shape[axis] > 1
    ]
    return max(steps, default=0.0)


def coordinate_tolerance(a: Any, b: Any) -> float:
    """How far apart two versions of one coordinate may lie and still be the same.

    ``ULPS`` (16) units in the last place of the coarser of the two dtypes (integers count
    as float64) at the larger magnitude, or ``SPACING_FRACTION`` (1e-5) of the grid spacing
    of ``a``, whichever is larger. The first absorbs rounding (another CPU, a float32 file);
    the second, coordinates computed another way (a projection library, ``linspace`` versus
    ``arange``), while staying far below any real shift of the grid.
    """
    a, b = np.asarray(a), np.asarray(b)
    floats = [x.dtype for x in (a, b) if np.issubdtype(x.dtype, np.floating)]
    eps = max((float(np.finfo(d).eps) for d in floats), default=float(np.finfo(np.float64).eps))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = max(float(np.nanmax(np.abs(x), initial=0.0)) for x in (a64, b64))
    return max(ULPS * eps * scale, SPACING_FRACTION * _spacing(a64))


def _difference(a: np.ndarray, b: np.ndarray, period: float | None) -> np.ndarray:
    diff = a.astype(np.float64) - b.astype(np.float64)
    if period is not None:  # longitudes: 350 and -10 are one meridian
        diff = np.mod(diff + period / 2, period) - period / 2
    return np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(diff))


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def coordinates_agree(a: Any, b: Any, *, period: float | None = None) -> bool:
    """Whether two coordinate arrays are one coordinate by the rule of this module.

    Same shape, and every value within :func:`coordinate_tolerance` (``period``: a
    longitude's 360, so that the two sides of the seam agree); non-numeric coordinates must
    be equal.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if not (_numeric(a) and _numeric(b)):
        return bool(np.array_equal(a, b))
    return bool(np.all(_difference(a, b, period) <= coordinate_tolerance(a, b)))


def _pairs(
    obj: xr.Dataset | xr.DataArray, grid: xr.Dataset, dims: Sequence[Hashable]
) -> list[tuple[Hashable, Hashable, float | None]]:
    """``(name in obj, name in grid, period)`` of the grid's coordinates that obj has too:
    latitude, longitude and the coordinates of ``dims`` (fields stored as coordinates, such
    as orography, are data, not grid)."""
    pairs: list[tuple[Hashable, Hashable, float | None]] = []
    with contextlib.suppress(ValueError):  # no latitude/longitude on one side: not compared
        mine, theirs = latlon_names(obj, role="obj"), latlon_names(grid, role="grid")
        pairs += [(mine[0], theirs[0], None), (mine[1], theirs[1], 360.0)]
    taken = {name for _, name, _ in pairs}
    # The dimensions' own coordinates (projection x/y, indices...).
    pairs += [(d, d, None) for d in dims if d in grid.coords and d in obj.coords and d not in taken]
    return pairs


def coordinate_period(name: Hashable, var: xr.DataArray) -> float | None:
    """360 for a longitude (by name or CF attributes), else None."""
    return 360.0 if _is_axis(name, var, "longitude") else None


def coordinate_mismatch(
    a: Any, b: Any, *, names: tuple[Hashable, Hashable], period: float | None = None
) -> str | None:
    """Why coordinate ``a`` (named ``names[0]``) is not ``b`` (``names[1]``) by the rule of
    this module, with the two values where they differ most; None when they agree."""
    a, b = np.asarray(a), np.asarray(b)
    if coordinates_agree(a, b, period=period):
        return None
    if a.shape != b.shape or not (_numeric(a) and _numeric(b)):
        return f"its {names[0]!r} {a.shape} differs from the grid's {names[1]!r} {b.shape}"
    diff = _difference(a, b, period)
    where = np.unravel_index(int(np.nanargmax(diff)), diff.shape)
    return (
        f"its {names[0]!r} differs from the grid's {names[1]!r} by up to "
        f"{float(diff[where]):.6g} (at index {tuple(int(i) for i in where)}: "
        f"{a[where].item()!r} versus {b[where].item()!r}; tolerance {coordinate_tolerance(a, b):.3g})"
    )


def grid_mismatch(
    obj: xr.Dataset | xr.DataArray, grid: xr.Dataset, dims: Sequence[Hashable]
) -> str | None:
    """Why ``obj`` is not on ``grid``, or None when it is, by the rule of this module.

    Compared: the sizes of ``dims``, then latitude and longitude (found by name or CF
    attributes on both sides, longitudes modulo 360) and the coordinates of ``dims``, where
    ``obj`` has them too. A coordinate ``obj`` lacks is not compared.

    Returns
    -------
    str or None
        The first difference, with the two values where they differ most.
    """
    sizes = {d: obj.sizes.get(d) for d in dims}
    if any(sizes[d] != grid.sizes[d] for d in dims):
        return f"its sizes {sizes} are not the grid's {dict(grid.sizes)}"
    for mine, theirs, period in _pairs(obj, grid, dims):
        if set(obj[mine].dims) != set(grid[theirs].dims):
            return f"its {mine!r} lies on {obj[mine].dims}, the grid's {theirs!r} on {grid[theirs].dims}"
        a = obj[mine].transpose(*grid[theirs].dims).values
        found = coordinate_mismatch(a, grid[theirs].values, names=(mine, theirs), period=period)
        if found is not None:
            return found
    return None


def same_grid(obj: xr.Dataset | xr.DataArray, grid: xr.Dataset, dims: Sequence[Hashable]) -> bool:
    """Whether ``obj`` lies on ``grid`` (see :func:`grid_mismatch`)."""
    return grid_mismatch(obj, grid, dims) is None


def check_same_grid(
    obj: T,
    grid: xr.Dataset,
    dims: Sequence[Hashable],
    *,
    role: str,
    hint: str,
    grid_role: str = "the model's grid",
) -> T:
    """``obj`` labelled with ``grid``'s coordinates, when it lies on that grid.

    Raises
    ------
    ValueError
        Naming ``role`` and ``grid_role``, the coordinate that differs with its two values,
        and ``hint``.
    """
    mismatch = grid_mismatch(obj, grid, dims)
    if mismatch is not None:
        raise ValueError(f"{role} is not on {grid_role}: {mismatch}; {hint}")
    return obj.assign_coords(
        {name: coord for name, coord in grid.coords.items() if set(coord.dims) <= set(obj.dims)}
    )


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
            f"domain or supply a larger source{EDGE_HINT if what == 'points' else ''}"
        )


def target_points_inside(
    source: SourceGrid, target: TargetGrid, edge: str = "raise"
) -> tuple[np.ndarray, np.ndarray]:
    """Target latitudes and longitudes (in the source's convention), checked and clipped.

    ``edge="nearest"`` accepts points up to one source cell beyond the source's edge; they
    are clipped onto it, so they take the values of the edge (the nearest source points
    along the axis they leave it by).
    """
    lat_range = (float(source.lat_values[0]), float(source.lat_values[-1]))
    lon_range = (float(source.lon_values[0]), float(source.lon_values[-1]))
    dlat, dlon = (
        (_spacing(source.lat_values), _spacing(source.lon_values)) if edge == "nearest" else (0, 0)
    )
    lat_check = (lat_range[0] - dlat, lat_range[1] + dlat)
    lon_check = (lon_range[0] - dlon, lon_range[1] + dlon)
    lat = np.asarray(target.lat.values, dtype=np.float64)
    lon = wrap_longitude(np.asarray(target.lon.values, dtype=np.float64), lon_check[0])
    if target.is_rectilinear:
        lat_grid, lon_grid = np.meshgrid(lat, lon, indexing="ij")
    else:
        lat_grid, lon_grid = lat, lon
    check_inside(
        source, lat_grid, lon_grid, what="points", lat_range=lat_check, lon_range=lon_check
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

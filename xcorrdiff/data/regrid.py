"""Regridding onto a model's high-resolution grid.

One entry point, :func:`regrid`, three backends:

``"xarray"``
    :meth:`xarray.Dataset.interp` for ``method="bilinear"`` or ``"nearest"``. Any target:
    a rectilinear grid (1-D ``lat`` and ``lon`` on their own dimensions) uses orthogonal
    interpolation; a curvilinear grid (2-D ``lat``/``lon`` on ``(y, x)``, e.g. Lambert
    conformal) or a list of points uses vectorised interpolation with DataArray indexers.
    Lazy on dask.
``"xarray-regrid"``
    :mod:`xarray_regrid`'s first-order conservative scheme for ``method="conservative"``;
    rectilinear targets only. Its weights are area-weighted on the sphere (source cells
    weighted by ``sin(lat_north) - sin(lat_south)``), so area-weighted means are kept.
``"xesmf"``
    Optional; used only when asked for and :mod:`xesmf` (with ESMF) imports.

The source must be rectilinear (1-D latitude and longitude, each monotonic). Latitude and
longitude are found by name (``lat``/``latitude``, ``lon``/``longitude``) or by CF
attributes (``standard_name``, ``units`` such as ``degrees_north``), on the source and on
the target alike. Longitudes may use 0..360 on one side and -180..180 on the other; a
global source wraps around. Target points outside the source domain raise an error
instead of turning into NaN.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal, get_args, overload

import numpy as np
import xarray as xr
from cf_xarray.criteria import coordinate_criteria

__all__ = ["RegridBackend", "RegridMethod", "latlon_names", "regrid"]

RegridMethod = Literal["bilinear", "nearest", "conservative"]
RegridBackend = Literal["xarray", "xarray-regrid", "xesmf"]

_METHODS: tuple[str, ...] = get_args(RegridMethod)
_BACKENDS: tuple[str, ...] = get_args(RegridBackend)
_BACKEND_METHODS: dict[str, tuple[str, ...]] = {
    "xarray": ("bilinear", "nearest"),
    "xarray-regrid": ("conservative",),
    "xesmf": ("bilinear", "nearest", "conservative"),
}
_NAMES = {"latitude": ("lat", "latitude"), "longitude": ("lon", "longitude")}
_CF_UNITS = {"latitude": "degrees_north", "longitude": "degrees_east"}
_TOLERANCE_DEG = 1e-6

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
class _SourceGrid:
    """A rectilinear source grid, made increasing in both axes (and wrapped if global)."""

    obj: xr.Dataset | xr.DataArray
    lat: Hashable
    lon: Hashable
    lat_values: np.ndarray
    lon_values: np.ndarray
    is_global_lon: bool


@dataclass(frozen=True)
class _TargetGrid:
    """A target grid: rectilinear (lat and lon on their own dims) or pointwise (same dims)."""

    lat: xr.DataArray
    lon: xr.DataArray
    coords: dict[Hashable, xr.DataArray]

    @property
    def is_rectilinear(self) -> bool:
        return self.lat.ndim == 1 and self.lon.ndim == 1 and self.lat.dims != self.lon.dims


def _bbox_text(lat: np.ndarray, lon: np.ndarray) -> str:
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


def _prepare_source(source: xr.Dataset | xr.DataArray) -> _SourceGrid:
    lat, lon = latlon_names(source, role="source")
    obj: Any = source
    if isinstance(obj, xr.Dataset):
        obj = obj.set_coords([name for name in (lat, lon) if name in obj.data_vars])
    for name in (lat, lon):
        coord = obj[name]
        if coord.ndim != 1:
            raise ValueError(
                f"source coordinate {name!r} has dims {coord.dims}; expected a rectilinear "
                "source with 1-D latitude and longitude. Regrid curvilinear sources with "
                "xesmf.Regridder directly"
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
    if lat_values.min() < -90 - _TOLERANCE_DEG or lat_values.max() > 90 + _TOLERANCE_DEG:
        raise ValueError(
            f"source latitude {lat!r} spans [{lat_values.min()}, {lat_values.max()}]; "
            "expected degrees within [-90, 90]"
        )
    step = float(np.median(np.diff(lon_values)))
    is_global = bool(lon_values[-1] - lon_values[0] + step >= 360 - _TOLERANCE_DEG)
    if is_global:
        # Wrap one column on each side so that targets between the last and first
        # columns (and across the seam) interpolate instead of falling outside.
        obj = obj.pad({lon: (1, 1)}, mode="wrap")
        lon_values = np.concatenate([[lon_values[-1] - 360.0], lon_values, [lon_values[0] + 360.0]])
        obj = obj.assign_coords({lon: (lon, lon_values, source[lon].attrs)})
    return _SourceGrid(obj, lat, lon, lat_values, lon_values, is_global)


def _prepare_target(target: xr.Dataset | xr.DataArray) -> _TargetGrid:
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
    if np.abs(lat.values).max() > 90 + _TOLERANCE_DEG:
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
    return _TargetGrid(
        lat=lat.rename(None).reset_coords(drop=True),
        lon=lon.rename(None).reset_coords(drop=True),
        coords={name: xr.DataArray(var) for name, var in coords.items()},
    )


def _wrap_longitude(values: np.ndarray, start: float) -> np.ndarray:
    """Map longitudes into ``[start, start + 360)`` (with a small tolerance below start)."""
    return start + np.mod(values - start + _TOLERANCE_DEG, 360.0) - _TOLERANCE_DEG


def _cell_bounds(centers: np.ndarray) -> np.ndarray:
    """Outer bounds of cells around increasing or decreasing centers (midpoints)."""
    if centers.size == 1:
        return np.array([centers[0], centers[0]])
    mid = (centers[:-1] + centers[1:]) / 2
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def _check_inside(
    source: _SourceGrid,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    what: str,
    lat_range: tuple[float, float],
    lon_range: tuple[float, float],
) -> None:
    outside = (
        (lat < lat_range[0] - _TOLERANCE_DEG)
        | (lat > lat_range[1] + _TOLERANCE_DEG)
        | (lon < lon_range[0] - _TOLERANCE_DEG)
        | (lon > lon_range[1] + _TOLERANCE_DEG)
    )
    if np.any(outside):
        source_box = (
            f"lat [{lat_range[0]:.4f}, {lat_range[1]:.4f}], "
            f"lon [{lon_range[0]:.4f}, {lon_range[1]:.4f}]"
        )
        raise ValueError(
            f"target grid extends outside the source domain: {int(outside.sum())} of "
            f"{outside.size} target {what} lie outside. Target {_bbox_text(lat, lon)}; "
            f"source {source_box} (longitudes in the source's convention"
            f"{', global' if source.is_global_lon else ''}). Crop the target to the source "
            "domain or supply a larger source"
        )


# --- backends ----------------------------------------------------------------------------


def _target_points_inside(
    source: _SourceGrid, target: _TargetGrid
) -> tuple[np.ndarray, np.ndarray]:
    """Target latitudes and longitudes (in the source's convention), checked and clipped."""
    lat = np.asarray(target.lat.values, dtype=np.float64)
    lon = _wrap_longitude(np.asarray(target.lon.values, dtype=np.float64), source.lon_values[0])
    lat_range = (float(source.lat_values[0]), float(source.lat_values[-1]))
    lon_range = (float(source.lon_values[0]), float(source.lon_values[-1]))
    if target.is_rectilinear:
        lat_check, lon_check = np.meshgrid(lat, lon, indexing="ij")
    else:
        lat_check, lon_check = lat, lon
    _check_inside(
        source, lat_check, lon_check, what="points", lat_range=lat_range, lon_range=lon_range
    )
    # Points within the tolerance of an edge would interpolate to NaN: clip them onto it.
    return np.clip(lat, *lat_range), np.clip(lon, *lon_range)


def _regrid_interp(
    source: _SourceGrid, target: _TargetGrid, method: str
) -> xr.Dataset | xr.DataArray:
    lat, lon = _target_points_inside(source, target)
    indexers = {
        source.lat: xr.DataArray(lat, dims=target.lat.dims),
        source.lon: xr.DataArray(lon, dims=target.lon.dims),
    }
    interp_method = "linear" if method == "bilinear" else "nearest"
    return source.obj.interp(indexers, method=interp_method)  # type: ignore[arg-type]


def _target_cells_inside(source: _SourceGrid, target: _TargetGrid) -> None:
    """Check that every rectilinear target cell lies within the source cells."""
    src_lat_bounds = _cell_bounds(source.lat_values)
    src_lon_bounds = _cell_bounds(source.lon_values)
    lat_bounds = _cell_bounds(np.sort(np.asarray(target.lat.values, dtype=np.float64)))
    lon_bounds = _wrap_longitude(
        _cell_bounds(np.sort(np.asarray(target.lon.values, dtype=np.float64))),
        src_lon_bounds[0],
    )
    lat_check, lon_check = np.meshgrid(lat_bounds, lon_bounds, indexing="ij")
    _check_inside(
        source,
        lat_check,
        lon_check,
        what="cell edges",
        lat_range=(float(src_lat_bounds[0]), float(src_lat_bounds[-1])),
        lon_range=(float(src_lon_bounds[0]), float(src_lon_bounds[-1])),
    )


def _regrid_conservative(source: _SourceGrid, target: _TargetGrid) -> xr.Dataset | xr.DataArray:
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    _target_cells_inside(source, target)
    lat = np.asarray(target.lat.values, dtype=np.float64)
    lon = np.asarray(target.lon.values, dtype=np.float64)
    # xarray-regrid aligns longitudes itself (shifting and wrapping the source), so hand it
    # the source without our wrap columns and with plain "lat"/"lon" names.
    obj = source.obj
    if source.is_global_lon:
        obj = obj.isel({source.lon: slice(1, -1)})
    obj = obj.rename({source.lat: "lat", source.lon: "lon"})
    grid = xr.Dataset(coords={"lat": ("lat", lat), "lon": ("lon", lon)})
    if isinstance(obj, xr.DataArray):
        result = obj.regrid.conservative(grid, latitude_coord="lat", time_dim=None)
    else:
        # xarray-regrid expects every variable on both axes; pass the others through.
        on_grid = [name for name, var in obj.data_vars.items() if {"lat", "lon"} <= set(var.dims)]
        partial = [
            str(name)
            for name, var in obj.data_vars.items()
            if name not in on_grid and {"lat", "lon"} & set(var.dims)
        ]
        if partial:
            raise ValueError(
                f"variables {partial} lie on only one of the source axes {source.lat!r}, "
                f"{source.lon!r}; method='conservative' needs both. Drop them or use "
                "method='bilinear'"
            )
        others = {name: var for name, var in obj.data_vars.items() if name not in on_grid}
        result = obj[on_grid].regrid.conservative(grid, latitude_coord="lat", time_dim=None)
        result = result.assign(others)[list(obj.data_vars)]
    return result.rename({"lat": target.lat.dims[0], "lon": target.lon.dims[0]}).drop_vars(
        [target.lat.dims[0], target.lon.dims[0]]
    )


def _regrid_xesmf(
    source: _SourceGrid, target: _TargetGrid, method: str
) -> xr.Dataset | xr.DataArray:
    try:
        import xesmf
    except ImportError as exc:
        raise ImportError(
            "backend='xesmf' needs xesmf and the ESMF library (esmpy), which pip cannot "
            "install; install both from conda-forge: `conda install -c conda-forge xesmf "
            "esmpy`. Or use backend=None for the built-in xarray / xarray-regrid backends"
        ) from exc

    if method == "conservative":
        _target_cells_inside(source, target)
    else:
        _target_points_inside(source, target)
    obj = source.obj
    if source.is_global_lon:
        obj = obj.isel({source.lon: slice(1, -1)})
    obj = obj.rename({source.lat: "lat", source.lon: "lon"})
    grid_in = xr.Dataset(coords={"lat": obj["lat"], "lon": obj["lon"]})
    if target.is_rectilinear:
        grid_out = xr.Dataset(
            coords={
                "lat": ("lat", np.asarray(target.lat.values)),
                "lon": ("lon", np.asarray(target.lon.values)),
            }
        )
    else:
        grid_out = xr.Dataset(
            coords={
                "lat": (target.lat.dims, target.lat.values),
                "lon": (target.lon.dims, target.lon.values),
            }
        )
    if method == "conservative":
        for grid in (grid_in, grid_out):
            grid.coords["lat_b"] = ("lat_b", np.clip(_cell_bounds(grid["lat"].values), -90, 90))
            grid.coords["lon_b"] = ("lon_b", _cell_bounds(grid["lon"].values))
    esmf_method = {"bilinear": "bilinear", "nearest": "nearest_s2d"}.get(method, method)
    regridder = xesmf.Regridder(
        grid_in, grid_out, esmf_method, periodic=source.is_global_lon, unmapped_to_nan=True
    )
    result = regridder(obj, keep_attrs=True)
    if target.is_rectilinear:
        result = result.rename({"lat": target.lat.dims[0], "lon": target.lon.dims[0]})
    return result.drop_vars(["lat", "lon"], errors="ignore")


# --- public API -----------------------------------------------------------------------


@overload
def regrid(
    source: xr.Dataset,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = ...,
    *,
    backend: RegridBackend | None = ...,
) -> xr.Dataset: ...


@overload
def regrid(
    source: xr.DataArray,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = ...,
    *,
    backend: RegridBackend | None = ...,
) -> xr.DataArray: ...


def regrid(
    source: xr.Dataset | xr.DataArray,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = "bilinear",
    *,
    backend: RegridBackend | None = None,
) -> xr.Dataset | xr.DataArray:
    """Regrid ``source`` onto the grid carried by ``target``.

    Parameters
    ----------
    source
        Data on a rectilinear latitude/longitude grid (1-D ``lat``/``latitude`` and
        ``lon``/``longitude``, increasing or decreasing; longitudes in 0..360 or
        -180..180). Other dimensions (``time``, ...) are kept. Numpy- or dask-backed; dask
        input stays lazy.
    target
        Any Dataset or DataArray carrying the target grid: rectilinear (1-D latitude and
        longitude on their own dims) or curvilinear (2-D latitude and longitude on, e.g.,
        ``(y, x)``). Only its coordinates are used; they are loaded into memory.
    method
        ``"bilinear"`` (default), ``"nearest"``, or ``"conservative"`` (area-weighted,
        first order; rectilinear targets only).
    backend
        ``None`` picks ``"xarray"`` (interpolation) for bilinear/nearest and
        ``"xarray-regrid"`` for conservative. ``"xesmf"`` uses ESMF when :mod:`xesmf`
        imports.

    Returns
    -------
    Dataset or DataArray
        The type of ``source``: its variables on the target grid, dims ``(..., y, x)``
        for a curvilinear target or ``(..., lat, lon)`` (the target's dim names) for a
        rectilinear one, with the target's grid coordinates (``lat``, ``lon``, ``y``,
        ``x``, ...). Attributes and floating dtypes are kept.

    Raises
    ------
    ValueError
        If ``method`` or ``backend`` is unknown or they do not combine; if latitude or
        longitude is missing, not finite, or (source, rectilinear target) not strictly
        monotonic; if the source is curvilinear; if any target point (conservative:
        target cell edge) lies outside the source domain, giving both bounding boxes.
    ImportError
        If ``backend="xesmf"`` and xesmf cannot be imported.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lr = xr.Dataset(
    ...     {"t2m": (("lat", "lon"), np.arange(12.0).reshape(3, 4), {"units": "K"})},
    ...     coords={"lat": [10.0, 11.0, 12.0], "lon": [350.0, 351.0, 352.0, 353.0]},
    ... )
    >>> target = xr.Dataset(coords={"lat": [10.5, 11.5], "lon": [-9.5, -7.5]})
    >>> regrid(lr, target)["t2m"].values
    array([[2.5, 4.5],
           [6.5, 8.5]])
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    if backend is None:
        backend = "xarray-regrid" if method == "conservative" else "xarray"
    if backend not in _BACKENDS:
        raise ValueError(
            f"backend must be None or one of {list(_BACKENDS)}, got {backend!r}; leave it "
            "None to pick xarray interpolation or xarray-regrid by method"
        )
    if method not in _BACKEND_METHODS[backend]:
        raise ValueError(
            f"backend {backend!r} does not provide method {method!r}; it provides "
            f"{list(_BACKEND_METHODS[backend])}. Leave backend=None to pick one by method"
        )
    if not isinstance(source, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"source must be an xarray Dataset or DataArray, got {type(source).__name__}"
        )
    target_grid = _prepare_target(target)
    if method == "conservative" and not target_grid.is_rectilinear:
        raise ValueError(
            "method='conservative' needs a rectilinear target (1-D lat and lon on their "
            f"own dims), got latitude on dims {target_grid.lat.dims} (curvilinear); use "
            "method='bilinear', or call xesmf.Regridder yourself with cell corners"
        )
    source_grid = _prepare_source(source)

    if backend == "xesmf":
        result = _regrid_xesmf(source_grid, target_grid, method)
    elif backend == "xarray-regrid":
        result = _regrid_conservative(source_grid, target_grid)
    else:
        result = _regrid_interp(source_grid, target_grid, method)

    result = result.drop_vars([source_grid.lat, source_grid.lon], errors="ignore")
    result = result.assign_coords(target_grid.coords)
    return _restore_dtypes(result, source)


def _restore_dtypes(
    result: xr.Dataset | xr.DataArray, source: xr.Dataset | xr.DataArray
) -> xr.Dataset | xr.DataArray:
    """Keep floating dtypes (interpolation may promote float32 to float64)."""
    if isinstance(result, xr.DataArray) or isinstance(source, xr.DataArray):
        if np.issubdtype(source.dtype, np.floating) and result.dtype != source.dtype:
            result = result.astype(source.dtype)
        return result
    changed = {
        name: var.astype(source[name].dtype)
        for name, var in result.data_vars.items()
        if name in source.data_vars
        and np.issubdtype(source[name].dtype, np.floating)
        and var.dtype != source[name].dtype
    }
    return result.assign(changed) if changed else result

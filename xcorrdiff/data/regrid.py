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

A rectilinear source (1-D latitude and longitude, each monotonic) uses the backends above; a
curvilinear source (2-D latitude and longitude, e.g. a WRF or CORDEX field on a Lambert or
rotated-pole grid) is triangulated on the sphere by :mod:`xcorrdiff.data.curvilinear`
(bilinear or nearest, pip-only). Latitude and
longitude are found by name (``lat``/``latitude``, ``lon``/``longitude``) or by CF
attributes (``standard_name``, ``units`` such as ``degrees_north``), on the source and on
the target alike. Longitudes may use 0..360 on one side and -180..180 on the other; a
global source wraps around. Target points outside the source domain raise an error
instead of turning into NaN.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, get_args, overload

import numpy as np
import xarray as xr

from xcorrdiff._checks import check_choice
from xcorrdiff.data.curvilinear import is_curvilinear, regrid_curvilinear
from xcorrdiff.data.grids import (
    SourceGrid,
    TargetGrid,
    latlon_names,
    prepare_source,
    prepare_target,
    same_grid,
    target_cells_inside,
    target_points_inside,
)
from xcorrdiff.data.regrid_xesmf import regrid_xesmf

__all__ = ["RegridBackend", "RegridEdge", "RegridMethod", "latlon_names", "regrid"]

RegridMethod = Literal["bilinear", "nearest", "conservative"]
RegridBackend = Literal["xarray", "xarray-regrid", "xesmf"]
RegridEdge = Literal["raise", "nearest"]

_METHODS: tuple[str, ...] = get_args(RegridMethod)
_BACKENDS: tuple[str, ...] = get_args(RegridBackend)
_EDGES: tuple[str, ...] = get_args(RegridEdge)
_BACKEND_METHODS: dict[str, tuple[str, ...]] = {
    "xarray": ("bilinear", "nearest"),
    "xarray-regrid": ("conservative",),
    "xesmf": ("bilinear", "nearest", "conservative"),
}

# --- backends ----------------------------------------------------------------------------


def _regrid_interp(
    source: SourceGrid, target: TargetGrid, method: str, edge: str
) -> xr.Dataset | xr.DataArray:
    lat, lon = target_points_inside(source, target, edge)
    indexers = {
        source.lat: xr.DataArray(lat, dims=target.lat.dims),
        source.lon: xr.DataArray(lon, dims=target.lon.dims),
    }
    interp_method = "linear" if method == "bilinear" else "nearest"
    return source.obj.interp(indexers, method=interp_method)  # type: ignore[arg-type]


def _regrid_conservative(source: SourceGrid, target: TargetGrid) -> xr.Dataset | xr.DataArray:
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    target_cells_inside(source, target)
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


# --- public API -----------------------------------------------------------------------


@overload
def regrid(
    source: xr.Dataset,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = ...,
    *,
    backend: RegridBackend | None = ...,
    edge: RegridEdge = ...,
) -> xr.Dataset: ...


@overload
def regrid(
    source: xr.DataArray,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = ...,
    *,
    backend: RegridBackend | None = ...,
    edge: RegridEdge = ...,
) -> xr.DataArray: ...


def regrid(
    source: xr.Dataset | xr.DataArray,
    target: xr.Dataset | xr.DataArray,
    method: RegridMethod = "bilinear",
    *,
    backend: RegridBackend | None = None,
    edge: RegridEdge = "raise",
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
    edge
        Target points outside the source's domain: ``"raise"`` (default) refuses them;
        ``"nearest"`` fills those within one source cell of the source's edge from the
        nearest edge point (bilinear and nearest, the default backends): the outer ring of
        a coarse-to-fine pair on the same grid, where the coarse cell centres stop half a
        coarse cell short of the fine grid's edge. Farther points are still refused.

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
        monotonic; if any target point (conservative:
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
    check_choice("edge", edge, _EDGES)
    if edge == "nearest" and (method == "conservative" or backend == "xesmf"):
        raise ValueError(
            f"edge='nearest' applies to method='bilinear' or 'nearest' with the default "
            f"backend, got method={method!r}, backend={backend!r}"
        )
    if not isinstance(source, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"source must be an xarray Dataset or DataArray, got {type(source).__name__}"
        )
    target_grid = prepare_target(target)
    if method == "conservative" and not target_grid.is_rectilinear:
        raise ValueError(
            "method='conservative' needs a rectilinear target (1-D lat and lon on their "
            f"own dims), got latitude on dims {target_grid.lat.dims} (curvilinear); use "
            "method='bilinear', or call xesmf.Regridder yourself with cell corners"
        )
    on_target = _on_target(source, target_grid)
    if on_target is not None:
        return on_target
    lat, lon = latlon_names(source, role="source")
    if backend != "xesmf" and is_curvilinear(source, lat, lon):
        result = regrid_curvilinear(source, lat, lon, target_grid, method, edge)
        return _restore_dtypes(result.assign_coords(target_grid.coords), source)
    source_grid = prepare_source(source)

    if backend == "xesmf":
        result = regrid_xesmf(source_grid, target_grid, method)
    elif backend == "xarray-regrid":
        result = _regrid_conservative(source_grid, target_grid)
    else:
        result = _regrid_interp(source_grid, target_grid, method, edge)

    result = result.drop_vars([source_grid.lat, source_grid.lon], errors="ignore")
    result = result.assign_coords(target_grid.coords)
    return _restore_dtypes(result, source)


def _on_target(
    source: xr.Dataset | xr.DataArray, target: TargetGrid
) -> xr.Dataset | xr.DataArray | None:
    """``source`` labelled with the target's coordinates when it already lies on the target
    grid (the one rule of :mod:`xcorrdiff.data.grids`): regridding onto itself is the
    identity, not an interpolation. None otherwise."""
    dims = (target.lat.dims[0], target.lon.dims[0]) if target.is_rectilinear else target.lat.dims
    grid = xr.Dataset(coords=target.coords)
    if not set(dims) <= set(source.dims) or not same_grid(source, grid, dims):
        return None
    return source.assign_coords(target.coords)


def _as_dtype(var: xr.DataArray | xr.Variable, dtype: np.dtype) -> Any:
    """``var`` cast to ``dtype``. A dask array's recorded dtype may not be what its blocks
    hold (interpolation computes float64 blocks of a float32 array), so its blocks are cast
    whatever it records: lazy and eager input then give the same numbers."""
    data = var.data
    if hasattr(data, "map_blocks"):
        return var.copy(
            data=data.map_blocks(functools.partial(np.asarray, dtype=dtype), dtype=dtype)
        )
    return var.astype(dtype) if var.dtype != dtype else var


def _restore_dtypes(
    result: xr.Dataset | xr.DataArray, source: xr.Dataset | xr.DataArray
) -> xr.Dataset | xr.DataArray:
    """Keep floating dtypes (interpolation may promote float32 to float64)."""
    if isinstance(result, xr.DataArray) or isinstance(source, xr.DataArray):
        if np.issubdtype(source.dtype, np.floating):
            if isinstance(result, xr.DataArray):
                result = _as_dtype(result, source.dtype)
            else:
                result = result.astype(source.dtype)
        return result
    changed = {
        name: _as_dtype(var, source[name].dtype)
        for name, var in result.data_vars.items()
        if name in source.data_vars and np.issubdtype(source[name].dtype, np.floating)
    }
    return result.assign(changed) if changed else result

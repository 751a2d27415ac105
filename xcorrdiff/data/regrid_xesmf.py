"""The optional xesmf backend of :func:`xcorrdiff.data.regrid.regrid` (ESMF from conda-forge)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from xcorrdiff.data.grids import (
    SourceGrid,
    TargetGrid,
    cell_bounds,
    target_cells_inside,
    target_points_inside,
)

__all__ = ["regrid_xesmf"]


def regrid_xesmf(source: SourceGrid, target: TargetGrid, method: str) -> xr.Dataset | xr.DataArray:
    try:
        import xesmf
    except ImportError as exc:
        raise ImportError(
            "backend='xesmf' needs xesmf and the ESMF library (esmpy), which pip cannot "
            "install; install both from conda-forge: `conda install -c conda-forge xesmf "
            "esmpy`. Or use backend=None for the built-in xarray / xarray-regrid backends"
        ) from exc

    if method == "conservative":
        target_cells_inside(source, target)
    else:
        target_points_inside(source, target)
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
            grid.coords["lat_b"] = ("lat_b", np.clip(cell_bounds(grid["lat"].values), -90, 90))
            grid.coords["lon_b"] = ("lon_b", cell_bounds(grid["lon"].values))
    esmf_method = {"bilinear": "bilinear", "nearest": "nearest_s2d"}.get(method, method)
    regridder = xesmf.Regridder(
        grid_in, grid_out, esmf_method, periodic=source.is_global_lon, unmapped_to_nan=True
    )
    result = regridder(obj, keep_attrs=True)
    if target.is_rectilinear:
        result = result.rename({"lat": target.lat.dims[0], "lon": target.lon.dims[0]})
    return result.drop_vars(["lat", "lon"], errors="ignore")

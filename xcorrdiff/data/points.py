"""Gridded fields at points (stations): where each point lies in the grid, and the bilinear
interpolation of the four grid points around it.

One observation operator serves station verification (:func:`at_stations`) and guided
sampling: a point's value is the bilinear interpolation, in grid-index space, of the four
grid points of the cell that holds it. On a rectilinear grid (1-D ``lat`` and ``lon``) the
fractional indices come from the coordinates directly; on a curvilinear grid (2-D ``lat`` and
``lon`` on ``(y, x)``, WRF/HRRR style) they solve "the bilinear map of the cell's corners
equals the point" by Newton's method in a local east/north plane around each point, started at
the nearest grid point. A point outside the grid is an error, never an extrapolation.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from xcorrdiff.data.grids import TOLERANCE_DEG, latlon_names, wrap_longitude

__all__ = ["PointLocations", "at_stations", "locate_points"]

T = TypeVar("T", xr.Dataset, xr.DataArray)
_NEWTON_STEPS = 25
_INDEX_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PointLocations:
    """Fractional grid indices of points: ``fy`` along ``dims[0]``, ``fx`` along ``dims[1]``."""

    fy: np.ndarray
    fx: np.ndarray
    dims: tuple[Hashable, Hashable]
    shape: tuple[int, int]

    def corners(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The four ``(iy, ix, weight)`` of each point's bilinear interpolation."""
        ny, nx = self.shape
        iy = np.clip(np.floor(self.fy).astype(np.int64), 0, max(ny - 2, 0))
        ix = np.clip(np.floor(self.fx).astype(np.int64), 0, max(nx - 2, 0))
        ty, tx = self.fy - iy, self.fx - ix
        dy, dx = min(1, ny - 1), min(1, nx - 1)
        return [
            (iy, ix, (1 - ty) * (1 - tx)),
            (iy, ix + dx, (1 - ty) * tx),
            (iy + dy, ix, ty * (1 - tx)),
            (iy + dy, ix + dx, ty * tx),
        ]


def _axis_index(coord: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fractional index of ``values`` along a monotonic 1-D coordinate (NaN outside)."""
    index = np.arange(coord.size, dtype=np.float64)
    if coord.size > 1 and coord[0] > coord[-1]:
        coord, index = coord[::-1], index[::-1]
    return np.interp(values, coord, index, left=np.nan, right=np.nan)


def _local(glat: np.ndarray, glon: np.ndarray, plat: np.ndarray, plon: np.ndarray) -> np.ndarray:
    """East/north offsets in degrees of latitude of grid points from each point, ``(2, n)``."""
    east = (np.mod(glon - plon + 180.0, 360.0) - 180.0) * np.cos(np.deg2rad(plat))
    return np.stack([east, glat - plat])


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _curvilinear_index(
    glat: np.ndarray, glon: np.ndarray, plat: np.ndarray, plon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method for the bilinear inverse of ``(lat, lon)`` on ``(y, x)``."""
    ny, nx = glat.shape
    _, nearest = cKDTree(_unit(glat, glon).reshape(-1, 3)).query(_unit(plat, plon))
    fy, fx = (a.astype(np.float64) for a in np.unravel_index(nearest, (ny, nx)))
    for _ in range(_NEWTON_STEPS):
        iy = np.clip(np.floor(fy).astype(np.int64), 0, ny - 2)
        ix = np.clip(np.floor(fx).astype(np.int64), 0, nx - 2)
        ty, tx = fy - iy, fx - ix
        p00, p01, p10, p11 = (
            _local(glat[iy + a, ix + b], glon[iy + a, ix + b], plat, plon)
            for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))
        )
        here = (1 - ty) * ((1 - tx) * p00 + tx * p01) + ty * ((1 - tx) * p10 + tx * p11)
        d_ty = (1 - tx) * (p10 - p00) + tx * (p11 - p01)
        d_tx = (1 - ty) * (p01 - p00) + ty * (p11 - p10)
        det = d_ty[0] * d_tx[1] - d_ty[1] * d_tx[0]
        det = np.where(det == 0, np.nan, det)
        fy = iy + ty - (here[0] * d_tx[1] - here[1] * d_tx[0]) / det
        fx = ix + tx - (d_ty[0] * here[1] - d_ty[1] * here[0]) / det
        fy, fx = np.clip(fy, -1.0, ny), np.clip(fx, -1.0, nx)
    return fy, fx


def locate_points(
    grid: xr.Dataset | xr.DataArray, lat: Any, lon: Any, *, names: Any = None
) -> PointLocations:
    """Fractional grid indices of points ``(lat, lon)`` (1-D, degrees) on ``grid``.

    ``grid`` carries latitude and longitude coordinates (found as in
    :func:`~xcorrdiff.data.latlon_names`): 1-D on their own dims, or 2-D on the same two dims.
    ``names`` labels the points in the error raised when some lie outside the grid.
    """
    lat_name, lon_name = latlon_names(grid, role="grid")
    both = xr.Dataset({"lat": grid[lat_name].variable, "lon": grid[lon_name].variable}).compute()
    glat, glon = both["lat"], both["lon"]  # one compute when the grid is dask-backed
    plat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    plon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    if glat.ndim == 1 and glon.ndim == 1 and glat.dims != glon.dims:
        glon_values = np.asarray(glon.values, dtype=np.float64)
        start = float(glon_values.min())
        fy = _axis_index(np.asarray(glat.values, dtype=np.float64), plat)
        fx = _axis_index(glon_values, wrap_longitude(plon, start))
        dims = (glat.dims[0], glon.dims[0])
    elif glat.ndim == 2 and glat.dims == glon.dims and min(glat.shape) >= 2:
        fy, fx = _curvilinear_index(
            np.asarray(glat.values, np.float64), np.asarray(glon.values, np.float64), plat, plon
        )
        dims = (glat.dims[0], glat.dims[1])
    else:
        raise ValueError(
            f"grid latitude {lat_name!r} has dims {glat.dims} and longitude {lon_name!r} "
            f"{glon.dims}; expected 1-D coordinates on their own dims or 2-D ones on the same "
            "two dims (each at least 2 points long)"
        )
    shape = (grid.sizes[dims[0]], grid.sizes[dims[1]])
    _check_inside(fy, fx, shape, plat, plon, names)
    return PointLocations(np.clip(fy, 0, shape[0] - 1), np.clip(fx, 0, shape[1] - 1), dims, shape)


def _check_inside(
    fy: np.ndarray,
    fx: np.ndarray,
    shape: tuple[int, int],
    lat: np.ndarray,
    lon: np.ndarray,
    names: Any,
) -> None:
    tol = _INDEX_TOLERANCE + TOLERANCE_DEG
    inside = (
        np.isfinite(fy)
        & np.isfinite(fx)
        & (fy >= -tol)
        & (fy <= shape[0] - 1 + tol)
        & (fx >= -tol)
        & (fx <= shape[1] - 1 + tol)
    )
    if not inside.all():
        labels = np.asarray(names if names is not None else np.arange(lat.size))
        bad = [f"{labels[i]} ({lat[i]:.4f}, {lon[i]:.4f})" for i in np.flatnonzero(~inside)[:5]]
        raise ValueError(
            f"{int((~inside).sum())} of {lat.size} stations lie outside the grid: "
            f"{', '.join(bad)}{' ...' if (~inside).sum() > 5 else ''}; expected points within "
            "the grid's cells (drop them, e.g. stations.where(inside, drop=True))"
        )


def _station_coords(
    stations: xr.Dataset | xr.DataArray,
) -> tuple[Hashable, xr.DataArray, xr.DataArray]:
    lat_name, lon_name = latlon_names(stations, role="stations")
    lat, lon = stations[lat_name], stations[lon_name]
    if lat.ndim != 1 or lat.dims != lon.dims:
        raise ValueError(
            f"stations latitude {lat_name!r} has dims {lat.dims} and longitude {lon_name!r} "
            f"{lon.dims}; expected both 1-D on one station dimension, e.g. ('station',)"
        )
    return lat.dims[0], lat, lon


def at_stations(obj: T, stations: xr.Dataset | xr.DataArray) -> T:
    """``obj`` interpolated bilinearly to the stations' points, with their ``station`` dim.

    Parameters
    ----------
    obj : Dataset or DataArray
        Gridded fields (an ensemble, the truth) with latitude and longitude coordinates,
        numpy- or dask-backed (dask stays lazy).
    stations : Dataset or DataArray
        Anything with 1-D latitude and longitude coordinates on one dimension (an
        observations Dataset, say); that dimension and its coordinates label the result.

    Returns
    -------
    Same type as ``obj``
        The grid's two dims replaced by the station dim; a station whose cell has a NaN
        corner of non-zero weight is NaN there (a land-only field next to the sea).

    Raises
    ------
    ValueError
        If a station lies outside the grid.
    """
    dim, lat, lon = _station_coords(stations)
    names = stations[dim].values if dim in stations.coords else None
    where = locate_points(obj, lat.values, lon.values, names=names)
    grid_coords = [n for n, c in obj.coords.items() if set(where.dims) & set(c.dims)]
    base = obj.drop_vars(grid_coords)
    total: Any = 0
    for iy, ix, weight in where.corners():
        corner = base.isel({where.dims[0]: xr.DataArray(iy, dims=(dim,)),
                            where.dims[1]: xr.DataArray(ix, dims=(dim,))})  # fmt: skip
        w = xr.DataArray(weight, dims=(dim,))
        total = total + (corner * w).where(w > 0, 0)
    keep = {n: c for n, c in stations.coords.items() if c.dims == (dim,)}
    out = total.assign_coords(keep)
    if isinstance(out, xr.Dataset):
        for name in out.data_vars:
            out[name].attrs = obj[name].attrs
    else:
        out.attrs, out.name = obj.attrs, obj.name
    return out

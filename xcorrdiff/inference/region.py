"""Sub-domain downscaling: which rectangle of the model's HR grid to generate.

A region is given as slices of the grid's dimensions (labels, as ``Dataset.sel`` takes them)
or as a latitude/longitude box; both become the pixel rectangle ``(y0, y1, x0, x1)``. The
regression mean is computed on the whole domain (one pass, the cheap part) and cut; the
diffusion model generates only the rectangle, patch by patch, each patch with its own
positional embedding and the whole domain's inputs as global context, exactly as in a
whole-domain run. The members therefore equal those of a whole-domain run on the region up
to the patch layout: the patches start at the region's corner instead of the domain's, so
the blending of overlapping patches differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.data.grids import coordinate_tolerance, latlon_names

__all__ = ["check_region", "resolve_region"]


def _box(grid: xr.Dataset, region: Mapping[str, Any], dims: tuple[str, str]) -> np.ndarray:
    """Boolean ``(y, x)`` field of the grid points inside a latitude/longitude box."""
    lat_name, lon_name = latlon_names(grid, role="the model's grid")
    lat = grid[lat_name].broadcast_like(grid[lon_name]).transpose(*dims).values
    lon = grid[lon_name].broadcast_like(grid[lat_name]).transpose(*dims).values
    (lat_lo, lat_hi), (lon_lo, lon_hi) = region["lat"], region["lon"]
    lat_tol, lon_tol = coordinate_tolerance(lat, lat), coordinate_tolerance(lon, lon)
    lon = lon_lo - lon_tol + np.mod(lon - lon_lo + lon_tol, 360.0)  # the box's convention
    return (lat >= lat_lo - lat_tol) & (lat <= lat_hi + lat_tol) & (lon <= lon_hi + lon_tol)


def _widened(index: Any, start: Any, stop: Any) -> tuple[Any, Any]:
    """Float labels moved outward by the grid tolerance of :mod:`xcorrdiff.data.grids`, so
    that a label computed elsewhere (the user's copy of the grid, off in its last bits)
    still selects its grid point."""
    values = np.asarray(index.values)
    if values.dtype.kind != "f" or values.size < 2:
        return start, stop
    tol = coordinate_tolerance(values, values)
    sign = 1.0 if values[-1] > values[0] else -1.0
    return (
        None if start is None else float(start) - sign * tol,
        None if stop is None else float(stop) + sign * tol,
    )


def _slices(grid: xr.Dataset, region: Mapping[str, Any], dims: tuple[str, str]) -> list[int]:
    bounds = []
    for dim in dims:
        chosen = region.get(dim, slice(None))
        if not isinstance(chosen, slice):
            raise TypeError(
                f"region[{dim!r}]={chosen!r} is invalid; expected a slice of {dim!r} labels, "
                f"e.g. region={{{dim!r}: slice(a, b)}}"
            )
        start, stop = _widened(grid.indexes[dim], chosen.start, chosen.stop)
        index = grid.indexes[dim].slice_indexer(start, stop, chosen.step)
        positions = np.arange(grid.sizes[dim])[index]
        if positions.size == 0 or (index.step not in (None, 1)):
            raise ValueError(
                f"region[{dim!r}]={chosen!r} selects no contiguous range of the grid's {dim!r} "
                f"({grid.indexes[dim][0]} … {grid.indexes[dim][-1]})"
            )
        bounds += [int(positions[0]), int(positions[-1]) + 1]
    return bounds


def resolve_region(
    grid: xr.Dataset, dims: tuple[str, str], region: Mapping[str, Any] | None
) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` of ``region`` on the model's grid, or None for the whole domain.

    Parameters
    ----------
    grid : xarray.Dataset
        The model's HR grid.
    dims : (str, str)
        Its row and column dimensions.
    region : mapping, optional
        ``{y_dim: slice, x_dim: slice}`` (labels; either may be left out), or
        ``{"lat": (south, north), "lon": (west, east)}``: the smallest rectangle of grid
        cells holding every grid point inside the box.

    Raises
    ------
    ValueError
        Unknown keys, or a region that selects nothing.
    """
    if region is None:
        return None
    if not isinstance(region, Mapping):
        raise TypeError(f"region must be a mapping, got {type(region).__name__}")
    keys = set(region)
    if keys == {"lat", "lon"}:
        inside = _box(grid, region, dims)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if rows.size == 0:
            raise ValueError(
                f"region={dict(region)!r} holds no point of the model's grid; expected a box "
                "within the grid's latitudes and longitudes"
            )
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    elif keys <= set(dims):
        y0, y1, x0, x1 = _slices(grid, region, dims)
    else:
        raise ValueError(
            f"region has keys {sorted(keys)}; expected slices of the grid's dimensions "
            f"{list(dims)} or a box {{'lat': (south, north), 'lon': (west, east)}}"
        )
    full = (int(grid.sizes[dims[0]]), int(grid.sizes[dims[1]]))
    return None if (y0, y1, x0, x1) == (0, full[0], 0, full[1]) else (y0, y1, x0, x1)


def check_region(
    region: tuple[int, int, int, int] | None, patch: tuple[int, int] | None, factor: int
) -> None:
    """Raise unless the diffusion network can generate ``region`` with ``patch``.

    Raises
    ------
    ValueError
        The region is smaller than the patch, or (without patches) not a multiple of the
        network's downsampling ``factor``.
    """
    if region is None:
        return
    shape = (region[1] - region[0], region[3] - region[2])
    if patch is not None and (patch[0] > shape[0] or patch[1] > shape[1]):
        raise ValueError(
            f"the region {shape} (rows {region[0]}:{region[1]}, columns {region[2]}:"
            f"{region[3]}) is smaller than patch_shape={patch}; pass a smaller patch_shape "
            "or a larger region"
        )
    if patch is None and (shape[0] % factor or shape[1] % factor):
        raise ValueError(
            f"the region {shape} is generated as one patch, whose sides must be multiples of "
            f"{factor} (the diffusion network's downsampling); pass patch_shape= (sides "
            f"divisible by {factor}) or a region of such sides"
        )

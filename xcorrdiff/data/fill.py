"""Filling missing input values from the nearest valid cell (land-only or masked input).

A land-only reanalysis (ERA5-Land, a gridded station product) is NaN over the sea; a model
conditioned on it needs a value at every cell of its HR grid, and bilinear regridding turns
every HR point next to a NaN coarse cell into NaN. :func:`fill_nearest` gives each NaN cell
the value of the nearest valid cell of the same field, on the input's own grid, before it is
regridded: the coast's values continue over the sea, the way a model's land-sea boundary
treatment does. Nearest is measured in grid-index space (exact on a regular grid, and the
natural choice on a projected one). A field with no valid cell stays NaN, so it is still
refused.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, get_args

import numpy as np
import xarray as xr
from scipy import ndimage

from xcorrdiff.data.grids import latlon_names

__all__ = ["FILL_METHODS", "FillMethod", "fill_nearest"]

#: How ``downscale(fill_missing=...)`` fills NaN in the input: from the nearest valid cell.
FillMethod = Literal["nearest"]
FILL_METHODS: tuple[str, ...] = get_args(FillMethod)


def _fill_block(values: np.ndarray) -> np.ndarray:
    """NaN of each 2-D field (the last two axes) from its nearest valid cell."""
    out = np.array(values, copy=True)
    flat = out.reshape(-1, *out.shape[-2:])
    for field in flat:
        missing = np.isnan(field)
        if missing.any() and not missing.all():
            rows, cols = ndimage.distance_transform_edt(
                missing, return_distances=False, return_indices=True
            )
            field[...] = field[rows, cols]
    return out


def _grid_dims(ds: xr.Dataset, name: Hashable) -> tuple[Hashable, Hashable]:
    """The two dims of ``ds[name]``'s grid: latitude's and longitude's, else its last two."""
    try:
        lat, lon = (ds[n] for n in latlon_names(ds, role="input"))
        dims = lat.dims if lat.ndim == 2 else (*lat.dims, *lon.dims)
    except ValueError:  # no latitude/longitude: the variable's last two dims
        dims = ()
    if len(dims) == 2 and set(dims) <= set(ds[name].dims):
        return dims[0], dims[1]
    if ds[name].ndim < 2:
        raise ValueError(
            f"variable {name!r} has dims {ds[name].dims}; fill_nearest needs a field on a grid"
        )
    return ds[name].dims[-2], ds[name].dims[-1]


def fill_nearest(ds: xr.Dataset, names: Sequence[Hashable] | None = None) -> xr.Dataset:
    """``ds`` with the NaN of each field replaced by its nearest valid cell's value.

    Parameters
    ----------
    ds : xarray.Dataset
        Fields on a grid (latitude/longitude found by name or CF attributes, else each
        variable's last two dims), numpy- or dask-backed (dask stays lazy: one task per
        chunk, each chunk holding whole fields).
    names : sequence of str, optional
        The floating variables to fill; default every floating data variable.

    Returns
    -------
    xarray.Dataset
        The same variables and attributes; fields without NaN, and fields without any
        valid cell, unchanged.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"t": (("lat", "lon"), [[1.0, np.nan, np.nan], [2.0, 3.0, np.nan]])},
    ...                 coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0, 2.0]})
    >>> fill_nearest(ds)["t"].values
    array([[1., 1., 3.],
           [2., 3., 3.]])
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    if names is None:
        names = [n for n, v in ds.data_vars.items() if np.issubdtype(v.dtype, np.floating)]
    filled = {}
    for name in names:
        dims = _grid_dims(ds, name)
        filled[name] = xr.apply_ufunc(
            _fill_block,
            ds[name],
            input_core_dims=[list(dims)],
            output_core_dims=[list(dims)],
            dask="parallelized",
            output_dtypes=[ds[name].dtype],
            dask_gufunc_kwargs={"allow_rechunk": True},
            keep_attrs=True,
        ).transpose(*ds[name].dims)
    return ds.assign(filled)

"""Distributions (histograms for heavy-tailed variables) and the one-call ``verify`` table."""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.verify import scores
from xcorrdiff.verify._xarray import (
    T,
    XarrayLike,
    check_member_dim,
    check_numeric,
    check_type,
    pairs,
    reduce_dims,
)
from xcorrdiff.verify.scores import Dim

__all__ = ["histogram", "verify"]


def _edges(da: xr.DataArray, bins: int | np.ndarray, log: bool) -> np.ndarray:
    if np.ndim(bins) != 0:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"histogram: bin edges must be 1-D and increasing, got {edges}")
        return edges
    num_bins = int(bins)
    if log:
        positive = da.where(da > 0)
        lo, hi = float(positive.min()), float(positive.max())
        if not np.isfinite(lo):
            raise ValueError(
                f"histogram: log=True needs positive values; variable {da.name!r} has none"
            )
        return np.geomspace(lo, hi, num_bins + 1)
    lo, hi = float(da.min()), float(da.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, num_bins + 1)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, values, side="right") - 1
    idx = np.where(values == edges[-1], edges.size - 2, idx)  # last edge inclusive
    return np.where(np.isnan(values), -1, idx)


def histogram(
    data: T,
    *,
    bins: int | np.ndarray = 50,
    dim: Dim = None,
    density: bool = True,
    log: bool = False,
) -> T:
    r"""Histogram or PDF over ``dim`` (members included), for comparing distributions.

    With edges :math:`e_0 < \dots < e_K`, counts :math:`n_k = \#\{v: e_k \le v < e_{k+1}\}`
    (the last bin closed) and, with ``density=True``, the PDF estimate
    :math:`p_k = n_k / (N (e_{k+1} - e_k))`, :math:`N = \sum_k n_k`, which integrates to
    one over the counted values (values outside the edges, and NaN, are not counted). For
    heavy-tailed variables (precipitation) use ``log=True``: logarithmic bins
    over the positive values, and compare the tails of forecast and truth on log axes.
    Use the same ``bins`` edges for both to compare them.

    Parameters
    ----------
    data : Dataset or DataArray
    bins : int or array of edges, default 50
        Edges, or a number of bins spanning the data (computes min and max; pass edges to
        stay lazy with dask).
    dim : str, list of str or None
        Dimensions to pool; ``None`` pools all (including ``member``).
    density : bool, default True
        PDF instead of counts.
    log : bool, default False
        Logarithmic bins from the smallest positive value to the maximum (``bins`` int;
        zeros fall outside and are not counted), with geometric bin centres.

    Returns
    -------
    Dataset or DataArray
        New dimension ``bin`` with coordinates ``bin`` (centres), ``bin_lower``,
        ``bin_upper``.
    """
    check_type(data, "data")

    def one(da: xr.DataArray) -> xr.DataArray:
        check_numeric(da, "data")
        edges = _edges(da, bins, log)
        index = xr.apply_ufunc(
            _bin_index,
            da,
            kwargs={"edges": edges},
            dask="parallelized",
            output_dtypes=[np.int64],
        )
        k = xr.DataArray(np.arange(edges.size - 1), dims="bin")
        counts = (index == k).sum(reduce_dims(index.dims, dim, "histogram"))
        if density:
            widths = xr.DataArray(np.diff(edges), dims="bin")
            result = counts / (counts.sum("bin") * widths)
        else:
            result = counts
        centres = (
            np.sqrt(edges[:-1] * edges[1:])
            if log and edges[0] > 0
            else (0.5 * (edges[:-1] + edges[1:]))
        )
        return (
            result.assign_coords(
                bin=centres, bin_lower=("bin", edges[:-1]), bin_upper=("bin", edges[1:])
            )
            .transpose("bin", ...)
            .assign_attrs(long_name="PDF" if density else "count")
        )

    if isinstance(data, xr.DataArray):
        return one(data)
    return xr.Dataset({name: one(da) for name, da in data.data_vars.items()})


_METRICS = ("crps", "crps_fair", "mae", "rmse", "spread", "spread_skill")


def verify(
    forecast: XarrayLike,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    r"""All the scalar scores in one tidy table: one row per variable.

    ========================  ==================================================
    ``crps``                  :func:`~xcorrdiff.verify.crps` (ECDF)
    ``crps_fair``             :func:`~xcorrdiff.verify.crps` with ``fair=True``
    ``mae``, ``rmse``         errors of the ensemble mean
    ``spread``                :math:`\sqrt{\langle \frac{M+1}{M}s^2\rangle}`
    ``spread_skill``          ``spread / rmse`` (1 for a calibrated ensemble)
    ========================  ==================================================

    Parameters
    ----------
    forecast, obs, member_dim, dim, weights
        As in :func:`~xcorrdiff.verify.crps` (``weights``: spatial weights of every mean).

    Returns
    -------
    Dataset
        One data variable per score with dimension ``variable`` (the forecast's variable
        names; a DataArray's name, or ``"data"``) and any dims kept by ``dim``. Lazy for
        dask input.
    """
    check_type(forecast, "forecast")
    check_member_dim(forecast, member_dim)
    forecast = _single_chunk_member(forecast, member_dim)
    if isinstance(forecast, xr.DataArray):
        forecast = forecast.rename(forecast.name if forecast.name is not None else "data")
    if isinstance(obs, xr.DataArray) and isinstance(forecast, xr.DataArray):
        obs = obs.rename(forecast.name)
    rows: dict[str, list[xr.DataArray]] = {m: [] for m in _METRICS}
    names: list[Hashable] = []
    for name, f, o in pairs(forecast, obs):
        check_numeric(f, "forecast")
        names.append(name)
        kw: dict[str, Any] = {"member_dim": member_dim, "dim": dim, "weights": weights}
        rows["crps"].append(scores.crps(f, o, **kw))
        rows["crps_fair"].append(scores.crps(f, o, fair=True, **kw))
        rows["mae"].append(scores.mae(f, o, **kw))
        rows["rmse"].append(scores.rmse(f, o, **kw))
        rows["spread"].append(scores.spread(f, o, **kw))
        rows["spread_skill"].append(scores.spread_skill(f, o, **kw))
    variable = xr.DataArray([str(n) for n in names], dims="variable", name="variable")
    table = xr.Dataset(
        {
            metric: xr.concat(
                [da.drop_attrs().rename(None) for da in values],
                dim=variable,
                coords="minimal",
                compat="override",
                join="outer",
            )
            for metric, values in rows.items()
        }
    )
    return table.assign_attrs(member_dim=member_dim, reduced_dims=reduce_dims_repr(dim))


def _single_chunk_member(forecast: XarrayLike, member_dim: str) -> XarrayLike:
    """Rechunk a split member dim once for all the scores (one warning, not one per score)."""
    chunks = forecast.chunksizes.get(member_dim) if forecast.chunks else None
    if chunks is None or len(chunks) <= 1:
        return forecast
    warnings.warn(
        f"verify: forecast is split over several dask chunks along [{member_dim!r}]; "
        f"rechunking to one chunk (chunk with {{{member_dim!r}: -1}} to avoid this)",
        UserWarning,
        stacklevel=3,
    )
    return forecast.chunk({member_dim: -1})


def reduce_dims_repr(dim: Dim) -> str:
    """How ``dim`` reads in the ``verify`` table's attributes."""
    if dim is None:
        return "all"
    return str(list(dim) if not isinstance(dim, str) else [dim])

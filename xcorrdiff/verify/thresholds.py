"""Threshold scores of an ensemble: Brier score, reliability and fractions skill score (FSS).

An event is a value at or above a threshold (``x >= threshold``, in the variable's units).
The forecast probability of the event at a point is the fraction of the valid (non-NaN)
members that reach it. ``threshold`` (and ``window`` for FSS) may be one value or a
sequence; a sequence adds a ``threshold`` (``window``) dimension.

NaN semantics follow the other scores: a point where the observation is NaN, or where no
member is valid, takes no part; FSS fractions count only the valid points of each window.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from xcorrdiff.verify._xarray import (
    T,
    XarrayLike,
    align_pair,
    map_pairs,
    pairs,
    reduce_dims,
    single_chunk,
)
from xcorrdiff.verify.scores import Dim, weighted_mean

__all__ = ["brier_score", "fss", "reliability"]

Thresholds = float | Sequence[float]


def _thresholds(threshold: Thresholds, name: str = "threshold") -> xr.DataArray:
    """A scalar DataArray, or one with a ``name`` dim for a sequence."""
    try:
        values = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.ndim > 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"{name}={threshold!r} is invalid; expected a finite number or a non-empty "
            "sequence of finite numbers (in the variable's units)"
        )
    return _labelled(values, name)


def _labelled(values: np.ndarray, name: str) -> xr.DataArray:
    """``values`` as a scalar DataArray, or along a dim ``name`` labelled by them."""
    if values.ndim == 0:
        return xr.DataArray(values)
    return xr.DataArray(values, dims=(name,), coords={name: values})


def _exceed(da: xr.DataArray, threshold: xr.DataArray) -> xr.DataArray:
    """1.0 where ``da >= threshold``, 0.0 below, NaN where ``da`` is NaN (float64)."""
    return (da >= threshold).astype(np.float64).where(da.notnull())


def _probability(f: xr.DataArray, threshold: xr.DataArray, member_dim: str) -> xr.DataArray:
    """The fraction of valid members at or above ``threshold`` (NaN: no valid member)."""
    count = f.count(member_dim)
    return _exceed(f, threshold).sum(member_dim) / count.where(count > 0)


def brier_score(
    forecast: T,
    obs: XarrayLike,
    threshold: Thresholds,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    fair: bool = False,
    weights: xr.DataArray | None = None,
) -> T:
    r"""Brier score of the event ``x >= threshold``: :math:`\langle (p - o)^2 \rangle_{dim}`.

    :math:`p` is the fraction of the :math:`M` valid members at or above the threshold and
    :math:`o \in \{0, 1\}` the observed event. With ``fair=True`` the fair Brier score
    (Ferro 2014), :math:`(p - o)^2 - p(1 - p)/(M - 1)`, which does not favour small ensembles
    (points with one valid member drop out).

    Parameters
    ----------
    forecast, obs
        Ensemble (with ``member_dim``) and observations, as for :func:`~xcorrdiff.verify.crps`.
    threshold : float or sequence of float
        In the variable's units; a sequence gives a ``threshold`` dimension.
    member_dim, dim, weights
        As for :func:`~xcorrdiff.verify.crps`.
    fair : bool, default False
        The fair (ensemble-size-unbiased) score.

    Returns
    -------
    Same type as ``forecast``
        Dimensionless, between 0 (perfect) and 1 (``fair=False``).
    """
    thresholds = _thresholds(threshold)

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        p = _probability(f, thresholds, member_dim)
        score = (p - _exceed(o, thresholds)) ** 2
        if fair:
            count = f.count(member_dim)
            score = score - p * (1 - p) / (count - 1).where(count > 1)
        kept = [d for d in score.dims if d != "threshold"]
        dims = reduce_dims(kept, dim, "Brier score")
        return weighted_mean(score, dims, weights).assign_attrs(
            long_name="fair Brier score" if fair else "Brier score", units="1"
        )

    return map_pairs(forecast, obs, member_dim, per_variable)


def _bin_edges(bins: int | Sequence[float]) -> np.ndarray:
    """Probability bin edges: ``bins`` equal bins of [0, 1], or the increasing edges given."""
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool) and bins >= 1:
        return np.linspace(0.0, 1.0, int(bins) + 1)
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        edges = np.array([np.nan])
    if (
        edges.ndim != 1
        or edges.size < 2
        or not np.all(np.diff(edges) > 0)
        or edges[0] != 0.0
        or edges[-1] != 1.0
    ):
        raise ValueError(
            f"bins={bins!r} is invalid; expected a number of equal bins >= 1 or increasing "
            "edges from 0 to 1, e.g. [0, 0.1, 0.5, 1]"
        )
    return edges


def reliability(
    forecast: XarrayLike,
    obs: XarrayLike,
    threshold: Thresholds,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    bins: int | Sequence[float] = 10,
) -> xr.Dataset:
    """Reliability diagram of the event ``x >= threshold``: how often the event was observed
    when the ensemble gave it a probability in each bin.

    A point's forecast probability is the fraction of its valid members at or above the
    threshold; bins are ``[lo, hi)``, the last one closed at 1. For a reliable ensemble the
    observed frequency equals the mean forecast probability of its bin.

    Parameters
    ----------
    forecast, obs
        Ensemble (with ``member_dim``) and observations, as for :func:`~xcorrdiff.verify.crps`.
    threshold : float or sequence of float
        In the variable's units; a sequence gives a ``threshold`` dimension.
    member_dim, dim
        As for :func:`~xcorrdiff.verify.crps` (``dim``: the dims pooled into the bins).
    bins : int or sequence of float, default 10
        A number of equal probability bins, or their edges from 0 to 1.

    Returns
    -------
    xarray.Dataset
        On a ``probability_bin`` dim (labelled by the bin centres): ``observed_frequency``
        (NaN for an empty bin), ``forecast_probability`` (the mean forecast probability of the
        bin's cases) and ``samples`` (their number); with a ``variable`` dim when ``forecast``
        is a Dataset.
    """
    thresholds, edges = _thresholds(threshold), _bin_edges(bins)
    results = [
        _reliability(*align_pair(f, o, member_dim), thresholds, edges, member_dim, dim)
        for _, f, o in pairs(forecast, obs)
    ]
    if isinstance(forecast, xr.DataArray):
        return results[0]
    names = [str(n) for n in forecast.data_vars]
    return xr.concat(results, dim=xr.DataArray(names, dims="variable", name="variable"))


def _reliability(
    f: xr.DataArray,
    o: xr.DataArray,
    thresholds: xr.DataArray,
    edges: np.ndarray,
    member_dim: str,
    dim: Dim,
) -> xr.Dataset:
    centres = (edges[:-1] + edges[1:]) / 2
    p = _probability(f, thresholds, member_dim)
    event = _exceed(o, thresholds)
    which = xr.apply_ufunc(
        lambda x: np.clip(np.searchsorted(edges, x, side="right") - 1, 0, centres.size - 1),
        p, dask="parallelized", output_dtypes=[np.int64],
    )  # fmt: skip
    labels = xr.DataArray(np.arange(centres.size), dims="probability_bin")
    cases = (which == labels) & p.notnull() & event.notnull()
    kept = [d for d in p.dims if d != "threshold"]
    dims = reduce_dims(kept, dim, "reliability diagram")
    samples = cases.sum(dims)
    per_bin = samples.where(samples > 0)
    out = xr.Dataset(
        {
            "observed_frequency": event.where(cases, 0.0).sum(dims) / per_bin,
            "forecast_probability": p.where(cases, 0.0).sum(dims) / per_bin,
            "samples": samples,
        }
    ).assign_coords(probability_bin=centres)
    out["observed_frequency"].attrs = {"long_name": "observed relative frequency", "units": "1"}
    out["forecast_probability"].attrs = {"long_name": "mean forecast probability", "units": "1"}
    out["samples"].attrs = {"long_name": "number of cases"}
    return out


def _window_sums(values: np.ndarray, half: int) -> np.ndarray:
    """Sums over the (2·half+1)² window around every point of the last two axes (a window
    is cut at the edges), by a summed-area table in float64."""
    ny, nx = values.shape[-2:]
    table = np.zeros((*values.shape[:-2], ny + 1, nx + 1))
    table[..., 1:, 1:] = values.cumsum(-2).cumsum(-1)
    y0, y1 = np.clip(np.arange(ny) - half, 0, ny), np.clip(np.arange(ny) + half + 1, 0, ny)
    x0, x1 = np.clip(np.arange(nx) - half, 0, nx), np.clip(np.arange(nx) + half + 1, 0, nx)
    return (
        table[..., y1[:, None], x1]
        - table[..., y0[:, None], x1]
        - table[..., y1[:, None], x0]
        + table[..., y0[:, None], x0]
    )


def _fraction(x: np.ndarray, threshold: float, half: int, members: bool) -> np.ndarray:
    """Per point: the share of the valid values of its window at or above ``threshold``
    (over the member axis -3 too when ``members``); NaN where the window has none."""
    valid = ~np.isnan(x)
    hits = _window_sums((valid & (x >= threshold)).astype(float), half)
    count = _window_sums(valid.astype(float), half)
    if members:
        hits, count = hits.sum(-3), count.sum(-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / count, np.nan)


def _fss_terms(
    f: np.ndarray, o: np.ndarray, threshold: float, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per point: (Pf − Po)² and Pf² + Po², NaN where the observation is NaN; ``f`` is
    ``(..., member, y, x)``, ``o`` is ``(..., y, x)``."""
    half = (window - 1) // 2
    pf = _fraction(f, threshold, half, members=True)
    po = _fraction(o, threshold, half, members=False)
    keep = ~np.isnan(o) & ~np.isnan(pf)
    return np.where(keep, (pf - po) ** 2, np.nan), np.where(keep, pf**2 + po**2, np.nan)


def fss(
    forecast: T,
    obs: XarrayLike,
    threshold: Thresholds,
    window: int | Sequence[int],
    *,
    member_dim: str = "member",
    spatial_dims: Sequence[Hashable] = ("y", "x"),
    dim: Dim = None,
) -> T:
    r"""Fractions skill score (Roberts & Lean 2008) of the event ``x >= threshold``.

    Around every point, the forecast fraction :math:`P_f` is the share of the valid
    (member, point) pairs in the ``window × window`` square that reach the threshold (the
    ensemble's neighbourhood probability), :math:`P_o` the share of the valid observed points;
    windows are cut at the domain's edges (no padding). Then

    .. math:: \mathrm{FSS} = 1 - \frac{\sum (P_f - P_o)^2}{\sum P_f^2 + \sum P_o^2}

    with the sums over the points where the observation is valid, over ``spatial_dims`` and
    the dims named by ``dim``. 1 is perfect, 0 no skill; NaN when neither forecast nor
    observation has the event anywhere.

    Parameters
    ----------
    forecast, obs
        Ensemble (with ``member_dim``) and observations, as for :func:`~xcorrdiff.verify.crps`.
    threshold : float or sequence of float
        In the variable's units; a sequence gives a ``threshold`` dimension.
    window : int or sequence of int
        Odd neighbourhood sides in grid points (1: the points themselves); a sequence gives a
        ``window`` dimension.
    spatial_dims : pair of str, default ("y", "x")
        The grid's dims (one chunk each on dask; other dims may be chunked).
    dim : str, sequence or None
        Further dims to sum over (``None``: all; ``[]``: keep them, one FSS per time, say).

    Returns
    -------
    Same type as ``forecast``
        Dimensionless.
    """
    thresholds, windows = _thresholds(threshold), _windows(window)
    spatial: list[Hashable] = list(spatial_dims)

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        missing = [d for d in spatial if d not in o.dims]
        if isinstance(spatial_dims, str) or len(spatial) != 2 or missing:
            raise ValueError(
                f"spatial_dims={tuple(spatial_dims)!r} is invalid for obs dims {o.dims}; "
                "expected the two grid dims, e.g. spatial_dims=('y', 'x')"
            )
        f = single_chunk(f.astype(np.float64), [member_dim, *spatial], "FSS")
        o = single_chunk(o.astype(np.float64), spatial, "FSS")
        sq, ref = xr.apply_ufunc(
            _fss_ufunc, f, o, thresholds, windows,
            input_core_dims=[[member_dim, *spatial], spatial, [], []],
            output_core_dims=[spatial, spatial], vectorize=False,
            dask="parallelized", output_dtypes=[np.float64, np.float64],
        )  # fmt: skip
        kept: list[Hashable] = [d for d in sq.dims if d not in (*spatial, "threshold", "window")]
        dims = [*spatial, *reduce_dims(kept, dim, "FSS")]
        num, den = sq.sum(dims), ref.sum(dims)
        return (1 - num / den.where(den > 0)).assign_attrs(
            long_name="fractions skill score", units="1"
        )

    return map_pairs(forecast, obs, member_dim, per_variable)


def _fss_ufunc(
    f: np.ndarray, o: np.ndarray, threshold: np.ndarray, window: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast over leading axes (threshold and window arrive as broadcast arrays)."""
    shape = np.broadcast_shapes(f.shape[:-3], o.shape[:-2], threshold.shape, window.shape)
    f = np.broadcast_to(f, (*shape, *f.shape[-3:]))
    o = np.broadcast_to(o, (*shape, *o.shape[-2:]))
    thr, win = np.broadcast_to(threshold, shape), np.broadcast_to(window, shape)
    sq, ref = np.empty(o.shape), np.empty(o.shape)
    for index in np.ndindex(*shape):
        sq[index], ref[index] = _fss_terms(f[index], o[index], float(thr[index]), int(win[index]))
    return sq, ref


def _windows(window: int | Sequence[int]) -> xr.DataArray:
    values = np.asarray(window)
    if (
        values.ndim > 1
        or values.size == 0
        or values.dtype.kind not in "iu"
        or np.any(values < 1)
        or np.any(values % 2 == 0)
    ):
        raise ValueError(
            f"window={window!r} is invalid; expected an odd integer >= 1 or a non-empty "
            "sequence of them (neighbourhood sides in grid points)"
        )
    return _labelled(values, "window")

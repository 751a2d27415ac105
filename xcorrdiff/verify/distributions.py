"""Distribution diagnostics for climate output: is the distribution of the values right?

A climate projection is judged by the distribution of its values at each place, not by
its day-to-day match with the truth. Each score here compares the values of ``forecast``
along ``dim`` (default ``"time"``: per grid point over time; ``dim=None``: pooled over
every dimension but the ensemble's, e.g. a region) with those of ``obs`` along the same
dims (the CORDEX ML-Bench set):

* :func:`wasserstein` — Wasserstein-1 distance, ``∫ |F_f(x) − F_o(x)| dx`` (the
  variable's units; 0 is identical);
* :func:`perkins` — Perkins skill score, the shared area of the two histograms,
  ``Σ_b min(p_f(b), p_o(b))`` (1 is identical, 0 disjoint);
* :func:`log_histogram_distance` — mean absolute difference of the log10 histogram
  shares, on Perkins' bins (0 is identical; weighs the tails);
* :func:`quantile_bias` — forecast quantile minus obs quantile at chosen probabilities;
* :func:`std_ratio` — standard deviation of the forecast's values over that of the obs;
* :func:`autocorrelation_ratio` — lag-1 (or lag-k) autocorrelation in time over the obs';
* :func:`interannual_ratio` — standard deviation of the annual means over the obs'.

The ensemble is scored **as a pool** (``per_member=False``, default: all members' values
together, the distribution the ensemble claims) or **member by member**
(``per_member=True``: the result keeps ``member_dim``, whose spread is the members' spread
of the score). NaN values (land-only data, missing times) are dropped point by point; a
point with no valid value on either side scores NaN. Numpy- or dask-backed input (dask
stays lazy; the sample dims must be one chunk each, rechunked with a warning otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from xcorrdiff.verify._xarray import T, XarrayLike, map_pairs, single_chunk, units_attrs

__all__ = [
    "QUANTILES",
    "autocorrelation_ratio",
    "interannual_ratio",
    "log_histogram_distance",
    "perkins",
    "quantile_bias",
    "std_ratio",
    "wasserstein",
]

#: The default probabilities of :func:`quantile_bias` (the benchmark's).
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.5, 0.95, 0.99, 0.999)

Dim = str | Iterable[Hashable] | None


# --- numpy kernels on two 1-D samples ---------------------------------------------------------


def _valid(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return np.sort(values[~np.isnan(values)])


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between the samples ``a`` and ``b`` (NaN dropped): the integral of the absolute
    difference of their empirical CDFs."""
    a, b = _valid(a), _valid(b)
    if a.size == 0 or b.size == 0:
        return np.nan
    both = np.concatenate([a, b])
    both.sort(kind="mergesort")
    steps = np.diff(both)
    cdf_a = np.searchsorted(a, both[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, both[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * steps))


def _shares(a: np.ndarray, b: np.ndarray, bins: int | np.ndarray) -> tuple[np.ndarray, ...]:
    """Each valid sample's share of its values in the shared bins: ``bins`` equal bins
    spanning both samples' range, or the given edges (values outside them count in the
    total, in no bin). Empty when a sample has no valid value; one bin each (1, 1) when
    both samples are one and the same value."""
    a, b = _valid(a), _valid(b)
    if a.size == 0 or b.size == 0:
        return ()
    if np.ndim(bins) == 0:
        low, high = min(a[0], b[0]), max(a[-1], b[-1])
        if low == high:
            return (np.ones(1), np.ones(1))
        edges = np.linspace(low, high, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
    return (np.histogram(a, edges)[0] / a.size, np.histogram(b, edges)[0] / b.size)


def perkins_1d(a: np.ndarray, b: np.ndarray, bins: int | np.ndarray) -> float:
    """The Perkins skill score of ``a`` against ``b`` (NaN dropped): the summed minimum of
    their shares in the bins of :func:`_shares`."""
    shares = _shares(a, b, bins)
    return float(np.minimum(*shares).sum()) if shares else np.nan


def log_histogram_1d(a: np.ndarray, b: np.ndarray, bins: int | np.ndarray, floor: float) -> float:
    """The log histogram distance of ``a`` from ``b`` (NaN dropped): the mean over the bins
    of :func:`_shares` of ``|log10(p_a + floor) − log10(p_b + floor)|``."""
    shares = _shares(a, b, bins)
    if not shares:
        return np.nan
    return float(np.mean(np.abs(np.log10(shares[0] + floor) - np.log10(shares[1] + floor))))


def _quantiles_1d(a: np.ndarray, b: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    a, b = _valid(a), _valid(b)
    if a.size == 0 or b.size == 0:
        return np.full(probabilities.shape, np.nan)
    return np.quantile(a, probabilities) - np.quantile(b, probabilities)


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    """Lag-``lag`` autocorrelation along the last axis of ``x`` (rows: series, e.g. members,
    pooled: one mean, the lagged products and the squares summed over all rows); pairs
    with a NaN are dropped."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = x - np.nanmean(x) if np.isfinite(x).any() else x
    products = d[:, :-lag] * d[:, lag:]
    pairs, squares = np.isfinite(products), np.isfinite(d)
    if pairs.sum() < 1 or squares.sum() < 2:
        return np.nan
    variance = np.sum(d[squares] ** 2) / squares.sum()
    return float(np.sum(products[pairs]) / pairs.sum() / variance) if variance > 0 else np.nan


def _std_ratio_1d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _valid(a), _valid(b)
    if a.size < 2 or b.size < 2:
        return np.nan
    spread = np.std(b, ddof=1)
    return float(np.std(a, ddof=1) / spread) if spread > 0 else np.nan


# --- the xarray layer -------------------------------------------------------------------------


def _sample_dims(obs: xr.DataArray, dim: Dim) -> list[Hashable]:
    if dim is None:
        return list(obs.dims)
    dims: list[Hashable] = [dim] if isinstance(dim, str) else list(dim)
    missing = [d for d in dims if d not in obs.dims]
    if missing:
        raise ValueError(
            f"dim {missing} not found: obs has dims {tuple(obs.dims)}; the distribution is "
            "formed over dim (default 'time'; None: every dim, e.g. a region pooled)"
        )
    return dims


def _compare(
    forecast: T,
    obs: XarrayLike,
    kernel: Callable[[np.ndarray, np.ndarray], object],
    *,
    member_dim: str,
    dim: Dim,
    per_member: bool,
    long_name: str,
    units: bool,
    output: tuple[str, Sequence[float]] | None = None,
) -> T:
    """Apply ``kernel(forecast values, obs values)`` at every point the sample dims leave."""

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        over: list[Hashable] = _sample_dims(o, dim)
        core_f: list[Hashable] = over if per_member else [member_dim, *over]
        f, o = single_chunk(f, core_f, long_name), single_chunk(o, over, long_name)
        out_core = [[output[0]]] if output else [[]]
        result = xr.apply_ufunc(
            kernel, f, o, input_core_dims=[core_f, over], output_core_dims=out_core,
            vectorize=True, dask="parallelized", output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {output[0]: len(output[1])}} if output else None,
        )  # fmt: skip
        if output:
            result = result.assign_coords({output[0]: list(output[1])})
        attrs = units_attrs(f, long_name) if units else {"long_name": long_name}
        return result.assign_attrs(attrs)

    return map_pairs(forecast, obs, member_dim, per_variable)


def wasserstein(
    forecast: T, obs: XarrayLike, *, member_dim: str = "member", dim: Dim = "time",
    per_member: bool = False,
) -> T:  # fmt: skip
    """Wasserstein-1 distance between the values' distributions (the variable's units).

    Parameters
    ----------
    forecast : xarray.Dataset or DataArray
        The ensemble, with ``member_dim``.
    obs : xarray.Dataset or DataArray
        The truth (no ``member_dim``).
    member_dim : str, default "member"
    dim : str, sequence of str or None, default "time"
        The dimensions the distribution is formed over; the others are kept. None: all.
    per_member : bool, default False
        Score each member's distribution (the result keeps ``member_dim``) instead of the
        members' pool.
    """
    return _compare(
        forecast, obs, wasserstein_1d, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name="Wasserstein-1 distance", units=True,
    )  # fmt: skip


def perkins(
    forecast: T, obs: XarrayLike, *, bins: int | Sequence[float] = 50, member_dim: str = "member",
    dim: Dim = "time", per_member: bool = False,
) -> T:  # fmt: skip
    """Perkins skill score: the area the two histograms share, in [0, 1] (1: identical).

    ``bins``: the number of equal-width bins spanning, at each point, the range of both
    samples (default 50), or the bin edges, the same everywhere (values outside them count
    in a histogram's total but in no bin, so they lower the score). The other arguments are
    :func:`wasserstein`'s.
    """
    edges = bins if np.ndim(bins) == 0 else np.asarray(bins, dtype=np.float64)

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return perkins_1d(a, b, edges)  # type: ignore[arg-type]

    return _compare(
        forecast, obs, kernel, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name="Perkins skill score", units=False,
    )  # fmt: skip


def quantile_bias(
    forecast: T, obs: XarrayLike, *, quantiles: Sequence[float] = QUANTILES,
    member_dim: str = "member", dim: Dim = "time", per_member: bool = False,
) -> T:  # fmt: skip
    """Forecast quantile minus obs quantile (numpy's linear interpolation), on a new
    ``quantile`` dimension; the other arguments are :func:`wasserstein`'s."""
    probabilities = np.asarray(quantiles, dtype=np.float64)
    if probabilities.ndim != 1 or not np.all((probabilities >= 0) & (probabilities <= 1)):
        raise ValueError(f"quantiles={list(quantiles)!r} is invalid; expected values in [0, 1]")

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _quantiles_1d(a, b, probabilities)

    return _compare(
        forecast, obs, kernel, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name="quantile bias", units=True, output=("quantile", probabilities.tolist()),
    )  # fmt: skip


def std_ratio(
    forecast: T, obs: XarrayLike, *, member_dim: str = "member", dim: Dim = "time",
    per_member: bool = False,
) -> T:  # fmt: skip
    """Standard deviation (ddof 1) of the forecast's values over the obs'; 1 is right.
    The arguments are :func:`wasserstein`'s."""
    return _compare(
        forecast, obs, _std_ratio_1d, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name="ratio of standard deviations", units=False,
    )  # fmt: skip


def log_histogram_distance(
    forecast: T, obs: XarrayLike, *, bins: int | Sequence[float] = 50, floor: float = 1e-4,
    member_dim: str = "member", dim: Dim = "time", per_member: bool = False,
) -> T:  # fmt: skip
    """Log histogram distance: the mean over :func:`perkins`' bins of
    ``|log10(p_f + floor) − log10(p_o + floor)|``, with ``p`` each sample's share of its
    values in a bin (0 is identical). Unlike Perkins' shared area, which rare bins barely
    move, the logarithm weighs a tail bin's 1 % against 0.01 % as much as the centre's
    50 % against 0.5 %; ``floor`` (default 1e-4: one value in 10,000) caps what an empty
    bin costs. The other arguments are :func:`perkins`'."""
    if not (isinstance(floor, (int, float)) and not isinstance(floor, bool) and floor > 0):
        raise ValueError(f"floor={floor!r} is invalid; expected a share > 0, e.g. 1e-4")
    edges = bins if np.ndim(bins) == 0 else np.asarray(bins, dtype=np.float64)

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return log_histogram_1d(a, b, edges, float(floor))  # type: ignore[arg-type]

    return _compare(
        forecast, obs, kernel, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name="log histogram distance", units=False,
    )  # fmt: skip


def autocorrelation_ratio(
    forecast: T, obs: XarrayLike, *, lag: int = 1, member_dim: str = "member",
    dim: str = "time", per_member: bool = False,
) -> T:  # fmt: skip
    """Lag-``lag`` autocorrelation along ``dim`` of the forecast over the obs' (1 is right;
    persistence of heat waves and dry spells). The pool's autocorrelation sums the
    members' lagged products about one mean; pairs with a NaN are dropped. ``dim`` is one
    dimension, in time order; the other arguments are :func:`wasserstein`'s."""
    if not isinstance(dim, str):
        raise ValueError(f"dim={dim!r} is invalid; expected the one (time) dimension, a str")
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1:
        raise ValueError(f"lag={lag!r} is invalid; expected an integer >= 1")

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        truth = _autocorrelation(b, int(lag))
        return _autocorrelation(a, int(lag)) / truth if truth != 0 else np.nan

    return _compare(
        forecast, obs, kernel, member_dim=member_dim, dim=dim, per_member=per_member,
        long_name=f"ratio of lag-{lag} autocorrelations", units=False,
    )  # fmt: skip


def _annual_means(data: XarrayLike, dim: str) -> XarrayLike:
    annual = data.groupby(f"{dim}.year").mean(dim)
    return annual.chunk({"year": -1}) if annual.chunks else annual  # dask: the years in one


def interannual_ratio(
    forecast: T, obs: XarrayLike, *, member_dim: str = "member", dim: str = "time",
    per_member: bool = False,
) -> T:  # fmt: skip
    """Interannual variability: the standard deviation (ddof 1) of the forecast's annual
    means over the obs' (1 is right). Annual means by calendar year of ``dim`` (datetime64
    or cftime; NaN skipped), then :func:`std_ratio` over the years; at least two years.
    The ensemble's is the root of its members' mean interannual variance,
    ``sqrt(mean_m s_m²) / s_o``: the members' annual means are nearly alike (they share
    the large-scale input), so one standard deviation over all of them, as if they were
    independent, would come out low (by ``sqrt((Y − 1) M / (Y M − 1))`` for ``M``
    identical members and ``Y`` years: 0.88 for 8 members and 4 years)."""
    for name, data in (("forecast", forecast), ("obs", obs)):
        if dim not in data.dims or data[dim].dtype.kind not in "MO":
            raise ValueError(
                f"interannual_ratio: {name} needs a datetime coordinate on dim={dim!r} "
                f"(got dims {tuple(data.dims)}); annual means are by calendar year"
            )
    years = np.unique(obs[dim].dt.year.values)
    if years.size < 2:
        raise ValueError(
            f"interannual_ratio: obs spans {years.size} calendar year(s) of {dim!r}; "
            "expected at least 2"
        )
    annual: T = _annual_means(forecast, dim)  # type: ignore[assignment]
    ratio = std_ratio(
        annual, _annual_means(obs, dim), member_dim=member_dim, dim="year", per_member=True
    )
    if not per_member:
        ratio = (ratio**2).mean(member_dim) ** 0.5
    name = "ratio of interannual standard deviations"
    if isinstance(ratio, xr.DataArray):
        return ratio.assign_attrs(long_name=name)
    return ratio.map(lambda v: v.assign_attrs(long_name=name))

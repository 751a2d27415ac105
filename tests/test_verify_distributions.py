"""Distribution diagnostics against independent computations: scipy's Wasserstein
distance, brute-force loops for Perkins, quantiles and standard deviations; NaN points
included, numpy and dask alike."""

from __future__ import annotations

import math
import statistics
import warnings

import dask
import numpy as np
import pytest
import scipy.stats
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff.verify.distributions as xd


@pytest.fixture(scope="module")
def pair() -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(0)
    f = rng.gamma(2.0, 1.5, size=(3, 40, 2, 3))
    o = rng.gamma(2.5, 1.2, size=(40, 2, 3))
    f[0, :5, 0, 0] = np.nan  # a member with missing times at one point
    o[::3, 1, 2] = np.nan  # obs missing every third time at another
    o[:, 0, 1] = np.nan  # and a point with no obs at all
    dims = ("member", "time", "y", "x")
    forecast = xr.DataArray(f, dims=dims, name="pr", attrs={"units": "mm"})
    obs = xr.DataArray(o, dims=dims[1:], name="pr", attrs={"units": "mm"})
    return forecast, obs


def _points(obs: xr.DataArray):  # type: ignore[no-untyped-def]
    return [(j, i) for j in range(obs.sizes["y"]) for i in range(obs.sizes["x"])]


def _valid(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[~np.isnan(values)]


def test_wasserstein_equals_scipy_per_point(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    pooled = xd.wasserstein(forecast, obs)
    members = xd.wasserstein(forecast, obs, per_member=True)
    assert pooled.dims == ("y", "x") and members.dims == ("member", "y", "x")
    assert pooled.attrs["units"] == "mm"
    for j, i in _points(obs):
        o = _valid(obs[:, j, i])
        if o.size == 0:
            assert np.isnan(pooled[j, i]) and np.isnan(members[:, j, i]).all()
            continue
        expected = scipy.stats.wasserstein_distance(_valid(forecast[:, :, j, i]), o)
        assert math.isclose(float(pooled[j, i]), expected, rel_tol=1e-10, abs_tol=1e-12)
        for m in range(3):
            expected = scipy.stats.wasserstein_distance(_valid(forecast[m, :, j, i]), o)
            assert math.isclose(float(members[m, j, i]), expected, rel_tol=1e-10, abs_tol=1e-12)


def _shares_loop(a: np.ndarray, b: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    edges = [low + (high - low) * k / bins for k in range(bins + 1)]
    counts = {"a": [0] * bins, "b": [0] * bins}
    for name, sample in (("a", a), ("b", b)):
        for v in sample:
            for k in range(bins):
                last = k == bins - 1
                if edges[k] <= v < edges[k + 1] or (last and v == edges[k + 1]):
                    counts[name][k] += 1
                    break
    return [c / a.size for c in counts["a"]], [c / b.size for c in counts["b"]]


def _perkins_loop(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    return sum(min(pa, pb) for pa, pb in zip(*_shares_loop(a, b, bins), strict=True))


def test_perkins_equals_a_brute_force_loop(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    scores = xd.perkins(forecast, obs, bins=10)
    for j, i in _points(obs):
        o = _valid(obs[:, j, i])
        if o.size == 0:
            assert np.isnan(scores[j, i])
            continue
        expected = _perkins_loop(_valid(forecast[:, :, j, i]), o, 10)
        assert math.isclose(float(scores[j, i]), expected, rel_tol=1e-10, abs_tol=1e-12)
    same = xd.perkins(obs.expand_dims(member=1), obs, bins=10)
    np.testing.assert_allclose(same.values[~np.isnan(same.values)], 1.0, rtol=1e-12)


def _quantile_loop(values: np.ndarray, p: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * p
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def test_quantile_bias_and_std_ratio_equal_brute_force(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    bias = xd.quantile_bias(forecast, obs)
    ratio = xd.std_ratio(forecast, obs, per_member=True)
    assert bias.dims == ("y", "x", "quantile") and list(bias["quantile"].values) == list(
        xd.QUANTILES
    )
    for j, i in _points(obs):
        o = _valid(obs[:, j, i])
        if o.size == 0:
            assert np.isnan(bias[j, i]).all() and np.isnan(ratio[:, j, i]).all()
            continue
        f = _valid(forecast[:, :, j, i])
        for k, p in enumerate(xd.QUANTILES):
            expected = _quantile_loop(f, p) - _quantile_loop(o, p)
            assert math.isclose(float(bias[j, i, k]), expected, rel_tol=1e-10, abs_tol=1e-12)
        for m in range(3):
            expected = statistics.stdev(_valid(forecast[m, :, j, i])) / statistics.stdev(o)
            assert math.isclose(float(ratio[m, j, i]), expected, rel_tol=1e-10)


def test_a_region_pooled_and_dask_lazy(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    region = xd.wasserstein(forecast, obs, dim=None)
    expected = scipy.stats.wasserstein_distance(_valid(forecast), _valid(obs))
    assert region.dims == () and math.isclose(float(region), expected, rel_tol=1e-10)
    with raise_if_dask_computes():
        lazy = xd.perkins(forecast.chunk(y=1), obs.chunk(y=1), bins=12)
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_allclose(
            lazy.values, xd.perkins(forecast, obs, bins=12).values, rtol=1e-12
        )
    ds = xd.quantile_bias(forecast.to_dataset(), obs.to_dataset(), quantiles=[0.5])
    assert list(ds.data_vars) == ["pr"] and ds["pr"].sizes["quantile"] == 1


def test_bad_arguments_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    with pytest.raises(ValueError, match=r"dim \['lead'\] not found: obs has dims"):
        xd.wasserstein(forecast, obs, dim="lead")
    with pytest.raises(
        ValueError, match=r"quantiles=\[1.5\] is invalid; expected values in \[0, 1\]"
    ):
        xd.quantile_bias(forecast, obs, quantiles=[1.5])
    with pytest.raises(ValueError, match=r"forecast has no member dimension 'member'"):
        xd.std_ratio(obs, obs)


def test_log_histogram_distance_equals_a_brute_force_loop(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    scores = xd.log_histogram_distance(forecast, obs, bins=10, per_member=True)
    for j, i in _points(obs):
        o = _valid(obs[:, j, i])
        if o.size == 0:
            assert np.isnan(scores[:, j, i]).all()
            continue
        for m in range(3):
            shares = _shares_loop(_valid(forecast[m, :, j, i]), o, 10)
            expected = statistics.fmean(
                abs(math.log10(pa + 1e-4) - math.log10(pb + 1e-4))
                for pa, pb in zip(*shares, strict=True)
            )
            assert math.isclose(float(scores[m, j, i]), expected, rel_tol=1e-10)
    same = xd.log_histogram_distance(obs.expand_dims(member=2), obs)
    np.testing.assert_allclose(same.values[~np.isnan(same.values)], 0.0, atol=1e-12)


def _autocorrelation_loop(series: list[np.ndarray], lag: int) -> float:
    values = [v for s in series for v in s if not math.isnan(v)]
    mean = statistics.fmean(values)
    variance = statistics.fmean((v - mean) ** 2 for v in values)
    products = [
        (s[t] - mean) * (s[t + lag] - mean)
        for s in series
        for t in range(len(s) - lag)
        if not (math.isnan(s[t]) or math.isnan(s[t + lag]))
    ]
    return statistics.fmean(products) / variance


def test_autocorrelation_ratio_equals_a_brute_force_loop(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    for lag in (1, 3):
        pooled = xd.autocorrelation_ratio(forecast, obs, lag=lag)
        members = xd.autocorrelation_ratio(forecast, obs, lag=lag, per_member=True)
        for j, i in _points(obs):
            o = obs.values[:, j, i]
            if np.isnan(o).all():
                assert np.isnan(pooled[j, i]) and np.isnan(members[:, j, i]).all()
                continue
            truth = _autocorrelation_loop([o], lag)
            f = forecast.values[:, :, j, i]
            expected = _autocorrelation_loop(list(f), lag) / truth
            assert math.isclose(float(pooled[j, i]), expected, rel_tol=1e-10)
            for m in range(3):
                expected = _autocorrelation_loop([f[m]], lag) / truth
                assert math.isclose(float(members[m, j, i]), expected, rel_tol=1e-10)


def test_autocorrelation_ratio_tells_persistence_apart() -> None:
    rng = np.random.default_rng(1)

    def ar1(phi: float, shape: tuple[int, ...]) -> np.ndarray:
        x = np.zeros(shape)
        for t in range(1, shape[-1]):
            x[..., t] = phi * x[..., t - 1] + rng.standard_normal(shape[:-1])
        return x

    obs = xr.DataArray(ar1(0.8, (4000,)), dims=["time"])
    same = xr.DataArray(ar1(0.8, (4, 4000)), dims=["member", "time"])
    white = xr.DataArray(rng.standard_normal((4, 4000)), dims=["member", "time"])
    assert abs(float(xd.autocorrelation_ratio(same, obs)) - 1) < 0.05
    assert abs(float(xd.autocorrelation_ratio(white, obs))) < 0.05


def _daily(values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    time = xr.date_range("2001-01-01", periods=values.shape[dims.index("time")], freq="D")
    return xr.DataArray(values, dims=dims, coords={"time": time}, name="tasmax")


def test_interannual_ratio_equals_annual_means_by_hand() -> None:
    rng = np.random.default_rng(2)
    days = 3 * 365 + 40  # three whole years and part of a fourth
    f = rng.normal(size=(3, days, 2)) + rng.normal(size=(3, 1, 2))
    o = rng.normal(size=(days, 2)) * 1.3
    f[1, 400:420, 0] = np.nan
    forecast, obs = _daily(f, ("member", "time", "x")), _daily(o, ("time", "x"))
    years = forecast["time"].dt.year.values
    pooled = xd.interannual_ratio(forecast, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dask: the years joined in one chunk, no warning
        with raise_if_dask_computes():
            lazy = xd.interannual_ratio(forecast.chunk(time=100), obs, per_member=True)
    members = lazy.compute()
    for i in range(2):

        def annual(series: np.ndarray) -> list[float]:
            return [float(np.nanmean(series[years == y])) for y in np.unique(years)]

        truth = statistics.stdev(annual(o[:, i]))
        variance = statistics.fmean(statistics.variance(annual(f[m, :, i])) for m in range(3))
        assert math.isclose(float(pooled[i]), math.sqrt(variance) / truth, rel_tol=1e-10)
        for m in range(3):
            expected = statistics.stdev(annual(f[m, :, i])) / truth
            assert math.isclose(float(members[m, i]), expected, rel_tol=1e-10)
    with pytest.raises(ValueError, match=r"obs spans 1 calendar year\(s\) of 'time'"):
        xd.interannual_ratio(forecast[:, :300], obs[:300])
    with pytest.raises(ValueError, match=r"obs needs a datetime coordinate on dim='time'"):
        xd.interannual_ratio(forecast, obs.drop_vars("time"))


def test_the_new_diagnostics_refuse_bad_arguments(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    with pytest.raises(ValueError, match=r"floor=0 is invalid; expected a share > 0"):
        xd.log_histogram_distance(forecast, obs, floor=0)
    with pytest.raises(ValueError, match=r"lag=0 is invalid; expected an integer >= 1"):
        xd.autocorrelation_ratio(forecast, obs, lag=0)
    with pytest.raises(ValueError, match=r"dim=\['time', 'y'\] is invalid; expected the one"):
        xd.autocorrelation_ratio(forecast, obs, dim=["time", "y"])  # type: ignore[arg-type]

"""Distribution diagnostics against independent computations: scipy's Wasserstein
distance, brute-force loops for Perkins, quantiles and standard deviations; NaN points
included, numpy and dask alike."""

from __future__ import annotations

import math
import statistics

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


def _perkins_loop(a: np.ndarray, b: np.ndarray, bins: int) -> float:
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
    return sum(
        min(ca / a.size, cb / b.size) for ca, cb in zip(counts["a"], counts["b"], strict=True)
    )


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

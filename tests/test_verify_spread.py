"""Spread-skill, ensemble-mean errors and rank histograms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes
from scipy import stats

import xcorrdiff.verify as xv
from xcorrdiff.verify import kernels


def perfect_ensemble(
    num_points: int, num_members: int, seed: int
) -> tuple[xr.DataArray, xr.DataArray]:
    """Members and observation exchangeable draws from one (point-dependent) distribution."""
    rng = np.random.default_rng(seed)
    loc = 3.0 * rng.normal(size=num_points)
    scale = np.exp(0.3 * rng.normal(size=num_points))
    members = loc[:, None] + scale[:, None] * rng.normal(size=(num_points, num_members))
    obs = loc + scale * rng.normal(size=num_points)
    return (
        xr.DataArray(members, dims=("point", "member"), name="t2m"),
        xr.DataArray(obs, dims="point", name="t2m"),
    )


@pytest.mark.parametrize("num_members", [2, 4, 32])
def test_perfect_ensemble_spread_skill_is_one(num_members: int) -> None:
    ens, obs = perfect_ensemble(40_000, num_members, seed=42)
    ratio = float(xv.spread_skill(ens, obs))
    assert ratio == pytest.approx(1.0, abs=0.03)
    uncorrected = float(xv.spread_skill(ens, obs, corrected=False))
    expected = np.sqrt(num_members / (num_members + 1))  # 0.816 at M = 2
    assert uncorrected == pytest.approx(expected, abs=0.03)
    if num_members == 2:
        assert uncorrected < 0.85  # the correction matters at small M


def test_spread_skill_formula_against_numpy() -> None:
    rng = np.random.default_rng(0)
    members = rng.normal(size=(200, 5))
    members[3, 1] = np.nan  # one NaN member: M = 4 at that point
    obs = rng.normal(size=200)
    ens = xr.DataArray(members, dims=("point", "member"))
    truth = xr.DataArray(obs, dims="point")
    count = np.sum(~np.isnan(members), axis=1)
    variance = np.nanvar(members, axis=1, ddof=1) * (count + 1) / count
    sq_error = (np.nanmean(members, axis=1) - obs) ** 2
    expected = np.sqrt(variance.mean() / sq_error.mean())
    assert float(xv.spread_skill(ens, truth)) == pytest.approx(expected, rel=1e-12)
    assert float(xv.spread(ens, truth)) == pytest.approx(np.sqrt(variance.mean()), rel=1e-12)
    assert float(xv.rmse(ens, truth)) == pytest.approx(np.sqrt(sq_error.mean()), rel=1e-12)
    mae = np.abs(np.nanmean(members, axis=1) - obs).mean()
    assert float(xv.mae(ens, truth)) == pytest.approx(mae, rel=1e-12)


@pytest.mark.parametrize("chunked", [False, True])
def test_land_only_scores_skip_the_sea_without_warnings(chunked: bool) -> None:
    """A sea point (every member NaN) or a single valid member drops out silently."""
    rng = np.random.default_rng(1)
    members = rng.normal(size=(300, 4))
    members[:100] = np.nan  # the sea
    members[100:110, 1:] = np.nan  # one valid member: no variance there
    obs = rng.normal(size=300)
    obs[:100] = np.nan
    valid = slice(110, None)
    variance = np.var(members[valid], axis=1, ddof=1) * 5 / 4
    sq_error = (members[valid].mean(axis=1) - obs[valid]) ** 2
    ens = xr.DataArray(members, dims=("point", "member"), name="t2m")
    truth = xr.DataArray(obs, dims="point", name="t2m")
    if chunked:
        ens, truth = ens.chunk(point=100), truth.chunk(point=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = xv.verify(ens, truth).compute()
        ratio = float(xv.spread_skill(ens, truth))
    expected = np.sqrt(variance.mean() / sq_error.mean())
    assert ratio == pytest.approx(expected, rel=1e-12)
    assert float(table.spread_skill.item()) == pytest.approx(expected, rel=1e-12)
    assert float(table.spread.item()) == pytest.approx(np.sqrt(variance.mean()), rel=1e-12)


def test_spread_skill_curve_lies_near_diagonal_for_perfect_ensemble() -> None:
    # Binning on the sampled spread biases low bins (regression to the mean); a wide range
    # of true spreads and M = 32 keep that small.
    rng = np.random.default_rng(1)
    scale = np.exp(rng.normal(size=60_000))
    ens = xr.DataArray(scale[:, None] * rng.normal(size=(60_000, 32)), dims=("point", "member"))
    obs = xr.DataArray(scale * rng.normal(size=60_000), dims="point")
    curve = xv.spread_skill_curve(ens, obs, bins=5)
    assert curve.dims == ("statistic", "spread_bin")
    assert list(curve["statistic"].values) == ["spread", "rmse", "count"]
    counts = curve.sel(statistic="count").values
    assert counts.sum() == 60_000
    assert np.all(np.abs(counts - 12_000) <= 1)  # equal-count bins
    spread = curve.sel(statistic="spread").values
    rmse = curve.sel(statistic="rmse").values
    assert np.all(np.diff(spread) > 0)
    np.testing.assert_allclose(rmse / spread, 1.0, atol=0.08)


def test_spread_skill_curve_against_numpy() -> None:
    ens, obs = perfect_ensemble(3_000, 6, seed=4)
    edges = np.array([0.0, 0.6, 1.0, 1.5, 20.0])
    curve = xv.spread_skill_curve(ens, obs, bins=edges)
    members = ens.values
    sigma2 = members.var(axis=1, ddof=1) * 7 / 6
    err2 = (members.mean(axis=1) - obs.values) ** 2
    which = np.digitize(np.sqrt(sigma2), edges) - 1
    for b in range(4):
        sel = which == b
        assert curve.sel(statistic="count")[b] == sel.sum()
        assert float(curve.sel(statistic="spread")[b]) == pytest.approx(
            np.sqrt(sigma2[sel].mean()), rel=1e-12
        )
        assert float(curve.sel(statistic="rmse")[b]) == pytest.approx(
            np.sqrt(err2[sel].mean()), rel=1e-12
        )


def test_spread_skill_curve_explicit_edges_is_lazy() -> None:
    ens, obs = perfect_ensemble(2_000, 4, seed=2)
    edges = np.array([0.0, 0.5, 1.0, 2.0, 10.0])
    eager = xv.spread_skill_curve(ens, obs, bins=edges)
    with raise_if_dask_computes():
        lazy = xv.spread_skill_curve(ens.chunk(point=500), obs.chunk(point=500), bins=edges)
    xr.testing.assert_allclose(lazy.compute(), eager)
    np.testing.assert_array_equal(eager["spread_lower"], edges[:-1])
    assert eager.sel(statistic="count").sum() == 2_000


# --- rank histogram ------------------------------------------------------------------------


@pytest.mark.parametrize("num_members", [4, 10])
def test_rank_histogram_flat_for_perfect_ensemble(num_members: int) -> None:
    ens, obs = perfect_ensemble(30_000, num_members, seed=7)
    counts = xv.rank_histogram(ens, obs)
    assert counts.dims == ("rank",)
    assert list(counts["rank"].values) == list(range(num_members + 1))
    assert int(counts.sum()) == 30_000
    # Chi-square goodness of fit to the uniform: fixed seed, 0.1 % level.
    chi2 = stats.chisquare(counts.values).statistic
    assert chi2 < stats.chi2.ppf(0.999, num_members)
    freq = xv.rank_histogram(ens, obs, normalize=True)
    assert float(freq.sum()) == pytest.approx(1.0)


def test_rank_histogram_breaks_ties_at_random() -> None:
    """Precipitation-like ties: obs and all members zero → ranks spread uniformly."""
    ens = xr.DataArray(np.zeros((20_000, 3)), dims=("point", "member"))
    obs = xr.DataArray(np.zeros(20_000), dims="point")
    counts = xv.rank_histogram(ens, obs, seed=3).values
    chi2 = stats.chisquare(counts).statistic
    assert chi2 < stats.chi2.ppf(0.999, 3)
    # Same seed → same result; another seed → another draw.
    np.testing.assert_array_equal(xv.rank_histogram(ens, obs, seed=3).values, counts)
    assert not np.array_equal(xv.rank_histogram(ens, obs, seed=4).values, counts)
    # Partial ties: one member below, two equal → ranks 1, 2 or 3 only.
    tied = xr.DataArray(np.tile([-1.0, 0.0, 0.0], (3_000, 1)), dims=("point", "member"))
    partial = xv.rank_histogram(tied, obs.isel(point=slice(3_000))).values
    assert partial[0] == 0
    assert np.all(partial[1:] > 900)


def test_rank_kernel_exact_ranks_and_nan() -> None:
    forecast = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, np.nan, 2.0], [0.0, 1.0, 2.0]])
    obs = np.array([-1.0, 1.5, 1.0, np.nan])
    ranks = kernels.rank_ties_random(forecast, obs, np.arange(4))
    np.testing.assert_array_equal(ranks, [0, 2, -1, -1])


def test_rank_histogram_chunking_invariant_and_lazy() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(0, 3, size=(5, 6, 40)).astype(float)  # many ties
    ens = xr.DataArray(values, dims=("member", "time", "x"), name="tp")
    obs = xr.DataArray(
        rng.integers(0, 3, size=(6, 40)).astype(float), dims=("time", "x"), name="tp"
    )
    eager = xv.rank_histogram(ens, obs, dim="x", seed=9)
    with raise_if_dask_computes():
        lazy = xv.rank_histogram(ens.chunk(time=2, x=7), obs.chunk(time=3, x=11), dim="x", seed=9)
    assert lazy.dims == ("rank", "time")
    xr.testing.assert_identical(lazy.compute(), eager)


def test_accessors_delegate() -> None:
    ens, obs = perfect_ensemble(500, 4, seed=0)
    xr.testing.assert_identical(ens.corrdiff.spread_skill(obs), xv.spread_skill(ens, obs))
    xr.testing.assert_identical(
        ens.corrdiff.rank_histogram(obs, seed=2), xv.rank_histogram(ens, obs, seed=2)
    )
    ds_ens, ds_obs = ens.to_dataset(), obs.to_dataset()
    xr.testing.assert_identical(
        ds_ens.corrdiff.spread_skill(ds_obs, dim=[]), xv.spread_skill(ds_ens, ds_obs, dim=[])
    )


def test_spread_skill_lazy_on_dask() -> None:
    ens, obs = perfect_ensemble(1_000, 4, seed=3)
    with raise_if_dask_computes():
        lazy = xv.spread_skill(ens.chunk(point=250, member=2), obs.chunk(point=250))
        lazy_mae = xv.mae(ens.chunk(point=250), obs)
    assert float(lazy) == pytest.approx(float(xv.spread_skill(ens, obs)), rel=1e-12)
    assert float(lazy_mae) == pytest.approx(float(xv.mae(ens, obs)), rel=1e-12)


def test_bad_input_messages() -> None:
    ens, obs = perfect_ensemble(10, 3, seed=0)
    with pytest.raises(
        ValueError, match=r"forecast has no member dimension 'member'.*\('point',\)"
    ):
        xv.spread_skill(obs, obs)
    with pytest.raises(ValueError, match=r"no common coordinates along dim 'point'"):
        xv.rank_histogram(
            ens.assign_coords(point=np.arange(10)), obs.assign_coords(point=np.arange(10) + 50)
        )
    with pytest.raises(TypeError, match=r"forecast variable 't2m' has dtype bool"):
        xv.rmse(ens > 0, obs)
    with pytest.raises(ValueError, match=r"strictly increasing"):
        xv.spread_skill_curve(ens, obs, bins=np.array([1.0, 0.5]))

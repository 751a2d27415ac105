"""CRPS: exact against properscoring, scores and a brute-force O(M²) sum; lazy on dask."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff.verify as xv
from xcorrdiff.verify import kernels

properscoring = pytest.importorskip("properscoring")
scores_probability = pytest.importorskip("scores.probability")

ATOL = 1e-10


def brute_force_crps(
    forecast: np.ndarray,
    obs: np.ndarray,
    weights: np.ndarray | None = None,
    fair: bool = False,
) -> np.ndarray:
    """E|X − y| − ½ E|X − X'| by the O(M²) double sum, NaN members dropped, point by point."""
    forecast = np.asarray(forecast, dtype=np.float64)
    out = np.full(forecast.shape[:-1], np.nan)
    for idx in np.ndindex(*forecast.shape[:-1]):
        x = forecast[idx]
        w = np.ones_like(x) if weights is None else np.broadcast_to(weights, forecast.shape)[idx]
        keep = ~np.isnan(x)
        x, w = x[keep], w[keep]
        y = np.asarray(obs)[idx]
        total = w.sum()
        if x.size == 0 or np.isnan(y) or total == 0:
            continue
        first = (w * np.abs(x - y)).sum() / total
        pair = (w[:, None] * w[None, :] * np.abs(x[:, None] - x[None, :])).sum()
        denom = total**2 - (w**2).sum() if fair else total**2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[idx] = first - pair / (2 * denom)
    return out


def _da(forecast: np.ndarray, obs: np.ndarray) -> tuple[xr.DataArray, xr.DataArray]:
    dims = [f"d{i}" for i in range(obs.ndim)]
    return xr.DataArray(forecast, dims=[*dims, "member"]), xr.DataArray(obs, dims=dims)


def _random(shape: tuple[int, ...], num_members: int, seed: int = 0, nan_fraction: float = 0.0):
    rng = np.random.default_rng(seed)
    forecast = rng.normal(size=(*shape, num_members)) * rng.gamma(2.0, size=(*shape, 1))
    obs = rng.normal(size=shape)
    if nan_fraction:
        forecast[rng.random(forecast.shape) < nan_fraction] = np.nan
        obs[rng.random(obs.shape) < nan_fraction / 4] = np.nan
    return forecast, obs


# --- properscoring's own test cases ------------------------------------------------------

# tests/test_crps.py::TestCRPS::test_crps_toy_examples (ensembles of >= 1 member)
TOY = [
    (0, [-1], 1.0),
    (0, [0], 0.0),
    (0, [1], 1.0),
    (0, [0, 0], 0.0),
    (0, [0, 1], 0.25),
    (0, [1, 0], 0.25),
    (0, [1, 1], 1.0),
    (2, [0, 1], 1.25),
    (0, [-1, 1], 0.5),
    (0, [0, 0, 1], 1.0 / 9),
    (1, [0, 0, 1], 4.0 / 9),
    (0, [-1, 0, 0, 1], 1.0 / 8),
]

# tests/test_crps.py::TestCRPS::test_crps_weight_examples
WEIGHTED = [
    (1.0, [0, 2], [0.5, 0.5], 0.5),
    (1.0, [2, 0], [0.5, 0.5], 0.5),
    (1.0, [0, 2], [0.8, 0.2], 0.64 + 0.04),
    (1.5, [0, 2], [0.8, 0.2], 0.64 * 1.5 + 0.04 * 0.5),
    (1.0, [0, 3], [0.5, 0.5], 0.75),
    (1.0, [-1, 3], [0.5, 0.5], 1),
    (1.0, [0, 2], [1, 0], 1),
    (1.0, [0, 1, 2], [1.0 / 3, 1.0 / 3, 1.0 / 3], 2.0 / 9),
    (1.5, [0, 1, 2], [1.0 / 3, 1.0 / 3, 1.0 / 3], 1.0 / 9 + 4.0 / 9 * 0.5 + 1.0 / 9 * 0.5),
    (-1.0, [0, 1, 2], [1.0 / 3, 1.0 / 3, 1.0 / 3], 1 + 1.0 / 9 + 4.0 / 9),
    (2.5, [0, 1, 2], [1.0 / 3, 1.0 / 3, 1.0 / 3], 4.0 / 9 + 1.0 / 9 + 0.5 * 1),
    (1.0, [0, 1, 2, 3], [0.25] * 4, 3.0 / 8),
    (1.5, [0, 1, 2, 3], [0.25] * 4, 1.0 / 16 + 0.5 * 4.0 / 16 + 0.5 * 4.0 / 16 + 1.0 / 16),
]


@pytest.mark.parametrize(("obs", "ensemble", "expected"), TOY)
def test_properscoring_toy_examples(obs: float, ensemble: list[float], expected: float) -> None:
    forecast = xr.DataArray([ensemble], dims=("time", "member"))
    result = float(xv.crps(forecast, xr.DataArray([obs], dims="time")))
    assert result == pytest.approx(expected, abs=ATOL)
    assert result == pytest.approx(properscoring.crps_ensemble(obs, ensemble), abs=ATOL)


@pytest.mark.parametrize(("obs", "ensemble", "weights", "expected"), WEIGHTED)
def test_properscoring_weight_examples(
    obs: float, ensemble: list[float], weights: list[float], expected: float
) -> None:
    forecast = xr.DataArray([ensemble], dims=("time", "member"))
    w = xr.DataArray(weights, dims="member")
    result = float(xv.crps(forecast, xr.DataArray([obs], dims="time"), member_weights=w))
    assert result == pytest.approx(expected, abs=ATOL)
    assert result == pytest.approx(properscoring.crps_ensemble(obs, ensemble, weights), abs=ATOL)


def test_properscoring_nan_cases() -> None:
    """test_crps_toy_examples_nan / _skipna / test_crps_nans: NaN members skipped."""
    k = kernels.crps_ensemble
    assert np.isnan(k(np.array([np.nan, np.nan]), np.array(0.0)))
    assert np.isnan(k(np.array([1.0]), np.array(np.nan)))
    assert np.isnan(k(np.array([1.0]), np.array(0.0), np.array([np.nan])))
    assert np.isnan(k(np.array([np.nan]), np.array(0.0), np.array([1.0])))
    for obs, ens in [(0, [np.nan, 1]), (0, [1, np.nan]), (1, [np.nan, 0]), (1, [0, np.nan])]:
        assert k(np.array(ens, dtype=float), np.array(float(obs))) == 1.0
    rng = np.random.default_rng(3)
    vec, weights, y = rng.random(10), rng.random(10), rng.random()
    with_nans = np.r_[vec, [np.nan] * 3]
    assert k(with_nans, np.array(y)) == pytest.approx(k(vec, np.array(y)), abs=ATOL)
    assert k(with_nans, np.array(y), np.r_[weights, rng.random(3)]) == pytest.approx(
        properscoring.crps_ensemble(y, vec, weights), abs=ATOL
    )


def test_properscoring_beyond_bounds_and_degenerate() -> None:
    rng = np.random.default_rng(4)
    vec = rng.random(100)
    k = kernels.crps_ensemble
    assert k(vec, np.array(-0.1)) == pytest.approx(0.1 + k(vec, np.array(0.0)), abs=ATOL)
    assert k(vec, np.array(1.1)) == pytest.approx(0.1 + k(vec, np.array(1.0)), abs=ATOL)
    x = rng.random()
    for delta in [-np.pi, 0.0, np.pi]:
        assert k(np.full(10, x), np.array(x + delta)) == pytest.approx(abs(delta), abs=ATOL)


def test_weight_normalization() -> None:
    forecast, obs = _random((20,), 10, seed=5)
    f, o = _da(forecast, obs)
    expected = xv.crps(f, o, dim=[])
    for scale in (1.0, 0.1, 7.0):
        w = xr.DataArray(np.full(10, scale), dims="member")
        np.testing.assert_allclose(xv.crps(f, o, dim=[], member_weights=w), expected, atol=ATOL)


# --- scores' own test cases (tests/probabilty/crps_test_data.py) ---------------------------

FCST_CRPSENS = xr.DataArray(
    data=[
        [0.0, 4, 3, 7],
        [1, -1, 2, 4],
        [0, 1, 4, np.nan],
        [2, 3, 4, 1],
        [2, np.nan, np.nan, np.nan],
    ],
    dims=["stn", "ens_member"],
    coords={"stn": [101, 102, 103, 104, 105], "ens_member": [1, 2, 3, 4]},
)
OBS_CRPSENS = xr.DataArray(
    data=[2.0, 3, 1, np.nan, 4, 5], dims=["stn"], coords={"stn": [101, 102, 103, 104, 105, 106]}
)
FIRST_TERM = np.array([10 / 4, 8 / 4, 4 / 3, np.nan, 2])
SPREAD_ECDF = np.array(
    [(14 + 8 + 8 + 14) / 32, (6 + 10 + 6 + 10) / 32, (5 + 4 + 7) / 18, np.nan, 0]
)
SPREAD_FAIR = np.array(
    [(14 + 8 + 8 + 14) / 24, (6 + 10 + 6 + 10) / 24, (5 + 4 + 7) / 12, np.nan, np.nan]
)


@pytest.mark.parametrize(("fair", "spread"), [(False, SPREAD_ECDF), (True, SPREAD_FAIR)])
def test_scores_documented_cases(fair: bool, spread: np.ndarray) -> None:
    result = xv.crps(FCST_CRPSENS, OBS_CRPSENS, member_dim="ens_member", dim=[], fair=fair)
    assert list(result["stn"].values) == [101, 102, 103, 104, 105]  # inner join drops 106
    np.testing.assert_allclose(result.values, FIRST_TERM - spread, atol=ATOL)
    theirs = scores_probability.crps_for_ensemble(
        FCST_CRPSENS,
        OBS_CRPSENS,
        "ens_member",
        method="fair" if fair else "ecdf",
        preserve_dims="all",
    )
    np.testing.assert_allclose(result.values, theirs.values, atol=ATOL)
    # dim=None: NaN points skipped in the mean, as scores does.
    mean = xv.crps(FCST_CRPSENS, OBS_CRPSENS, member_dim="ens_member", fair=fair)
    expected_mean = scores_probability.crps_for_ensemble(
        FCST_CRPSENS, OBS_CRPSENS, "ens_member", method="fair" if fair else "ecdf"
    )
    assert float(mean) == pytest.approx(float(expected_mean), abs=ATOL)


# --- random data: properscoring, scores, brute force ---------------------------------------


@pytest.mark.parametrize("num_members", [1, 2, 5, 32])
@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
def test_random_against_references(num_members: int, nan_fraction: float) -> None:
    forecast, obs = _random((6, 40), num_members, seed=num_members, nan_fraction=nan_fraction)
    f, o = _da(forecast, obs)
    ours = xv.crps(f, o, dim=[]).values
    np.testing.assert_allclose(ours, brute_force_crps(forecast, obs), atol=ATOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # properscoring: mean of empty slice
        ps = properscoring.crps_ensemble(obs, forecast)
    np.testing.assert_allclose(ours, ps, atol=ATOL)
    for method in ("ecdf", "fair"):
        ours = xv.crps(f, o, dim=[], fair=method == "fair").values
        theirs = scores_probability.crps_for_ensemble(
            f, o, "member", method=method, preserve_dims="all"
        ).values
        np.testing.assert_allclose(ours, theirs, atol=ATOL)
        np.testing.assert_allclose(
            ours, brute_force_crps(forecast, obs, fair=method == "fair"), atol=ATOL
        )


@pytest.mark.parametrize("fair", [False, True])
def test_member_weights_random(fair: bool) -> None:
    forecast, obs = _random((30,), 9, seed=11, nan_fraction=0.1)
    weights = np.random.default_rng(12).random((30, 9))
    f, o = _da(forecast, obs)
    ours = xv.crps(
        f, o, dim=[], fair=fair, member_weights=xr.DataArray(weights, dims=("d0", "member"))
    )
    np.testing.assert_allclose(ours, brute_force_crps(forecast, obs, weights, fair), atol=ATOL)
    if not fair:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ps = properscoring.crps_ensemble(obs, forecast, weights)
        np.testing.assert_allclose(ours, ps, atol=ATOL)


def test_ties_and_blocks_larger_than_one() -> None:
    """Many rows (several kernel blocks), integer-valued members with ties."""
    rng = np.random.default_rng(8)
    forecast = rng.integers(0, 4, size=(5000, 7)).astype(float)
    obs = rng.integers(0, 4, size=5000).astype(float)
    np.testing.assert_allclose(
        kernels.crps_ensemble(forecast, obs), properscoring.crps_ensemble(obs, forecast), atol=ATOL
    )


def test_float32_accumulates_in_float64() -> None:
    forecast, obs = _random((50,), 16, seed=2)
    result = kernels.crps_ensemble(forecast.astype(np.float32), obs.astype(np.float32))
    assert result.dtype == np.float64
    expected = brute_force_crps(forecast.astype(np.float32), obs.astype(np.float32))
    np.testing.assert_allclose(result, expected, atol=1e-12)


def test_crps_gaussian_matches_properscoring_and_large_ensemble() -> None:
    rng = np.random.default_rng(1983)
    mu, sigma = rng.normal(size=(2, 3)), np.square(rng.normal(size=(2, 3)))
    obs = rng.normal(loc=mu, scale=sigma)
    dims = ("a", "b")
    ours = xv.crps_gaussian(
        xr.DataArray(mu, dims=dims),
        xr.DataArray(sigma, dims=dims),
        xr.DataArray(obs, dims=dims),
        dim=[],
    )
    np.testing.assert_allclose(ours, properscoring.crps_gaussian(obs, mu, sigma), atol=ATOL)
    # properscoring's consistency test: a 1000-member quantile ensemble, rtol 1e-4.
    q = (np.arange(1000) + 0.5) / 1000
    from scipy import special

    members = mu[..., None] + sigma[..., None] * special.ndtri(q)
    np.testing.assert_allclose(ours, kernels.crps_ensemble(members, obs), rtol=1e-4)
    assert kernels.crps_gaussian(np.array(1.0), np.array(0.0), np.array(3.0)) == 2.0


# --- xarray behaviour ----------------------------------------------------------------------


def _ensemble(chunks: dict[str, int] | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    shape = (4, 3, 5, 6)
    coords = {"time": np.arange(3), "y": np.arange(5.0), "x": np.arange(6.0)}
    ens = xr.Dataset(
        {
            "t2m": (("member", "time", "y", "x"), rng.normal(size=shape), {"units": "K"}),
            "tp": (("member", "time", "y", "x"), rng.gamma(0.5, size=shape)),
        },
        coords=coords,
    )
    truth = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(size=shape[1:]), {"units": "K"}),
            "tp": (("time", "y", "x"), rng.gamma(0.5, size=shape[1:])),
        },
        coords=coords,
    )
    if chunks:
        ens, truth = (
            ens.chunk(chunks),
            truth.chunk({k: v for k, v in chunks.items() if k != "member"}),
        )
    return ens, truth


def test_dataset_dims_and_units() -> None:
    ens, truth = _ensemble()
    total = xv.crps(ens, truth)
    assert set(total.data_vars) == {"t2m", "tp"}
    assert total["t2m"].dims == ()
    assert total["t2m"].attrs["units"] == "K"
    per_time = xv.crps(ens, truth, dim=["y", "x"])
    assert per_time["t2m"].dims == ("time",)
    kept = xv.crps(ens, truth, dim=[])
    assert kept["t2m"].dims == ("time", "y", "x")
    np.testing.assert_allclose(per_time["tp"].mean(), total["tp"], atol=ATOL)
    expected = brute_force_crps(ens["tp"].transpose(..., "member").values, truth["tp"].values)
    np.testing.assert_allclose(kept["tp"], expected, atol=ATOL)
    with pytest.raises(ValueError, match=r"dim \['lat'\] not found.*\('time', 'y', 'x'\)"):
        xv.crps(ens, truth, dim="lat")


def test_dataarray_in_dataarray_out() -> None:
    ens, truth = _ensemble()
    result = xv.crps(ens["t2m"], truth["t2m"], dim="time")
    assert isinstance(result, xr.DataArray)
    assert result.name == "t2m"
    assert result.dims == ("y", "x")
    assert isinstance(xv.crps(ens["t2m"], truth), xr.DataArray)  # obs Dataset, matched by name


def test_dask_is_lazy_and_equal() -> None:
    ens, truth = _ensemble()
    lazy_ens, lazy_truth = _ensemble({"time": 1, "y": 3})
    with raise_if_dask_computes():
        lazy = xv.crps(lazy_ens, lazy_truth, dim=["x"], fair=True)
        weighted = xv.crps(
            lazy_ens["t2m"],
            lazy_truth["t2m"],
            member_weights=xr.DataArray(np.arange(1.0, 5.0), dims="member"),
        )
    assert lazy["t2m"].chunks is not None
    xr.testing.assert_allclose(lazy.compute(), xv.crps(ens, truth, dim=["x"], fair=True))
    assert float(weighted) == pytest.approx(
        float(
            xv.crps(
                ens["t2m"],
                truth["t2m"],
                member_weights=xr.DataArray(np.arange(1.0, 5.0), dims="member"),
            )
        ),
        abs=ATOL,
    )


def test_split_member_dim_is_rechunked_with_warning() -> None:
    ens, truth = _ensemble()
    lazy_ens, lazy_truth = _ensemble({"member": 2, "time": 1})
    with (
        raise_if_dask_computes(),
        pytest.warns(UserWarning, match=r"several dask chunks along \['member'\]"),
    ):
        lazy = xv.crps(lazy_ens, lazy_truth, dim=[])
    xr.testing.assert_allclose(lazy.compute(), xv.crps(ens, truth, dim=[]))


def test_accessor_delegates() -> None:
    ens, truth = _ensemble()
    xr.testing.assert_identical(ens.corrdiff.crps(truth, fair=True), xv.crps(ens, truth, fair=True))
    xr.testing.assert_identical(
        ens["tp"].corrdiff.crps(truth["tp"]), xv.crps(ens["tp"], truth["tp"])
    )


# --- bad input -------------------------------------------------------------------------------


def test_forecast_without_member_dim() -> None:
    ens, truth = _ensemble()
    with pytest.raises(
        ValueError, match=r"forecast has no member dimension 'member'.*\('time', 'y', 'x'\)"
    ):
        xv.crps(ens.isel(member=0, drop=True), truth)
    with pytest.raises(ValueError, match=r"no member dimension 'ens'.*member_dim="):
        xv.crps(ens["t2m"], truth["t2m"], member_dim="ens")


def test_no_common_coordinates() -> None:
    ens, truth = _ensemble()
    shifted = truth.assign_coords(time=truth["time"] + 100)
    with pytest.raises(
        ValueError, match=r"no common coordinates along dim 'time'.*'t2m'.*\[100, 101, 102\]"
    ):
        xv.crps(ens, shifted)


def test_unalignable_sizes_without_coordinates() -> None:
    forecast = xr.DataArray(np.zeros((3, 4)), dims=("point", "member"), name="t2m")
    obs = xr.DataArray(np.zeros(5), dims="point", name="t2m")
    with pytest.raises(ValueError, match=r"'t2m' cannot be aligned.*'point': \(3, 5\)"):
        xv.crps(forecast, obs)


def test_obs_with_foreign_dims_or_missing_variables() -> None:
    ens, truth = _ensemble()
    with pytest.raises(ValueError, match=r"obs variable 't2m' has dims \['station'\]"):
        xv.crps(ens["t2m"], truth["t2m"].expand_dims(station=2))
    with pytest.raises(ValueError, match=r"obs lacks the forecast variables \['tp'\]"):
        xv.crps(ens, truth[["t2m"]])
    with pytest.raises(ValueError, match=r"obs variable 't2m' has the member dimension"):
        xv.crps(ens["t2m"], ens["t2m"])


def test_non_numeric_variable() -> None:
    ens, truth = _ensemble()
    ens["label"] = ens["t2m"].astype(str)
    truth["label"] = truth["t2m"].astype(str)
    with pytest.raises(TypeError, match=r"forecast variable 'label' has dtype <U\d+.*numeric"):
        xv.crps(ens, truth)
    with pytest.raises(TypeError, match=r"must be an xarray Dataset or DataArray, got ndarray"):
        xv.crps(ens["t2m"].values, truth)  # type: ignore[type-var]


def test_weights_need_member_dim() -> None:
    ens, truth = _ensemble()
    with pytest.raises(
        ValueError,
        match=r"weights must be a DataArray with the member dimension 'member'.*\('y',\)",
    ):
        xv.crps(ens, truth, member_weights=xr.DataArray(np.ones(5), dims="y"))


def test_weights_are_spatial_as_in_xskillscore() -> None:
    """weights= weighs the mean over points (cos(lat) area weights), brute force in float64."""
    rng = np.random.default_rng(21)
    lat = np.linspace(-60.0, 60.0, 7)
    forecast = rng.normal(size=(5, 7, 4))  # member, lat, lon
    obs = rng.normal(size=(7, 4))
    ens = xr.DataArray(forecast, dims=("member", "lat", "lon"), coords={"lat": lat})
    truth = xr.DataArray(obs, dims=("lat", "lon"), coords={"lat": lat})
    area = xr.DataArray(np.cos(np.deg2rad(lat)), dims="lat", coords={"lat": lat})
    per_point = brute_force_crps(
        forecast.transpose(1, 2, 0).reshape(-1, 5), obs.reshape(-1), None, False
    ).reshape(7, 4)
    expected = np.average(per_point, weights=np.broadcast_to(area.values[:, None], (7, 4)))
    assert float(xv.crps(ens, truth, weights=area)) == pytest.approx(expected, abs=ATOL)
    assert float(xv.crps(ens, truth)) == pytest.approx(per_point.mean(), abs=ATOL)
    assert float(xv.crps(ens, truth, weights=area)) != pytest.approx(per_point.mean(), abs=1e-6)
    error = np.abs(forecast.mean(0) - obs)
    weights2d = np.broadcast_to(area.values[:, None], (7, 4))
    assert float(xv.mae(ens, truth, weights=area)) == pytest.approx(
        np.average(error, weights=weights2d), abs=ATOL
    )
    assert float(xv.rmse(ens, truth, weights=area)) == pytest.approx(
        np.sqrt(np.average(error**2, weights=weights2d)), abs=ATOL
    )


def test_spatial_weights_on_other_dims_name_member_weights() -> None:
    ens = xr.DataArray(np.zeros((3, 4)), dims=("member", "x"))
    truth = xr.DataArray(np.zeros(4), dims="x")
    with pytest.raises(ValueError, match=r"member weights of the CRPS are member_weights="):
        xv.crps(ens, truth, weights=xr.DataArray(np.ones(3), dims="member"))
    with pytest.raises(ValueError, match="finite and non-negative"):
        xv.mae(ens, truth, weights=xr.DataArray(-np.ones(4), dims="x"))

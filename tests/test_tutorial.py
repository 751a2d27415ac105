"""The known-truth synthetic data set: layout, reproducibility, physics, the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from xcorrdiff import tutorial
from xcorrdiff._synthetic.projection import LambertConformal

SMALL = {"n_times": 8, "hr_shape": (64, 48), "factor": 8}

LR_UNITS = {
    "u500": "m s-1",
    "v500": "m s-1",
    "z500": "m2 s-2",
    "t500": "K",
    "u850": "m s-1",
    "v850": "m s-1",
    "z850": "m2 s-2",
    "t850": "K",
    "u10m": "m s-1",
    "v10m": "m s-1",
    "t2m": "K",
    "tcwv": "kg m-2",
}
HR_UNITS = {"t2m": "K", "u10m": "m s-1", "v10m": "m s-1", "precip": "mm h-1"}


@pytest.fixture(scope="module")
def pair() -> tuple[xr.Dataset, xr.Dataset]:
    return tutorial.make_synthetic(**SMALL, seed=0)


@pytest.fixture(scope="module")
def long_pair() -> tuple[xr.Dataset, xr.Dataset]:
    """More times, for statistics."""
    return tutorial.make_synthetic(n_times=24, hr_shape=(48, 48), factor=8, seed=3)


@pytest.fixture(scope="module")
def oracle(long_pair: tuple[xr.Dataset, xr.Dataset]) -> xr.Dataset:
    return tutorial.oracle_ensemble(long_pair[0], n_ensemble=19, seed=5).compute()


def _lr_cell_mean(field: xr.DataArray, lr: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean of an HR field ``(time, y, x)`` over each LR cell that is fully inside the HR
    domain; returns ``(hr_means, lr_values)`` as ``(time, cell)`` arrays."""
    step = float(lr.lat[0] - lr.lat[1])
    i = np.rint((float(lr.lat[0]) - field.lat.values) / step).astype(int).ravel()
    j = np.rint((field.lon.values - float(lr.lon[0])) / step).astype(int).ravel()
    cell = i * lr.sizes["lon"] + j
    # Cells touching the HR boundary are partly outside: drop them.
    ny, nx = field.shape[-2:]
    edge = np.zeros((ny, nx), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    cells = np.setdiff1d(np.unique(cell), np.unique(cell[edge.ravel()]))
    values = field.values.reshape(field.shape[0], -1)
    hr_means = np.stack([values[:, cell == c].mean(axis=1) for c in cells], axis=1)
    lr_values = lr[field.name].values.reshape(lr.sizes["time"], -1)[:, cells]
    return hr_means, lr_values


# --- layout -----------------------------------------------------------------------------


def test_lr_layout(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    assert dict(lr.sizes)["time"] == 8
    assert set(lr.data_vars) == set(LR_UNITS)
    for name, units in LR_UNITS.items():
        var = lr[name]
        assert var.dims == ("time", "lat", "lon")
        assert var.dtype == np.float32
        assert var.attrs["units"] == units
        assert var.attrs["long_name"]
        assert var.attrs["standard_name"]
        assert np.isfinite(var.values).all()
    assert lr.lat.attrs["standard_name"] == "latitude"
    assert lr.lat.attrs["units"] == "degrees_north"
    assert lr.lon.attrs["standard_name"] == "longitude"
    assert lr.lon.attrs["units"] == "degrees_east"
    assert (np.diff(lr.lat.values) < 0).all(), "latitude must descend, as in ERA5"
    assert (np.diff(lr.lon.values) > 0).all()
    assert np.issubdtype(lr.time.dtype, np.datetime64)
    assert lr.time.values[0] == np.datetime64("2000-01-01T00")
    assert (np.diff(lr.time.values) == np.timedelta64(6, "h")).all()


def test_hr_layout(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    _, hr = pair
    assert dict(hr.sizes) == {"time": 8, "y": 64, "x": 48}
    assert list(hr.data_vars) == list(HR_UNITS)
    for name, units in HR_UNITS.items():
        var = hr[name]
        assert var.dims == ("time", "y", "x")
        assert var.dtype == np.float32
        assert var.attrs["units"] == units
        assert var.attrs["standard_name"]
        assert var.attrs["grid_mapping"] == "crs"
        assert np.isfinite(var.values).all()
    assert hr.y.attrs == {
        "units": "m",
        "axis": "Y",
        "standard_name": "projection_y_coordinate",
        "long_name": "y coordinate of projection",
    }
    assert hr.x.attrs["standard_name"] == "projection_x_coordinate"
    np.testing.assert_allclose(np.diff(hr.x.values), 2000.0)
    np.testing.assert_allclose(np.diff(hr.y.values), 2000.0)
    assert float(hr.x.mean()) == pytest.approx(0.0) and float(hr.y.mean()) == pytest.approx(0.0)
    assert hr.lat.dims == ("y", "x") and hr.lon.dims == ("y", "x")
    assert hr.lat.attrs["units"] == "degrees_north"
    assert hr.crs.attrs["grid_mapping_name"] == "lambert_conformal_conic"
    assert hr.crs.attrs["standard_parallel"] == 45.0
    assert hr.crs.attrs["longitude_of_central_meridian"] == 7.0
    for name in ("orography", "land_sea_mask"):
        assert name in hr.coords and name not in hr.data_vars
        assert hr[name].dims == ("y", "x")
    assert hr.orography.attrs["units"] == "m"
    assert hr.land_sea_mask.attrs["units"] == "1"


def test_recipe_recorded(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = pair
    for ds in (lr, hr):
        recipe = json.loads(ds.attrs["xcorrdiff_recipe"])
        assert recipe["seed"] == 0 and recipe["domain_seed"] == 0
        assert recipe["hr_shape"] == [64, 48]
        assert recipe["factor"] == 8
        assert recipe["lr_spacing"] == 0.15
        assert recipe["center"] == [45.0, 7.0]
        assert "lapse_rate" in recipe["physics"] and "tau_large" in recipe["weather"]
        assert ds.attrs["seed"] == 0 and ds.attrs["factor"] == 8
        assert ds.attrs["xcorrdiff_version"]


def test_netcdf_roundtrip(pair: tuple[xr.Dataset, xr.Dataset], tmp_path) -> None:
    lr, hr = pair
    for name, ds in (("lr", lr), ("hr", hr)):
        path = tmp_path / f"{name}.nc"
        ds.to_netcdf(path)
        with xr.open_dataset(path) as back:
            xr.testing.assert_identical(back.load(), ds)


# --- grids ------------------------------------------------------------------------------


def test_lat_lon_are_curvilinear(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    _, hr = pair
    lat, lon = hr.lat.values, hr.lon.values
    # Not separable: latitude changes along x, longitude along y (meridians converge).
    assert np.ptp(lat[0, :]) > 1e-3
    assert np.ptp(lon[:, 0] - lon[:, 0].mean()) > 1e-3
    spacing_top = lon[-1, 1:] - lon[-1, :-1]
    spacing_bottom = lon[0, 1:] - lon[0, :-1]
    assert abs(spacing_top.mean() - spacing_bottom.mean()) > 1e-5
    # The centre of the grid is the projection origin.
    proj = LambertConformal(45.0, 7.0)
    x, y = proj.forward(lat, lon)
    xx, yy = np.meshgrid(hr.x.values, hr.y.values)
    np.testing.assert_allclose(x, xx, atol=1e-4)
    np.testing.assert_allclose(y, yy, atol=1e-4)
    # A conformal 2 km grid: neighbouring points are 2 km apart on the sphere (scale ~ 1).
    dlat = np.deg2rad(lat[1:, :] - lat[:-1, :])
    dist = 6_371_229.0 * dlat.mean()
    assert dist == pytest.approx(2000.0, rel=0.01)


def test_projection_roundtrip_southern_hemisphere() -> None:
    proj = LambertConformal(-35.0, 150.0)
    lat, lon = np.meshgrid(np.linspace(-40, -30, 5), np.linspace(145, 155, 5))
    back_lat, back_lon = proj.inverse(*proj.forward(lat, lon))
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)
    np.testing.assert_allclose(back_lon, lon, atol=1e-9)


def test_lr_covers_hr_with_margin(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = pair
    step = float(lr.lat[0] - lr.lat[1])
    assert step == pytest.approx(0.15)
    assert float(lr.lon[1] - lr.lon[0]) == pytest.approx(0.15)
    assert float(lr.lat.max()) >= float(hr.lat.max()) + 2 * step - 1e-9
    assert float(lr.lat.min()) <= float(hr.lat.min()) - 2 * step + 1e-9
    assert float(lr.lon.max()) >= float(hr.lon.max()) + 2 * step - 1e-9
    assert float(lr.lon.min()) <= float(hr.lon.min()) - 2 * step + 1e-9
    # LR spacing ≈ factor × HR spacing (north-south).
    metres = step * 2 * np.pi * 6_371_229.0 / 360
    assert metres / 2000.0 == pytest.approx(8, rel=0.1)
    # Aligned on multiples of the spacing, like ERA5.
    np.testing.assert_allclose(lr.lat.values / step, np.rint(lr.lat.values / step), atol=1e-6)


@pytest.mark.parametrize(
    ("factor", "expected"), [(4, 0.05), (8, 0.15), (12, 0.2), (14, 0.25), (16, 0.3)]
)
def test_default_lr_spacing(factor: int, expected: float) -> None:
    lr, _ = tutorial.make_synthetic(n_times=1, hr_shape=(32, 32), factor=factor)
    assert float(lr.lat[0] - lr.lat[1]) == pytest.approx(expected)


def test_non_square_non_divisible_shape() -> None:
    lr, hr = tutorial.make_synthetic(n_times=3, hr_shape=(37, 50), factor=6, seed=2)
    assert dict(hr.sizes) == {"time": 3, "y": 37, "x": 50}
    assert np.isfinite(hr.t2m.values).all() and np.isfinite(lr.t2m.values).all()


def test_other_hemisphere_and_antimeridian() -> None:
    lr, hr = tutorial.make_synthetic(n_times=2, hr_shape=(32, 32), center=(-35.0, 179.9))
    assert float(hr.lat.mean()) == pytest.approx(-35.0, abs=0.1)
    # Longitudes are continuous across the antimeridian, on both grids.
    assert float(hr.lon.max()) > 180.0
    assert (np.diff(lr.lon.values) > 0).all()
    assert np.isfinite(hr.t2m.values).all()
    assert np.isfinite(lr.u500.values).all()


def test_explicit_lr_spacing_and_time_axis() -> None:
    lr, hr = tutorial.make_synthetic(
        n_times=3, hr_shape=(32, 32), lr_spacing=0.25, start="2010-06-01T12", freq="1h"
    )
    assert float(lr.lat[0] - lr.lat[1]) == pytest.approx(0.25)
    assert hr.time.values[0] == np.datetime64("2010-06-01T12")
    assert (np.diff(hr.time.values) == np.timedelta64(1, "h")).all()


# --- reproducibility --------------------------------------------------------------------


def test_same_seed_same_data(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = tutorial.make_synthetic(**SMALL, seed=0)
    xr.testing.assert_identical(lr, pair[0])
    xr.testing.assert_identical(hr, pair[1])


def test_other_seed_other_weather_same_domain(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = tutorial.make_synthetic(**SMALL, seed=1)
    assert not np.allclose(lr.z500.values, pair[0].z500.values)
    assert not np.allclose(hr.t2m.values, pair[1].t2m.values)
    # The domain depends on the domain arguments only.
    xr.testing.assert_identical(tutorial.invariants(hr), tutorial.invariants(pair[1]))
    xr.testing.assert_identical(lr.lat, pair[0].lat)


def test_domain_seed_changes_terrain_not_free_atmosphere(
    pair: tuple[xr.Dataset, xr.Dataset],
) -> None:
    lr, hr = tutorial.make_synthetic(**SMALL, seed=0, domain_seed=7)
    assert not np.allclose(hr.orography.values, pair[1].orography.values)
    for name in ("z500", "u500", "t850", "u850", "z850"):
        np.testing.assert_array_equal(lr[name].values, pair[0][name].values)
    # The near-surface fields see the terrain.
    assert not np.allclose(lr.t2m.values, pair[0].t2m.values)


def test_first_times_do_not_depend_on_n_times(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = tutorial.make_synthetic(**{**SMALL, "n_times": 3}, seed=0)
    xr.testing.assert_equal(lr, pair[0].isel(time=slice(0, 3)))
    xr.testing.assert_equal(hr, pair[1].isel(time=slice(0, 3)))


def test_weather_evolves_smoothly() -> None:
    lr, _ = tutorial.make_synthetic(n_times=12, hr_shape=(64, 64), freq="1h", seed=4)

    def pattern_correlation(name: str, lag: int) -> float:
        field = lr[name].values.reshape(12, -1)
        anomaly = field - field.mean(axis=1, keepdims=True)
        pairs = zip(anomaly[:-lag], anomaly[lag:], strict=True)
        return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in pairs]))

    for name in ("z500", "t850", "u850", "tcwv"):
        assert pattern_correlation(name, 1) > 0.85
        assert pattern_correlation(name, 1) > pattern_correlation(name, 11)
    z = lr.z500.values
    assert not np.allclose(z[0], z[-1])


# --- physics ----------------------------------------------------------------------------


def test_static_fields(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    _, hr = pair
    oro, lsm = hr.orography.values, hr.land_sea_mask.values
    assert set(np.unique(lsm)) == {0.0, 1.0}
    assert 0.1 < 1 - lsm.mean() < 0.4
    assert (oro[lsm == 0] == 0).all()
    assert (oro >= 0).all() and oro.max() > 800


def test_t2m_lapse_rate(long_pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    _, hr = long_pair
    land = hr.land_sea_mask.values == 1
    oro = hr.orography.values[land]
    t2m = hr.t2m.mean("time").values[land]
    assert np.corrcoef(oro, t2m)[0, 1] < -0.5
    slope = np.polyfit(oro, t2m, 1)[0] * 1000.0  # K per km
    assert -9.0 < slope < -4.0


def test_wind_turbulence_grows_with_speed(
    long_pair: tuple[xr.Dataset, xr.Dataset],
) -> None:
    lr, hr = long_pair
    mean = tutorial.oracle_mean(lr)
    speed = np.hypot(mean.u10m, mean.v10m).values.ravel()
    residual = (hr.u10m - mean.u10m).values.ravel()
    low, high = np.quantile(speed, [1 / 3, 2 / 3])
    var_low = residual[speed < low].var()
    var_high = residual[speed > high].var()
    assert var_high > 2 * var_low


def test_precip_intermittent_and_heavy_tailed(
    long_pair: tuple[xr.Dataset, xr.Dataset],
) -> None:
    _, hr = long_pair
    precip = hr.precip.values
    assert (precip >= 0).all()
    dry = (precip == 0).mean()
    assert 0.4 < dry < 0.98
    wet = precip[precip > 0]
    assert np.quantile(wet, 0.999) > 10 * np.median(wet)
    excess_kurtosis = ((wet - wet.mean()) ** 4).mean() / wet.var() ** 2 - 3
    assert excess_kurtosis > 3


def test_precip_follows_moisture(long_pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = long_pair
    mean = tutorial.oracle_mean(lr)
    hr_tcwv = lr.tcwv.mean(("lat", "lon")).values
    hr_precip = mean.precip.mean(("y", "x")).values
    assert np.corrcoef(hr_tcwv, hr_precip)[0, 1] > 0.5


@pytest.mark.parametrize(("name", "tolerance"), [("t2m", 1.0), ("u10m", 1.5), ("v10m", 1.5)])
def test_coarsened_mean_matches_lr(
    pair: tuple[xr.Dataset, xr.Dataset], name: str, tolerance: float
) -> None:
    lr, _ = pair
    hr_means, lr_values = _lr_cell_mean(tutorial.oracle_mean(lr)[name], lr)
    assert hr_means.shape[1] >= 4
    assert np.corrcoef(hr_means.ravel(), lr_values.ravel())[0, 1] > 0.9
    assert np.abs(hr_means - lr_values).mean() < tolerance


def test_truth_is_mean_plus_zero_mean_noise(long_pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = long_pair
    mean = tutorial.oracle_mean(lr)
    for name, scale in (("t2m", 0.1), ("u10m", 0.1), ("v10m", 0.1)):
        residual = hr[name] - mean[name]
        assert abs(float(residual.mean())) < scale
        assert float(residual.std()) > 0.1
    assert float(hr.precip.mean()) == pytest.approx(float(mean.precip.mean()), rel=0.25)


# --- oracle -----------------------------------------------------------------------------


def test_oracle_layout(long_pair: tuple[xr.Dataset, xr.Dataset], oracle: xr.Dataset) -> None:
    _, hr = long_pair
    assert dict(oracle.sizes) == {"member": 19, "time": 24, "y": 48, "x": 48}
    assert list(oracle.data_vars) == list(HR_UNITS)
    for name, units in HR_UNITS.items():
        assert oracle[name].dims == ("member", "time", "y", "x")
        assert oracle[name].dtype == np.float32
        assert oracle[name].attrs["units"] == units
    xr.testing.assert_identical(oracle.lat, hr.lat)
    xr.testing.assert_identical(oracle.orography, hr.orography)
    xr.testing.assert_identical(oracle.time, hr.time)
    assert oracle.attrs["oracle_seed"] == 5


def test_oracle_is_lazy(pair: tuple[xr.Dataset, xr.Dataset], no_dask_compute) -> None:  # type: ignore[no-untyped-def]
    with no_dask_compute():
        ens = tutorial.oracle_ensemble(pair[0], n_ensemble=4, seed=0)
    assert ens.t2m.chunks is not None


def test_oracle_reproducible_and_chunk_independent(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = pair
    a = tutorial.oracle_ensemble(lr, n_ensemble=3, seed=2).compute()
    b = tutorial.oracle_ensemble(lr, n_ensemble=3, seed=2, chunks={"member": 2, "time": 3})
    xr.testing.assert_identical(a, b.compute())
    c = tutorial.oracle_ensemble(lr, n_ensemble=3, seed=3).compute()
    assert not np.allclose(a.t2m.values, c.t2m.values)
    # Members differ from each other and from the truth, even with the truth's seed.
    assert not np.allclose(a.t2m.values[0], a.t2m.values[1])
    d = tutorial.oracle_ensemble(lr, n_ensemble=1, seed=0).compute()
    assert not np.allclose(d.t2m.values[0], hr.t2m.values)
    # A member at a given time does not depend on the other times asked for.
    sub = tutorial.oracle_ensemble(lr.isel(time=[2, 5]), n_ensemble=3, seed=2).compute()
    xr.testing.assert_identical(sub, a.isel(time=[2, 5]))


def test_oracle_accepts_dask_backed_lr(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    lazy = lr.chunk({"time": 3})
    eager = tutorial.oracle_ensemble(lr, n_ensemble=2, seed=4).compute()
    xr.testing.assert_identical(
        tutorial.oracle_ensemble(lazy, n_ensemble=2, seed=4).compute(), eager
    )
    xr.testing.assert_identical(tutorial.oracle_mean(lazy), tutorial.oracle_mean(lr))


def test_oracle_members_converge_to_mean(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    lr = lr.isel(time=slice(0, 2))
    n = 64
    ens = tutorial.oracle_ensemble(lr, n_ensemble=n, seed=9, chunks={"member": 16})
    mean = tutorial.oracle_mean(lr)
    for name in ("t2m", "u10m", "v10m"):
        members = ens[name].values
        error = members.mean(axis=0) - mean[name].values
        standard_error = members.std(axis=0, ddof=1) / np.sqrt(n)
        # Within 4 standard errors nearly everywhere, and the error is the sampling error.
        assert (np.abs(error) <= 4 * standard_error).mean() > 0.99
        ratio = np.sqrt((error**2).mean() / (standard_error**2).mean())
        assert ratio == pytest.approx(1.0, abs=0.2)
    # Precipitation (heavy-tailed): the closed-form mean matches the sample mean overall.
    assert float(ens.precip.mean()) == pytest.approx(float(mean.precip.mean()), rel=0.1)


def _ranks(truth: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of the truth among the members (0..m), ties broken at random."""
    below = (members < truth).sum(axis=0)
    ties = (members == truth).sum(axis=0)
    return below + rng.integers(0, ties + 1)


@pytest.mark.parametrize("name", ["t2m", "u10m", "v10m", "precip"])
def test_truth_indistinguishable_from_oracle_members(
    long_pair: tuple[xr.Dataset, xr.Dataset], oracle: xr.Dataset, name: str
) -> None:
    _, hr = long_pair
    members = oracle[name].values
    truth = hr[name].values
    m = members.shape[0]

    # Rank histogram: flat within a loose bound (neighbouring points are correlated).
    ranks = _ranks(truth, members, np.random.default_rng(0))
    counts = np.bincount(ranks.ravel(), minlength=m + 1)
    expected = ranks.size / (m + 1)
    assert np.abs(counts / expected - 1).max() < 0.2
    # Spread-skill: ensemble spread ≈ RMSE of the ensemble mean (finite-ensemble corrected).
    spread = np.sqrt(members.var(axis=0, ddof=1).mean())
    rmse = np.sqrt(((members.mean(axis=0) - truth) ** 2).mean())
    assert rmse / (spread * np.sqrt((m + 1) / m)) == pytest.approx(1.0, abs=0.15)


def test_oracle_responds_to_lr_values(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    warmer = lr.copy(deep=True)
    warmer["t2m"] = lr.t2m + 2.0
    base = tutorial.oracle_mean(lr)
    shifted = tutorial.oracle_mean(warmer)
    diff = (shifted.t2m - base.t2m).values
    # Interpolation is linear; the land-sea contrast depends on the temperature a little.
    assert np.abs(diff - 2.0).mean() < 0.5


# --- invariants -------------------------------------------------------------------------


def test_invariants(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, hr = pair
    static = tutorial.invariants(hr)
    assert set(static.data_vars) == {"orography", "land_sea_mask"}
    assert static.orography.dims == ("y", "x")
    assert {"lat", "lon", "y", "x"} <= set(static.coords)
    assert "time" not in static.dims
    np.testing.assert_array_equal(static.orography.values, hr.orography.values)
    np.testing.assert_array_equal(static.lat.values, hr.lat.values)
    assert static.orography.attrs == hr.orography.attrs
    assert static.attrs["domain_seed"] == 0 and "seed" not in static.attrs
    # Rebuilt from the recipe of lr: the same fields.
    from_lr = tutorial.invariants(lr)
    np.testing.assert_array_equal(from_lr.orography.values, static.orography.values)
    np.testing.assert_array_equal(from_lr.land_sea_mask.values, static.land_sea_mask.values)
    np.testing.assert_array_equal(from_lr.lat.values, hr.lat.values)
    # A spatial subset keeps its own static fields.
    sub = tutorial.invariants(hr.isel(y=slice(0, 10)))
    assert sub.sizes["y"] == 10


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_times": -3}, ValueError, r"n_times=-3 is invalid; expected an integer >= 1"),
        ({"n_times": 2.5}, ValueError, r"n_times=2\.5 is invalid; expected an integer"),
        ({"factor": 0.5}, ValueError, r"factor must lie in \[1\.0, 64\.0\].*got 0\.5"),
        (
            {"hr_shape": (8, 64)},
            ValueError,
            r"hr_shape\[0\]=8 is invalid; expected an integer >= 16",
        ),
        (
            {"hr_shape": (64, 20), "factor": 12},
            ValueError,
            r"hr_shape\[1\]=20 is invalid; expected an integer >= 24",
        ),
        ({"hr_shape": (64,)}, ValueError, r"hr_shape must be a pair \(ny, nx\), got \(64,\)"),
        ({"seed": -1}, ValueError, r"seed=-1 is invalid; expected an integer >= 0"),
        ({"domain_seed": True}, ValueError, r"domain_seed=True is invalid; expected an integer"),
        ({"center": (1.0, 0.0)}, ValueError, r"center latitude .* 5 degrees from the equator"),
        ({"center": (85.0, 0.0)}, ValueError, r"center latitude must lie in \[-80\.0, 80\.0\]"),
        ({"center": 45.0}, ValueError, r"center must be a pair \(lat, lon\)"),
        ({"grid_spacing": 0.0}, ValueError, r"grid_spacing must lie in .* m, got 0\.0"),
        ({"margin": 0}, ValueError, r"margin=0 is invalid; expected an integer >= 1 \(LR cells\)"),
        ({"freq": "-6h"}, ValueError, r"freq must be a positive time step, got '-6h'"),
        ({"freq": "often"}, ValueError, r"start '2000-01-01' and freq 'often'"),
        ({"hr_shape": (3000, 3000)}, ValueError, r"keep the domain under 5000 km"),
    ],
)
def test_make_synthetic_rejects_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = {"n_times": 1, "hr_shape": (32, 32), "factor": 8, **kwargs}
    with pytest.raises(error, match=match):
        tutorial.make_synthetic(**args)


def test_oracle_rejects_bad_input(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    with pytest.raises(ValueError, match=r"lr has no attrs\['xcorrdiff_recipe'\]"):
        tutorial.oracle_ensemble(lr.drop_attrs())
    with pytest.raises(ValueError, match=r"lr lacks the variables \['tcwv'\]"):
        tutorial.oracle_ensemble(lr.drop_vars("tcwv"))
    with pytest.raises(ValueError, match=r"differs from the recipe's LR grid"):
        tutorial.oracle_ensemble(lr.isel(lat=slice(1, None)))
    with pytest.raises(ValueError, match=r"has dims \('lat', 'lon'\)"):
        tutorial.oracle_mean(lr.isel(time=0))
    with pytest.raises(ValueError, match=r"lr\['t2m'\] has units 'degC'; expected 'K'"):
        tutorial.oracle_mean(lr.assign(t2m=lr.t2m.assign_attrs(units="degC")))
    with pytest.raises(ValueError, match=r"n_ensemble=0 is invalid; expected an integer >= 1"):
        tutorial.oracle_ensemble(lr, n_ensemble=0)
    with pytest.raises(ValueError, match=r"chunks may set 'member' and 'time' only"):
        tutorial.oracle_ensemble(lr, chunks={"y": 8})
    with pytest.raises(TypeError, match=r"lr must be an xarray.Dataset"):
        tutorial.oracle_ensemble(lr.t2m)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"carries neither 'orography'"):
        tutorial.invariants(xr.Dataset())

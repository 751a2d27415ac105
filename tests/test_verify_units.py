"""Verification compares ensemble and truth in the same units, and validates member weights."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xcorrdiff.verify as xv


def _pair(units: str = "K", truth_units: str | None = "K") -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(0)
    ens = xr.DataArray(
        280.0 + rng.normal(size=(8, 5, 6)), dims=("member", "time", "x"), name="t2m",
        attrs={"units": units},
    )  # fmt: skip
    truth = xr.DataArray(280.0 + rng.normal(size=(5, 6)), dims=("time", "x"), name="t2m")
    if truth_units is not None:
        truth.attrs["units"] = truth_units
    return ens, truth


def test_truth_in_celsius_is_converted_to_the_ensembles_kelvin() -> None:
    ens, truth = _pair()
    in_kelvin = float(xv.crps(ens, truth))
    celsius = (truth - 273.15).assign_attrs(units="degC")
    # Before: compared raw numbers, CRPS about 273.
    assert float(xv.crps(ens, celsius)) == pytest.approx(in_kelvin, rel=1e-12)
    assert float(xv.mae(ens, celsius)) == pytest.approx(float(xv.mae(ens, truth)), rel=1e-12)
    hist = xv.rank_histogram(ens, celsius)
    np.testing.assert_array_equal(hist.values, xv.rank_histogram(ens, truth).values)


def test_precipitation_rates_in_other_units() -> None:
    rng = np.random.default_rng(1)
    ens = xr.DataArray(rng.gamma(1.0, 0.5, size=(6, 4, 3)), dims=("member", "time", "x"),
                       name="precip", attrs={"units": "mm h-1"})  # fmt: skip
    truth_h = xr.DataArray(rng.gamma(1.0, 0.5, size=(4, 3)), dims=("time", "x"), name="precip",
                           attrs={"units": "mm h-1"})  # fmt: skip
    expected = float(xv.crps(ens, truth_h))
    per_day = (truth_h * 24).assign_attrs(units="mm/day")
    assert float(xv.crps(ens, per_day)) == pytest.approx(expected, rel=1e-12)  # was 16.98 vs 0.73
    flux = (truth_h / 3600).assign_attrs(units="kg m-2 s-1")  # water equivalent
    assert float(xv.crps(ens, flux)) == pytest.approx(expected, rel=1e-12)


def test_incompatible_or_missing_units_are_refused() -> None:
    ens, truth = _pair()
    with pytest.raises(
        ValueError, match=r"obs variable 't2m' is in 'm s-1', which does not convert"
    ):
        xv.crps(ens, truth.assign_attrs(units="m s-1"))
    with pytest.raises(
        ValueError, match=r"obs variable 't2m' has no 'units' attribute but forecast has 'K'"
    ):
        xv.spread_skill(ens, _pair(truth_units=None)[1])
    no_units = ens.copy()
    no_units.attrs = {}
    with pytest.raises(ValueError, match=r"forecast variable 't2m' has no 'units'.*obs has 'K'"):
        xv.rmse(no_units, truth)
    # Neither has units: compared as they are.
    assert np.isfinite(float(xv.crps(no_units, _pair(truth_units=None)[1])))


def test_conversion_stays_lazy_and_keeps_float32() -> None:
    ens, truth = _pair()
    celsius = (truth - 273.15).astype(np.float32).assign_attrs(units="degC").chunk(time=2)
    lazy = xv.crps(ens.chunk(time=2), celsius, dim=[])
    assert isinstance(lazy.data, dsa.Array)
    np.testing.assert_allclose(lazy.values, xv.crps(ens, truth, dim=[]).values, atol=1e-4)


def test_datasets_are_converted_variable_by_variable() -> None:
    ens, truth = _pair()
    ds_ens = ens.to_dataset()
    ds_truth = (truth - 273.15).assign_attrs(units="degC").to_dataset()
    table = xv.verify(ds_ens, ds_truth)
    assert float(table["crps"].sel(variable="t2m")) == pytest.approx(float(xv.crps(ens, truth)))


def test_crps_gaussian_converts_obs() -> None:
    mu = xr.DataArray([280.0, 281.0], dims="time", attrs={"units": "K"})
    sigma = xr.DataArray([1.0, 2.0], dims="time", attrs={"units": "K"})
    obs = xr.DataArray([280.5, 279.0], dims="time", attrs={"units": "K"})
    expected = float(xv.crps_gaussian(mu, sigma, obs))
    celsius = (obs - 273.15).assign_attrs(units="degC")
    assert float(xv.crps_gaussian(mu, sigma, celsius)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.array([1.0, -1.0, 1, 1, 1, 1, 1, 1]), r"negative values \(smallest -1.0\)"),
        (np.zeros(8), r"all zero along 'member'"),
        (np.array([1.0, np.nan, 1, 1, 1, 1, 1, 1]), r"1 NaN/inf values"),
        (np.array([1.0, np.inf, 1, 1, 1, 1, 1, 1]), r"1 NaN/inf values"),
        (np.ones(7), r"7 values along 'member' but the forecast has 8 members"),
    ],
)
def test_member_weights_are_validated(weights: np.ndarray, match: str) -> None:
    ens, truth = _pair()
    with pytest.raises(ValueError, match=match):
        xv.crps(ens, truth, member_weights=xr.DataArray(weights, dims="member"))


def test_member_weights_labelled_with_other_members_are_refused() -> None:
    ens, truth = _pair()
    ens = ens.assign_coords(member=np.arange(8))
    w = xr.DataArray(np.ones(8), dims="member", coords={"member": np.arange(1, 9)})
    with pytest.raises(ValueError, match=r"weights' 'member' coordinate .* differs"):
        xv.crps(ens, truth, member_weights=w)

"""Real files as they come: ERA5, CMIP6 (cftime calendars), WRF, HRRR, curvilinear sources.

Each test writes a small file in the source's own layout (tests/fixtures/layouts.py), opens
it as a user would and runs fit → downscale → verify on it.
"""

from __future__ import annotations

import pathlib
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.conventions import standardize, time_dim_of
from xcorrdiff.data.regrid import regrid
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)

sys.path.insert(0, str(pathlib.Path(__file__).parent / "fixtures"))

from layouts import (  # noqa: E402
    write_cmip6,
    write_cmip6_hr,
    write_curvilinear_lr,
    write_era5,
    write_hrrr,
    write_wrf,
)


@pytest.fixture(scope="module")
def pair() -> tuple[xr.Dataset, xr.Dataset]:
    return make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=2, center=(45.0, -3.0))


def _quick(**kw: object) -> TrainConfig:
    return TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=2, diffusion_duration=2,
        validation_fraction=0.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _round_trip(lr: xr.Dataset, hr: xr.Dataset, **fit: object) -> tuple[xr.Dataset, xr.Dataset]:
    """fit → downscale (2 members, 4 steps) → CRPS; returns the ensemble and the scores."""
    model = lr.corrdiff.fit(hr, config=_quick(), progress=False, **fit)
    ens = lr.corrdiff.downscale(model=model, n_ensemble=2, num_steps=4, seed=0)
    scores = ens.corrdiff.crps(hr)
    for name, score in scores.data_vars.items():
        assert np.isfinite(float(score)), name
    return ens, scores


def test_era5_file_as_the_cds_writes_it(
    pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = pair
    with xr.open_dataset(write_era5(lr, tmp_path / "era5.nc")) as era5:
        assert era5.latitude.values[0] > era5.latitude.values[-1]
        assert era5.longitude.values.min() > 180  # 0..360 convention
        assert time_dim_of(era5) == "valid_time"
        ens, _ = _round_trip(era5, hr[["t2m", "u10m"]])
        np.testing.assert_allclose(
            standardize(era5).t2m.values, lr.t2m.values, atol=1e-2
        )  # unpacked and re-ordered, not re-valued
    assert ens.sizes["member"] == 2 and "time" in ens.dims
    np.testing.assert_array_equal(ens.time.values, hr.time.values)


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "proleptic_gregorian"])
def test_cmip6_calendars_end_to_end(
    pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path, calendar: str
) -> None:
    lr, hr = pair
    lr_path = write_cmip6(lr, tmp_path / "lr.nc", calendar)
    hr_path = write_cmip6_hr(hr, tmp_path / "hr.nc", calendar)
    with (
        xr.open_dataset(lr_path, decode_times=CFTIME) as cmip,
        xr.open_dataset(hr_path, decode_times=CFTIME) as target,
    ):
        assert "lat_bnds" in cmip.data_vars and "height" in cmip.coords
        model = cmip.corrdiff.fit(
            target, config=_quick(), progress=False, output_variables=["tas", "pr"]
        )
        out = xcorrdiff.downscale_to_zarr(
            cmip.chunk(time=4), tmp_path / "out.zarr", model=model, n_ensemble=2, num_steps=4
        )
        del out
        with xr.open_zarr(tmp_path / "out.zarr", decode_times=CFTIME, consolidated=False) as ens:
            assert ens.time.dt.calendar == calendar
            assert ens.time.values[0] == target.time.values[0]
            scores = ens.corrdiff.crps(target)
            assert np.isfinite(scores.tas.values) and np.isfinite(scores.pr.values)
            assert ens.pr.attrs["units"] == "kg m-2 s-1"


def test_mixed_calendars_are_refused(pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path) -> None:
    lr, hr = pair
    with xr.open_dataset(
        write_cmip6(lr, tmp_path / "lr.nc", "noleap"), decode_times=CFTIME
    ) as cmip:
        target = xr.open_dataset(
            write_cmip6_hr(hr, tmp_path / "hr.nc", "360_day"), decode_times=CFTIME
        )
        with pytest.raises(
            ValueError,
            match=r"mixed calendars: lr uses 'noleap', hr uses '360_day'.*convert_calendar",
        ):
            cmip.corrdiff.fit(target, config=_quick(), progress=False)
        target.close()


def test_wrf_output_keeps_its_names(pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path) -> None:
    lr, hr = pair
    with xr.open_dataset(write_wrf(hr, tmp_path / "wrfout_d01.nc")) as wrf:
        assert wrf.XLAT.dims == ("Time", "south_north", "west_east")
        invariants = wrf[["HGT"]].isel(Time=0, drop=True)
        ens, _ = _round_trip(lr, wrf, output_variables=["T2", "U10"], invariants=invariants)
    assert ens.T2.dims == ("member", "time", "south_north", "west_east")
    assert ens.XLAT.dims == ("south_north", "west_east")
    np.testing.assert_allclose(ens.XLAT.values, hr.lat.values)


def test_hrrr_grid_mapping_reaches_the_output(
    pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = pair
    with xr.open_dataset(write_hrrr(hr, tmp_path / "hrrr.nc")) as hrrr:
        assert "lambert_conformal_conic" in hrrr.data_vars  # opened without decode_coords="all"
        ens, _ = _round_trip(lr, hrrr, output_variables=["t2m", "u10"])
    assert ens.t2m.attrs["grid_mapping"] == "lambert_conformal_conic"
    assert ens.lambert_conformal_conic.attrs["grid_mapping_name"] == "lambert_conformal_conic"
    assert "latitude" in ens.coords


def test_curvilinear_source_regrids_without_xesmf(tmp_path: Path) -> None:
    _, big = make_synthetic(n_times=8, hr_shape=(48, 48), factor=4, seed=3)
    hr = big.isel(y=slice(8, 40), x=slice(8, 40))
    with xr.open_dataset(write_curvilinear_lr(big, tmp_path / "rcm.nc")) as rcm:
        assert rcm.lat.dims == ("rlat", "rlon")
        on_hr = regrid(rcm, hr)
        # Block means regridded back: close to the HR field smoothed, and exact for a plane.
        plane = rcm.assign(t2m=3.0 * rcm.lat + 2.0 * rcm.lon + 0 * rcm.t2m)
        exact = regrid(plane, hr).t2m
        expected = (3.0 * hr.lat + 2.0 * hr.lon).broadcast_like(exact).transpose(*exact.dims)
        np.testing.assert_allclose(exact.values, expected.values, atol=1e-3)
        assert float(np.abs(on_hr.t2m - hr.t2m).mean()) < 1.5
        _round_trip(rcm, hr[["t2m", "u10m"]])
        with pytest.raises(ValueError, match=r"outside the curvilinear source's coverage"):
            regrid(rcm, big)


def test_cf_metadata_variables_are_not_data(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    _, hr = pair
    ds = (
        hr[["t2m"]]
        .drop_vars("crs")
        .assign(crs=hr.crs, lat_bnds=(("y", "x", "nv"), np.zeros((16, 16, 4))))
    )
    ds.lat.attrs["bounds"] = "lat_bnds"
    out = standardize(ds)
    assert list(out.data_vars) == ["t2m"] and "crs" in out.coords and "lat_bnds" not in out


def test_which_dim_is_time_when_two_could_be(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    lr, _ = pair
    two = lr.rename(time="valid_time").expand_dims(
        forecast_reference_time=np.array(["2000-01-01"], dtype="datetime64[ns]")
    )
    two = xr.concat(
        [two, two.assign_coords(forecast_reference_time=[np.datetime64("2000-01-02", "ns")])],
        "forecast_reference_time",
    )
    with pytest.raises(ValueError, match=r"several dimensions that could be time.*rename"):
        standardize(two, role="lr")


def test_moving_wrf_grid_is_refused(pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path) -> None:
    _, hr = pair
    with xr.open_dataset(write_wrf(hr, tmp_path / "wrf.nc")) as wrf:
        moved = wrf.assign_coords(XLAT=wrf.XLAT + xr.DataArray(np.arange(8.0), dims="Time"))
        with pytest.raises(ValueError, match=r"'XLAT' changes along time"):
            standardize(moved, role="hr")

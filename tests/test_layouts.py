"""Real files as they come: ERA5, CMIP6 (cftime calendars), WRF, HRRR, curvilinear sources.

Each test writes a small file in the source's own layout (tests/fixtures/layouts.py), opens
it as a user would and runs fit → downscale → verify on it.
"""

from __future__ import annotations

import json
import pathlib
import sys
from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.conventions import standardize, time_dim_of
from xcorrdiff.data.regrid import regrid
from xcorrdiff.io import read_cwa, read_gefs_hrrr, read_hrrr_mini
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)

sys.path.insert(0, str(pathlib.Path(__file__).parent / "fixtures"))

from layouts import (  # noqa: E402
    write_cmip6,
    write_cmip6_hr,
    write_curvilinear_lr,
    write_cwa,
    write_era5,
    write_gefs_hrrr,
    write_hrrr,
    write_hrrr_mini,
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


def test_era5_file_to_zarr(pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path) -> None:
    lr, hr = pair
    with xr.open_dataset(write_era5(lr, tmp_path / "era5.nc"), chunks={}) as era5:
        model = era5.corrdiff.fit(hr[["t2m"]], config=_quick(), progress=False)
        xcorrdiff.downscale_to_zarr(
            era5.chunk(valid_time=4), tmp_path / "o.zarr", model=model, n_ensemble=2,
            num_steps=2,
        )  # fmt: skip
    with xr.open_zarr(tmp_path / "o.zarr", consolidated=False) as out:
        np.testing.assert_array_equal(out.time.values, hr.time.values)


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


# --- the published CorrDiff data sets ---------------------------------------------------------


def test_cwa_zarr(tmp_path: Path) -> None:
    lr, hr = make_synthetic(n_times=8, hr_shape=(18, 18), factor=4, seed=5)
    path = write_cwa(lr, hr, tmp_path / "cwa.zarr", invalid=2)
    data = read_cwa(path, input_channels=None, output_channels=None, shape=(16, 16))
    assert data.lr.sizes == {"time": 7, "south_north": 16, "west_east": 16}  # invalid time gone
    assert list(data.hr.data_vars) == [
        "maximum_radar_reflectivity", "temperature_2m", "eastward_wind_10m", "northward_wind_10m",
    ]  # fmt: skip
    assert (
        "eastward_wind500" in data.lr
        and data.lr.total_column_water_vapour.attrs["units"] == "kg m-2"
    )
    assert data.hr.maximum_radar_reflectivity.attrs["units"] == "dBZ"
    assert data.stats is not None and set(data.stats["output"]) == set(data.hr.data_vars)
    assert isinstance(data.lr.eastward_wind500.data, dask.array.Array)  # lazy
    ens, _ = _round_trip(data.lr, data.hr[["temperature_2m", "eastward_wind_10m"]])
    assert ens.XLAT.dims == ("south_north", "west_east")


def test_hrrr_mini_netcdf_groups(tmp_path: Path) -> None:
    _, big = make_synthetic(n_times=8, hr_shape=(24, 24), factor=4, seed=6)
    path = write_hrrr_mini(big, tmp_path / "hrrr_mini.nc")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"input": {"t2m": {"mean": 280.0, "std": 5.0}}}))
    data = read_hrrr_mini(path, stats)
    assert data.hr.sizes == {"time": 8, "y": 16, "x": 16} and data.invariants is None
    assert {"elev_mean", "lsm_mean", "u10m", "t2m"} <= set(data.lr.data_vars)
    assert data.lr.t2m.dims == ("time", "y", "x") and data.hr["10u"].attrs["units"] == "m s-1"
    with xr.open_dataset(path, group="input") as coarse:
        assert coarse.t2m.shape == (8, 4, 4)
    assert data.stats == {"input": {"t2m": {"mean": 280.0, "std": 5.0}}}
    _round_trip(data.lr, data.hr)


def test_hrrr_mini_upsampling_is_exact_for_a_plane(tmp_path: Path) -> None:
    from xcorrdiff.io.hrrr_mini import _upsample

    y, x = np.meshgrid(np.arange(16.0), np.arange(16.0), indexing="ij")
    plane = 2.0 * y - 3.0 * x
    coarse = plane.reshape(4, 4, 4, 4).mean(axis=(1, 3))  # block means = values at centres
    ds = xr.Dataset({"f": (("time", "y", "x"), coarse[None])})
    np.testing.assert_allclose(_upsample(ds, (16, 16), 4).f.values[0], plane, atol=1e-5)


def test_gefs_hrrr_zarr_stores(pair: tuple[xr.Dataset, xr.Dataset], tmp_path: Path) -> None:
    lr, hr = pair
    root = write_gefs_hrrr(lr, hr, tmp_path / "gefs_hrrr", leads=(0, 3, 6))
    with pytest.raises(ValueError, match=r"share a valid time.*leads=\[6\]"):
        read_gefs_hrrr(root, input_surface_variables=["u10m", "t2m"],
                       input_isobaric_variables=["t850"], output_variables=["t2m"])  # fmt: skip
    data = read_gefs_hrrr(
        root, input_surface_variables=["u10m", "t2m"], input_isobaric_variables=["u500", "t850"],
        output_variables=["u10m", "t2m"], leads=[0, 3],
    )  # fmt: skip
    assert data.lr.lat.ndim == 1 and data.hr.lat.dims == ("y", "x")
    assert data.lr.sizes["time"] == data.hr.sizes["time"] == 6
    np.testing.assert_array_equal(
        data.hr.lead_time.values.astype("timedelta64[h]").astype(int), [0, 3, 0, 3, 0, 3]
    )
    assert data.lr.t850.attrs["units"] == "K" and data.lr.u500.attrs["units"] == "m s-1"
    _round_trip(data.lr, data.hr)

"""Gridded fields at stations: locating points and bilinear interpolation, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

from xcorrdiff.data.points import at_stations, locate_points
from xcorrdiff.tutorial import make_synthetic


def curvilinear(ny: int = 12, nx: int = 15) -> xr.Dataset:
    """A rotated, sheared lat/lon grid on (y, x) and a field on (time, y, x)."""
    j, i = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
    lat = 40.0 + 0.05 * i + 0.01 * j + 0.0004 * i * j
    lon = -100.0 + 0.06 * j - 0.015 * i + 0.0003 * i**2
    field = np.random.default_rng(0).normal(size=(2, ny, nx))
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), field, {"units": "K"})},
        coords={"lat": (("y", "x"), lat), "lon": (("y", "x"), lon), "time": [0, 1]},
    )


def bilinear(values: np.ndarray, fy: float, fx: float) -> np.ndarray:
    """Brute force: the four corners of the cell, by hand."""
    iy, ix = min(int(fy), values.shape[-2] - 2), min(int(fx), values.shape[-1] - 2)
    ty, tx = fy - iy, fx - ix
    return (
        values[..., iy, ix] * (1 - ty) * (1 - tx)
        + values[..., iy, ix + 1] * (1 - ty) * tx
        + values[..., iy + 1, ix] * ty * (1 - tx)
        + values[..., iy + 1, ix + 1] * ty * tx
    )


def stations_at(grid: xr.Dataset, fy: np.ndarray, fx: np.ndarray) -> xr.Dataset:
    """Stations placed at known fractional indices (their lat/lon by bilinear maps)."""
    lat = [bilinear(grid["lat"].values, a, b) for a, b in zip(fy, fx, strict=True)]
    lon = [bilinear(grid["lon"].values, a, b) for a, b in zip(fy, fx, strict=True)]
    names = [f"S{k}" for k in range(len(fy))]
    return xr.Dataset(coords={"station": names, "lat": ("station", lat), "lon": ("station", lon)})


def test_curvilinear_points_are_found_and_interpolated() -> None:
    grid = curvilinear()
    rng = np.random.default_rng(1)
    fy, fx = rng.uniform(0, 11, 40), rng.uniform(0, 14, 40)
    fy[:2], fx[:2] = [0.0, 11.0], [14.0, 0.0]  # corners of the grid
    stations = stations_at(grid, fy, fx)
    where = locate_points(grid, stations["lat"], stations["lon"])
    np.testing.assert_allclose(where.fy, fy, atol=1e-9)
    np.testing.assert_allclose(where.fx, fx, atol=1e-9)
    out = at_stations(grid, stations)
    assert out["t2m"].dims == ("time", "station")
    assert list(out["station"].values) == list(stations["station"].values)
    np.testing.assert_allclose(out["lat"], stations["lat"])
    expected = np.stack([bilinear(grid["t2m"].values, a, b) for a, b in zip(fy, fx, strict=True)])
    np.testing.assert_allclose(out["t2m"].values, expected.T, rtol=0, atol=1e-9)
    assert out["t2m"].attrs == {"units": "K"}


def test_rectilinear_descending_lat_and_wrapped_lon() -> None:
    lat, lon = np.array([50.0, 49.0, 48.0, 47.0]), np.array([350.0, 351.0, 352.0])
    values = np.arange(12.0).reshape(4, 3)
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="z")
    stations = xr.Dataset(
        coords={"lat": ("station", [48.5, 50.0]), "lon": ("station", [-8.5, 350])}
    )
    out = at_stations(da, stations)
    # (lat 48.5, lon 351.5) is fractional index (1.5, 1.5); (50, 350) the first point.
    np.testing.assert_allclose(out.values, [bilinear(values, 1.5, 1.5), values[0, 0]])
    assert out.name == "z" and out.dims == ("station",)


def test_nan_corner_gives_nan_but_zero_weight_corner_does_not() -> None:
    grid = curvilinear()
    grid["t2m"][:, :, :3] = np.nan
    stations = stations_at(grid, np.array([4.0, 4.5, 6.0]), np.array([2.5, 3.0, 8.25]))
    out = at_stations(grid, stations)["t2m"].values
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1:]).all()


def test_lazy_on_dask_and_equal_to_numpy() -> None:
    _, hr = make_synthetic(n_times=4, seed=3)
    stations = stations_at(hr, np.array([3.3, 10.0, 20.7]), np.array([5.5, 30.1, 1.0]))
    chunked = hr.chunk({"time": 2})
    assert chunked["lat"].chunks is not None
    with raise_if_dask_computes(max_computes=1):  # the grid's lat/lon, once, not the data
        lazy = at_stations(chunked, stations)
    assert lazy["t2m"].chunks is not None
    xr.testing.assert_allclose(lazy.compute(), at_stations(hr, stations))


def test_stations_outside_the_grid_are_named() -> None:
    grid = curvilinear()
    stations = xr.Dataset(
        coords={"station": ["in", "far"], "lat": ("station", [40.2, 10.0]),
                "lon": ("station", [-99.8, 0.0])}
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"1 of 2 stations lie outside the grid: far"):
        at_stations(grid, stations)


def test_stations_need_one_station_dimension() -> None:
    grid = curvilinear()
    with pytest.raises(ValueError, match="expected both 1-D on one station dimension"):
        at_stations(grid, grid)


def test_station_verification_keeps_the_station_dim() -> None:
    import properscoring

    import xcorrdiff.verify as xv

    _, hr = make_synthetic(n_times=4, seed=3)
    noise = np.random.default_rng(4).normal(size=(5, *hr["t2m"].shape))
    ens = (hr[["t2m"]] + xr.DataArray(noise, dims=("member", *hr["t2m"].dims))).transpose(
        "member", ...
    )
    stations = stations_at(hr, np.array([3.3, 10.0, 20.7]), np.array([5.5, 30.1, 1.0]))
    obs = at_stations(hr[["t2m"]], stations)
    crps = xv.crps(ens.corrdiff.at_stations(stations), obs, dim="time")
    assert crps["t2m"].dims == ("station",)
    for k, (a, b) in enumerate(zip([3.3, 10.0, 20.7], [5.5, 30.1, 1.0], strict=True)):
        members = bilinear(ens["t2m"].values, a, b)  # (member, time)
        truth = bilinear(hr["t2m"].values.astype(np.float64), a, b)
        expected = properscoring.crps_ensemble(truth, members.T).mean()
        assert float(crps["t2m"][k]) == pytest.approx(expected, rel=1e-6)

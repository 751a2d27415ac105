"""Tests for xcorrdiff.data.regrid: bilinear/nearest (xarray interp) and conservative."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff  # noqa: F401  (registers .corrdiff)
from xcorrdiff.data.regrid import latlon_names, regrid

EARTH_RADIUS_KM = 6371.0


def lambert_conformal_grid(
    ny: int = 48,
    nx: int = 64,
    dx_km: float = 10.0,
    lat0: float = 38.0,
    lon0: float = -100.0,
    parallels: tuple[float, float] = (30.0, 60.0),
) -> xr.Dataset:
    """A Lambert-conformal (HRRR-like) grid: 2-D lat/lon on (y, x), inverse projection on a sphere."""
    phi1, phi2, phi0 = np.deg2rad([*parallels, lat0])
    n = np.log(np.cos(phi1) / np.cos(phi2)) / np.log(
        np.tan(np.pi / 4 + phi2 / 2) / np.tan(np.pi / 4 + phi1 / 2)
    )
    big_f = np.cos(phi1) * np.tan(np.pi / 4 + phi1 / 2) ** n / n
    rho0 = big_f / np.tan(np.pi / 4 + phi0 / 2) ** n
    x = (np.arange(nx) - (nx - 1) / 2) * dx_km / EARTH_RADIUS_KM
    y = (np.arange(ny) - (ny - 1) / 2) * dx_km / EARTH_RADIUS_KM
    xx, yy = np.meshgrid(x, y)
    rho = np.sign(n) * np.hypot(xx, rho0 - yy)
    theta = np.arctan2(xx, rho0 - yy)
    lat = np.rad2deg(2 * np.arctan((big_f / rho) ** (1 / n)) - np.pi / 2)
    lon = lon0 + np.rad2deg(theta / n)
    return xr.Dataset(
        coords={
            "y": ("y", y * EARTH_RADIUS_KM * 1e3, {"units": "m"}),
            "x": ("x", x * EARTH_RADIUS_KM * 1e3, {"units": "m"}),
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    )


def smooth_field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth analytic field in [1, 3], periodic in longitude."""
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return 2.0 + np.sin(2 * phi) * np.cos(3 * lam)


def latlon_source(
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    n_times: int = 2,
    dtype: str = "float64",
    lat_name: str = "lat",
    lon_name: str = "lon",
) -> xr.Dataset:
    """Two variables on a rectilinear grid: the smooth field times (time + 1), and its negative."""
    base = smooth_field(lat[:, None], lon[None, :])
    data = np.stack([base * (k + 1) for k in range(n_times)]).astype(dtype)
    dims = ("time", lat_name, lon_name)
    return xr.Dataset(
        {
            "t2m": (dims, data, {"units": "K", "long_name": "temperature"}),
            "neg": (dims, -data, {"units": "1"}),
            "weight": ("time", np.arange(n_times, dtype="float64")),
        },
        coords={
            "time": np.arange(n_times),
            lat_name: (lat_name, lat, {"units": "degrees_north"}),
            lon_name: (lon_name, lon, {"units": "degrees_east"}),
        },
        attrs={"title": "synthetic"},
    )


def expected_field(lat: np.ndarray, lon: np.ndarray, n_times: int = 2) -> np.ndarray:
    return np.stack([smooth_field(lat, lon) * (k + 1) for k in range(n_times)])


def max_relative_error(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.max(np.abs(got - truth) / np.abs(truth)))


def area_weighted_mean(values: np.ndarray, lat: np.ndarray, dlat: float) -> np.ndarray:
    """Mean over (lat, lon) with cell areas ∝ sin(lat_north) − sin(lat_south) (equal dlon)."""
    weights = np.sin(np.deg2rad(lat + dlat / 2)) - np.sin(np.deg2rad(lat - dlat / 2))
    weights = np.broadcast_to(weights[:, None], values.shape[-2:])
    return (values * weights).sum(axis=(-2, -1)) / weights.sum()


# 0.25° source over the central US, longitudes in 0..360; the target uses -180..180.
SOURCE_LAT = np.arange(25.0, 50.0 + 1e-9, 0.25)
SOURCE_LON = np.arange(240.0, 300.0 + 1e-9, 0.25)


@pytest.fixture(params=[False, True], ids=["numpy", "dask"])
def chunked(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def maybe_chunk(ds: xr.Dataset, chunked: bool) -> xr.Dataset:
    return ds.chunk({"time": 1, "lat": 40, "lon": 80}) if chunked else ds


# --- bilinear ------------------------------------------------------------------------------


def test_bilinear_curvilinear_lambert_accuracy(chunked: bool) -> None:
    target = lambert_conformal_grid()
    assert float(target.lon.max()) < 0  # -180..180 target, 0..360 source
    source = maybe_chunk(latlon_source(SOURCE_LAT, SOURCE_LON), chunked)

    with raise_if_dask_computes():
        out = regrid(source, target)

    assert out["t2m"].dims == ("time", "y", "x")
    assert isinstance(out["t2m"].data, type(source["t2m"].data))
    truth = expected_field(target.lat.values, target.lon.values)
    error = max_relative_error(out["t2m"].values, truth)
    # Measured 7.5e-6 (bilinear error ~ h²/8·|f''| for h = 0.25°).
    assert error < 1e-4
    np.testing.assert_allclose(out["neg"].values, -out["t2m"].values)


def test_float32_input_gives_the_same_float32_numbers_lazy_or_eager() -> None:
    """Interpolation computes float64 blocks of a float32 dask array whose recorded dtype
    stays float32: the blocks are cast, so chunked input gives the eager numbers (the
    members' chunking invariance rests on it)."""
    target = lambert_conformal_grid(ny=8, nx=10)
    source = latlon_source(SOURCE_LAT, SOURCE_LON, dtype="float32")
    eager = regrid(source, target)["t2m"].values
    lazy = regrid(source.chunk({"time": 1}), target)["t2m"].compute().values
    assert eager.dtype == lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy, eager)


def test_bilinear_output_carries_target_grid_and_keeps_the_rest() -> None:
    target = lambert_conformal_grid(ny=8, nx=10)
    source = latlon_source(SOURCE_LAT, SOURCE_LON, dtype="float32")
    out = regrid(source, target)

    for name in ("lat", "lon", "x", "y"):
        xr.testing.assert_identical(out[name], target[name])
    np.testing.assert_array_equal(out["time"].values, source["time"].values)
    assert out["t2m"].attrs == source["t2m"].attrs
    assert out.attrs == source.attrs
    assert out["t2m"].dtype == np.float32
    xr.testing.assert_identical(out["weight"], source["weight"])
    assert "lat" not in out.dims and "lon" not in out.dims


def test_target_with_data_and_other_time_axis_only_lends_its_grid() -> None:
    grid = lambert_conformal_grid(ny=6, nx=7)
    hr = grid.assign(t2m=(("time", "y", "x"), np.zeros((5, 6, 7))))
    hr = hr.assign_coords(time=np.arange(100, 105))
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    out = regrid(source, hr)
    np.testing.assert_array_equal(out["time"].values, [0, 1])
    assert out["t2m"].shape == (2, 6, 7)


def test_rectilinear_target_in_0_360_from_source_in_minus180_180(chunked: bool) -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON - 360.0)  # -120..-60
    source = maybe_chunk(source, chunked)
    target = xr.Dataset(
        coords={"lat": np.linspace(30.1, 44.9, 13), "lon": np.linspace(250.3, 289.7, 17)}
    )
    with raise_if_dask_computes():
        out = regrid(source, target)
    assert out["t2m"].dims == ("time", "lat", "lon")
    lat2, lon2 = np.meshgrid(target.lat.values, target.lon.values, indexing="ij")
    assert max_relative_error(out["t2m"].values, expected_field(lat2, lon2)) < 1e-4
    np.testing.assert_array_equal(out["lon"].values, target["lon"].values)


def test_descending_latitude_gives_the_same_result() -> None:
    ascending = latlon_source(SOURCE_LAT, SOURCE_LON)
    descending = ascending.isel(lat=slice(None, None, -1))
    target = lambert_conformal_grid(ny=9, nx=11)
    xr.testing.assert_allclose(regrid(descending, target), regrid(ascending, target), rtol=1e-12)
    # A descending target comes back in its own order.
    rect = xr.Dataset(coords={"lat": [40.0, 35.0, 30.0], "lon": [-100.0, -90.0]})
    out = regrid(descending, rect)
    np.testing.assert_array_equal(out["lat"].values, [40.0, 35.0, 30.0])
    lat2, lon2 = np.meshgrid(rect.lat.values, rect.lon.values, indexing="ij")
    assert max_relative_error(out["t2m"].values, expected_field(lat2, lon2)) < 1e-4


def test_global_source_wraps_across_the_seam(chunked: bool) -> None:
    lat = np.arange(-60.0, 60.0 + 1e-9, 0.5)
    lon = np.arange(0.0, 360.0, 0.5)  # 0 .. 359.5, global
    source = latlon_source(lat, lon)
    source = source.chunk({"time": 1}) if chunked else source
    points = xr.Dataset(
        coords={
            "lat": ("point", [10.0, 10.0, -20.3, 45.1]),
            "lon": ("point", [359.8, -0.2, 0.1, 179.9]),
        }
    )
    with raise_if_dask_computes():
        out = regrid(source, points)
    assert out["t2m"].dims == ("time", "point")
    truth = expected_field(points.lat.values, points.lon.values)
    assert max_relative_error(out["t2m"].values, truth) < 1e-4


# --- nearest -------------------------------------------------------------------------------


def test_nearest_picks_source_values(chunked: bool) -> None:
    source = maybe_chunk(latlon_source(SOURCE_LAT, SOURCE_LON), chunked)
    # Points 0.1° off source nodes, in -180..180: nearest is the node.
    nodes_lat = SOURCE_LAT[[10, 20, 30]]
    nodes_lon = SOURCE_LON[[5, 50, 100]]
    target = xr.Dataset(
        coords={
            "lat": (("y", "x"), np.array([nodes_lat + 0.1, nodes_lat - 0.1])),
            "lon": (("y", "x"), np.array([nodes_lon - 360.1, nodes_lon - 359.9])),
        }
    )
    with raise_if_dask_computes():
        out = regrid(source, target, method="nearest")
    expected = source["t2m"].sel(
        lat=xr.DataArray(np.array([nodes_lat] * 2), dims=("y", "x")),
        lon=xr.DataArray(np.array([nodes_lon] * 2), dims=("y", "x")),
    )
    np.testing.assert_array_equal(out["t2m"].values, expected.values)


# --- conservative ------------------------------------------------------------------------


def conservative_case() -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """0.25° noisy source (descending lat, 0..360) and the 1° target (-180..180) covering it."""
    lat = np.arange(30.125, 50.0, 0.25)
    lon = np.arange(230.125, 250.0, 0.25)
    rng = np.random.default_rng(1)
    values = smooth_field(lat[:, None], lon[None, :]) + 0.1 * rng.standard_normal(
        (lat.size, lon.size)
    )
    source = xr.Dataset(
        {"t2m": (("lat", "lon"), values[::-1], {"units": "K"})},
        coords={"lat": lat[::-1], "lon": lon},
    )
    target = xr.Dataset(
        coords={"lat": np.arange(30.5, 50.0, 1.0), "lon": np.arange(-129.5, -110.0, 1.0)}
    )
    return source, target, values


def test_conservative_keeps_area_weighted_mean(chunked: bool) -> None:
    source, target, values = conservative_case()
    source = source.chunk({"lat": 20}) if chunked else source
    with raise_if_dask_computes():
        out = regrid(source, target, method="conservative")
    assert out["t2m"].dims == ("lat", "lon")
    source_mean = area_weighted_mean(values, np.arange(30.125, 50.0, 0.25), 0.25)
    target_mean = area_weighted_mean(out["t2m"].values, target.lat.values, 1.0)
    # Measured 0.0 (exactly nested cells).
    assert abs(float(target_mean - source_mean)) < 1e-10
    np.testing.assert_array_equal(out["lon"].values, target.lon.values)


def test_conservative_cells_are_area_weighted_block_means() -> None:
    source, target, values = conservative_case()
    out = regrid(source, target, method="conservative")
    lat = np.arange(30.125, 50.0, 0.25)
    area = np.sin(np.deg2rad(lat + 0.125)) - np.sin(np.deg2rad(lat - 0.125))
    weighted = (values * area[:, None]).reshape(20, 4, 20, 4).sum(axis=(1, 3))
    expected = weighted / (4 * area.reshape(20, 4).sum(axis=1))[:, None]
    np.testing.assert_allclose(out["t2m"].values, expected, rtol=1e-12)


def test_conservative_rejects_curvilinear_target() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    with pytest.raises(ValueError, match=r"conservative' needs a rectilinear target.*\('y', 'x'\)"):
        regrid(source, lambert_conformal_grid(ny=4, nx=4), method="conservative")


def test_conservative_rejects_target_cells_beyond_source() -> None:
    source, target, _ = conservative_case()
    wider = target.assign_coords(lat=target.lat.values + 0.5)
    with pytest.raises(ValueError, match=r"cell edges lie outside.*lat \[30\.5000, 50\.5000\]"):
        regrid(source, wider, method="conservative")


# --- recognising grids ------------------------------------------------------------------


def test_era5_names_and_cf_attributes_are_recognised() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON, lat_name="latitude", lon_name="longitude")
    grid = lambert_conformal_grid(ny=5, nx=6)
    target = xr.Dataset(
        coords={
            "nav_lat": (("y", "x"), grid.lat.values, {"standard_name": "latitude"}),
            "nav_lon": (("y", "x"), grid.lon.values, {"units": "degrees_east"}),
        }
    )
    assert latlon_names(source) == ("latitude", "longitude")
    assert latlon_names(target) == ("nav_lat", "nav_lon")
    out = regrid(source, target)
    assert set(out.coords) == {"time", "nav_lat", "nav_lon"}
    truth = expected_field(grid.lat.values, grid.lon.values)
    assert max_relative_error(out["t2m"].values, truth) < 1e-4


def test_grid_given_as_data_variables() -> None:
    grid = lambert_conformal_grid(ny=5, nx=6)
    target = grid.reset_coords(["lat", "lon"])  # lat/lon as data variables, as in grid files
    out = regrid(latlon_source(SOURCE_LAT, SOURCE_LON), target)
    xr.testing.assert_identical(out["lat"], grid["lat"])


def test_dataarray_source_and_target() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    grid = lambert_conformal_grid(ny=5, nx=6)
    target = xr.DataArray(np.zeros((5, 6)), dims=("y", "x"), coords=grid.coords)
    out = regrid(source["t2m"], target)
    assert isinstance(out, xr.DataArray)
    assert out.name == "t2m"
    xr.testing.assert_identical(out, regrid(source, grid)["t2m"])


def test_accessor_delegates(chunked: bool) -> None:
    source = maybe_chunk(latlon_source(SOURCE_LAT, SOURCE_LON), chunked)
    grid = lambert_conformal_grid(ny=5, nx=6)
    with raise_if_dask_computes():
        on_grid = source.corrdiff.regrid(grid, method="bilinear")
        on_grid_da = source["t2m"].corrdiff.regrid(grid)
    xr.testing.assert_identical(on_grid, regrid(source, grid))
    xr.testing.assert_identical(on_grid_da, on_grid["t2m"])
    _, rect, _ = conservative_case()
    coarse = conservative_case()[0].corrdiff.regrid(rect, method="conservative")
    assert coarse["t2m"].shape == (20, 20)


# --- errors --------------------------------------------------------------------------------


def test_target_outside_source_domain_gives_both_boxes() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    target = lambert_conformal_grid(lat0=52.0)  # north of the 50°N source edge
    with pytest.raises(
        ValueError,
        match=r"outside the source domain: \d+ of 3072 target points.*Target lat \[.*\]; "
        r"source lat \[25\.0000, 50\.0000\], lon \[240\.0000, 300\.0000\]",
    ):
        regrid(source, target)


def test_target_east_of_a_regional_source_in_the_other_convention() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)  # 240..300 E
    target = xr.Dataset(coords={"lat": [30.0, 31.0], "lon": [-50.0, -49.0]})  # 310 E
    with pytest.raises(ValueError, match=r"lon \[310\.0000, 311\.0000\]; source"):
        regrid(source, target)


def test_missing_latitude_in_target() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    target = xr.Dataset(coords={"y": np.arange(3), "lon": ("y", [250.0, 251.0, 252.0])})
    with pytest.raises(
        ValueError, match=r"target has no latitude coordinate.*found coordinates \['lon', 'y'\]"
    ):
        regrid(source, target)


def test_missing_longitude_in_source() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON).rename(lon="col")
    source["col"].attrs = {}  # with units 'degrees_east' it would still be recognised
    with pytest.raises(ValueError, match=r"source has no longitude coordinate"):
        regrid(source, lambert_conformal_grid(ny=3, nx=3))


def test_non_monotonic_source_latitude() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    shuffled = source.isel(lat=np.r_[1, 0, 2 : SOURCE_LAT.size])
    with pytest.raises(
        ValueError, match=r"source latitude 'lat' is not strictly monotonic.*sortby\('lat'\)"
    ):
        regrid(shuffled, lambert_conformal_grid(ny=3, nx=3))


def test_non_monotonic_rectilinear_target() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    target = xr.Dataset(coords={"lat": [30.0, 32.0, 31.0], "lon": [250.0, 251.0]})
    with pytest.raises(ValueError, match=r"target coordinate 'lat' .* not strictly monotonic"):
        regrid(source, target)


def test_curvilinear_source_onto_itself_is_the_identity() -> None:
    grid = lambert_conformal_grid(ny=6, nx=5)
    values = np.random.default_rng(0).normal(size=(2, 6, 5)).astype(np.float32)
    source = grid.assign(t2m=(("time", "y", "x"), values))
    for method in ("bilinear", "nearest"):
        out = regrid(source, grid, method=method)  # type: ignore[arg-type]
        assert out.t2m.dtype == np.float32 and out.t2m.dims == ("time", "y", "x")
        np.testing.assert_allclose(out.t2m.values, values, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"'conservative' needs cell corners.*'bilinear'"):
        regrid(source, latlon_source(SOURCE_LAT, SOURCE_LON), method="conservative")


def test_bad_method_and_backend() -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    grid = lambert_conformal_grid(ny=3, nx=3)
    with pytest.raises(
        ValueError,
        match=r"method must be one of \['bilinear', 'nearest', 'conservative'\], got 'cubic'",
    ):
        regrid(source, grid, method="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"backend must be None or one of .*got 'esmf'"):
        regrid(source, grid, backend="esmf")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"backend 'xarray-regrid' does not provide method 'bilinear'"
    ):
        regrid(source, grid, backend="xarray-regrid")


def test_xesmf_backend_without_esmf_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xesmf", None)  # import xesmf → ImportError
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    with pytest.raises(ImportError, match=r"conda-forge.*xesmf esmpy"):
        regrid(source, lambert_conformal_grid(ny=3, nx=3), backend="xesmf")


def test_xesmf_backend_matches_builtin_when_available() -> None:
    pytest.importorskip("xesmf")
    source = latlon_source(SOURCE_LAT, SOURCE_LON)
    grid = lambert_conformal_grid(ny=8, nx=9)
    out = regrid(source, grid, backend="xesmf")
    truth = expected_field(grid.lat.values, grid.lon.values)
    assert max_relative_error(out["t2m"].values, truth) < 1e-3


def test_conservative_keeps_time_attrs_dtype_and_passes_other_variables(chunked: bool) -> None:
    source = latlon_source(SOURCE_LAT, SOURCE_LON, dtype="float32")
    source = source.chunk({"time": 1}) if chunked else source
    target = xr.Dataset(coords={"lat": np.arange(26.0, 49.0), "lon": np.arange(-119.0, -61.0)})
    with raise_if_dask_computes():
        out = regrid(source, target, method="conservative")
    assert out["t2m"].dims == ("time", "lat", "lon")
    assert out["t2m"].dtype == np.float32
    assert out["t2m"].attrs == source["t2m"].attrs
    assert out.attrs == source.attrs
    xr.testing.assert_identical(out["weight"].compute(), source["weight"].compute())
    # A smooth field coarsened conservatively stays close to the field at cell centers.
    lat2, lon2 = np.meshgrid(target.lat.values, target.lon.values, indexing="ij")
    assert max_relative_error(out["t2m"].values, expected_field(lat2, lon2)) < 1e-3

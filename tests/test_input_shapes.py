"""Input in every shape the docs show downscales, and grids equal to rounding are one grid.

The output of ``lr.corrdiff.regrid(hr)`` (with the HR invariants as coordinates, as data
variables, or without them), a single time without a ``time`` dim, latitudes in either
order, a grid off by rounding (accepted, the model's coordinates out) or by half a cell
(regridded or refused, never labelled as the model's grid), and output points exactly on
the first or last input coordinate.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_data, tiny_model

from xcorrdiff.data.regrid import regrid
from xcorrdiff.inference.api import downscale
from xcorrdiff.model import CorrDiffModel

KW = {"n_ensemble": 2, "num_steps": 2, "device": "cpu", "seed": 3, "return_mean": True}


@pytest.fixture(scope="module")
def model() -> CorrDiffModel:
    return tiny_model()


@pytest.fixture(scope="module")
def reference(model: CorrDiffModel) -> xr.Dataset:
    lr, _ = tiny_data(2)
    return downscale(lr, model, **KW)  # type: ignore[arg-type]


def _on_hr() -> xr.Dataset:
    lr, hr = tiny_data(2)
    return lr.corrdiff.regrid(hr)


def _same(ens: xr.Dataset, reference: xr.Dataset) -> None:
    for name in reference.data_vars:
        np.testing.assert_allclose(ens[name].values, reference[name].values, rtol=1e-5, atol=1e-5)
    for name in ("y", "x", "lat", "lon"):  # the model's coordinates, exactly
        np.testing.assert_array_equal(ens[name].values, reference[name].values)


def test_regridded_input_carrying_invariants_as_coordinates(model, reference) -> None:
    on_hr = _on_hr()
    assert {"orography", "land_sea_mask"} <= set(on_hr.coords)  # as regrid(hr) gives it
    _same(downscale(on_hr, model, **KW), reference)  # type: ignore[arg-type]


def test_regridded_input_carrying_invariants_as_data_variables(model, reference) -> None:
    on_hr = _on_hr().reset_coords(["orography", "land_sea_mask"])
    assert {"orography", "land_sea_mask"} <= set(on_hr.data_vars)
    _same(downscale(on_hr, model, **KW), reference)  # type: ignore[arg-type]


def test_regridded_input_without_invariants(model, reference) -> None:
    on_hr = _on_hr().drop_vars(["orography", "land_sea_mask"])
    _same(downscale(on_hr, model, **KW), reference)  # type: ignore[arg-type]


def test_regridded_input_with_other_invariant_values_uses_the_models(model, reference) -> None:
    on_hr = _on_hr()
    on_hr = on_hr.assign_coords(orography=on_hr["orography"] * 0 + 5000.0)
    _same(downscale(on_hr, model, **KW), reference)  # type: ignore[arg-type]


def test_a_single_time_without_a_time_dim(model, reference) -> None:
    for lr in (tiny_data(2)[0], _on_hr()):
        one = downscale(lr.isel(time=1), model, **KW)  # type: ignore[arg-type]
        assert "time" not in one.dims and one["t2m"].dims == ("member", "y", "x")
        _same(one, reference.isel(time=1))


def test_latitudes_in_either_order(model, reference) -> None:
    lr, _ = tiny_data(2)
    assert lr["lat"].values[0] > lr["lat"].values[-1]  # descending, as ERA5
    ascending = lr.sortby("lat")
    _same(downscale(ascending, model, **KW), reference)  # type: ignore[arg-type]


def test_a_grid_off_by_rounding_is_the_models_grid(model, reference) -> None:
    on_hr = _on_hr()
    off = on_hr.assign_coords(lat=on_hr["lat"] + 1e-13, lon=on_hr["lon"] - 1e-13)
    assert not np.array_equal(off["lat"].values, reference["lat"].values)
    _same(downscale(off, model, **KW), reference)  # type: ignore[arg-type]
    float32 = on_hr.assign_coords(lat=on_hr["lat"].astype(np.float32))
    _same(downscale(float32, model, **KW), reference)  # type: ignore[arg-type]


def test_a_grid_off_by_half_a_cell_is_regridded_or_refused(model) -> None:
    on_hr = _on_hr()
    step = float(np.abs(np.diff(on_hr["lat"].values, axis=0)).mean())
    shifted = on_hr.assign_coords(lat=on_hr["lat"] + step / 2)
    with pytest.raises(ValueError, match="outside the curvilinear source's coverage"):
        downscale(shifted, model, **KW)  # type: ignore[arg-type]
    # Shifted within a larger source, it is regridded: the values move, the labels are the
    # model's.
    lr, _ = tiny_data(2)
    ens = downscale(lr.assign_coords(lat=lr["lat"] + 0.01), model, **KW)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ens["lat"].values, model.grid["lat"].values)
    moved = float(np.abs(ens["t2m_mean"] - downscale(lr, model, **KW)["t2m_mean"]).max())  # type: ignore[arg-type]
    assert moved > 1e-3


@pytest.mark.parametrize("descending", [False, True])
def test_output_points_on_the_first_and_last_input_coordinate(descending: bool) -> None:
    lat, lon = np.array([10.0, 10.5, 11.0]), np.array([20.0, 20.5, 21.0, 21.5])
    values = np.arange(12.0).reshape(3, 4)
    source = xr.Dataset(
        {"t": (("lat", "lon"), values, {"units": "K"})}, coords={"lat": lat, "lon": lon}
    )
    if descending:
        source = source.isel(lat=slice(None, None, -1), lon=slice(None, None, -1))
    target = xr.Dataset(coords={"lat": [10.0, 11.0], "lon": [20.0, 21.5]})
    out = regrid(source, target)["t"].values
    np.testing.assert_array_equal(out, values[np.ix_([0, 2], [0, 3])])
    nearest = regrid(source, target, method="nearest")["t"].values
    np.testing.assert_array_equal(nearest, values[np.ix_([0, 2], [0, 3])])


def test_a_global_source_keeps_its_first_and_last_longitude_in_place() -> None:
    """Earth2Studio #1004: a point on the first input longitude wrapped to the far edge."""
    lon = np.arange(0.0, 360.0, 90.0)
    source = xr.Dataset(
        {"t": (("lat", "lon"), np.array([[1.0, 2.0, 3.0, 4.0]] * 2), {"units": "K"})},
        coords={"lat": [0.0, 1.0], "lon": lon},
    )
    points = [0.0, 270.0, 315.0, -90.0, 360.0, 0.0]
    target = xr.Dataset(coords={"lat": ("point", [0.0] * 6), "lon": ("point", points)})
    out = regrid(source, target)["t"].values
    np.testing.assert_allclose(out, [1.0, 4.0, 2.5, 4.0, 1.0, 1.0])


# --- coarse input that stops short of the HR grid, or has no values over the sea ---------


def _coarse_curvilinear() -> tuple[xr.Dataset, xr.Dataset]:
    """4×4 block means of the HR truth on the HR grid's own projection: the coarse cell
    centres stop 1.5 HR cells short of the HR grid's edge."""
    _, hr = tiny_data(1)
    coarse = hr[["t2m"]].coarsen(y=4, x=4).mean()
    coarse = coarse.assign_coords(lat=hr["lat"].coarsen(y=4, x=4).mean(),
                                  lon=hr["lon"].coarsen(y=4, x=4).mean())  # fmt: skip
    return coarse.drop_vars(["y", "x", "orography", "land_sea_mask"], errors="ignore"), hr


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_a_curvilinear_source_fills_its_outer_ring_only_when_asked(method: str) -> None:
    coarse, hr = _coarse_curvilinear()
    with pytest.raises(ValueError, match=r"lie outside.*edge='nearest'"):
        regrid(coarse, hr, method)  # type: ignore[arg-type]
    filled = regrid(coarse, hr, method, edge="nearest")["t2m"]  # type: ignore[arg-type]
    assert np.isfinite(filled.values).all()
    inner = (slice(None), slice(2, -2), slice(2, -2))
    strict = regrid(coarse, hr.isel(y=slice(2, -2), x=slice(2, -2)), method)["t2m"]  # type: ignore[arg-type]
    np.testing.assert_allclose(filled.values[inner], strict.values, rtol=1e-6)
    corner = float(filled.isel(time=0, y=0, x=0))
    assert corner == pytest.approx(float(coarse["t2m"].isel(time=0, y=0, x=0)), rel=1e-6)
    far = hr.assign_coords(lat=hr["lat"] + 1.0)
    with pytest.raises(ValueError, match="lie outside"):
        regrid(coarse, far, method, edge="nearest")  # type: ignore[arg-type]


def test_a_rectilinear_source_fills_within_one_cell_only_when_asked() -> None:
    source = xr.Dataset(
        {"t": (("lat", "lon"), np.arange(9.0).reshape(3, 3), {"units": "K"})},
        coords={"lat": [10.0, 11.0, 12.0], "lon": [0.0, 1.0, 2.0]},
    )
    target = xr.Dataset(coords={"lat": [11.0, 12.6], "lon": [-0.4, 1.0]})
    with pytest.raises(ValueError, match=r"outside the source domain.*edge='nearest'"):
        regrid(source, target)
    np.testing.assert_array_equal(regrid(source, target, edge="nearest")["t"].values,
                                  [[3.0, 4.0], [6.0, 7.0]])  # fmt: skip
    with pytest.raises(ValueError, match="outside the source domain"):
        regrid(source, xr.Dataset(coords={"lat": [13.5], "lon": [1.0]}), edge="nearest")
    with pytest.raises(ValueError, match=r"edge='nearest' applies to method='bilinear'"):
        regrid(source, target, "conservative", edge="nearest")


def _land_only(lr: xr.Dataset) -> xr.Dataset:
    """No values west of 6.9°E (the sea of a land-only reanalysis)."""
    return lr.where(lr["lon"] > 6.9)


def test_land_only_input_is_refused_with_the_fill_option_named(model) -> None:
    lr, _ = tiny_data(2)
    with pytest.raises(ValueError, match=r"NaN/inf values.*fill_missing='nearest'"):
        downscale(_land_only(lr), model, **KW)  # type: ignore[arg-type]


def test_land_only_input_downscales_with_fill_missing(model) -> None:
    from xcorrdiff.data import fill_nearest

    lr, _ = tiny_data(2)
    sea = _land_only(lr)
    ens = downscale(sea, model, **KW, fill_missing="nearest")  # type: ignore[arg-type]
    assert ens.attrs["fill_missing"] == "nearest"
    assert all(np.isfinite(ens[v].values).all() for v in ens.data_vars)
    _same(ens, downscale(fill_nearest(sea), model, **KW))  # type: ignore[arg-type]
    lazy = downscale(sea.chunk(time=1), model, **KW, fill_missing="nearest")  # type: ignore[arg-type]
    _same(lazy.compute(), ens)
    full = downscale(lr, model, **KW, fill_missing="nearest")  # nothing missing: unchanged
    _same(full, downscale(lr, model, **KW))  # type: ignore[arg-type]


def test_fill_nearest_takes_the_nearest_valid_cell() -> None:
    from xcorrdiff.data import fill_nearest

    values = np.array([[np.nan, 1.0, np.nan, np.nan], [np.nan, np.nan, np.nan, 3.0]])
    ds = xr.Dataset(
        {"t": (("time", "lat", "lon"), np.stack([values, np.full_like(values, np.nan)]))},
        coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0, 2.0, 3.0]},
    )
    out = fill_nearest(ds)["t"].values
    np.testing.assert_array_equal(out[0], [[1.0, 1.0, 1.0, 3.0], [1.0, 1.0, 3.0, 3.0]])
    assert np.isnan(out[1]).all()  # a field with no valid cell stays NaN (and is refused)
    lazy = fill_nearest(ds.chunk(time=1, lon=2))
    np.testing.assert_array_equal(lazy["t"].values, out)


def test_fill_and_edge_refuse_what_they_cannot_use() -> None:
    from xcorrdiff.data import fill_nearest

    with pytest.raises(TypeError, match=r"ds must be an xarray.Dataset, got DataArray"):
        fill_nearest(xr.DataArray([1.0, np.nan], dims="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"variable 't' has dims \('x',\); fill_nearest needs"):
        fill_nearest(xr.Dataset({"t": ("x", [1.0, np.nan])}))
    source = xr.Dataset(
        {"t": (("lat", "lon"), np.zeros((2, 2)))}, coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0]}
    )
    with pytest.raises(
        ValueError, match=r"edge='far' is invalid; expected one of \['raise', 'nearest'\]"
    ):
        regrid(source, source, edge="far")  # type: ignore[arg-type]

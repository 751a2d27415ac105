"""One grid, one rule (xcorrdiff.data.grids): grids equal to rounding are one grid, wherever
model output meets user data; a grid off by more is refused with both values shown."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xcorrdiff
from xcorrdiff.data.grids import (
    check_same_grid,
    coordinate_tolerance,
    coordinates_agree,
    grid_mismatch,
    same_grid,
)


def _grid(offset: float = 0.0, dtype: type = np.float64) -> xr.Dataset:
    y, x = np.arange(4) * 3000.0, np.arange(5) * 3000.0
    lat = (45.0 + 0.027 * np.arange(4)[:, None] + 0.001 * np.arange(5)[None, :]).astype(dtype)
    lon = (7.0 + 0.038 * np.arange(5)[None, :] + 0.002 * np.arange(4)[:, None]).astype(dtype)
    return xr.Dataset(
        coords={
            "y": y,
            "x": x,
            "lat": (("y", "x"), lat + offset),
            "lon": (("y", "x"), lon),
        }
    )


def test_the_tolerance_follows_the_dtype_and_the_spacing() -> None:
    a64 = np.linspace(40.0, 50.0, 11)
    assert coordinate_tolerance(a64, a64) == pytest.approx(1e-5 * 1.0)  # spacing dominates
    fine = np.linspace(40.0, 40.0 + 1e-9, 11)
    assert coordinate_tolerance(fine, fine) == pytest.approx(16 * np.finfo(np.float64).eps * 40)
    a32 = fine.astype(np.float32)
    assert coordinate_tolerance(a32, fine) == pytest.approx(16 * np.finfo(np.float32).eps * 40)


@pytest.mark.parametrize(
    ("change", "agree"),
    [
        (lambda a: a + 1e-13, True),
        (lambda a: a.astype(np.float32), True),
        (lambda a: a + 0.5, False),  # half a cell
        (lambda a: a[:-1], False),  # another shape
    ],
)
def test_coordinates_agree_to_rounding_only(change, agree: bool) -> None:
    a = np.arange(0.0, 10.0)
    assert coordinates_agree(a, change(a)) is agree


def test_longitudes_agree_across_the_seam() -> None:
    a = np.array([350.0, 355.0, 0.0, 5.0])
    assert coordinates_agree(a, np.array([-10.0, -5.0, 0.0, 5.0]), period=360.0)
    assert not coordinates_agree(a, np.array([-10.0, -5.0, 0.0, 5.0]))


def test_grid_off_by_rounding_is_the_same_grid_and_takes_its_labels() -> None:
    grid, off = _grid(), _grid(2.8e-14)
    assert same_grid(off, grid, ("y", "x"))
    assert same_grid(_grid(dtype=np.float32), grid, ("y", "x"))
    labelled = check_same_grid(off, grid, ("y", "x"), role="data", hint="fix it")
    np.testing.assert_array_equal(labelled["lat"].values, grid["lat"].values)


def test_grid_off_by_half_a_cell_is_refused_with_both_values() -> None:
    grid, off = _grid(), _grid(0.0135)
    message = grid_mismatch(off, grid, ("y", "x"))
    assert message is not None and "'lat' differs from the grid's 'lat' by up to 0.0135" in message
    assert "45.0135 versus 45.0" in message
    with pytest.raises(ValueError, match=r"data is not on the model's grid: its 'lat'.*; fix it"):
        check_same_grid(off, grid, ("y", "x"), role="data", hint="fix it")
    assert "sizes" in str(grid_mismatch(_grid().isel(x=slice(4)), grid, ("y", "x")))


# --- verification puts the ensemble next to the user's truth --------------------------------


def _ens_and_truth() -> tuple[xr.Dataset, xr.Dataset]:
    grid = _grid()
    rng = np.random.default_rng(0)
    ens = xr.Dataset(
        {"t": (("member", "y", "x"), rng.normal(size=(8, 4, 5)), {"units": "K"})},
        coords=grid.coords,
    )
    truth = xr.Dataset({"t": (("y", "x"), rng.normal(size=(4, 5)), {"units": "K"})})
    return ens, truth.assign_coords(grid.coords)


def test_verify_accepts_a_truth_off_by_rounding() -> None:
    ens, truth = _ens_and_truth()
    expected = xcorrdiff.verify.crps(ens, truth)
    off = truth.assign_coords(lat=truth["lat"] + 1e-13, x=truth["x"] + 1e-11)
    got = xcorrdiff.verify.crps(ens, off)
    np.testing.assert_allclose(got["t"].values, expected["t"].values, rtol=1e-12)
    sub = xcorrdiff.verify.crps(ens, off.isel(x=slice(1, 4)), dim=[])  # a subset, still paired
    assert sub.sizes == {"y": 4, "x": 3}


def test_verify_refuses_a_truth_on_another_grid() -> None:
    ens, truth = _ens_and_truth()
    shifted = truth.assign_coords(lat=truth["lat"] + 0.0135)
    with pytest.raises(ValueError, match=r"obs variable 't' is not on the forecast's grid.*regrid"):
        xcorrdiff.verify.crps(ens, shifted)
    with pytest.raises(ValueError, match="not on the forecast's grid"):
        ens.corrdiff.verify(shifted)


def test_regridding_onto_its_own_grid_is_the_identity() -> None:
    _, hr = xcorrdiff.tutorial.make_synthetic(n_times=1, hr_shape=(16, 16), factor=4, seed=0)
    target = hr.assign_coords(lat=hr["lat"] + 1e-13)
    out = hr[["t2m"]].corrdiff.regrid(target)
    np.testing.assert_array_equal(out["t2m"].values, hr["t2m"].values)  # not interpolated
    np.testing.assert_array_equal(out["lat"].values, target["lat"].values)  # target's labels
    assert hr["t2m"].corrdiff.regrid(target, method="nearest").equals(out["t2m"])


def test_region_labels_and_stations_off_by_rounding_select_their_points() -> None:
    from xcorrdiff.data.points import at_stations
    from xcorrdiff.inference.region import resolve_region

    grid = _grid()
    y, x = grid["y"].values, grid["x"].values
    region = {"y": slice(y[1] + 1e-9, y[3] - 1e-9), "x": slice(x[0] + 1e-9, x[2])}
    assert resolve_region(grid, ("y", "x"), region) == (1, 4, 0, 3)
    box = {"lat": (float(grid["lat"].min()) + 1e-13, 46.0), "lon": (0.0, 20.0)}
    assert resolve_region(grid, ("y", "x"), box) is None  # the whole grid
    field = xr.DataArray(np.arange(20.0).reshape(4, 5), dims=("y", "x"), coords=grid.coords)
    corner = xr.Dataset(
        coords={
            "lat": ("station", [grid["lat"].values[-1, -1] + 1e-13]),
            "lon": ("station", [grid["lon"].values[-1, -1] + 1e-13]),
        }
    )
    np.testing.assert_allclose(at_stations(field, corner).values, [19.0])

"""The one-call ``verify`` table and the accessor."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff  # noqa: F401  (registers .corrdiff)
import xcorrdiff.verify as xv


def _data() -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    coords = {"time": np.arange(4), "y": np.arange(6.0), "x": np.arange(7.0)}
    ens = xr.Dataset(
        {
            "t2m": (("member", "time", "y", "x"), rng.normal(size=(8, 4, 6, 7)), {"units": "K"}),
            "tp": (("member", "time", "y", "x"), rng.gamma(0.4, size=(8, 4, 6, 7))),
        },
        coords=coords,
    )
    truth = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(size=(4, 6, 7)), {"units": "K"}),
            "tp": (("time", "y", "x"), rng.gamma(0.4, size=(4, 6, 7))),
        },
        coords=coords,
    )
    return ens, truth


def test_verify_table_matches_individual_scores() -> None:
    ens, truth = _data()
    table = xv.verify(ens, truth)
    assert list(table.data_vars) == ["crps", "crps_fair", "mae", "rmse", "spread", "spread_skill"]
    assert table["crps"].dims == ("variable",)
    assert list(table["variable"].values) == ["t2m", "tp"]
    for name in ("t2m", "tp"):
        row = table.sel(variable=name)
        assert float(row["crps"]) == float(xv.crps(ens, truth)[name])
        assert float(row["crps_fair"]) == float(xv.crps(ens, truth, fair=True)[name])
        assert float(row["mae"]) == float(xv.mae(ens, truth)[name])
        assert float(row["rmse"]) == float(xv.rmse(ens, truth)[name])
        assert float(row["spread_skill"]) == pytest.approx(float(row["spread"] / row["rmse"]))
    assert table["crps_fair"].sel(variable="t2m") < table["crps"].sel(variable="t2m")
    df = table.to_dataframe()
    assert df.shape == (2, 6)


def test_verify_keeps_dims_lazily() -> None:
    ens, truth = _data()
    eager = xv.verify(ens, truth, dim=["y", "x"])
    assert eager["crps"].dims == ("variable", "time")
    with raise_if_dask_computes():
        lazy = xv.verify(ens.chunk(time=2), truth.chunk(time=2), dim=["y", "x"])
    xr.testing.assert_allclose(lazy.compute(), eager)


def test_verify_dataarray_and_accessor() -> None:
    ens, truth = _data()
    table = ens["t2m"].corrdiff.verify(truth["t2m"])
    assert list(table["variable"].values) == ["t2m"]
    unnamed = xv.verify(ens["t2m"].rename(None), truth["t2m"].rename(None))
    assert list(unnamed["variable"].values) == ["data"]
    xr.testing.assert_identical(ens.corrdiff.verify(truth), xv.verify(ens, truth))


def test_verify_bad_input() -> None:
    ens, truth = _data()
    with pytest.raises(ValueError, match=r"forecast has no member dimension 'ens'"):
        xv.verify(ens, truth, member_dim="ens")
    with pytest.raises(ValueError, match=r"no common coordinates along dim 'time'"):
        xv.verify(ens, truth.assign_coords(time=truth["time"] + 10))
    ens["name"] = ("time", np.array(["a", "b", "c", "d"]))
    with pytest.raises(TypeError, match=r"forecast variable 'name' has dtype <U1"):
        xv.verify(ens, truth)


def test_verify_warns_once_for_split_member_dim() -> None:
    ens, truth = _data()
    with pytest.warns(UserWarning, match=r"split over several dask chunks") as record:
        lazy = xv.verify(ens.chunk(member=4), truth)
    assert len([w for w in record if "dask chunks" in str(w.message)]) == 1
    xr.testing.assert_allclose(lazy.compute(), xv.verify(ens, truth))


def test_float32_input_scores_in_float64() -> None:
    ens, truth = _data()
    table32 = xv.verify(ens.astype(np.float32), truth.astype(np.float32))
    assert all(table32[m].dtype == np.float64 for m in table32.data_vars)
    table64 = xv.verify(
        ens.astype(np.float32).astype(np.float64), truth.astype(np.float32).astype(np.float64)
    )
    xr.testing.assert_allclose(table32, table64, rtol=1e-12)

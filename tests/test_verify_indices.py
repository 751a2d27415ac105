"""Climate indices through xclim: each bias and CRPS against direct xclim calls and
properscoring, daily and sub-daily input, NaN points included; clear errors."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import properscoring
import pytest
import xarray as xr

xi = pytest.importorskip("xclim.indices")

from xclim.core.units import units2pint  # noqa: E402

import xcorrdiff  # noqa: E402,F401  (the .corrdiff accessor)
from xcorrdiff.verify.indices import INDICES, climate_indices  # noqa: E402


def _daily(members: int = 4, years: int = 3, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(seed)
    time = xr.date_range("2001-01-01", periods=365 * years, freq="D", calendar="noleap",
                         use_cftime=True)  # fmt: skip
    season = 12 * np.sin(2 * np.pi * np.arange(time.size) / 365)[:, None, None]

    def fields(lead: tuple[int, ...]) -> dict[str, np.ndarray]:
        shape = (*lead, time.size, 2, 3)
        tx = 288 + season + 4 * rng.normal(size=shape)
        pr = np.where(rng.random(shape) < 0.55, 0.0, rng.gamma(0.8, 6, shape))
        return {"tasmax": tx, "tasmin": tx - 8 - rng.random(shape), "pr": pr}

    units = {"tasmax": "K", "tasmin": "K", "pr": "mm/d"}
    coords = {"time": time}
    f, o = fields((members,)), fields(())
    o["tasmax"][:, 1, 2] = np.nan  # a point without truth
    f["pr"][0, :, 0, 0] = np.nan  # a member without precipitation at a point
    forecast = xr.Dataset({k: (("member", "time", "y", "x"), v, {"units": units[k]})
                           for k, v in f.items()}, coords=coords)  # fmt: skip
    obs = xr.Dataset({k: (("time", "y", "x"), v, {"units": units[k]}) for k, v in o.items()},
                     coords=coords)  # fmt: skip
    return forecast, obs


def _direct(name: str, data: xr.Dataset) -> xr.DataArray:
    needs = INDICES[name].needs
    return INDICES[name].compute(xi, data[needs], "YS")


def test_bias_and_crps_equal_xclim_and_properscoring() -> None:
    forecast, obs = _daily()
    scores = climate_indices(forecast, obs)
    assert [v[: -len("_bias")] for v in scores.data_vars if v.endswith("_bias")] == list(INDICES)
    for name in INDICES:
        index_f, index_o = _direct(name, forecast), _direct(name, obs)
        np.testing.assert_allclose(
            scores[f"{name}_bias"].values,
            (index_f.mean("member") - index_o).mean("time").values, rtol=1e-10, equal_nan=True,
        )  # fmt: skip
        # properscoring, period by period, NaN members dropped by hand, then the mean.
        f = np.moveaxis(index_f.values, 0, -1)
        expected = np.full(index_o.shape, np.nan)
        for idx in np.ndindex(index_o.shape):
            members = f[idx][~np.isnan(f[idx])]
            if members.size and not np.isnan(index_o.values[idx]):
                expected[idx] = properscoring.crps_ensemble(index_o.values[idx], members)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the point without truth
            expected_mean = np.nanmean(expected, axis=0)
        np.testing.assert_allclose(scores[f"{name}_crps"].values, expected_mean, rtol=1e-10,
                                   atol=1e-12, equal_nan=True)  # fmt: skip
        assert scores[f"{name}_bias"].attrs["units"] == str(index_o.attrs.get("units", ""))
    assert np.isnan(scores["TXx_bias"][1, 2]) and np.isfinite(scores["TNn_bias"][1, 2])
    import xcorrdiff.verify as xv

    via = forecast.corrdiff.climate_indices(obs, ["TXx", "CDD"])
    xr.testing.assert_identical(via, xv.climate_indices(forecast, obs, ["TXx", "CDD"]))
    xr.testing.assert_identical(via["CDD_crps"], scores["CDD_crps"])


def test_sub_daily_input_is_made_daily() -> None:
    rng = np.random.default_rng(3)
    time = xr.date_range("2001-01-01", periods=4 * 365 * 2, freq="6h")
    t2m = 285 + 10 * rng.normal(size=(time.size, 2))
    tp = np.where(rng.random(time.size * 2) < 0.7, 0.0, rng.gamma(0.5, 0.004, time.size * 2))
    obs = xr.Dataset({"t2m": (("time", "x"), t2m, {"units": "K"}),
                      "tp": (("time", "x"), tp.reshape(-1, 2), {"units": "m"})},
                     coords={"time": time})  # fmt: skip
    factor = xr.DataArray(1 + 0.2 * rng.random(3), dims="member")
    forecast = xr.Dataset({"t2m": (obs["t2m"] + 2 * factor).assign_attrs(units="K"),
                           "tp": (obs["tp"] * factor).assign_attrs(units="m")})  # fmt: skip
    forecast = forecast.transpose("member", ...)
    scores = climate_indices(forecast, obs, ["TXx", "TNn", "Rx1day"], per_period=True)
    tasmax = obs["t2m"].resample(time="1D").max().assign_attrs(units="K")
    np.testing.assert_allclose(scores["TXx_bias"].values + xi.tx_max(tasmax).values,
                               xi.tx_max(forecast["t2m"].resample(time="1D").max()
                                         .assign_attrs(units="K")).mean("member").values,
                               rtol=1e-10)  # fmt: skip
    # 6-hourly amounts in metres: summed over each day, a rate in mm/day.
    daily_mm = [(x["tp"].resample(time="1D").sum() * 1000).assign_attrs(units="mm/d")
                for x in (forecast, obs)]  # fmt: skip
    rx1 = [xi.max_1day_precipitation_amount(d) for d in daily_mm]
    np.testing.assert_allclose(
        scores["Rx1day_bias"].values, (rx1[0].mean("member") - rx1[1]).values, rtol=1e-10
    )
    assert units2pint(scores["Rx1day_bias"]) == units2pint(rx1[1])


def test_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    forecast, obs = _daily(members=2, years=2)
    with pytest.raises(ValueError, match=r"unknown indices \['TXX'\]; expected some of"):
        climate_indices(forecast, obs, ["TXX"])
    with pytest.raises(ValueError, match=r"indices \['TNn'\] need the daily \{'TNn': 'tasmin'\}"):
        climate_indices(forecast.drop_vars("tasmin"), obs.drop_vars("tasmin"), ["TNn"])
    no_units = obs.copy()
    no_units["pr"].attrs = {}
    with pytest.raises(ValueError, match=r"variable 'pr' has no 'units' attribute; set it"):
        climate_indices(forecast, no_units, ["CDD"])
    with pytest.raises(ValueError, match=r"variables has roles \['tmax'\]; expected some of"):
        climate_indices(forecast, obs, ["TXx"], variables={"tmax": "tasmax"})
    with pytest.raises(ValueError, match=r"variables names \['tx'\], which the data lack"):
        climate_indices(forecast, obs, ["TXx"], variables={"tasmax": "tx"})
    monkeypatch.setitem(sys.modules, "xclim.indices", None)
    with pytest.raises(
        ImportError,
        match=r"needs xclim, an optional dependency: pip install 'xcorrdiff\[climate\]'",
    ):
        climate_indices(forecast, obs, ["TXx"])

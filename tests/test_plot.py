"""Plots draw on the Agg backend and return Axes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

import xcorrdiff.plot as xplot  # noqa: E402
import xcorrdiff.verify as xv  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():  # type: ignore[no-untyped-def]
    yield
    plt.close("all")


def _data() -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    coords = {"time": np.arange(3), "y": np.arange(16) * 2e3, "x": np.arange(20) * 2e3}
    truth = xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(size=(3, 16, 20)), {"units": "K"})}, coords=coords
    )
    ens = xr.Dataset(
        {"t2m": (("member", "time", "y", "x"), rng.normal(size=(5, 3, 16, 20)), {"units": "K"})},
        coords=coords,
    )
    return ens, truth


def test_spread_skill_plot() -> None:
    ens, truth = _data()
    ax = xplot.spread_skill(ens, truth, bins=4)
    assert isinstance(ax, Axes)
    spread_line, _diagonal = ax.get_lines()
    assert len(spread_line.get_xdata()) == 4
    assert ax.get_xlabel() == "spread [K]"
    _, given = plt.subplots()
    assert xplot.spread_skill(ens["t2m"], truth["t2m"], ax=given) is given


def test_rank_histogram_plot() -> None:
    ens, truth = _data()
    ax = xplot.rank_histogram(ens, truth)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 6
    assert sum(heights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pass dim=None"):
        xplot.rank_histogram(ens, truth, dim="x")


def test_reliability_plot() -> None:
    ens, truth = _data()
    ax = xplot.reliability(ens, truth, 0.5, bins=5)
    diagonal, curve = ax.get_lines()
    table = xv.reliability(ens["t2m"], truth["t2m"], 0.5, bins=5)
    np.testing.assert_allclose(curve.get_ydata(), table["observed_frequency"])
    np.testing.assert_allclose(curve.get_xdata(), table["forecast_probability"])
    assert ax.get_title() == "t2m >= 0.5 K" and list(diagonal.get_xdata()) == [0, 1]


def test_fss_plot() -> None:
    ens, truth = _data()
    ax = xplot.fss(ens, truth, [0.0, 1.0], [1, 3, 9])
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(curves) == 2
    expected = xv.fss(ens["t2m"], truth["t2m"], 1.0, [1, 3, 9])
    np.testing.assert_allclose(curves[1].get_ydata(), expected)
    base = float((truth["t2m"] >= 1.0).mean())
    assert 0.5 + base / 2 in [line.get_ydata()[0] for line in ax.get_lines()]


def test_spectra_plot() -> None:
    ens, truth = _data()
    ax = xplot.spectra(truth["t2m"], members=ens["t2m"], regression=ens["t2m"].mean("member"))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels.count("truth") == 1 and labels.count("regression") == 1
    assert len(labels) == 5 + 2
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert np.all(ax.get_lines()[-1].get_xdata() > 0)  # k = 0 dropped


def test_climate_plots() -> None:
    ens, truth = _data()
    ax = xplot.quantile_quantile(ens, truth, quantiles=[0.1, 0.5, 0.9])
    points, one_to_one = ax.get_lines()
    expected = np.quantile(truth["t2m"].values, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(points.get_xdata(), expected)
    assert one_to_one.get_label() == "1:1" and ax.get_xlabel() == "truth quantile [K]"
    ax = xplot.band_power(ens, truth)
    ratio = xv.band_power_ratio(ens["t2m"], truth["t2m"])
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ratio.values)
    assert ax.get_xscale() == "log"
    scores = xr.Dataset({"TXx_bias": truth["t2m"].isel(time=0).assign_attrs(units="K")})
    ax = xplot.index_bias_map(scores, "TXx")
    assert ax.get_title() == "TXx bias" and len(ax.collections) == 1
    lo, hi = ax.collections[0].get_clim()
    assert lo == -hi
    with pytest.raises(ValueError, match=r"forecast has no member dimension 'member'"):
        xplot.quantile_quantile(truth, truth)
    with pytest.raises(ValueError, match=r"TXx_bias has dims \('time', 'y', 'x'\); expected 2-D"):
        xplot.index_bias_map(xr.Dataset({"TXx_bias": truth["t2m"]}), "TXx")
    with pytest.raises(ValueError, match=r"scores has no 'SU_bias'"):
        xplot.index_bias_map(scores, "SU")


def test_maps_plot() -> None:
    ens, truth = _data()
    t0 = {"time": 0}
    axes = xplot.maps(
        inputs=truth["t2m"].isel(t0).coarsen(y=4, x=4).mean(),
        mean=ens["t2m"].isel(t0).mean("member"),
        members=ens["t2m"].isel(t0),
        truth=truth["t2m"].isel(t0),
        members_shown=3,
    )
    assert len(axes) == 6 and all(isinstance(a, Axes) for a in axes)
    assert [a.get_title() for a in axes] == [
        "input",
        "ensemble mean",
        "member 0",
        "member 1",
        "member 2",
        "truth",
    ]
    with pytest.raises(ValueError, match=r"expected 2-D \(y, x\); select one time first"):
        xplot.maps(truth=truth["t2m"])
    with pytest.raises(ValueError, match="at least one of"):
        xplot.maps()


def test_dataset_with_several_variables_needs_variable() -> None:
    ens, truth = _data()
    ens["u10"] = ens["t2m"]
    truth["u10"] = truth["t2m"]
    with pytest.raises(ValueError, match=r"variables \['t2m', 'u10'\]; pass variable="):
        xplot.spread_skill(ens, truth)
    assert isinstance(xplot.spread_skill(ens, truth, variable="u10"), Axes)


def test_missing_matplotlib_message() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "import xcorrdiff.plot as p\n"
        "try:\n    p._pyplot()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install xcorrdiff[plot]" in out.stdout


def test_import_xcorrdiff_does_not_import_matplotlib() -> None:
    code = "import sys, xcorrdiff, xcorrdiff.verify; ds = __import__('xarray').Dataset(); ds.corrdiff; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

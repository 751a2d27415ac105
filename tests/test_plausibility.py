"""Inputs the model cannot believe are refused with the variable, the range and the likely
mistake, on numpy and dask input alike; the expert's switch passes them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_data, tiny_model

from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.plausibility import MAX_SIGMA, ExpectedRange, expected_ranges
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.inference.api import downscale

KW = {"n_ensemble": 2, "num_steps": 2, "device": "cpu"}


def test_kelvin_numbers_labelled_celsius_are_refused() -> None:
    lr, _ = tiny_data(2)
    mislabelled = lr.assign(t2m=lr["t2m"].assign_attrs(units="degC"))  # 280 "degC" = 553 K
    with pytest.raises(ValueError, match=r"lr variable 't2m' has values from 5\d\d.* to 5\d\d.* K, "
                       r"outside the physical range of an absolute temperature \(150 to 360 K\); "
                       r"likely mistake: Kelvin numbers labelled 'degC'\?"):  # fmt: skip
        downscale(mislabelled, tiny_model(), **KW)
    celsius_as_kelvin = lr.assign(t2m=(lr["t2m"] - 273.15).assign_attrs(units="K"))
    with pytest.raises(ValueError, match=r"Celsius numbers labelled 'K'"):
        downscale(celsius_as_kelvin, tiny_model(), **KW)


def test_one_absurd_value_is_refused_on_numpy_and_dask_input() -> None:
    lr, _ = tiny_data(2)
    bad = lr.copy(deep=True)
    bad["tcwv"][1, 2, 2] = 1e30  # no physical bound for tcwv: the 50-sigma rule
    match = r"lr variable 'tcwv' has values from .* to 1e\+30 kg m-2, .* standard deviations"
    with pytest.raises(ValueError, match=match):
        downscale(bad, tiny_model(), **KW)
    lazy = downscale(bad.chunk(time=1), tiny_model(), **KW)  # checked block by block
    with pytest.raises(ValueError, match=r"lr variable 'tcwv' has values .* standard deviations"):
        lazy.compute()


def test_the_experts_switch_passes_and_nan_output_is_an_error_not_a_result() -> None:
    lr, _ = tiny_data(2)
    bad = lr.copy(deep=True)
    bad["tcwv"][1, 2, 2] = 1e30
    with pytest.raises(FloatingPointError, match=r"produced NaN/inf from finite input"):
        downscale(bad, tiny_model(), check_plausibility=False, **KW)
    shifted = lr.assign(tcwv=lr["tcwv"] * 1.5)  # unusual but believable: passes
    assert np.isfinite(downscale(shifted, tiny_model(), **KW)["t2m"].values).all()
    with pytest.raises(ValueError, match=r"check_plausibility='yes' is invalid"):
        downscale(lr, tiny_model(), check_plausibility="yes", **KW)  # type: ignore[arg-type]


def test_ranges_follow_the_training_statistics_and_units() -> None:
    norm = Normalizer.from_stats(
        {"t2m": {"mean": 285.0, "std": 10.0}, "anom": {"mean": 0.0, "std": 2.0},
         "u": {"mean": 3.0, "std": 5.0}, "tp": {"mean": 0.1, "std": 0.3, "transform": "log1p"}}
    )  # fmt: skip
    specs = [VariableSpec(name="t2m", units="degC"), VariableSpec(name="anom", units="K"),
             VariableSpec(name="u", units="km h-1"), VariableSpec(name="tp", units="mm h-1")]  # fmt: skip
    # t2m's training mean 285 degC is not an absolute temperature: not bounded then.
    t2m, anom, u, tp = expected_ranges(specs, norm.stats)
    assert t2m.physical is None and anom.physical is None  # anomalies are not bounded
    assert u.physical == pytest.approx((-720.0, 720.0))  # 200 m/s in km/h
    assert tp.physical is None and tp.problem(0.0, 500.0) is None  # log1p: 500 mm/h believable
    assert u.problem(-10.0, 10.0) is None
    far = u.mean + (MAX_SIGMA + 1) * u.std
    assert "standard deviations from the training mean" in (u.problem(0.0, far) or "")


def test_likely_mistakes_are_named() -> None:
    pressure = ExpectedRange(name="msl", units="Pa", mean=101000.0, std=1000.0)
    assert "10**2 times too small" in (pressure.problem(990.0, 1030.0) or "")  # hPa as Pa
    rate = ExpectedRange(name="pr", units="kg m-2 s-1", mean=3e-5, std=1e-4)
    assert "3600" in (rate.problem(0.0, 0.36) or "")  # mm/h labelled per second

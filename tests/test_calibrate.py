"""Calibration of the ensemble spread: the initial-noise factor per output, chosen by
fair CRPS on held-out data, stored with the model."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import tiny_data, tiny_model

import xcorrdiff
import xcorrdiff.verify as xv
from xcorrdiff.config import SamplerConfig, StudentConfig
from xcorrdiff.diffusion import edm_sigmas, euler, initial_state
from xcorrdiff.inference.api import downscale
from xcorrdiff.inference.calibrate import (
    block_means,
    calibrate,
    choose,
    standard_errors,
    with_noise_scale,
)
from xcorrdiff.model import load_model

KW = {"device": "cpu", "num_steps": 3}


def test_a_factor_on_gaussian_data_scales_the_spread_exactly() -> None:
    """Data N(mu, s²) with its ideal denoiser: Euler's map from x(σ₀) to the sample is
    affine, x ↦ mu + c (x − mu), so a factor τ on the initial noise scales the members'
    departures from their mean, and so their spread, by τ exactly."""
    mu = torch.randn(1, 2, 8, 8, dtype=torch.float64)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return mu + (x - mu) * 0.49 / (0.49 + sigma**2)

    sigmas = edm_sigmas(64, sigma_max=80.0)
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    x = initial_state(gens, (2, 8, 8), sigmas)
    plain = euler(denoiser, x.clone(), sigmas)
    wide = euler(denoiser, 1.5 * x, sigmas)
    torch.testing.assert_close(
        wide - wide.mean(0), 1.5 * (plain - plain.mean(0)), rtol=1e-10, atol=1e-12
    )
    assert float((plain - plain.mean(0)).abs().max()) > 0.1


def test_unit_factors_change_nothing_and_others_do() -> None:
    model = tiny_model()
    lr, _ = tiny_data(2)
    base = downscale(lr, model, 2, **KW)
    unit = copy.copy(model)
    unit.sampler = dataclasses.replace(model.sampler, noise_scale=(1.0, 1.0))
    same = downscale(lr, unit, 2, **KW)
    for name in model.output_names:
        np.testing.assert_array_equal(same[name].values, base[name].values)
    assert same.attrs["noise_scale"] == [1.0, 1.0] and "noise_scale" not in base.attrs
    unit.sampler = dataclasses.replace(model.sampler, noise_scale=(2.0, 1.0))
    other = downscale(lr, unit, 2, **KW)
    assert not np.allclose(other["t2m"].values, base["t2m"].values)


def test_calibrate_picks_the_least_fair_crps_and_records_the_search(tmp_path: Path) -> None:
    model = tiny_model()
    lr, hr = tiny_data(2)
    scales = (0.5, 1.0, 3.0)
    tuned = calibrate(model, lr, hr, scales=scales, n_ensemble=3, device="cpu", rule="least_crps")
    record = tuned.provenance["calibration"]
    assert record["candidates"] == list(scales) and record["n_ensemble"] == 3
    assert record["rule"] == "least_crps"
    for i, name in enumerate(model.output_names):
        crps = record["crps_fair"][name]
        assert tuned.sampler.noise_scale[i] == scales[int(np.argmin(crps))]
        assert record["chosen"][name] == tuned.sampler.noise_scale[i]
        assert record["standard_error"][name][int(np.argmin(crps))] == 0.0
    # The recorded scores are those of a downscale with that factor, checked independently.
    trial = copy.copy(model)
    trial.sampler = dataclasses.replace(model.sampler, noise_scale=(3.0, 3.0))
    ens = downscale(lr, trial, 3, device="cpu")
    for name in model.output_names:
        fair = float(xv.crps(ens[name], hr[name], fair=True))
        assert math.isclose(record["crps_fair"][name][2], fair, rel_tol=1e-12)
        assert math.isclose(
            record["spread_skill"][name][2], float(xv.spread_skill(ens[name], hr[name])),
            rel_tol=1e-12,
        )  # fmt: skip
    assert model.sampler.noise_scale is None and "calibration" not in model.provenance
    tuned.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.sampler == tuned.sampler
    assert again.provenance["calibration"]["chosen"] == record["chosen"]


def test_the_default_rule_is_one_standard_error_from_the_same_search() -> None:
    """The default search scores as the least-CRPS one (same members) and picks by its
    recorded standard errors."""
    model = tiny_model()
    lr, hr = tiny_data(2)
    scales = (0.5, 1.0, 3.0)
    least = calibrate(model, lr, hr, scales=scales, n_ensemble=3, device="cpu", rule="least_crps")
    tuned = calibrate(model, lr, hr, scales=scales, n_ensemble=3, device="cpu")
    record, other = tuned.provenance["calibration"], least.provenance["calibration"]
    assert record["rule"] == "one_se" and record["crps_fair"] == other["crps_fair"]
    for i, name in enumerate(model.output_names):
        crps, errors = record["crps_fair"][name], record["standard_error"][name]
        best = min(crps)
        near = [s for s, c, e in zip(scales, crps, errors, strict=True) if c - best <= e]
        assert tuned.sampler.noise_scale[i] == min(near, key=lambda s: abs(math.log(s)))
        assert all(e >= 0 for e in errors)


def test_block_means_and_standard_errors_by_hand() -> None:
    """Each time is cut into 4 x 4 blocks (NaN points skipped, an empty block NaN); the
    standard error is that of the mean paired block difference from the best candidate."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 8, 8))
    values[1, :2, :2] = np.nan  # one empty block
    values[0, 2, 3] = np.nan  # one missing point
    field = xr.DataArray(values, dims=("time", "y", "x"))
    means = block_means(field.transpose("y", "time", "x"))
    expected = [
        np.nanmean(block) if np.isfinite(block).any() else np.nan
        for t in range(2) for i in range(4) for j in range(4)
        for block in [values[t, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]]
    ]  # fmt: skip
    assert np.isnan(expected[16])
    np.testing.assert_allclose(means, expected, rtol=1e-12)
    other = means + rng.normal(size=means.size)
    diff = (other - means)[np.isfinite(means)]
    errors = standard_errors([0.0, 1.0], [means, other])
    assert errors[0] == 0.0
    assert math.isclose(errors[1], diff.std(ddof=1) / math.sqrt(diff.size), rel_tol=1e-12)


def test_choose_and_with_noise_scale_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"rule='median' is invalid; expected one of"):
        choose([1.0, 1.5], [0.3, 0.2], [0.0, 0.0], "median")
    with pytest.raises(ValueError, match=r"student=True but the model has no distilled student"):
        with_noise_scale(tiny_model(), (1.0, 1.0), student=True)


def test_the_rules_choose_by_hand() -> None:
    candidates = [0.8, 1.0, 1.2, 1.5]
    crps, errors = [0.50, 0.45, 0.41, 0.40], [0.02, 0.03, 0.015, 0.0]
    assert choose(candidates, crps, errors, "least_crps") == 1.5
    assert choose(candidates, crps, errors, "one_se") == 1.2  # 1.0 misses by 0.02
    assert choose(candidates, crps, [0.2, 0.06, 0.0, 0.0], "one_se") == 1.0
    assert choose([0.9, 1.1], [0.3, 0.3], [0.0, 0.0], "one_se") == 1.1  # |log| 0.095 < 0.105


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"rule": "median"},
            r"rule='median' is invalid; expected one of \['one_se', 'least_crps'\]",
        ),
        ({"scales": (1.0, -1.0)}, r"scales=\[1.0, -1.0\] is invalid; expected positive"),
        ({"n_ensemble": 1}, r"n_ensemble=1 is invalid; expected an integer >= 2"),
        ({"num_steps": 4}, r"\['num_steps'\] may not be passed to calibrate"),
        ({"student": True}, r"student=True but the model has no distilled student"),
        ({"student": 1}, r"student=1 is invalid; expected True or False"),
    ],
)
def test_calibrate_refuses_bad_arguments(kwargs: dict, match: str) -> None:
    lr, hr = tiny_data(1)
    with pytest.raises(ValueError, match=match):
        calibrate(tiny_model(), lr, hr, **{"device": "cpu", **kwargs})


def test_calibrate_refuses_truth_without_the_outputs_and_bad_factors() -> None:
    lr, hr = tiny_data(1)
    with pytest.raises(ValueError, match=r"hr lacks the model's output variables \['u10m'\]"):
        calibrate(tiny_model(), lr, hr[["t2m"]], device="cpu")
    with pytest.raises(
        ValueError, match=r"sampler.noise_scale has 1 factors \[2.0\]; expected one"
    ):
        model = copy.copy(tiny_model())  # the cached model stays as it is
        model.sampler = SamplerConfig(noise_scale=(2.0,))
        model._validate()


@pytest.mark.parametrize("daily", [None, "standard", "noleap"])
def test_fit_calibrates_on_its_validation_times(daily: str | None) -> None:
    """``fit(calibrate=True)``: trained, then calibrated on the last quarter of the record
    (the validation times); without validation times it is refused before training. Also
    for a daily record (every time at midnight, as NDFD's or CMIP6's daily fields), whose
    times an index prints without their clock, in the standard and a CMIP6 calendar."""
    from xcorrdiff.config import NetworkConfig
    from xcorrdiff.train.api import fit
    from xcorrdiff.train.config import TrainConfig

    lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=3)
    if daily is not None:
        days = xr.date_range("2011-09-30", periods=8, freq="D", calendar=daily, use_cftime=None)
        lr, hr = lr.assign_coords(time=days), hr.assign_coords(time=days)
    net = {"model_channels": 4, "channel_mult": (1, 2), "num_blocks": 1}
    config = TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"), diffusion=NetworkConfig(**net),
        batch_size=2, patch_shape=(8, 8), regression_duration=4, diffusion_duration=4,
        validation_fraction=0.25, residual_folds=0, device="cpu",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"calibrate=True needs validation times"):
        fit(lr, hr, config=config.replace(validation_fraction=0.0), calibrate=True)
    model = fit(lr, hr, config=config, output_variables=["t2m"], calibrate=True, progress=False)
    record = model.provenance["calibration"]
    assert record["times"] == 2 and record["chosen"]["t2m"] in record["candidates"]
    assert model.sampler.noise_scale == (record["chosen"]["t2m"],)


def _with_student(model: xcorrdiff.CorrDiffModel) -> xcorrdiff.CorrDiffModel:
    """``model`` with a student network (a copy of its diffusion network: calibration does
    not care how it was trained) on a 2-step Euler schedule."""
    out = copy.copy(model)
    out.student = copy.deepcopy(model.diffusion)
    sampler = SamplerConfig(sampler="euler", num_steps=2, sigma_min=0.5, sigma_max=80.0)
    out.student_config = StudentConfig(sampler=sampler)
    return out


def test_calibrate_the_student_sets_its_own_sampler_only(tmp_path: Path) -> None:
    model = _with_student(tiny_model())
    lr, hr = tiny_data(2)
    scales = (0.5, 1.0, 3.0)
    tuned = calibrate(model, lr, hr, scales=scales, n_ensemble=3, student=True, device="cpu")
    record = tuned.provenance["student_calibration"]
    assert "calibration" not in tuned.provenance and tuned.sampler == model.sampler
    assert tuned.student_config is not None and tuned.student_config.default is False
    trial = _with_student(tiny_model())
    assert trial.student_config is not None
    trial.student_config = dataclasses.replace(
        trial.student_config,
        sampler=dataclasses.replace(trial.student_config.sampler, noise_scale=(3.0, 3.0)),
    )
    ens = downscale(lr, trial, 3, device="cpu", student=True)  # the student's members
    for i, name in enumerate(model.output_names):
        crps = record["crps_fair"][name]
        assert tuned.student_config.sampler.noise_scale[i] == scales[int(np.argmin(crps))]
        fair = float(xv.crps(ens[name], hr[name], fair=True))
        assert math.isclose(crps[2], fair, rel_tol=1e-12)
    tuned.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.student_config == tuned.student_config
    assert again.provenance["student_calibration"]["chosen"] == record["chosen"]

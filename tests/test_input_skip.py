"""The regression's input skip: an output predicted as its own regridded input plus the
network's correction (TrainConfig(input_skip=True), xcorrdiff/diffusion/input_skip.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.regrid import regrid
from xcorrdiff.diffusion import build_condition, regression_loss
from xcorrdiff.diffusion.input_skip import InputSkip
from xcorrdiff.train import fit_regression
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

OUTPUTS = ["t2m", "u10m"]


@pytest.fixture(scope="module")
def data() -> tuple[xr.Dataset, xr.Dataset]:
    return make_synthetic(n_times=6, hr_shape=(16, 16), factor=4, seed=1)


def _config(**kw: object) -> TrainConfig:
    net = {"model_channels": 8, "channel_mult": (1, 2)}
    base: dict[str, object] = {
        "regression": NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        "diffusion": NetworkConfig(**net),  # type: ignore[arg-type]
        "batch_size": 2, "patch_shape": (8, 8), "regression_duration": 4,
        "diffusion_duration": 4, "validation_fraction": 0.0, "input_skip": True,
    }  # fmt: skip
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def skipped(data: tuple[xr.Dataset, xr.Dataset]) -> xcorrdiff.CorrDiffModel:
    lr, hr = data
    inputs = ["t2m", "u10m", "tcwv"]
    return fit_regression(
        lr[inputs], hr, config=_config(), output_variables=OUTPUTS, progress=False
    )  # fmt: skip


def _silenced(model: xcorrdiff.CorrDiffModel) -> xcorrdiff.CorrDiffModel:
    """The model with a regression network that outputs zero (every weight zeroed)."""
    with torch.no_grad():
        for p in model.regression.parameters():
            p.zero_()
    return model


def test_the_skip_is_stored_with_gamma_from_the_data(
    skipped: xcorrdiff.CorrDiffModel, data: tuple[xr.Dataset, xr.Dataset]
) -> None:
    """γ is the rms of (HR − regridded LR) in the output's normalized units over the
    training times, computed here independently in float64."""
    lr, hr = data
    spec = skipped.conditioning["input_skip"]
    assert sorted(spec) == OUTPUTS and all(spec[n]["input"] == n for n in OUTPUTS)
    on_hr = regrid(lr[OUTPUTS], hr[OUTPUTS])
    for name in OUTPUTS:
        std = skipped.output_normalizer.stats[name].std
        departure = (hr[name].values.astype(np.float64) - on_hr[name].values) / std
        expected = np.sqrt(np.mean(departure**2))
        np.testing.assert_allclose(spec[name]["spread"], expected, rtol=1e-5)


def test_a_zero_correction_gives_back_the_regridded_input(
    skipped: xcorrdiff.CorrDiffModel, data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    """μ = the input on the HR grid, in physical units, when the network adds nothing; and
    so after a save and load, and through downscale's return_mean."""
    lr, hr = data
    model = _silenced(skipped)
    on_hr = regrid(lr[OUTPUTS], hr[OUTPUTS])
    loaded = xcorrdiff.load_model(model.save(tmp_path / "m"))
    assert loaded.conditioning["input_skip"] == model.conditioning["input_skip"]
    for m in (model, loaded):
        mean = m.regression_mean(lr)
        for name in OUTPUTS:
            np.testing.assert_allclose(mean[name].values, on_hr[name].values, atol=2e-4)


def test_a_correction_is_scaled_by_gamma() -> None:
    """μ = (s_i x + m_i − m_o) / s_o + γ f(x) per skipped channel; other channels f(x)."""
    from xcorrdiff.data.normalize import Normalizer

    inputs = Normalizer.from_stats({"a": {"mean": 280.0, "std": 4.0}, "b": {"mean": 1, "std": 2}})
    outputs = Normalizer.from_stats({"a": {"mean": 281.0, "std": 5.0}, "c": {"mean": 0, "std": 1}})
    skip = InputSkip.build(
        {"a": {"input": "a", "spread": 0.25}}, condition_variables=["b", "a"],
        output_variables=["c", "a"], input_normalizer=inputs, output_normalizer=outputs,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)  # not the global stream: the same draws in any order
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64, generator=g)
    f = torch.randn(2, 2, 3, 4, dtype=torch.float64, generator=g)
    mu = skip.apply(f, x)
    np.testing.assert_allclose(mu[:, 0].numpy(), f[:, 0].numpy())
    expected = (4.0 * x[:, 1] + 280.0 - 281.0) / 5.0 + 0.25 * f[:, 1]
    # atol: μ and the formula round differently, which rtol alone fails where they are ~0
    np.testing.assert_allclose(mu[:, 1].numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)

    def net(zeros: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return f

    y = torch.zeros_like(f)
    loss = regression_loss(net, y, build_condition(x), skip)
    expected_loss = (expected**2 / 0.0625).numpy()
    np.testing.assert_allclose(loss[:, 1].numpy(), expected_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss[:, 0].numpy(), (f[:, 0] ** 2).numpy())


def test_training_with_the_skip_and_the_whole_pipeline(
    data: tuple[xr.Dataset, xr.Dataset],
) -> None:
    """Both stages train with the skip; downscale's mean is the model's regression mean."""
    lr, hr = data
    model = lr.corrdiff.fit(hr, config=_config(), output_variables=OUTPUTS, progress=False)
    assert model.conditioning["input_skip"]
    ens = lr.isel(time=slice(0, 2)).corrdiff.downscale(
        model=model, n_ensemble=2, num_steps=2, return_mean=True
    )
    mean = model.regression_mean(lr.isel(time=slice(0, 2)))
    np.testing.assert_allclose(ens.t2m_mean.values, mean.t2m.values, rtol=1e-6, atol=1e-5)
    assert np.isfinite(ens.t2m.values).all()


def test_a_model_with_a_skip_is_not_exported_to_earth2studio(
    skipped: xcorrdiff.CorrDiffModel, data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = data
    model = xcorrdiff.train.fit_diffusion(skipped, lr, hr, config=_config(), progress=False)
    with pytest.raises(ValueError, match=r"an input skip in the regression \(train with "):
        model.save(tmp_path / "pkg", format="earth2studio")


def test_a_skip_without_a_shared_variable_is_refused(
    data: tuple[xr.Dataset, xr.Dataset],
) -> None:
    lr, hr = data
    with pytest.raises(ValueError, match=r"input_skip=True needs an output variable that is "):
        fit_regression(
            lr[["tcwv"]], hr, config=_config(), output_variables=["t2m"], progress=False
        )  # fmt: skip


def test_a_stored_skip_naming_an_unknown_input_is_refused(
    skipped: xcorrdiff.CorrDiffModel, tmp_path: Path
) -> None:
    import json

    folder = skipped.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["conditioning"]["input_skip"]["t2m"]["input"] = "t2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"conditioning\['input_skip'\] has invalid entries"):
        xcorrdiff.load_model(folder)


def test_the_option_is_checked() -> None:
    with pytest.raises(
        ValueError, match=r'input_skip=1 is invalid; expected True, False or "auto"'
    ):
        TrainConfig(input_skip=1)


def test_auto_skips_on_short_records_only(data: tuple[xr.Dataset, xr.Dataset]) -> None:
    """The tiny preset's "auto": on below 20 training times (the outputs that have an input;
    none is no error), off from 20 on; the PhysicsNeMo presets never."""
    config = TrainConfig(preset="tiny")
    assert config.model.input_skip == "auto"
    assert [config.model.skips_inputs(n) for n in (1, 19, 20, 500)] == [None, None, False, False]
    assert TrainConfig(preset="mini").model.skips_inputs(3) is False
    assert TrainConfig(input_skip=True).model.skips_inputs(500) is True
    lr, hr = data
    tcwv_only = fit_regression(
        lr[["tcwv"]], hr, config=_config(input_skip="auto"), output_variables=["t2m"],
        progress=False,
    )  # fmt: skip
    assert "input_skip" not in tcwv_only.conditioning
    shared = fit_regression(
        lr[["t2m", "tcwv"]], hr, config=_config(input_skip="auto"),
        output_variables=["t2m", "u10m"], progress=False,
    )  # fmt: skip
    assert sorted(shared.conditioning["input_skip"]) == ["t2m"]

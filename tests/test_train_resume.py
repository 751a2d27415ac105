"""Both stages resume exactly from their checkpoints and refuse another model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from xcorrdiff.config import NetworkConfig
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train import CheckpointMismatchError, fit_diffusion, fit_regression
from xcorrdiff.train.checkpoint import read_checkpoint
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

pytestmark = pytest.mark.numerics

OUTPUTS = ["t2m", "u10m", "v10m"]


@pytest.fixture(scope="module")
def data() -> tuple[xr.Dataset, xr.Dataset]:
    return make_synthetic(n_times=16, hr_shape=(16, 16), factor=4, seed=3)


def _config(directory: Path, duration: int) -> TrainConfig:
    net = {"model_channels": 8, "channel_mult": (1, 2), "num_blocks": 1, "dropout": 0.1}
    return TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        diffusion=NetworkConfig(**net),  # type: ignore[arg-type]
        batch_size=2,
        patch_shape=(8, 8),
        patches_per_sample=2,
        learning_rate=1e-3,
        lr_rampup=8,
        lr_decay=0.5,
        lr_decay_rate=16,
        ema_halflife=8,
        residual_folds=0,  # the regression each resumed diffusion stage uses is `straight`
        regression_duration=duration,
        diffusion_duration=duration,
        validation_fraction=0.25,
        validation_every=16,
        checkpoint_every=1000,
        checkpoint_dir=str(directory),
        seed=7,
    )


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_checkpoints(a: Path, b: Path) -> None:
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    assert (ca["samples"], ca["steps"]) == (cb["samples"], cb["steps"])
    assert ca["data"] == cb["data"]
    for part in ("net", "ema"):
        for key, value in ca[part].items():
            assert torch.equal(value, cb[part][key]), (part, key)
    for index, state in ca["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, cb["optimizer"]["state"][index][key])


def test_regression_then_diffusion_resume_bitwise(
    data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = data
    kw = {"output_variables": OUTPUTS, "progress": False}
    # 20 steps of 2 samples straight ...
    straight = fit_regression(lr, hr, config=_config(tmp_path / "a", 40), **kw)  # type: ignore[arg-type]
    # ... and 10 steps, then a new call that resumes for 10 more.
    half = fit_regression(lr, hr, config=_config(tmp_path / "b", 20), **kw)  # type: ignore[arg-type]
    assert half.provenance["regression"]["samples"] == 20
    torch.manual_seed(999)
    np.random.seed(999)  # noqa: NPY002  (global states are restored from the checkpoint)
    resumed = fit_regression(lr, hr, config=_config(tmp_path / "b", 40), **kw)  # type: ignore[arg-type]
    _assert_same_weights(straight.regression, resumed.regression)
    _assert_same_checkpoints(
        tmp_path / "a" / "regression-checkpoint.safetensors",
        tmp_path / "b" / "regression-checkpoint.safetensors",
    )

    # The diffusion stage, on the same regression, resumes just as exactly.
    full = fit_diffusion(straight, lr, hr, config=_config(tmp_path / "a", 40), progress=False)
    fit_diffusion(straight, lr, hr, config=_config(tmp_path / "b", 20), progress=False)
    torch.manual_seed(5)
    again = fit_diffusion(straight, lr, hr, config=_config(tmp_path / "b", 40), progress=False)
    assert isinstance(full, CorrDiffModel) and full.diffusion is not None
    assert again.diffusion is not None
    _assert_same_weights(full.diffusion, again.diffusion)
    _assert_same_checkpoints(
        tmp_path / "a" / "diffusion-checkpoint.safetensors",
        tmp_path / "b" / "diffusion-checkpoint.safetensors",
    )
    # A finished stage is not trained again.
    done = fit_regression(lr, hr, config=_config(tmp_path / "b", 40), **kw)  # type: ignore[arg-type]
    _assert_same_weights(done.regression, straight.regression)


def test_checkpoint_dir_of_another_model_is_refused(
    data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = data
    config = _config(tmp_path, 4)
    fit_regression(lr, hr, config=config, output_variables=OUTPUTS, progress=False)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"holds a regression checkpoint of another model .*outputs: checkpoint has",
    ):
        fit_regression(lr, hr, config=config, output_variables=["t2m"], progress=False)
    wider = config.replace(regression=NetworkConfig(model_channels=16, channel_mult=(1, 2)))
    with pytest.raises(CheckpointMismatchError, match=r"use a new checkpoint_dir"):
        fit_regression(lr, hr, config=wider, output_variables=OUTPUTS, progress=False)

"""A regression network trained on patches, with the whole domain's inputs as global context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.diffusion import PatchGrid, build_condition, patched_regression_mean, regression_mean
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic


def test_patched_mean_folds_the_patches_of_a_pointwise_network() -> None:
    """A network that maps each pixel's local channels to an output (ignoring the global
    context) gives the same μ patch by patch, blended, as on the whole domain."""
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 24, 20, dtype=torch.float64)
    weight = torch.randn(2, 3, dtype=torch.float64)
    seen: list[int] = []

    def net(x: torch.Tensor, cond: torch.Tensor, embedding_selector: object = None) -> torch.Tensor:
        seen.append(cond.shape[1])
        return torch.einsum("oc,bchw->bohw", weight, cond[:, :3])

    grid = PatchGrid((24, 20), (8, 8), 2, blend="taper")
    patched = patched_regression_mean(net, build_condition(inputs), 2, grid)
    whole = regression_mean(net, build_condition(inputs), 2)
    assert seen == [6, 3]  # patches: local + global context; whole domain: local only
    np.testing.assert_allclose(patched.numpy(), whole.numpy(), rtol=1e-12, atol=1e-12)


def test_fit_on_patches_and_use_the_model(tmp_path: Path) -> None:
    lr, hr = make_synthetic(n_times=12, hr_shape=(16, 16), factor=4, seed=1)
    config = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=4, diffusion_duration=4,
        regression_patch_shape=(8, 8), validation_fraction=0.0,
    )  # fmt: skip
    model = lr.corrdiff.fit(hr, config=config, output_variables=["t2m", "u10m"], progress=False)
    assert model.regression_patch == (8, 8)
    n_cond = len(model.condition_variables)
    assert model.regression.img_in_channels == 2 * n_cond + model.regression.grid_channels
    loaded = xcorrdiff.load_model(model.save(tmp_path / "m"))
    assert loaded.regression_patch == (8, 8)
    mean = loaded.regression_mean(lr.isel(time=slice(0, 2)))
    ens = lr.isel(time=slice(0, 2)).corrdiff.downscale(
        model=loaded, n_ensemble=2, num_steps=4, return_mean=True
    )
    np.testing.assert_array_equal(ens.t2m_mean.values, mean.t2m.values)
    assert np.isfinite(ens.t2m.values).all()
    with pytest.raises(ValueError, match=r"regression trained on patches"):
        loaded.save(tmp_path / "pkg", format="earth2studio")


def test_bad_regression_patch_shape() -> None:
    with pytest.raises(ValueError, match=r"regression_patch_shape=\(8,\) is invalid"):
        TrainConfig(regression_patch_shape=(8,))  # type: ignore[arg-type]

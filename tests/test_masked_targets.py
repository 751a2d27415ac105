"""Land-only (masked) targets: NaN where there is no data trains with a masked loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.batching import PairedBatchStream
from xcorrdiff.data.split import split_times
from xcorrdiff.diffusion import masked_mean
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.stages import fit_regression
from xcorrdiff.tutorial import make_synthetic

OUT = ["t2m", "u10m"]


def _land_only(hr: xr.Dataset) -> tuple[xr.Dataset, xr.DataArray]:
    land = hr.land_sea_mask > 0.5
    return hr.assign({v: hr[v].where(land) for v in OUT}), land


def test_masked_mean_counts_observed_elements_only() -> None:
    loss = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert masked_mean(loss, mask) == pytest.approx(2.0)
    assert masked_mean(loss) == pytest.approx(26.5)
    assert masked_mean(loss, torch.zeros_like(mask)) == 0.0


def test_batches_carry_the_mask_and_zeros_where_missing() -> None:
    target = np.ones((4, 1, 8, 8), dtype=np.float32)
    target[:, :, :, :3] = np.nan
    condition = np.zeros((4, 2, 8, 8), dtype=np.float32)
    stream = PairedBatchStream(condition, target, batch_size=4, shuffle=False, missing_target=True)
    (batch,) = list(stream)
    np.testing.assert_array_equal(batch["mask"].numpy(), np.isfinite(target).astype(np.float32))
    assert (
        torch.isfinite(batch["target"]).all() and float(batch["target"][..., :3].abs().sum()) == 0
    )
    target[0, 0, 0, 5] = np.inf
    with pytest.raises(ValueError, match=r"target has non-finite"):
        list(PairedBatchStream(condition, target, batch_size=4, missing_target=True))


def test_land_only_model_is_nan_over_the_ocean_only(tmp_path: Path) -> None:
    lr, hr = make_synthetic(n_times=12, hr_shape=(16, 16), factor=4, seed=1)
    masked, land = _land_only(hr[OUT])
    masked["t2m"][3, 0, 0] = np.nan  # a missing value on land at one time only
    config = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=4, diffusion_duration=4,
    )  # fmt: skip
    model = lr.corrdiff.fit(masked, config=config, progress=False)
    assert model.observed is not None
    for name in OUT:
        np.testing.assert_array_equal(model.observed[name].values, land.values)
    loaded = xcorrdiff.load_model(model.save(tmp_path / "m"))
    assert loaded.observed is not None and loaded.observed.t2m.dtype == bool
    ens = lr.isel(time=slice(0, 2)).corrdiff.downscale(
        model=loaded, n_ensemble=2, num_steps=4, return_mean=True
    )
    for name in (*OUT, "t2m_mean"):
        assert not bool((ens[name].isnull() & land).any()), name  # no NaN leaks onto land
        assert bool(ens[name].where(~land).isnull().all()), name  # the ocean was never observed
    # Verification skips the points where the truth is NaN.
    scores = ens[OUT].corrdiff.crps(masked.isel(time=slice(0, 2)))
    assert np.isfinite(scores.t2m.values)


@pytest.mark.slow
def test_land_only_training_keeps_the_skill_over_land() -> None:
    """The masked model's held-out regression MAE over land is within 5 % of (or better
    than) the model trained on the complete field, at the same seed and budget."""
    torch.set_num_threads(1)
    # 1024 samples: at 512 the under-trained u10m's ratio swung to 1.4 with the draws; at 1024
    # it was 0.79-1.02 (t2m) and 0.97-0.98 (u10m) over seeds 0, 1, 2.
    lr, hr = make_synthetic(n_times=256, hr_shape=(32, 32), factor=8, seed=0)
    masked, land = _land_only(hr[OUT])
    config = TrainConfig(
        preset="tiny", batch_size=8, learning_rate=5e-3, lr_rampup=0, lr_decay=1.0,
        ema_halflife=200, regression_duration=1024, validation_every=10**6,
    )  # fmt: skip
    _, held = split_times(256, validation_fraction=config.data.validation_fraction)
    truth = hr.isel(time=held)
    mae = {}
    for name, target in (("full", hr[OUT]), ("masked", masked)):
        model = fit_regression(lr, target, config=config, progress=False)
        mean = model.regression_mean(lr.isel(time=held))
        mae[name] = {v: float(np.abs(mean[v] - truth[v]).where(land).mean()) for v in OUT}
        assert not bool((mean[OUT].to_array().isnull() & land).any())
    for v in OUT:
        assert mae["masked"][v] <= 1.05 * mae["full"][v], (v, mae)

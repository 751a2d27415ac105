"""Out-of-fold residuals for the diffusion stage (TrainConfig(residual_folds=k)) and the
warning when the regression fits its training times far closer than unseen ones."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from xcorrdiff.config import NetworkConfig
from xcorrdiff.train import fit_diffusion, fit_regression
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.crossfit import OVERFIT_RATIO, OutOfFold, check_overfit, fold_times
from xcorrdiff.tutorial import make_synthetic

OUTPUTS = ["t2m", "u10m"]


@pytest.fixture(scope="module")
def data() -> tuple[xr.Dataset, xr.Dataset]:
    lr, hr = make_synthetic(n_times=6, hr_shape=(16, 16), factor=4, seed=1)
    return lr[["t2m", "u10m", "tcwv"]], hr


def _config(folder: Path, **kw: object) -> TrainConfig:
    net = {"model_channels": 8, "channel_mult": (1, 2)}
    base: dict[str, object] = {
        "regression": NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        "diffusion": NetworkConfig(**net),  # type: ignore[arg-type]
        "batch_size": 2, "patch_shape": (8, 8), "regression_duration": 8,
        "diffusion_duration": 4, "validation_fraction": 0.0, "input_skip": True,
        "residual_scaling": True, "checkpoint_dir": str(folder),
    }  # fmt: skip
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_folds_are_contiguous_and_cover_the_training_times() -> None:
    folds = fold_times(np.array([0, 1, 2, 4, 5, 7, 8]), 3)
    assert [f.tolist() for f in folds] == [[0, 1, 2], [4, 5], [7, 8]]
    with pytest.raises(
        ValueError, match=r"residual_folds=4 needs at least 4 training times, got 3"
    ):
        fold_times(np.arange(3), 4)


def test_each_row_takes_the_mean_of_the_fold_that_did_not_see_it() -> None:
    """Rows of a batch at times of different folds (and outside them) are routed to their
    own regression and put back in place."""

    def mean_with(fold: int | None, condition: torch.Tensor, lead: object) -> torch.Tensor:
        value = -1.0 if fold is None else float(fold)
        return torch.full((condition.shape[0], 1, 2, 2), value) + condition[:, :1]

    oof = OutOfFold(fold_times(np.arange(6), 3), mean_with)
    condition = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    mu = oof(condition, None, torch.tensor([5, 0, 9, 2, 3]))
    assert mu[:, 0, 0, 0].tolist() == [2 + 0, 0 + 1, -1 + 2, 1 + 3, 1 + 4]


def test_training_cross_fits_resumes_and_records_the_residuals(
    data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, hr = data
    config = _config(tmp_path, residual_folds=3)
    regression = fit_regression(lr, hr, config=config, output_variables=OUTPUTS, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the overfit warning may or may not fire
        model = fit_diffusion(regression, lr, hr, config=config, progress=False)
    names = sorted(p.name for p in tmp_path.glob("*-checkpoint.safetensors"))
    assert names == [
        "diffusion-checkpoint.safetensors",
        "regression-checkpoint.safetensors",
        *(f"regression-fold{j}-checkpoint.safetensors" for j in range(3)),
    ]
    record = model.provenance["diffusion"]["residual_rms"]
    assert sorted(record) == OUTPUTS
    for name in OUTPUTS:  # the scale is the out-of-fold residual's
        expected = record[name]["out of fold"] / config.model.sigma_data
        assert model.residual_scale[name] == pytest.approx(expected, rel=1e-12)
        assert record[name]["out of fold"] != record[name]["training_times"]
    # Again with the same folder: every stage is complete, nothing trains again.
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    again = fit_diffusion(regression, lr, hr, config=config, progress=False)
    assert (tmp_path / "log.jsonl").read_text().splitlines()[: len(log)] == log
    steps = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert not [r for r in steps[len(log) :] if r.get("event") == "step"]
    assert again.residual_scale == model.residual_scale


def test_another_number_of_folds_is_another_diffusion_run(
    data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    from xcorrdiff.train import CheckpointMismatchError

    lr, hr = data
    config = _config(tmp_path, residual_folds=2, input_skip=False)
    regression = fit_regression(lr, hr, config=config, output_variables=OUTPUTS, progress=False)
    fit_diffusion(regression, lr, hr, config=config, progress=False)
    with pytest.raises(CheckpointMismatchError):
        fit_diffusion(regression, lr, hr, config=config.replace(residual_folds=0), progress=False)


def test_the_overfit_warning_names_the_outputs_and_the_remedy() -> None:
    seen, unseen = torch.tensor([0.1, 0.5]), torch.tensor([0.1 * OVERFIT_RATIO + 0.01, 0.6])
    with pytest.warns(UserWarning, match=r"far closer than times it did not see.*'a': '0\.1 vs"):
        record = check_overfit(seen, unseen, ["a", "b"], unseen_label="held", advice="do X")
    assert record["b"] == {"training_times": 0.5, "held": pytest.approx(0.6)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_overfit(seen, seen, ["a", "b"], unseen_label="held", advice="do X")


def test_with_a_validation_split_the_regression_errors_are_recorded() -> None:
    """The rms errors behind the overfit check, recomputed here from the model's own μ on
    the training and the validation times (normalized units)."""
    from xcorrdiff.data.split import split_times

    lr, hr = make_synthetic(n_times=12, hr_shape=(16, 16), factor=4, seed=1)
    config = _config(Path("."), checkpoint_dir=None, validation_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = fit_regression(lr, hr, config=config, output_variables=OUTPUTS, progress=False)
    record = model.provenance["regression"]["residual_rms"]
    train, validation = split_times(12, validation_fraction=0.25)
    mean = model.regression_mean(lr)
    for name in OUTPUTS:
        std = model.output_normalizer.stats[name].std
        error = (mean[name].values.astype(np.float64) - hr[name].values) / std
        for key, times in (("training_times", train), ("the validation times", validation)):
            expected = np.sqrt(np.mean(error[times] ** 2))
            assert record[name][key] == pytest.approx(expected, rel=1e-4)


def test_auto_cross_fits_short_records_only() -> None:
    model = TrainConfig(preset="tiny").model
    assert model.residual_folds == "auto"
    assert [model.folds(n) for n in (1, 2, 3, 19, 20, 500)] == [0, 2, 3, 3, 0, 0]
    assert TrainConfig(preset="normal").model.folds(3) == 0
    assert TrainConfig(residual_folds=4).model.folds(500) == 4


def test_the_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"residual_folds=1 is invalid; expected 0"):
        TrainConfig(residual_folds=1)
    with pytest.raises(ValueError, match=r"residual_folds=-1 is invalid; expected an integer >= 0"):
        TrainConfig(residual_folds=-1)


def test_auto_crops_short_records_only() -> None:
    model = TrainConfig(preset="tiny").model
    assert model.diffusion_crops == "auto"
    assert [model.crops(n) for n in (1, 19, 20, 500)] == [True, True, False, False]
    assert not TrainConfig(preset="mini").model.crops(3)
    with pytest.raises(ValueError, match=r"diffusion_crops='yes' is invalid; expected True, False"):
        TrainConfig(diffusion_crops="yes")  # type: ignore[arg-type]


def test_crops_cap_the_patch_at_a_quarter_of_the_domain() -> None:
    from xcorrdiff.train.data import crop_patch

    on, off = TrainConfig(diffusion_crops=True), TrainConfig(diffusion_crops=False)
    assert crop_patch(on, (64, 64), (64, 96), 3) == (16, 24)
    assert crop_patch(on, (12, 12), (64, 96), 3) == (12, 12)  # already smaller
    assert crop_patch(on, (12, 12), (12, 12), 3) == (4, 4)  # at least twice the factor (2)
    assert crop_patch(off, (64, 64), (64, 96), 3) == (64, 64)
    # Rounded down to the diffusion network's downsampling factor (4 for channel_mult (1, 2, 2)).
    net = NetworkConfig(model_channels=4, channel_mult=(1, 2, 2))
    assert crop_patch(TrainConfig(diffusion=net, diffusion_crops=True), (60, 60), (60, 60), 3) == (
        12, 12,
    )  # fmt: skip


def test_the_diffusion_trains_on_the_crops(
    data: tuple[xr.Dataset, xr.Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xcorrdiff.train.stages as stages

    seen = []
    original = stages.train_batches

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(kwargs["patch_shape"])
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "train_batches", spy)
    lr, hr = data
    config = _config(tmp_path, patch_shape=(16, 16), diffusion_crops=True)
    model = fit_regression(lr, hr[OUTPUTS], config=config, progress=False)
    fit_diffusion(model, lr, hr[OUTPUTS], config=config, progress=False)
    assert seen == [(4, 4)]  # a quarter of the 16 × 16 domain

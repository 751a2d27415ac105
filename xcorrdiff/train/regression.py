"""The regression stage: its loss and validation, and the training of one regression network
(the model's, or a cross-fit fold's for :mod:`xcorrdiff.train.crossfit`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from xcorrdiff.diffusion import (
    PatchGrid,
    build_condition,
    crop_condition,
    extract_patches,
    masked_mean,
    mean_of_inputs,
    patched_regression_mean,
    regression_grid,
    regression_loss,
)
from xcorrdiff.diffusion.input_skip import InputSkip
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.data import TrainingData, lead_of, stream, to_device
from xcorrdiff.train.distributed import DistributedContext
from xcorrdiff.train.layout import Layout
from xcorrdiff.train.loop import StageResult, run_stage
from xcorrdiff.train.networks import build_regression, seeded_init
from xcorrdiff.train.parts import model_parts, stage_fingerprint, train_batches
from xcorrdiff.train.streams import stream_seed

__all__ = ["RegressionStage", "mean_function", "skip_terms", "train_regression"]


class RegressionStage:
    """The regression stage: its loss on a batch (the whole domain, or random patches with
    the whole domain's inputs as global context) and its validation (mean squared error of
    μ on the whole domain, computed as inference does)."""

    def __init__(
        self,
        data: TrainingData,
        config: TrainConfig,
        device: torch.device,
        skip: InputSkip | None = None,
    ) -> None:
        self.data, self.config, self.device, self.skip = data, config, device, skip
        self.patch = config.data.regression_patch_shape

    def _batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any, Any]:
        b = to_device(batch, self.device, self.config.runtime.channels_last)
        condition = build_condition(b["condition"], lead_time=lead_of(self.data, b))
        return b["target"], condition, b.get("mask")

    def loss(self, net: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        target, condition, mask = self._batch(batch)
        if self.patch is None:
            return masked_mean(regression_loss(net, target, condition, self.skip), mask)
        offsets = batch["offsets"].to(self.device)
        rows = crop_condition(condition, offsets, self.patch)
        target = extract_patches(target, offsets, self.patch)
        mask = extract_patches(mask, offsets, self.patch) if mask is not None else None
        return masked_mean(regression_loss(net, target, rows, self.skip), mask)

    def validate(self, ema: torch.nn.Module) -> dict[str, float]:
        total, count = 0.0, 0
        batches = stream(
            self.data, self.config, indices=self.data.validation, patch_shape=None,
            patches_per_sample=1, shuffle=False, seed=self.config.runtime.seed,
        )  # fmt: skip
        with torch.no_grad():
            shape = tuple(self.data.condition.sizes[d] for d in self.data.grid_dims)
            grid = regression_grid(shape, self.patch)
            for batch in batches:
                target, condition, mask = self._batch(batch)
                mean = patched_regression_mean(ema, condition, target.shape[1], grid, self.skip)
                loss = (mean - target) ** 2
                mask = torch.ones_like(loss) if mask is None else mask
                total += float((loss * mask).double().sum())
                count += int(mask.sum())
        return {"val_loss": total / max(count, 1)}


def train_regression(
    data: TrainingData,
    config: TrainConfig,
    parallel: DistributedContext,
    owner: Layout | CorrDiffModel,
    norms: Mapping[str, Any],
    skip: Mapping[str, Any],
    *,
    fold: int | None = None,
    progress: bool,
) -> StageResult:
    """Train a regression network on ``data.train`` (the model's, or the one of a cross-fit
    ``fold``: its own stage name, checkpoint and random streams)."""
    seed = config.runtime.seed
    n_in, n_out = len(data.condition_variables), len(owner.output_variables)
    n_in *= 2 if config.data.regression_patch_shape is not None else 1  # + global context
    net = seeded_init(
        stream_seed(seed, "regression.init", fold=fold),
        lambda: build_regression(
            config, shape=owner.shape, in_channels=n_in, out_channels=n_out,
            lead_time_steps=len(owner.lead_times),
        ),
    ).to(parallel.device)  # fmt: skip
    stage = RegressionStage(data, config, parallel.device, skip_terms(skip, data, norms))
    parts = {**model_parts(owner, data, net, norms), "input_skip": dict(skip)}
    name = "regression" if fold is None else f"regression-fold{fold}"
    if fold is not None:
        parts["fold_times"] = [int(i) for i in data.train]
    return run_stage(
        stage=name,
        net=net,
        loss_fn=stage.loss,
        batches=train_batches(
            data, config, parallel, patch_shape=config.data.regression_patch_shape,
            seed=stream_seed(seed, "regression.batches", fold=fold),
        ),
        config=config,
        duration=config.schedule.regression_duration,
        fingerprint=stage_fingerprint(name, config, parts),
        device=parallel.device,
        validate=stage.validate if len(data.validation) else None,
        progress=progress,
        seed=stream_seed(seed, "regression.dropout", fold=fold),
    )  # fmt: skip


def skip_terms(
    skip: Mapping[str, Any], data: TrainingData, norms: Mapping[str, Any]
) -> InputSkip | None:
    """The :class:`InputSkip` of a stored skip ``{output: {"input", "spread"}}`` (None when
    empty), in the channel order of ``data``."""
    if not skip:
        return None
    return InputSkip.build(
        skip, condition_variables=data.condition_variables,
        output_variables=data.output_variables, input_normalizer=norms["input"],
        output_normalizer=norms["output"],
    )  # fmt: skip


def mean_function(
    net: torch.nn.Module, n_out: int, grid: PatchGrid | None, skip: InputSkip | None
) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:
    """``mean(condition, lead, time_index) -> μ`` of the regression ``net`` on the whole
    domain (no gradient; computed patch by patch on ``grid`` when given), as training and
    downscaling compute it."""

    def mean(
        condition: torch.Tensor, lead: torch.Tensor | None, time_index: torch.Tensor | None
    ) -> torch.Tensor:
        with torch.no_grad():
            return mean_of_inputs(net, condition, n_out, grid, lead, skip).to(condition.dtype)

    return mean

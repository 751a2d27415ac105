"""Training CorrDiff on paired (LR, HR) data: regression first, then residual diffusion.

``fit`` runs both stages; ``fit_regression`` and ``fit_diffusion`` run one each, so the
regression is trained once and the diffusion stage can be rerun or resumed on its own (the
regression stage itself is :mod:`xcorrdiff.train.regression`)::

    model = fit_regression(lr, hr, config=cfg)          # CorrDiffModel, diffusion=None
    model = fit_diffusion(model, lr, hr, config=cfg)    # adds the diffusion network

Both stages use the prepare step of inference (:mod:`xcorrdiff.data.prepare`): select the input
variables, convert units, regrid onto the HR grid, add invariants, normalize. The regression
UNet is trained on the whole domain with a mean-squared error; the diffusion model on random
patches of the residual ``HR − μ``, with μ computed once per sample on the whole domain and
reused for all ``patches_per_sample`` patches (Mardani et al. 2025; NVIDIA's
"multi-iteration patching"). With ``residual_folds`` the residual of each training time comes
from a regression that did not see it (:mod:`xcorrdiff.train.crossfit`); with
``input_skip`` the regression predicts outputs as their own input plus a correction
(:mod:`xcorrdiff.diffusion.input_skip`).

With ``config.checkpoint_dir`` set, each stage writes ``<stage>-checkpoint.safetensors`` and
appends to ``log.jsonl`` there; calling the same function again with the same data and
configuration resumes where it stopped (or returns at once when the stage is complete).

Under ``torchrun --nproc_per_node N`` (or any launcher setting ``RANK``/``WORLD_SIZE``) the
stages train data-parallel (:mod:`xcorrdiff.train.distributed`): each rank reads its own
shard of the data with ``batch_size / N`` samples per step (``batch_size`` stays the global
batch and must be divisible by ``N``), gradients are averaged by DistributedDataParallel,
and rank 0 alone writes checkpoints and the log. A checkpoint counts global samples and
steps, so it resumes with another number of processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xcorrdiff._model_dir import state_digest
from xcorrdiff.config import NEW_MODEL_SAMPLER
from xcorrdiff.diffusion import (
    PatchGrid,
    build_condition,
    crop_condition,
    extract_patches,
    masked_mean,
    regression_grid,
    residual_loss,
)
from xcorrdiff.diffusion.input_skip import InputSkip
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.crossfit import OutOfFold, check_overfit, fold_times
from xcorrdiff.train.data import (
    TrainingData,
    check_shape,
    crop_patch,
    input_skip_spec,
    lead_of,
    prepare_data,
    residual_rms,
    residual_scale,
    resolve_bounds,
    spread_times,
    stream,
    to_device,
)
from xcorrdiff.train.distributed import DistributedContext, init_distributed
from xcorrdiff.train.layout import Layout, describe_layout
from xcorrdiff.train.loop import CheckpointMismatchError, NonFiniteError, run_stage
from xcorrdiff.train.networks import build_diffusion, seeded_init
from xcorrdiff.train.parts import model_parts, stage_fingerprint, stage_provenance, train_batches
from xcorrdiff.train.regression import mean_function, skip_terms, train_regression
from xcorrdiff.train.streams import stream_seed

__all__ = [
    "CheckpointMismatchError",
    "NonFiniteError",
    "fit_diffusion",
    "fit_regression",
]


def fit_regression(
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    invariants: xr.Dataset | Sequence[str] | None = None,
    config: TrainConfig | None = None,
    input_variables: Sequence[Hashable] | None = None,
    output_variables: Sequence[Hashable] | None = None,
    regrid_method: str = "bilinear",
    progress: bool = True,
) -> CorrDiffModel:
    """Train the regression UNet (stage 1): the conditional mean μ of HR given LR.

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs ``(time, lat, lon)`` (any rectilinear grid) or already on the
        HR grid, with CF ``units``.
    hr : xarray.Dataset
        High-resolution targets ``(time, y, x)`` with CF ``units``; static variables (without
        ``time``) are taken as invariants unless ``invariants`` says otherwise.
    invariants : xarray.Dataset or sequence of str, optional
        Static fields on the HR grid, or names of static variables of ``hr``. Default: every
        variable of ``hr`` without a time dimension. Pass ``[]`` for none.
    config : TrainConfig, optional
        Default ``TrainConfig(preset="tiny")``.
    input_variables : sequence of str, optional
        Inputs taken from ``lr``; default its time-varying data variables.
    output_variables : sequence of str, optional
        Targets taken from ``hr``; default its time-varying data variables.
    regrid_method : {"bilinear", "nearest", "conservative"}
        Interpolation of ``lr`` onto the HR grid.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    CorrDiffModel
        With the trained (EMA) regression network and ``diffusion=None``.

    Raises
    ------
    ValueError
        ``lr`` and ``hr`` share no time; NaN/inf in the data; units missing; grid not
        divisible by the network's downsampling.
    NonFiniteError
        A non-finite loss or gradient with ``on_nonfinite="raise"``.
    CheckpointMismatchError
        ``config.checkpoint_dir`` holds a checkpoint of another model.
    """
    config = config if config is not None else TrainConfig()
    layout = describe_layout(
        lr, hr, invariants, input_variables, output_variables, config.data.time_features
    )
    check_shape(config, layout.shape)
    bounds = resolve_bounds(config.data.output_bounds, layout.output_variables)
    data, input_norm, output_norm = prepare_data(
        lr, hr, input_variables=layout.input_variables, output_variables=layout.output_variables,
        grid=layout.grid, grid_dims=layout.grid_dims, invariants=layout.invariants,
        input_normalizer=None, output_normalizer=None, regrid_method=regrid_method,
        config=config, time_features=layout.time_features, lead_times=layout.lead_times,
    )  # fmt: skip
    mode = config.model.skips_inputs(len(data.train))
    skip = {}
    if mode is not False:
        skip = input_skip_spec(
            data, layout.input_variables, layout.output_variables, (input_norm, output_norm),
            required=mode is True,
        )  # fmt: skip
    parallel = init_distributed(config.runtime.device)
    norms = {"input": input_norm, "output": output_norm}
    result = train_regression(data, config, parallel, layout, norms, skip, progress=progress)
    provenance: dict[str, Any] = {"library": "xcorrdiff", "config": config.to_dict()}
    provenance["regression"] = stage_provenance(data, result)
    if len(data.validation):
        provenance["regression"]["residual_rms"] = _validation_gap(
            data, config, layout, result.ema, skip_terms(skip, data, norms), parallel.device
        )
    return _bundle(
        layout, (input_norm, output_norm), (result.ema, None), config,
        sampler=NEW_MODEL_SAMPLER, regrid_method=regrid_method, provenance=provenance,
        observed=data.observed, output_bounds=bounds, input_skip=skip,
    )  # fmt: skip


def _validation_gap(
    data: TrainingData,
    config: TrainConfig,
    layout: Layout,
    net: torch.nn.Module,
    skip: InputSkip | None,
    device: torch.device,
) -> dict[str, Any]:
    """The regression's rms error on its training and validation times, checked."""
    grid = regression_grid(layout.shape, config.data.regression_patch_shape)
    mean = mean_function(net, len(data.output_variables), grid, skip)
    seen = residual_rms(data, spread_times(data.train), mean, device)
    unseen = residual_rms(data, spread_times(data.validation), mean, device)
    return check_overfit(
        seen, unseen, data.output_variables, unseen_label="the validation times",
        advice="train the diffusion stage with TrainConfig(residual_folds=k) to learn "
        "out-of-fold residuals, and consider input_skip=True or a shorter regression_duration",
    )  # fmt: skip


# --- stage 2: residual diffusion ------------------------------------------------------------


class DiffusionStage:
    """The diffusion stage: the residual EDM loss on random patches and its validation.

    μ is computed once per sample on the whole domain by the frozen regression and reused
    for all of the sample's patches; each sample has its own patch corners.
    """

    def __init__(
        self,
        data: TrainingData,
        config: TrainConfig,
        device: torch.device,
        regression: torch.nn.Module,
        patch: tuple[int, int],
        regression_grid: PatchGrid | None = None,
        skip: InputSkip | None = None,
    ) -> None:
        self.data, self.config, self.device, self.patch = data, config, device, patch
        self.regression, self.regression_grid, self.skip = regression, regression_grid, skip
        self.own_mean = mean_function(regression, len(data.output_variables), regression_grid, skip)
        self.out_of_fold: OutOfFold | None = None
        self.fold_digests: list[str] = []  # of the cross-fit regressions, for the fingerprint
        self.n_out = len(data.output_variables)
        self.noise = torch.Generator(device=device).manual_seed(
            stream_seed(config.runtime.seed, "diffusion.noise")
        )
        self.scale: torch.Tensor | None = None

    def mean_of(
        self,
        condition: torch.Tensor,
        lead: torch.Tensor | None = None,
        time_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """μ on the whole domain (no gradient): out of fold for training times when the
        stage cross-fits (:mod:`xcorrdiff.train.crossfit`), else the model's."""
        if self.out_of_fold is not None and time_index is not None:
            return self.out_of_fold(condition, lead, time_index)
        return self.own_mean(condition, lead, time_index)

    def patches(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any, Any]:
        """The scaled residual, the condition and the mask (or None) on the batch's patches;
        the residual is 0 where the target is missing."""
        b = to_device(batch, self.device, self.config.runtime.channels_last)
        lead = lead_of(self.data, b)
        mean = self.mean_of(b["condition"], lead, b["time_index"])
        mask = b.get("mask")
        residual = b["target"] - mean if mask is None else (b["target"] - mean) * mask
        if self.scale is not None:
            residual = residual / self.scale.to(residual).reshape(1, -1, 1, 1)
        hr_mean = self.config.model.hr_mean_conditioning
        whole = build_condition(b["condition"], mean if hr_mean else None, lead)
        condition = crop_condition(
            whole, b["offsets"], self.patch, global_inputs=self.config.model.global_lowres
        )
        if mask is not None:
            mask = extract_patches(mask, b["offsets"], self.patch)
        return extract_patches(residual, b["offsets"], self.patch), condition, mask

    def loss(self, denoiser: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        residual, condition, mask = self.patches(batch)
        model = self.config.model
        loss = residual_loss(
            denoiser, residual, condition, generator=self.noise, P_mean=model.P_mean,
            P_std=model.P_std, sigma_data=model.sigma_data,
        )  # fmt: skip
        return masked_mean(loss, mask)

    def validate(self, ema: torch.nn.Module) -> dict[str, float]:
        """Loss of the EMA denoiser and of a zero residual, same noise levels and noise."""
        seed, model = self.config.runtime.seed, self.config.model
        g = torch.Generator(device=self.device).manual_seed(
            stream_seed(seed, "diffusion.validation")
        )
        totals = {"val_loss": 0.0, "val_loss_zero_residual": 0.0}
        count = 0
        batches = stream(
            self.data, self.config, indices=self.data.validation, patch_shape=self.patch,
            patches_per_sample=self.config.data.patches_per_sample, shuffle=False,
            seed=stream_seed(seed, "diffusion.validation"),
        )  # fmt: skip
        with torch.no_grad():
            for batch in batches:
                residual, condition, mask = self.patches(batch)
                mask = torch.ones_like(residual) if mask is None else mask
                n = residual.shape[0]
                sigma = (
                    torch.randn((n,), generator=g, device=self.device) * model.P_std + model.P_mean
                ).exp()
                eps = torch.randn(residual.shape, generator=g, device=self.device)
                for key, denoiser in (("val_loss", ema), ("val_loss_zero_residual", _zero)):
                    loss = residual_loss(
                        denoiser, residual, condition, sigma=sigma, noise=eps,
                        sigma_data=model.sigma_data,
                    )  # fmt: skip
                    totals[key] += float((loss * mask).double().sum())
                count += int(mask.sum())
        return {k: v / max(count, 1) for k, v in totals.items()}


def _zero(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The denoiser of a zero residual."""
    return torch.zeros_like(x)


def fit_diffusion(
    model: CorrDiffModel,
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> CorrDiffModel:
    """Train the residual diffusion model (stage 2) on top of a trained regression.

    Parameters
    ----------
    model : CorrDiffModel
        From :func:`fit_regression` (or loaded); its variables, grid, invariants and
        normalization are reused and its regression network is frozen.
    lr, hr : xarray.Dataset
        Paired training data, as for :func:`fit_regression`.
    config : TrainConfig, optional
        Default ``TrainConfig(preset="tiny")``. ``checkpoint_dir`` may be the regression's:
        the stages keep separate checkpoint files.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    CorrDiffModel
        A new bundle with the regression of ``model`` and the trained (EMA) diffusion network.

    Raises
    ------
    ValueError, NonFiniteError, CheckpointMismatchError
        As :func:`fit_regression`.
    """
    config = config if config is not None else TrainConfig()
    if not isinstance(model, CorrDiffModel):
        raise TypeError(
            f"model must be a CorrDiffModel (from fit_regression or load_model), got "
            f"{type(model).__name__}"
        )
    patch = check_shape(config, model.shape)
    resolve_bounds(config.data.output_bounds, model.output_variables)  # fail before training
    if config.data.time_features not in ((), model.time_features):
        raise ValueError(
            f"config.time_features={config.data.time_features!r} differ from the regression "
            f"model's {model.time_features!r}; the diffusion stage conditions on the model's"
        )
    data = model_data(model, lr, hr, config)
    patch = crop_patch(config, patch, model.shape, len(data.train))
    parallel = init_distributed(config.runtime.device)
    seed = config.runtime.seed
    if model.regression is None:
        raise ValueError(
            "model has no regression stage (a rectified-flow DiT that generates whole fields); "
            "xcorrdiff does not train such models further"
        )
    regression = model.regression.to(parallel.device).eval().requires_grad_(False)
    n_in, n_out = len(data.condition_variables), len(model.output_variables)
    net = seeded_init(
        stream_seed(seed, "diffusion.init"),
        lambda: build_diffusion(
            config,
            shape=model.shape,
            in_channels=n_in,
            out_channels=n_out,
            lead_time_steps=len(model.lead_times),
        ),
    ).to(parallel.device)
    stage = DiffusionStage(
        data, config, parallel.device, regression, patch, model.regression_grid(),
        model.regression_skip(),
    )  # fmt: skip
    scale, gap = _residuals(model, data, config, parallel, stage, progress)
    norms = {"input": model.input_normalizer, "output": model.output_normalizer}
    parts = {**model_parts(model, data, net, norms), "regression_digest": state_digest(regression)}
    if stage.fold_digests:
        parts["fold_digests"] = stage.fold_digests
    result = run_stage(
        stage="diffusion",
        net=net,
        loss_fn=stage.loss,
        batches=train_batches(
            data, config, parallel, patch_shape=patch, seed=stream_seed(seed, "diffusion.batches")
        ),
        config=config,
        duration=config.schedule.diffusion_duration,
        fingerprint=stage_fingerprint("diffusion", config, parts),
        device=parallel.device,
        generators={"noise": stage.noise},
        validate=stage.validate if len(data.validation) else None,
        patches_per_sample=config.data.patches_per_sample,
        progress=progress,
        seed=stream_seed(seed, "diffusion.dropout"),
    )
    record = {**stage_provenance(data, result), **({"residual_rms": gap} if gap else {})}
    return _with_diffusion(model, result.ema, config, scale, record)


def model_data(
    model: CorrDiffModel, lr: xr.Dataset, hr: xr.Dataset, config: TrainConfig
) -> TrainingData:
    """The training data prepared as ``model``'s regression saw it (its variables, grid,
    invariants and normalization)."""
    data, _, _ = prepare_data(
        lr, hr, input_variables=model.input_variables, output_variables=model.output_variables,
        grid=model.grid, grid_dims=model.grid_dims, invariants=model.invariants,
        input_normalizer=model.input_normalizer, output_normalizer=model.output_normalizer,
        regrid_method=model.regrid_method, config=config, time_features=model.time_features,
        lead_times=model.lead_times,
    )  # fmt: skip
    return data


def _residuals(
    model: CorrDiffModel,
    data: TrainingData,
    config: TrainConfig,
    parallel: DistributedContext,
    stage: DiffusionStage,
    progress: bool,
) -> tuple[dict[str, float] | None, dict[str, Any] | None]:
    """Set up the residuals the stage learns: out of fold (``residual_folds``, with the
    overfitting check) and scaled (``residual_scaling``); their scale and the check's rms."""
    times, device, names = spread_times(data.train), parallel.device, data.output_variables
    rms, gap, folds = None, None, config.model.folds(len(data.train))
    if folds:
        stage.out_of_fold = _out_of_fold(model, data, config, parallel, stage, folds, progress)
        seen = residual_rms(data, times, stage.own_mean, device)
        rms = residual_rms(data, times, stage.mean_of, device)
        gap = check_overfit(
            seen, rms, names, unseen_label="out of fold",
            advice=f"the diffusion stage learns the out-of-fold residuals ({folds} folds), as "
            "large as on new data; the regression itself "
            "would gain from more times, input_skip=True or a shorter regression_duration",
        )  # fmt: skip
    if not config.model.residual_scaling:
        return None, gap
    rms = rms if rms is not None else residual_rms(data, times, stage.mean_of, device)
    scale = residual_scale(config, rms, names)
    stage.scale = torch.tensor([scale[v] for v in names], device=device)
    return scale, gap


def _out_of_fold(
    model: CorrDiffModel,
    data: TrainingData,
    config: TrainConfig,
    parallel: DistributedContext,
    stage: DiffusionStage,
    k: int,
    progress: bool,
) -> OutOfFold:
    """Train the cross-fit regressions of ``k`` folds (each resumable, with its own
    checkpoint) and bind them for the stage."""
    folds = fold_times(data.train, k)
    norms = {"input": model.input_normalizer, "output": model.output_normalizer}
    skip = model.conditioning.get("input_skip") or {}
    nets = []
    for j, held in enumerate(folds):
        rest = np.setdiff1d(data.train, held)
        sub = dataclasses.replace(data, train=rest, validation=np.arange(0))
        result = train_regression(
            sub, config, parallel, model, norms, skip, fold=j, progress=progress
        )
        nets.append(result.ema.eval().requires_grad_(False))
    stage.fold_digests = [state_digest(net) for net in nets]
    n_out, grid = len(data.output_variables), stage.regression_grid
    means = [mean_function(net, n_out, grid, stage.skip) for net in nets]

    def mean_with(
        j: int | None, condition: torch.Tensor, lead: torch.Tensor | None
    ) -> torch.Tensor:
        return (stage.own_mean if j is None else means[j])(condition, lead, None)

    return OutOfFold(folds, mean_with)


def _with_diffusion(
    model: CorrDiffModel,
    diffusion: torch.nn.Module,
    config: TrainConfig,
    scale: dict[str, float] | None,
    provenance: dict[str, Any],
) -> CorrDiffModel:
    """A new bundle: ``model`` with its trained diffusion network."""
    record = {**model.provenance, "diffusion": provenance}
    record.setdefault("config", config.to_dict())
    norms = (model.input_normalizer, model.output_normalizer)
    assert model.regression is not None  # checked by fit_diffusion
    return _bundle(
        model, norms, (model.regression, diffusion), config, sampler=model.sampler,
        regrid_method=model.regrid_method, provenance=record, residual_scale=scale,
        observed=model.observed,
        output_bounds=resolve_bounds(config.data.output_bounds, model.output_variables)
        or model.output_bounds,
    )  # fmt: skip


def _bundle(
    layout: Layout | CorrDiffModel,
    normalizers: tuple[Any, Any],
    networks: tuple[torch.nn.Module, torch.nn.Module | None],
    config: TrainConfig,
    input_skip: Mapping[str, Any] | None = None,
    **rest: Any,
) -> CorrDiffModel:
    """The model bundle of the layout's variables and grids with these networks."""
    if isinstance(layout, CorrDiffModel):
        patch, input_skip = layout.regression_patch, layout.conditioning.get("input_skip")
    else:
        patch = config.data.regression_patch_shape
    return CorrDiffModel(
        regression=networks[0],
        diffusion=networks[1],
        input_variables=layout.input_variables,
        output_variables=layout.output_variables,
        grid=layout.grid,
        grid_dims=layout.grid_dims,
        input_grid=layout.input_grid,
        invariants=layout.invariants,
        time_features=layout.time_features,
        lead_times=layout.lead_times,
        input_normalizer=normalizers[0],
        output_normalizer=normalizers[1],
        conditioning={
            "hr_mean": config.model.hr_mean_conditioning,
            "global_lowres": config.model.global_lowres,
            **({"regression_patch": list(patch)} if patch else {}),
            **({"input_skip": dict(input_skip)} if input_skip else {}),
        },
        **rest,
    )

"""Training CorrDiff on paired (LR, HR) data: regression first, then residual diffusion.

``fit`` runs both stages; ``fit_regression`` and ``fit_diffusion`` run one each, so the
regression is trained once and the diffusion stage can be rerun or resumed on its own::

    model = fit_regression(lr, hr, config=cfg)          # CorrDiffModel, diffusion=None
    model = fit_diffusion(model, lr, hr, config=cfg)    # adds the diffusion network

Both stages use the prepare step of inference (:mod:`xcorrdiff.data.prepare`): select the input
variables, convert units, regrid onto the HR grid, add invariants, normalize. The regression
UNet is trained on the whole domain with a mean-squared error; the diffusion model on random
patches of the residual ``HR − μ``, with μ computed once per sample on the whole domain and
reused for all ``patches_per_sample`` patches (Mardani et al. 2025; NVIDIA's
"multi-iteration patching").

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

import datetime
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xcorrdiff._model_dir import state_digest
from xcorrdiff.config import SamplerConfig
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
    regression_mean,
    residual_loss,
)
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train.batches import StreamBatches
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.data import (
    TIME,
    TrainingData,
    check_shape,
    lead_of,
    prepare_data,
    residual_scale,
    resolve_bounds,
    stream,
    to_device,
)
from xcorrdiff.train.distributed import DistributedContext, init_distributed
from xcorrdiff.train.layout import Layout, describe_layout
from xcorrdiff.train.loop import CheckpointMismatchError, NonFiniteError, StageResult, run_stage
from xcorrdiff.train.networks import build_diffusion, build_regression, seeded_init
from xcorrdiff.train.streams import stream_seed

__all__ = [
    "CheckpointMismatchError",
    "NonFiniteError",
    "fit_diffusion",
    "fit_regression",
]


def _model_parts(
    layout: Layout | CorrDiffModel, data: TrainingData, net: Any, norms: Mapping[str, Any]
) -> dict[str, Any]:
    """The data-dependent part of a stage's fingerprint."""
    return {
        "inputs": [v.to_dict() for v in layout.input_variables],
        "outputs": [v.to_dict() for v in layout.output_variables],
        "condition_variables": data.condition_variables,
        "grid_shape": list(layout.shape),
        "network": net.config,
        "normalization": {k: v.to_dict() for k, v in norms.items()},
    }


def _fingerprint(stage: str, config: TrainConfig, parts: Mapping[str, Any]) -> dict[str, Any]:
    return {"stage": stage, "train": config.fingerprint(), **parts}


def _provenance(data: TrainingData, result: StageResult) -> dict[str, Any]:
    times = data.condition.indexes.get(TIME)

    def span(idx: np.ndarray) -> list[str] | None:
        if times is None or len(idx) == 0:
            return None
        return [str(times[int(idx[0])]), str(times[int(idx[-1])])]

    validation = [h for h in result.history if h.get("event") == "validation"]
    return {
        "samples": result.samples,
        "steps": result.steps,
        "skipped_batches": result.skipped,
        "train_times": len(data.train),
        "train_time_span": span(data.train),
        "validation_times": len(data.validation),
        "validation_time_span": span(data.validation),
        "final_validation": validation[-1] if validation else None,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }


def _train_batches(
    data: TrainingData,
    config: TrainConfig,
    parallel: DistributedContext,
    *,
    patch_shape: tuple[int, int] | None,
    seed: int,
) -> StreamBatches:
    patches = config.data.patches_per_sample if patch_shape is not None else 1
    batches = stream(
        data, config, indices=data.train, patch_shape=patch_shape, patches_per_sample=patches,
        shuffle=True, seed=seed, rank=parallel.rank, world_size=parallel.world_size,
    )  # fmt: skip
    return StreamBatches(batches, num_workers=config.runtime.num_workers)


# --- stage 1: regression ------------------------------------------------------------------


class _RegressionStage:
    """The regression stage: its loss on a batch (the whole domain, or random patches with
    the whole domain's inputs as global context) and its validation (mean squared error of
    μ on the whole domain, computed as inference does)."""

    def __init__(self, data: TrainingData, config: TrainConfig, device: torch.device) -> None:
        self.data, self.config, self.device = data, config, device
        self.patch = config.data.regression_patch_shape

    def _batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any, Any]:
        b = to_device(batch, self.device, self.config.runtime.channels_last)
        condition = build_condition(b["condition"], lead_time=lead_of(self.data, b))
        return b["target"], condition, b.get("mask")

    def loss(self, net: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        target, condition, mask = self._batch(batch)
        if self.patch is None:
            return masked_mean(regression_loss(net, target, condition), mask)
        offsets = batch["offsets"].to(self.device)
        rows = crop_condition(condition, offsets, self.patch)
        target = extract_patches(target, offsets, self.patch)
        mask = extract_patches(mask, offsets, self.patch) if mask is not None else None
        return masked_mean((regression_mean(net, rows, target.shape[1]) - target) ** 2, mask)

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
                mean = patched_regression_mean(ema, condition, target.shape[1], grid)
                loss = (mean - target) ** 2
                mask = torch.ones_like(loss) if mask is None else mask
                total += float((loss * mask).double().sum())
                count += int(mask.sum())
        return {"val_loss": total / max(count, 1)}


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
    parallel = init_distributed(config.runtime.device)
    seed = config.runtime.seed
    n_in, n_out = len(data.condition_variables), len(layout.output_variables)
    n_in *= 2 if config.data.regression_patch_shape is not None else 1  # + global context
    net = seeded_init(
        stream_seed(seed, "regression.init"),
        lambda: build_regression(
            config,
            shape=layout.shape,
            in_channels=n_in,
            out_channels=n_out,
            lead_time_steps=len(layout.lead_times),
        ),
    ).to(parallel.device)
    stage = _RegressionStage(data, config, parallel.device)
    norms = {"input": input_norm, "output": output_norm}
    result = run_stage(
        stage="regression",
        net=net,
        loss_fn=stage.loss,
        batches=_train_batches(
            data,
            config,
            parallel,
            patch_shape=config.data.regression_patch_shape,
            seed=stream_seed(seed, "regression.batches"),
        ),
        config=config,
        duration=config.schedule.regression_duration,
        fingerprint=_fingerprint("regression", config, _model_parts(layout, data, net, norms)),
        device=parallel.device,
        validate=stage.validate if len(data.validation) else None,
        progress=progress,
        seed=stream_seed(seed, "regression.dropout"),
    )
    provenance = {"library": "xcorrdiff", "config": config.to_dict()}
    provenance["regression"] = _provenance(data, result)
    return _bundle(
        layout, (input_norm, output_norm), (result.ema, None), config,
        sampler=SamplerConfig(), regrid_method=regrid_method, provenance=provenance,
        observed=data.observed,
        output_bounds=bounds,
    )  # fmt: skip


# --- stage 2: residual diffusion ------------------------------------------------------------


class _DiffusionStage:
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
    ) -> None:
        self.data, self.config, self.device, self.patch = data, config, device, patch
        self.regression, self.regression_grid = regression, regression_grid
        self.n_out = len(data.output_variables)
        self.noise = torch.Generator(device=device).manual_seed(
            stream_seed(config.runtime.seed, "diffusion.noise")
        )
        self.scale: torch.Tensor | None = None

    def mean_of(self, condition: torch.Tensor, lead: torch.Tensor | None = None) -> torch.Tensor:
        """μ on the whole domain (no gradient)."""
        with torch.no_grad():
            mu = mean_of_inputs(self.regression, condition, self.n_out, self.regression_grid, lead)
            return mu.to(condition.dtype)

    def _patches(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any, Any]:
        """The scaled residual, the condition and the mask (or None) on the batch's patches;
        the residual is 0 where the target is missing."""
        b = to_device(batch, self.device, self.config.runtime.channels_last)
        lead = lead_of(self.data, b)
        mean = self.mean_of(b["condition"], lead)
        mask = b.get("mask")
        residual = b["target"] - mean if mask is None else (b["target"] - mean) * mask
        if self.scale is not None:
            residual = residual / self.scale.to(residual).reshape(1, -1, 1, 1)
        hr_mean = self.config.model.hr_mean_conditioning
        whole = build_condition(b["condition"], mean if hr_mean else None, lead)
        condition = crop_condition(whole, b["offsets"], self.patch)
        if mask is not None:
            mask = extract_patches(mask, b["offsets"], self.patch)
        return extract_patches(residual, b["offsets"], self.patch), condition, mask

    def loss(self, denoiser: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        residual, condition, mask = self._patches(batch)
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
                residual, condition, mask = self._patches(batch)
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
    data, _, _ = prepare_data(
        lr, hr, input_variables=model.input_variables, output_variables=model.output_variables,
        grid=model.grid, grid_dims=model.grid_dims, invariants=model.invariants,
        input_normalizer=model.input_normalizer, output_normalizer=model.output_normalizer,
        regrid_method=model.regrid_method, config=config, time_features=model.time_features,
        lead_times=model.lead_times,
    )  # fmt: skip
    parallel = init_distributed(config.runtime.device)
    seed = config.runtime.seed
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
    stage = _DiffusionStage(
        data, config, parallel.device, regression, patch, model.regression_grid()
    )
    scale = None
    if config.model.residual_scaling:
        scale = residual_scale(data, config, stage.mean_of, parallel.device)
        stage.scale = torch.tensor(
            [scale[v] for v in data.output_variables], device=parallel.device
        )
    norms = {"input": model.input_normalizer, "output": model.output_normalizer}
    parts = {**_model_parts(model, data, net, norms), "regression_digest": state_digest(regression)}
    result = run_stage(
        stage="diffusion",
        net=net,
        loss_fn=stage.loss,
        batches=_train_batches(
            data, config, parallel, patch_shape=patch, seed=stream_seed(seed, "diffusion.batches")
        ),
        config=config,
        duration=config.schedule.diffusion_duration,
        fingerprint=_fingerprint("diffusion", config, parts),
        device=parallel.device,
        generators={"noise": stage.noise},
        validate=stage.validate if len(data.validation) else None,
        patches_per_sample=config.data.patches_per_sample,
        progress=progress,
        seed=stream_seed(seed, "diffusion.dropout"),
    )
    return _with_diffusion(model, result.ema, config, scale, _provenance(data, result))


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
    **rest: Any,
) -> CorrDiffModel:
    """The model bundle of the layout's variables and grids with these networks."""
    patch = (
        layout.regression_patch
        if isinstance(layout, CorrDiffModel)
        else config.data.regression_patch_shape
    )
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
            "global_lowres": True,
            **({"regression_patch": list(patch)} if patch else {}),
        },
        **rest,
    )

"""Training CorrDiff on paired (LR, HR) data: regression first, then residual diffusion.

``fit`` runs both stages; ``fit_regression`` and ``fit_diffusion`` run one each, so the
regression is trained once and the diffusion stage can be rerun or resumed on its own::

    model = fit_regression(lr, hr, config=cfg)          # CorrDiffModel, diffusion=None
    model = fit_diffusion(model, lr, hr, config=cfg)    # adds the diffusion network

Both stages use the prepare step of inference (:mod:`xcorrdiff.prepare`): select the input
variables, convert units, regrid onto the HR grid, add invariants, normalize. The regression
UNet is trained on the whole domain with a mean-squared error; the diffusion model on random
patches of the residual ``HR − μ``, with μ computed once per sample on the whole domain and
reused for all ``patches_per_sample`` patches (Mardani et al. 2025; NVIDIA's
"multi-iteration patching").

With ``config.checkpoint_dir`` set, each stage writes ``<stage>-checkpoint.safetensors`` and
appends to ``log.jsonl`` there; calling the same function again with the same data and
configuration resumes where it stopped (or returns at once when the stage is complete).

Under ``torchrun --nproc_per_node N`` (or any launcher setting ``RANK``/``WORLD_SIZE``) the
stages train data-parallel (:mod:`xcorrdiff.training.distributed`): each rank reads its own
shard of the data with ``batch_size / N`` samples per step (``batch_size`` stays the global
batch and must be divisible by ``N``), gradients are averaged by DistributedDataParallel,
and rank 0 alone writes checkpoints and the log. A checkpoint counts global samples and
steps, so it resumes with another number of processes.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff.config import SamplerConfig, TrainConfig
from xcorrdiff.data.batching import PairedBatchStream, split_times
from xcorrdiff.data.normalize import Normalizer, Transform
from xcorrdiff.diffusion.losses import regression_loss, residual_loss
from xcorrdiff.model import CorrDiffModel, state_digest
from xcorrdiff.nn import EDMPrecondSuperResolution, UNet
from xcorrdiff.prepare import (
    VariableSpec,
    align_times,
    describe_variables,
    grid_of,
    prepare_condition,
    prepare_target,
    spatial_dims,
    static_fields,
)
from xcorrdiff.training.distributed import init_distributed, local_batch_size
from xcorrdiff.training.loop import (
    CheckpointMismatchError,
    NonFiniteError,
    StageResult,
    StreamBatches,
    run_stage,
)

__all__ = [
    "CheckpointMismatchError",
    "NonFiniteError",
    "fit",
    "fit_diffusion",
    "fit_regression",
]

TIME = "time"

# TrainConfig fields that define the model being trained (a checkpoint must agree on them);
# the others (durations, periods, device, workers...) may change between runs.
_FINGERPRINT_FIELDS = (
    "regression",
    "diffusion",
    "patch_shape",
    "patches_per_sample",
    "batch_size",
    "learning_rate",
    "lr_rampup",
    "lr_decay",
    "lr_decay_rate",
    "betas",
    "grad_clip",
    "ema_halflife",
    "ema_rampup_ratio",
    "precision",
    "validation_fraction",
    "seed",
    "P_mean",
    "P_std",
    "sigma_data",
    "hr_mean_conditioning",
    "residual_scaling",
)


# --- data -----------------------------------------------------------------------------------


@dataclass
class _Data:
    """Prepared, normalized training data and its split."""

    condition: xr.Dataset
    target: xr.Dataset
    train: np.ndarray
    validation: np.ndarray
    condition_variables: list[str]
    output_variables: list[str]
    grid_dims: tuple[str, str]


def _time_varying(ds: xr.Dataset) -> list[str]:
    return [str(name) for name, var in ds.data_vars.items() if TIME in var.dims]


def _static(ds: xr.Dataset) -> list[str]:
    return [str(name) for name, var in ds.data_vars.items() if TIME not in var.dims]


def _check_finite(ds: xr.Dataset, names: Sequence[str], *, role: str) -> None:
    """Raise on NaN/inf in numpy-backed variables (dask ones are checked block by block)."""
    for name in names:
        data = ds[name].data
        if isinstance(data, da.Array):
            continue
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise ValueError(
                f"{role} variable {name!r} has {bad} non-finite (NaN/inf) values; fill them or "
                f"drop those times (e.g. {role}.dropna('time')) before training"
            )


def _resolve_invariants(
    hr: xr.Dataset, invariants: xr.Dataset | Sequence[str] | None
) -> xr.Dataset | None:
    static = static_fields(hr, time_dim=TIME)
    if invariants is None:
        return static if static.data_vars else None
    if isinstance(invariants, xr.Dataset):
        moving = _time_varying(invariants)
        if moving:
            raise ValueError(
                f"invariants must be static fields on the HR grid; {moving} vary along {TIME!r}"
            )
        return invariants if invariants.data_vars else None
    names = [str(n) for n in invariants]
    missing = [n for n in names if n not in static.data_vars]
    if missing:
        raise KeyError(
            f"invariants {missing} are not static fields of hr; its static variables and "
            f"coordinates are {sorted(map(str, static.data_vars))}"
        )
    return static[names] if names else None


def _invariant_stats(invariants: xr.Dataset | None) -> Normalizer:
    """Mean and std of each invariant; a constant field (a land-only mask) gets std 1."""
    if invariants is None:
        return Normalizer({})
    stats = {}
    for name, var in invariants.data_vars.items():
        values = np.asarray(var.values, dtype=np.float64)
        mean, std = float(np.mean(values)), float(np.std(values))
        stats[name] = {"mean": mean, "std": std if std > 1e-12 * max(abs(mean), 1.0) else 1.0}
    return Normalizer.from_stats(stats)


def _check_shape(config: TrainConfig, shape: tuple[int, int]) -> tuple[int, int]:
    """The patch shape clipped to the domain, checked against both networks."""
    reg_factor = config.regression.downsampling_factor
    if shape[0] % reg_factor or shape[1] % reg_factor:
        raise ValueError(
            f"the HR grid {shape} is not divisible by {reg_factor}, which the regression network "
            f"(channel_mult={config.regression.channel_mult}) needs; crop or pad the HR data"
        )
    patch = (min(config.patch_shape[0], shape[0]), min(config.patch_shape[1], shape[1]))
    factor = config.diffusion.downsampling_factor
    if patch[0] % factor or patch[1] % factor:
        raise ValueError(
            f"patch_shape {config.patch_shape} clipped to the domain {shape} gives {patch}, not "
            f"divisible by {factor} (diffusion channel_mult={config.diffusion.channel_mult})"
        )
    return patch


def _prepare_data(
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    input_variables: Sequence[VariableSpec],
    output_variables: Sequence[VariableSpec],
    grid: xr.Dataset,
    grid_dims: tuple[str, str],
    invariants: xr.Dataset | None,
    input_normalizer: Normalizer | None,
    output_normalizer: Normalizer | None,
    regrid_method: str,
    config: TrainConfig,
) -> tuple[_Data, Normalizer, Normalizer]:
    lr, hr = align_times(lr, hr, time_dim=TIME)
    _check_finite(hr, [v.name for v in output_variables], role="hr")
    _check_finite(lr, [v.name for v in input_variables], role="lr")
    if invariants is not None:
        _check_finite(invariants, list(map(str, invariants.data_vars)), role="invariants")
    condition = prepare_condition(
        lr,
        input_variables=input_variables,
        grid=grid,
        invariants=invariants,
        normalizer=None,
        grid_dims=grid_dims,
        regrid_method=regrid_method,  # type: ignore[arg-type]
        time_dim=TIME,
    )
    target = prepare_target(hr, output_variables=output_variables, normalizer=None)
    n_times = condition.sizes[TIME]
    if config.validation_fraction > 0 and n_times >= 2:
        train, validation = split_times(n_times, validation_fraction=config.validation_fraction)
    else:
        train, validation = np.arange(n_times), np.arange(0)
    condition_names = [str(n) for n in condition.data_vars]
    if input_normalizer is None:
        inputs = Normalizer.fit(condition.isel({TIME: train}), [v.name for v in input_variables])
        input_normalizer = Normalizer({**inputs.stats, **_invariant_stats(invariants).stats})
    if output_normalizer is None:
        names = [v.name for v in output_variables]
        transforms: dict[Hashable, Transform] = dict(config.output_transforms)
        unknown = sorted(str(name) for name in set(transforms) - set(names))
        if unknown:
            raise ValueError(
                f"config.output_transforms names {unknown}, which are not output variables; "
                f"expected names among {names}"
            )
        output_normalizer = Normalizer.fit(
            target.isel({TIME: train}), names, transforms=transforms or None
        )
    data = _Data(
        condition=input_normalizer.normalize(condition, condition_names),
        target=output_normalizer.normalize(target),
        train=np.asarray(train),
        validation=np.asarray(validation),
        condition_variables=condition_names,
        output_variables=[v.name for v in output_variables],
        grid_dims=grid_dims,
    )
    return data, input_normalizer, output_normalizer


def _stream(
    data: _Data,
    config: TrainConfig,
    *,
    indices: np.ndarray,
    patch_shape: tuple[int, int] | None,
    patches_per_sample: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> PairedBatchStream:
    # Data parallel: each rank reads every world_size-th block of global-batch size and
    # takes batch_size / world_size of its times per step.
    return PairedBatchStream(
        data.condition,
        data.target,
        condition_variables=data.condition_variables,
        target_variables=data.output_variables,
        batch_size=local_batch_size(config.batch_size, world_size),
        block_size=config.batch_size,
        rank=rank,
        world_size=world_size,
        patch_shape=patch_shape,
        patches_per_sample=patches_per_sample,
        time_indices=indices,
        shuffle=shuffle,
        seed=seed,
        dims=(TIME, *data.grid_dims),
    )


# --- networks ---------------------------------------------------------------------------


def build_regression(
    config: TrainConfig, *, shape: tuple[int, int], in_channels: int, out_channels: int
) -> UNet:
    """The regression UNet of ``config.regression`` for ``in_channels`` condition channels.

    Returns
    -------
    xcorrdiff.nn.UNet
        ``img_in_channels = in_channels + N_grid_channels`` (PhysicsNeMo's convention).
    """
    kwargs = config.regression.to_kwargs()
    grid = kwargs["N_grid_channels"] if kwargs["gridtype"] != "none" else 0
    return UNet(
        img_resolution=list(shape),
        img_in_channels=in_channels + grid,
        img_out_channels=out_channels,
        model_type="SongUNetPosEmbd",
        **kwargs,
    )


def build_diffusion(
    config: TrainConfig, *, shape: tuple[int, int], in_channels: int, out_channels: int
) -> EDMPrecondSuperResolution:
    """The residual denoiser of ``config.diffusion``.

    Its condition is ``[μ (if hr_mean_conditioning), condition patch, whole-domain condition
    resized to the patch]``, as PhysicsNeMo's patch-based ``ResidualLoss`` builds it.
    """
    kwargs = config.diffusion.to_kwargs()
    grid = kwargs["N_grid_channels"] if kwargs["gridtype"] != "none" else 0
    cond = (out_channels if config.hr_mean_conditioning else 0) + 2 * in_channels
    return EDMPrecondSuperResolution(
        img_resolution=list(shape),
        img_in_channels=cond + grid,
        img_out_channels=out_channels,
        model_type="SongUNetPosEmbd",
        sigma_data=config.sigma_data,
        **kwargs,
    )


def _seeded_init(seed: int, build: Any) -> Any:
    """Build a network under a fixed torch seed, leaving the global stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _to_device(
    batch: Mapping[str, torch.Tensor], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        if channels_last and value.ndim == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


# --- stages ------------------------------------------------------------------------------


def _fingerprint(stage: str, config: TrainConfig, model_parts: Mapping[str, Any]) -> dict[str, Any]:
    resolved = config.to_dict()
    return {
        "stage": stage,
        "train": {k: resolved[k] for k in _FINGERPRINT_FIELDS},
        **model_parts,
    }


def _provenance(config: TrainConfig, data: _Data, result: StageResult) -> dict[str, Any]:
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
    for name, ds in (("lr", lr), ("hr", hr)):
        if not isinstance(ds, xr.Dataset):
            raise TypeError(
                f"{name} must be an xarray.Dataset, got {type(ds).__name__}; wrap a DataArray "
                "with da.to_dataset(name=...)"
            )
    inv = _resolve_invariants(hr, invariants)
    in_names = list(input_variables) if input_variables is not None else _time_varying(lr)
    out_names = list(output_variables) if output_variables is not None else _time_varying(hr)
    if not in_names or not out_names:
        raise ValueError(
            f"no {'input' if not in_names else 'output'} variable: lr has time-varying "
            f"{_time_varying(lr)}, hr has {_time_varying(hr)}; pass input_variables/"
            "output_variables"
        )
    inputs = describe_variables(lr, in_names, role="lr")
    outputs = describe_variables(hr, out_names, role="hr")
    grid_dims = spatial_dims(hr[[v.name for v in outputs]], time_dim=TIME)
    grid = grid_of(hr[[v.name for v in outputs]], time_dim=TIME)
    input_grid = _input_grid(lr, [v.name for v in inputs])
    shape = (int(hr.sizes[grid_dims[0]]), int(hr.sizes[grid_dims[1]]))
    _check_shape(config, shape)
    if inv is not None:
        inv = inv.transpose(*grid_dims)
        inv = inv.drop_vars([c for c in inv.coords if c not in grid.coords]).assign_coords(
            grid.coords
        )
        for inv_name in inv.data_vars:
            inv[inv_name].attrs.setdefault("units", "1")

    data, input_norm, output_norm = _prepare_data(
        lr,
        hr,
        input_variables=inputs,
        output_variables=outputs,
        grid=grid,
        grid_dims=grid_dims,
        invariants=inv,
        input_normalizer=None,
        output_normalizer=None,
        regrid_method=regrid_method,
        config=config,
    )
    parallel = init_distributed(config.device)
    device = parallel.device
    n_in, n_out = len(data.condition_variables), len(outputs)
    net = _seeded_init(
        config.seed,
        lambda: build_regression(config, shape=shape, in_channels=n_in, out_channels=n_out),
    ).to(device)

    def loss_fn(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        batch = _to_device(batch, device, config.channels_last)
        return regression_loss(model, batch["target"], batch["condition"]).mean()

    def validate(ema: torch.nn.Module) -> dict[str, float]:
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in _stream(
                data,
                config,
                indices=data.validation,
                patch_shape=None,
                patches_per_sample=1,
                shuffle=False,
                seed=config.seed,
            ):
                b = _to_device(batch, device, config.channels_last)
                loss = regression_loss(ema, b["target"], b["condition"])
                total += float(loss.double().sum())
                count += loss.numel()
        return {"val_loss": total / count}

    fingerprint = _fingerprint(
        "regression",
        config,
        {
            "inputs": [v.to_dict() for v in inputs],
            "outputs": [v.to_dict() for v in outputs],
            "condition_variables": data.condition_variables,
            "grid_shape": list(shape),
            "network": net.config,
            "normalization": {"input": input_norm.to_dict(), "output": output_norm.to_dict()},
        },
    )
    stream = _stream(
        data,
        config,
        indices=data.train,
        patch_shape=None,
        patches_per_sample=1,
        shuffle=True,
        seed=config.seed,
        rank=parallel.rank,
        world_size=parallel.world_size,
    )
    result = run_stage(
        stage="regression",
        net=net,
        loss_fn=loss_fn,
        batches=StreamBatches(stream, num_workers=config.num_workers),
        config=config,
        duration=config.regression_duration,
        fingerprint=fingerprint,
        device=device,
        validate=validate if len(data.validation) else None,
        progress=progress,
    )
    return CorrDiffModel(
        regression=result.ema,
        diffusion=None,
        input_variables=inputs,
        output_variables=outputs,
        grid=grid,
        grid_dims=grid_dims,
        input_grid=input_grid,
        invariants=inv,
        input_normalizer=input_norm,
        output_normalizer=output_norm,
        sampler=SamplerConfig(),
        conditioning={"hr_mean": config.hr_mean_conditioning, "global_lowres": True},
        regrid_method=regrid_method,
        provenance={
            "library": "xcorrdiff",
            "config": config.to_dict(),
            "regression": _provenance(config, data, result),
        },
    )


def _input_grid(lr: xr.Dataset, names: Sequence[str]) -> xr.Dataset | None:
    try:
        return grid_of(lr[list(names)], time_dim=TIME)
    except ValueError:
        return None


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
    shape = model.shape
    patch = _check_shape(config, shape)
    data, _, _ = _prepare_data(
        lr,
        hr,
        input_variables=model.input_variables,
        output_variables=model.output_variables,
        grid=model.grid,
        grid_dims=model.grid_dims,
        invariants=model.invariants,
        input_normalizer=model.input_normalizer,
        output_normalizer=model.output_normalizer,
        regrid_method=model.regrid_method,
        config=config,
    )
    parallel = init_distributed(config.device)
    device = parallel.device
    regression = model.regression.to(device).eval().requires_grad_(False)
    n_in, n_out = len(data.condition_variables), len(model.output_variables)
    net = _seeded_init(
        config.seed + 1,
        lambda: build_diffusion(config, shape=shape, in_channels=n_in, out_channels=n_out),
    ).to(device)
    noise = torch.Generator(device=device).manual_seed(config.seed + 2)

    def mean_of(condition: torch.Tensor, n_out: int = n_out) -> torch.Tensor:
        """μ on the whole domain, once per sample (reused by all of its patches)."""
        with torch.no_grad():
            zeros = condition.new_zeros((condition.shape[0], n_out, *condition.shape[2:]))
            return regression(zeros, condition).to(condition.dtype)

    scale = _residual_scale(data, config, mean_of, device) if config.residual_scaling else None
    scale_t = (
        torch.tensor([scale[v] for v in data.output_variables], device=device)
        if scale is not None
        else None
    )

    def loss_fn(denoiser: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b = _to_device(batch, device, config.channels_last)
        mean = mean_of(b["condition"])
        # Each sample's own patch corners: batch_size * patches_per_sample distinct patches.
        return residual_loss(
            denoiser,
            b["target"],
            b["condition"],
            mean,
            offsets=b["offsets"],
            patch_shape=patch,
            hr_mean_conditioning=config.hr_mean_conditioning,
            residual_scale=scale_t,
            generator=noise,
            P_mean=config.P_mean,
            P_std=config.P_std,
            sigma_data=config.sigma_data,
        ).mean()

    def validate(ema: torch.nn.Module) -> dict[str, float]:
        """Loss of the EMA denoiser and of a zero residual, same noise levels and noise."""
        g = torch.Generator(device=device).manual_seed(config.seed + 3)
        totals = {"val_loss": 0.0, "val_loss_zero_residual": 0.0}
        count = 0

        def zero(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return torch.zeros_like(x)

        with torch.no_grad():
            for batch in _stream(
                data,
                config,
                indices=data.validation,
                patch_shape=patch,
                patches_per_sample=config.patches_per_sample,
                shuffle=False,
                seed=config.seed + 4,
            ):
                b = _to_device(batch, device, config.channels_last)
                mean = mean_of(b["condition"])
                offsets = b["offsets"]
                n = offsets.shape[0] * offsets.shape[1]
                sigma = (
                    torch.randn((n,), generator=g, device=device) * config.P_std + config.P_mean
                ).exp()
                eps = torch.randn((n, n_out, *patch), generator=g, device=device)
                for key, denoiser in (("val_loss", ema), ("val_loss_zero_residual", zero)):
                    loss = residual_loss(
                        denoiser,
                        b["target"],
                        b["condition"],
                        mean,
                        offsets=offsets,
                        patch_shape=patch,
                        hr_mean_conditioning=config.hr_mean_conditioning,
                        residual_scale=scale_t,
                        sigma=sigma,
                        noise=eps,
                        sigma_data=config.sigma_data,
                    )
                    totals[key] += float(loss.double().sum())
                count += n * n_out * patch[0] * patch[1]
        return {k: v / count for k, v in totals.items()}

    fingerprint = _fingerprint(
        "diffusion",
        config,
        {
            "inputs": [v.to_dict() for v in model.input_variables],
            "outputs": [v.to_dict() for v in model.output_variables],
            "condition_variables": data.condition_variables,
            "grid_shape": list(shape),
            "network": net.config,
            "regression_digest": state_digest(regression),
            "normalization": {
                "input": model.input_normalizer.to_dict(),
                "output": model.output_normalizer.to_dict(),
            },
        },
    )
    stream = _stream(
        data,
        config,
        indices=data.train,
        patch_shape=patch,
        patches_per_sample=config.patches_per_sample,
        shuffle=True,
        seed=config.seed + 5,
        rank=parallel.rank,
        world_size=parallel.world_size,
    )
    result = run_stage(
        stage="diffusion",
        net=net,
        loss_fn=loss_fn,
        batches=StreamBatches(stream, num_workers=config.num_workers),
        config=config,
        duration=config.diffusion_duration,
        fingerprint=fingerprint,
        device=device,
        generators={"noise": noise},
        validate=validate if len(data.validation) else None,
        patches_per_sample=config.patches_per_sample,
        progress=progress,
        seed=config.seed + 6,
    )
    provenance = dict(model.provenance)
    provenance["diffusion"] = _provenance(config, data, result)
    provenance.setdefault("config", config.to_dict())
    return CorrDiffModel(
        regression=model.regression,
        diffusion=result.ema,
        input_variables=model.input_variables,
        output_variables=model.output_variables,
        grid=model.grid,
        grid_dims=model.grid_dims,
        input_grid=model.input_grid,
        invariants=model.invariants,
        input_normalizer=model.input_normalizer,
        output_normalizer=model.output_normalizer,
        sampler=model.sampler,
        conditioning={"hr_mean": config.hr_mean_conditioning, "global_lowres": True},
        regrid_method=model.regrid_method,
        residual_scale=scale,
        provenance=provenance,
    )


def _residual_scale(
    data: _Data,
    config: TrainConfig,
    mean_of: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    max_times: int = 64,
) -> dict[str, float]:
    """Per-output ``rms(HR − μ) / sigma_data`` over up to ``max_times`` training times.

    The times are spread evenly over the training split (the same on every rank), μ is the
    frozen regression's, and the root mean square is taken over times and grid points, in
    float64.
    """
    train = data.train
    positions = np.linspace(0, len(train) - 1, min(max_times, len(train))).round().astype(int)
    pick = train[np.unique(positions)]
    n_out = len(data.output_variables)
    sums = torch.zeros(n_out, dtype=torch.float64)
    count = 0
    for batch in PairedBatchStream(
        data.condition,
        data.target,
        condition_variables=data.condition_variables,
        target_variables=data.output_variables,
        batch_size=1,
        time_indices=pick,
        shuffle=False,
        dims=(TIME, *data.grid_dims),
    ):
        b = _to_device(batch, device, False)
        residual = (b["target"] - mean_of(b["condition"])).double()
        sums += (residual**2).sum(dim=(0, 2, 3)).cpu()
        count += residual.shape[0] * residual.shape[2] * residual.shape[3]
    rms = (sums / count).sqrt()
    # A constant output (zero residual everywhere) keeps scale 1 rather than dividing by 0.
    scale = torch.where(rms > 0, rms / config.sigma_data, torch.ones_like(rms))
    return {name: float(value) for name, value in zip(data.output_variables, scale, strict=True)}


def fit(
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
    """Train both CorrDiff stages: :func:`fit_regression`, then :func:`fit_diffusion`.

    Parameters are those of :func:`fit_regression`.

    Returns
    -------
    CorrDiffModel
        Regression and diffusion networks with everything needed to downscale.

    Examples
    --------
    >>> import xcorrdiff  # doctest: +SKIP
    >>> lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=64, hr_shape=(64, 64))  # doctest: +SKIP
    >>> model = xcorrdiff.train.fit(lr, hr, config=xcorrdiff.TrainConfig(preset="tiny"))  # doctest: +SKIP
    """
    model = fit_regression(
        lr,
        hr,
        invariants=invariants,
        config=config,
        input_variables=input_variables,
        output_variables=output_variables,
        regrid_method=regrid_method,
        progress=progress,
    )
    return fit_diffusion(model, lr, hr, config=config, progress=progress)

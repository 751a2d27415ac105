"""Training data: paired (LR, HR) datasets prepared, checked, normalized and streamed.

Both stages run the prepare step of inference (:mod:`xcorrdiff.data.prepare`): select the
input variables, convert units, regrid onto the HR grid, add invariants, normalize. The
normalization statistics are fitted on the training split only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff.data.batching import PairedBatchStream
from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.lead_time import flatten_leads
from xcorrdiff.data.normalize import Normalizer, Transform
from xcorrdiff.data.prepare import (
    VariableSpec,
    align_times,
    grid_of,
    prepare_condition,
    prepare_target,
    static_fields,
)
from xcorrdiff.data.split import split_times
from xcorrdiff.data.time_features import feature_stats
from xcorrdiff.data.units import value_in_units
from xcorrdiff.train.config import SHORT_RECORD, TrainConfig
from xcorrdiff.train.distributed import local_batch_size

__all__ = [
    "TrainingData",
    "check_shape",
    "crop_patch",
    "input_grid",
    "invariant_stats",
    "observed_mask",
    "prepare_data",
    "residual_scale",
    "resolve_bounds",
    "resolve_invariants",
    "stream",
    "time_varying",
    "to_device",
]

TIME = "time"


@dataclass
class TrainingData:
    """Prepared, normalized training data and its split."""

    condition: xr.Dataset
    target: xr.Dataset
    train: np.ndarray
    validation: np.ndarray
    condition_variables: list[str]
    output_variables: list[str]
    grid_dims: tuple[str, str]
    observed: xr.Dataset | None = None
    missing_target: bool = False
    #: The lead-time label of each sample (forecast data), else None.
    lead_labels: np.ndarray | None = None


def time_varying(ds: xr.Dataset) -> list[str]:
    return [str(name) for name, var in ds.data_vars.items() if TIME in var.dims]


def static_names(ds: xr.Dataset) -> list[str]:
    return [str(name) for name, var in ds.data_vars.items() if TIME not in var.dims]


def check_finite_data(
    ds: xr.Dataset, names: Sequence[str], *, role: str, allow_nan: bool = False
) -> None:
    """Raise on NaN/inf (inf only with ``allow_nan``) in numpy-backed variables; dask ones
    are checked block by block."""
    for name in names:
        data = ds[name].data
        if isinstance(data, da.Array):
            continue
        bad = (
            int(np.count_nonzero(np.isinf(data)))
            if allow_nan
            else int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        )
        if bad:
            what = "infinite" if allow_nan else "non-finite (NaN/inf)"
            raise ValueError(
                f"{role} variable {name!r} has {bad} {what} values; fill them or "
                f"drop those times (e.g. {role}.dropna('time')) before training"
            )


def observed_mask(target: xr.Dataset, train: np.ndarray) -> tuple[xr.Dataset | None, bool]:
    """``(where each output had data at a training time, whether any value is missing)``.

    The mask is None when every point of every output is observed at some training time.

    Raises
    ------
    ValueError
        An output has no data at any training time.
    """
    present = target.notnull()
    observed, complete = dask.compute(present.isel({TIME: train}).any(TIME), present.all())
    missing = not all(bool(complete[name]) for name in complete.data_vars)
    empty = [str(n) for n, v in observed.data_vars.items() if not bool(v.any())]
    if empty:
        raise ValueError(
            f"hr variables {empty} have no data (all NaN) at every training time; drop them "
            "from output_variables or pass times where they are observed"
        )
    if all(bool(v.all()) for v in observed.data_vars.values()):
        return None, missing
    return observed.reset_coords(drop=True), missing


def resolve_invariants(
    hr: xr.Dataset, invariants: xr.Dataset | Sequence[str] | None
) -> xr.Dataset | None:
    static = static_fields(hr, time_dim=TIME)
    if invariants is None:
        return static if static.data_vars else None
    if isinstance(invariants, xr.Dataset):
        moving = time_varying(invariants)
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


def invariant_stats(invariants: xr.Dataset | None) -> Normalizer:
    """Mean and std of each invariant; a constant field (a land-only mask) gets std 1."""
    if invariants is None:
        return Normalizer({})
    stats = {}
    for name, var in invariants.data_vars.items():
        values = np.asarray(var.values, dtype=np.float64)
        mean, std = float(np.mean(values)), float(np.std(values))
        stats[name] = {"mean": mean, "std": std if std > 1e-12 * max(abs(mean), 1.0) else 1.0}
    return Normalizer.from_stats(stats)


def resolve_bounds(
    bounds: Sequence[tuple[str, tuple[Any, Any]]], outputs: Sequence[VariableSpec]
) -> dict[str, tuple[float, float]]:
    """``config.output_bounds`` as numbers in each output variable's units.

    Raises
    ------
    ValueError
        A bound names no output variable, or its units do not convert.
    """
    units = {v.name: v.units for v in outputs}
    unknown = sorted(name for name, _ in bounds if name not in units)
    if unknown:
        raise ValueError(
            f"config.output_bounds names {unknown}, which are not output variables; expected "
            f"names among {sorted(units)}"
        )
    return {
        name: (
            value_in_units(low, units[name], name=name, side="low"),
            value_in_units(high, units[name], name=name, side="high"),
        )
        for name, (low, high) in bounds
    }


def check_shape(config: TrainConfig, shape: tuple[int, int]) -> tuple[int, int]:
    """The patch shape clipped to the domain, checked against both networks."""
    reg_factor = config.model.regression.downsampling_factor
    if shape[0] % reg_factor or shape[1] % reg_factor:
        raise ValueError(
            f"the HR grid {shape} is not divisible by {reg_factor}, which the regression network "
            f"(channel_mult={config.model.regression.channel_mult}) needs; crop or pad the HR data"
        )
    patch = (min(config.data.patch_shape[0], shape[0]), min(config.data.patch_shape[1], shape[1]))
    factor = config.model.diffusion.downsampling_factor
    if patch[0] % factor or patch[1] % factor:
        raise ValueError(
            f"patch_shape {config.data.patch_shape} clipped to the domain {shape} gives {patch}, not "
            f"divisible by {factor} (diffusion channel_mult={config.model.diffusion.channel_mult})"
        )
    return patch


def crop_patch(
    config: TrainConfig, patch: tuple[int, int], shape: tuple[int, int], n_train: int
) -> tuple[int, int]:
    """The diffusion's training patch: ``patch``, its sides capped at a quarter of the
    domain's (rounded down to the diffusion network's downsampling factor, and at least
    twice that factor, so the network's coarsest level keeps 2×2 pixels) when
    ``config.model.crops(n_train)``."""
    if not config.model.crops(n_train):
        return patch
    factor = config.model.diffusion.downsampling_factor
    cap = [max(2 * factor, side // 4 // factor * factor) for side in shape]
    return (min(patch[0], cap[0]), min(patch[1], cap[1]))


def prepare_data(
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
    time_features: Sequence[str] = (),
    lead_times: Sequence[np.timedelta64] = (),
) -> tuple[TrainingData, Normalizer, Normalizer]:
    lr, hr = standardize(lr, role="lr"), standardize(hr, role="hr")
    labels = None
    if lead_times:  # forecasts: one sample per (time, lead_time), at its valid time
        (lr, labels), (hr, _) = flatten_leads(lr, lead_times), flatten_leads(hr, lead_times)
    lr, hr = align_times(lr, hr, time_dim=TIME)
    check_finite_data(hr, [v.name for v in output_variables], role="hr", allow_nan=True)
    check_finite_data(lr, [v.name for v in input_variables], role="lr")
    if invariants is not None:
        check_finite_data(invariants, list(map(str, invariants.data_vars)), role="invariants")
    condition = prepare_condition(
        lr,
        input_variables=input_variables,
        grid=grid,
        invariants=invariants,
        normalizer=None,
        grid_dims=grid_dims,
        regrid_method=regrid_method,  # type: ignore[arg-type]
        time_dim=TIME,
        time_features=time_features,
    )
    target = prepare_target(hr, output_variables=output_variables, normalizer=None)
    n_times = condition.sizes[TIME]
    if config.data.validation_fraction > 0 and n_times >= 2:
        train, validation = split_times(
            n_times, validation_fraction=config.data.validation_fraction
        )
    else:
        train, validation = np.arange(n_times), np.arange(0)
    if len(validation) and n_times < SHORT_RECORD:
        warnings.warn(
            f"a short record: validation_fraction={config.data.validation_fraction} holds out "
            f"{len(validation)} of the {n_times} times ({len(validation) / n_times:.0%}), so "
            f"training sees {len(train)}. Set TrainConfig(validation_fraction=0) to train on "
            "every time (no validation then, and no times for fit(calibrate=True)), or pass "
            "more times",
            UserWarning,
            stacklevel=4,
        )
    condition_names = [str(n) for n in condition.data_vars]
    observed, missing = observed_mask(target, train)
    if input_normalizer is None:
        inputs = Normalizer.fit(condition.isel({TIME: train}), [v.name for v in input_variables])
        features = Normalizer.from_stats(feature_stats(time_features)).stats
        input_normalizer = Normalizer(
            {**inputs.stats, **invariant_stats(invariants).stats, **features}
        )
    if output_normalizer is None:
        names = [v.name for v in output_variables]
        transforms: dict[Hashable, Transform] = dict(config.data.output_transforms)
        unknown = sorted(str(name) for name in set(transforms) - set(names))
        if unknown:
            raise ValueError(
                f"config.output_transforms names {unknown}, which are not output variables; "
                f"expected names among {names}"
            )
        output_normalizer = Normalizer.fit(
            target.isel({TIME: train}), names, transforms=transforms or None
        )
    data = TrainingData(
        condition=input_normalizer.normalize(condition, condition_names),
        target=output_normalizer.normalize(target),
        train=np.asarray(train),
        validation=np.asarray(validation),
        condition_variables=condition_names,
        output_variables=[v.name for v in output_variables],
        grid_dims=grid_dims,
        observed=observed,
        missing_target=missing,
        lead_labels=labels,
    )
    return data, input_normalizer, output_normalizer


def stream(
    data: TrainingData,
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
        batch_size=local_batch_size(config.data.batch_size, world_size),
        block_size=config.data.batch_size,
        rank=rank,
        world_size=world_size,
        patch_shape=patch_shape,
        patches_per_sample=patches_per_sample,
        time_indices=indices,
        shuffle=shuffle,
        seed=seed,
        dims=(TIME, *data.grid_dims),
        missing_target=data.missing_target,
    )


def input_grid(lr: xr.Dataset, names: Sequence[str]) -> xr.Dataset | None:
    try:
        return grid_of(lr[list(names)], time_dim=TIME)
    except ValueError:
        return None


def spread_times(indices: np.ndarray, max_times: int = 64) -> np.ndarray:
    """Up to ``max_times`` of ``indices``, spread evenly (the same on every rank)."""
    positions = np.linspace(0, len(indices) - 1, min(max_times, len(indices)))
    return np.asarray(indices)[np.unique(positions.round().astype(int))]


def residual_rms(
    data: TrainingData,
    times: np.ndarray,
    mean_of: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor],
    device: torch.device,
) -> torch.Tensor:
    """Per-output root mean square of ``target − μ`` (normalized units) over ``times``, in
    float64, missing target values left out; ``mean_of(condition, lead, time_index)``."""
    n_out = len(data.output_variables)
    sums = torch.zeros(n_out, dtype=torch.float64)
    counts = torch.zeros(n_out, dtype=torch.float64)
    for batch in PairedBatchStream(
        data.condition,
        data.target,
        condition_variables=data.condition_variables,
        target_variables=data.output_variables,
        batch_size=1,
        time_indices=times,
        shuffle=False,
        dims=(TIME, *data.grid_dims),
        missing_target=data.missing_target,
    ):
        b = to_device(batch, device, False)
        mu = mean_of(b["condition"], lead_of(data, b), b["time_index"])
        residual = (b["target"] - mu).double()
        mask = b["mask"].double() if "mask" in b else torch.ones_like(residual)
        sums += (residual**2 * mask).sum(dim=(0, 2, 3)).cpu()
        counts += mask.sum(dim=(0, 2, 3)).cpu()
    return (sums / counts.clamp_min(1)).sqrt()


def residual_scale(
    config: TrainConfig, rms: torch.Tensor, names: Sequence[str]
) -> dict[str, float]:
    """Per-output ``rms(HR − μ) / sigma_data`` from the residuals' ``rms`` (:func:`residual_rms`
    over up to 64 training times, with the μ the diffusion stage learns from: the frozen
    regression's, or out of fold)."""
    # A constant output (zero residual everywhere) keeps scale 1 rather than dividing by 0.
    scale = torch.where(rms > 0, rms / config.model.sigma_data, torch.ones_like(rms))
    return {name: float(value) for name, value in zip(names, scale, strict=True)}


def lead_of(data: TrainingData, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The lead-time labels of a batch's samples (None for data without lead times)."""
    if data.lead_labels is None:
        return None
    index = batch["time_index"].cpu().numpy()
    return torch.from_numpy(data.lead_labels[index]).to(batch["condition"].device)


def to_device(
    batch: Mapping[str, torch.Tensor], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        if channels_last and value.ndim == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def input_skip_spec(
    data: TrainingData,
    input_variables: Sequence[VariableSpec],
    output_variables: Sequence[VariableSpec],
    normalizers: tuple[Normalizer, Normalizer],
    *,
    required: bool,
) -> dict[str, dict[str, Any]]:
    """``{output: {"input": name, "spread": γ}}`` of the regression's input skip: each
    output that is also an input with the same units and no transform, and ``γ`` the root
    mean square over the training times of its normalized target's departure from its
    input (:mod:`xcorrdiff.diffusion.input_skip`), in float64; missing target values are
    left out. ``required`` (``input_skip=True``): an error when no output qualifies."""
    inputs = {v.name: v for v in input_variables}
    spec, refused = {}, []
    for out in output_variables:
        source = inputs.get(out.name)
        i, o = (norm.stats.get(out.name) for norm in normalizers)
        if source is None:
            continue
        if (
            i is None
            or o is None
            or source.units != out.units
            or i.transform != "none"
            or (o.transform != "none")
        ):
            refused.append(f"{out.name!r} ({source.units!r} in, {out.units!r} out, transforms)")
            continue
        train = {TIME: data.train}
        base = data.condition[out.name].isel(train).astype("float64") * (i.std / o.std)
        departure = data.target[out.name].isel(train).astype("float64") - base
        gamma = float(np.sqrt(((departure - (i.mean - o.mean) / o.std) ** 2).mean()))
        spec[out.name] = {"input": out.name, "spread": gamma if gamma > 0 else 1.0}
    if not spec and required:
        raise ValueError(
            "input_skip=True needs an output variable that is also an input, with the same "
            f"units and no transform; outputs {[v.name for v in output_variables]}, inputs "
            f"{list(inputs)}{', refused: ' + ', '.join(refused) if refused else ''}. Train "
            "with input_skip=False, or pass the output variable as an input"
        )
    return spec

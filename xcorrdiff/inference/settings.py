"""The arguments of :func:`~xcorrdiff.inference.api.downscale`, checked, as block settings.

Every argument is checked here, before anything is computed or written: counts, sampler
(the model's own settings unless overridden, the override recorded), patches, device,
precision, and the input data (variables, units, NaN, plausibility).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff._checks import check_int, precision_name, resolve_device
from xcorrdiff.data.plausibility import ExpectedRange, expected_ranges
from xcorrdiff.data.units import convert_units
from xcorrdiff.inference.blocks import (
    Settings,
    caller_threads,
)
from xcorrdiff.inference.handles import (
    ModelRef,
    model_on,
)
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.options import OPTIONS

__all__ = [
    "DEFAULT_HEUN_CHURN",
    "DEFAULT_STEPS",
    "check_input",
    "downscale_settings",
    "input_ranges",
    "inputs_in_model_units",
    "model_of",
    "network_config",
    "resolve_device_option",
    "resolve_dtype",
]

SamplerName = Literal["euler", "heun"]
TIME = "time"
MEMBER = "member"

#: Default number of steps per sampler (see docs/downscaling.md for the measurements).
DEFAULT_STEPS: dict[str, int] = {"euler": 12, "heun": 18}
#: Default churn of the Heun sampler, per step: ``s_churn = DEFAULT_HEUN_CHURN * num_steps``
#: (EDM's ``gamma`` = 0.1 at every step).
DEFAULT_HEUN_CHURN = 0.1

# --- argument checks ----------------------------------------------------------------------


def resolve_device_option(device: str | torch.device | None) -> torch.device:
    """The argument, else the option ``device``; ``None`` is CUDA when available, else CPU."""
    return resolve_device(device if device is not None else OPTIONS["device"])


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> str:
    if dtype is None:
        return "float32"
    canonical = precision_name(dtype, argument="dtype")
    if canonical != "float32" and device.type != "cuda":
        raise ValueError(
            f"dtype={dtype!r} (reduced-precision inference) needs a CUDA device, got "
            f"device={str(device)!r}; use dtype=None (float32) on the CPU"
        )
    return canonical


def diffusion_factor(model: CorrDiffModel) -> int:
    """The diffusion network's downsampling factor: sample sides must be multiples of it."""
    assert model.diffusion is not None
    return int(getattr(getattr(model.diffusion, "model", None), "input_shape_mult", 1))


def _resolve_patches(
    model: CorrDiffModel, patch_shape: Sequence[int] | None, overlap: int | None
) -> tuple[tuple[int, int] | None, int]:
    if patch_shape is None:
        if overlap not in (None, 0):
            raise ValueError(
                f"overlap={overlap!r} needs patch_shape; without it the whole domain "
                f"{model.shape} is sampled at once"
            )
        return None, 0
    try:
        patch = tuple(int(v) for v in patch_shape)
    except (TypeError, ValueError):
        raise ValueError(f"patch_shape={patch_shape!r} is invalid; expected (y, x)") from None
    if len(patch) != 2 or any(v < 1 for v in patch):
        raise ValueError(f"patch_shape={patch_shape!r} is invalid; expected two positive sides")
    shape = model.shape
    if patch[0] > shape[0] or patch[1] > shape[1]:
        raise ValueError(
            f"patch_shape={patch} is larger than the model's HR grid {shape}; use a smaller "
            "patch or patch_shape=None for the whole domain"
        )
    factor = diffusion_factor(model)
    if patch[0] % factor or patch[1] % factor:
        raise ValueError(
            f"patch_shape={patch} is invalid for this diffusion network; expected sides "
            f"divisible by {factor} (its downsampling factor)"
        )
    overlap = min(patch) // 4 if overlap is None else check_int("overlap", overlap, minimum=0)
    if overlap >= min(patch):
        raise ValueError(
            f"overlap={overlap} must be smaller than the patch sides {patch}; reduce it"
        )
    return (patch[0], patch[1]), overlap


def model_of(ref: ModelRef) -> CorrDiffModel:
    """The model a reference points at, on the CPU (loaded once per process and cached)."""
    return model_on(ref, torch.device("cpu")) if ref.model is None else ref.model


def network_config(net: torch.nn.Module | None) -> dict[str, Any]:
    """The constructor arguments of a network (its inner SongUNet's, as in config.json)."""
    return dict(getattr(net, "config", None) or {})


def input_ranges(
    model: CorrDiffModel, check_plausibility: bool
) -> tuple[ExpectedRange, ...] | None:
    if not isinstance(check_plausibility, bool):
        raise ValueError(
            f"check_plausibility={check_plausibility!r} is invalid; expected True or False"
        )
    if not check_plausibility:
        return None
    return expected_ranges(model.input_variables, model.input_normalizer.stats)


def inputs_in_model_units(lr: xr.Dataset, model: CorrDiffModel) -> xr.Dataset:
    """The model's input variables of ``lr`` in the model's units (lazy for dask)."""
    return convert_units(
        lr[list(model.input_names)], {v.name: v.units for v in model.input_variables if v.units}
    )


def check_input(
    lr: xr.Dataset, model: CorrDiffModel, ranges: tuple[ExpectedRange, ...] | None
) -> None:
    if not isinstance(lr, xr.Dataset):
        raise TypeError(
            f"lr must be an xarray.Dataset, got {type(lr).__name__}; wrap a DataArray with "
            "da.to_dataset(name=...)"
        )
    missing = [name for name in model.input_names if name not in lr.data_vars]
    if missing:
        raise KeyError(
            f"lr lacks the model's input variables {missing}; the model needs "
            f"{list(model.input_names)} and lr has {sorted(map(str, lr.data_vars))}. Rename "
            "or add them (units are converted)"
        )
    if any(isinstance(lr[name].data, da.Array) for name in model.input_names):
        return  # checked block by block, after regridding
    inputs = inputs_in_model_units(lr, model)
    for name in model.input_names:
        data = np.asarray(inputs[name].values)
        finite = np.isfinite(data)
        bad = int(data.size - np.count_nonzero(finite))
        if bad:
            raise ValueError(
                f"lr variable {name!r} has {bad} NaN/inf values (of {data.size}); fill them "
                f"(e.g. lr[{name!r}].interpolate_na(...)) or drop those times before "
                "downscaling"
            )
    for expected in ranges or ():
        values = np.asarray(inputs[expected.name].values)
        if values.size:
            expected.check(float(values.min()), float(values.max()))


def _sampler_settings(
    model: CorrDiffModel, sampler: str | None, num_steps: int | None, s_churn: float | None
) -> tuple[str, str, int, float]:
    """``(sampler, where its settings came from, steps, churn)``: the model's by default."""
    stored = model.sampler
    if sampler is not None and sampler not in DEFAULT_STEPS:
        raise ValueError(
            f"sampler={sampler!r} is invalid; expected None (the model's) or one of "
            f"{list(DEFAULT_STEPS)}"
        )
    name = stored.sampler if sampler is None else sampler
    source = "model" if sampler is None else f"argument (the model's: {stored.sampler})"
    if num_steps is None:
        num_steps = stored.num_steps if name == stored.sampler else DEFAULT_STEPS[name]
    num_steps = check_int("num_steps", num_steps, minimum=1)
    if s_churn is None:
        s_churn = DEFAULT_HEUN_CHURN * num_steps if name == "heun" else 0.0
    if not isinstance(s_churn, (int, float)) or not 0 <= s_churn < math.inf:
        raise ValueError(f"s_churn={s_churn!r} is invalid; expected a finite number >= 0")
    return name, source, num_steps, float(s_churn)


def downscale_settings(
    model: CorrDiffModel,
    *,
    n_ensemble: int,
    seed: int,
    sampler: str | None,
    num_steps: int | None,
    s_churn: float | None,
    patch_shape: Sequence[int] | None,
    overlap: int | None,
    member_batch_size: int | None,
    device: Any,
    dtype: Any,
    check_plausibility: bool,
) -> Settings:
    """Every argument of :func:`downscale` checked, as the blocks' settings."""
    n_ensemble = check_int("n_ensemble", n_ensemble, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    name, source, num_steps, s_churn = _sampler_settings(model, sampler, num_steps, s_churn)
    patch, overlap = _resolve_patches(model, patch_shape, overlap)
    batch = min(n_ensemble, 16) if member_batch_size is None else member_batch_size
    torch_device = resolve_device_option(device)
    return Settings(
        sampler=name,
        sampler_source=source,
        num_steps=num_steps,
        s_churn=s_churn,
        sigma_min=model.sampler.sigma_min,
        sigma_max=model.sampler.sigma_max,
        rho=model.sampler.rho,
        seed=seed,
        n_ensemble=n_ensemble,
        member_batch_size=check_int("member_batch_size", batch, minimum=1),
        patch_shape=patch,
        overlap=overlap,
        device=str(torch_device),
        dtype=resolve_dtype(dtype, torch_device),
        condition_variables=tuple(model.condition_variables),
        n_outputs=len(model.output_variables),
        output_names=tuple(model.output_names),
        caller_threads=caller_threads(),
        ranges=input_ranges(model, check_plausibility),
    )

"""The input of :func:`~xcorrdiff.inference.api.downscale`, checked before anything runs:
variables, units, NaN, plausibility (the arguments are checked by
:mod:`~xcorrdiff.inference.request`).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff._checks import check_bool
from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.fill import fill_nearest
from xcorrdiff.data.plausibility import ExpectedRange, expected_ranges
from xcorrdiff.data.units import convert_units
from xcorrdiff.inference.handles import (
    ModelRef,
    model_on,
)
from xcorrdiff.inference.request import DownscaleRequest
from xcorrdiff.model import CorrDiffModel

__all__ = [
    "MEMBER",
    "TIME",
    "check_input",
    "input_ranges",
    "inputs_in_model_units",
    "model_of",
    "network_config",
    "prepare_input",
]

TIME = "time"
MEMBER = "member"
#: What to do about NaN input, said wherever it is refused.
FILL_HINT = (
    "fill them: downscale(..., fill_missing='nearest') (CLI --fill-missing nearest) takes "
    "each from the nearest valid cell, as for land-only input; or drop the variable's "
    "missing times first"
)


def model_of(ref: ModelRef) -> CorrDiffModel:
    """The model a reference points at, on the CPU (loaded once per process and cached)."""
    return model_on(ref, torch.device("cpu")) if ref.model is None else ref.model


def network_config(net: torch.nn.Module | None) -> dict[str, Any]:
    """The constructor arguments of a network (its inner SongUNet's, as in config.json)."""
    return dict(getattr(net, "config", None) or {})


def input_ranges(
    model: CorrDiffModel, check_plausibility: bool
) -> tuple[ExpectedRange, ...] | None:
    if not check_bool("check_plausibility", check_plausibility):
        return None
    return expected_ranges(model.input_variables, model.input_normalizer.stats)


def inputs_in_model_units(lr: xr.Dataset, model: CorrDiffModel) -> xr.Dataset:
    """The model's input variables of ``lr`` in the model's units (lazy for dask)."""
    return convert_units(
        lr[list(model.input_names)], {v.name: v.units for v in model.input_variables if v.units}
    )


def prepare_input(lr: xr.Dataset, model: CorrDiffModel, request: DownscaleRequest) -> xr.Dataset:
    """``lr`` in our conventions (:func:`~xcorrdiff.data.conventions.standardize`), its
    input variables filled as the request asks (``fill_missing``)."""
    if not isinstance(lr, xr.Dataset):
        raise TypeError(
            f"lr must be an xarray.Dataset, got {type(lr).__name__}; wrap a DataArray with "
            "da.to_dataset(name=...)"
        )
    lr = standardize(lr, role="lr")
    if request.inputs.fill_missing == "nearest":
        lr = fill_nearest(lr, [n for n in model.input_names if n in lr.data_vars])
    return lr


def check_input(
    lr: xr.Dataset, model: CorrDiffModel, ranges: tuple[ExpectedRange, ...] | None
) -> None:
    """Refuse missing variables, and NaN/inf or implausible values of numpy-backed input, of
    a Dataset :func:`prepare_input` made ready."""
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
                f"lr variable {name!r} has {bad} NaN/inf values (of {data.size}); {FILL_HINT}"
            )
    for expected in ranges or ():
        values = np.asarray(inputs[expected.name].values)
        if values.size:
            expected.check(float(values.min()), float(values.max()))

"""The consistency checks of a :class:`~xcorrdiff.model.CorrDiffModel`, run when one is
built (trained, loaded or imported)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["check_model"]


#: The samplers of a rectified-flow model: Euler and Heun steps in its time ``t``.
FLOW_SOLVERS = ("euler", "heun")


def check_model(model: Any) -> None:
    """Refuse an inconsistent model: each check names the field, what it holds and what
    was expected."""
    unknown = sorted(set(model.output_bounds) - set(model.output_names))
    crossed = {k: v for k, v in model.output_bounds.items() if not v[0] < v[1]}
    if unknown or crossed:
        raise ValueError(
            f"output_bounds must give (low, high) with low < high for output variables "
            f"{list(model.output_names)}; got unknown variables {unknown}, crossed {crossed}"
        )
    if model.observed is not None:
        unknown = sorted(set(map(str, model.observed.data_vars)) - set(model.output_names))
        wrong = [str(n) for n, v in model.observed.data_vars.items() if v.dims != model.grid_dims]
        if unknown or wrong:
            raise ValueError(
                f"observed must hold output variables on the grid dims {model.grid_dims}; "
                f"got unknown variables {unknown} and variables on other dims {wrong}"
            )
    if model.residual_scale is not None:
        names = [v.name for v in model.output_variables]
        if sorted(model.residual_scale) != sorted(names):
            raise ValueError(
                f"residual_scale has scales for {sorted(model.residual_scale)}; expected one "
                f"for each output variable {names}"
            )
        bad = {k: v for k, v in model.residual_scale.items() if not 0 < v < math.inf}
        if bad:
            raise ValueError(
                f"residual_scale has invalid scales {bad}; expected positive finite numbers"
            )
    _check_student(model)
    scale = model.sampler.noise_scale
    if scale is not None and len(scale) != len(model.output_variables):
        raise ValueError(
            f"sampler.noise_scale has {len(scale)} factors {list(scale)}; expected one per "
            f"output variable {[v.name for v in model.output_variables]}"
        )
    for dim in model.grid_dims:
        if dim not in model.grid.dims:
            raise ValueError(
                f"grid_dims={model.grid_dims!r} are not dimensions of the grid, which has "
                f"{[str(d) for d in model.grid.dims]}"
            )
    missing = [name for name in model.condition_variables if name not in model.input_normalizer]
    if missing:
        raise ValueError(
            f"input_normalizer has no statistics for {missing}; it covers "
            f"{list(model.input_normalizer.variables)}"
        )
    missing = [v.name for v in model.output_variables if v.name not in model.output_normalizer]
    if missing:
        raise ValueError(
            f"output_normalizer has no statistics for {missing}; it covers "
            f"{list(model.output_normalizer.variables)}"
        )
    _check_skip(model)
    if model.regression is None:
        _check_flow(model)
        return
    n_in = len(model.condition_variables) * (2 if model.regression_patch else 1)
    grid_channels = int(getattr(model.regression, "grid_channels", 0))
    expected = getattr(model.regression, "img_in_channels", n_in + grid_channels)
    if expected != n_in + grid_channels:
        raise ValueError(
            f"the regression network takes {expected} input channels but the model has "
            f"{n_in} condition channels ({list(model.condition_variables)}, twice for a "
            f"regression on patches) plus {grid_channels} grid channels"
        )


def _check_skip(model: Any) -> None:
    spec = model.conditioning.get("input_skip") or {}
    wrong = {
        out: entry
        for out, entry in spec.items()
        if out not in model.output_names
        or not isinstance(entry, Mapping)
        or entry.get("input") not in model.input_names
        or not 0 < float(entry.get("spread", 0)) < math.inf
    }
    if wrong:
        raise ValueError(
            f"conditioning['input_skip'] has invalid entries {wrong}; expected "
            f"{{output: {{'input': name, 'spread': positive number}}}} with outputs among "
            f"{list(model.output_names)} and inputs among {list(model.input_names)}"
        )


def _check_student(model: Any) -> None:
    """A student comes with its settings, beside a diffusion network of its class."""
    student, config = model.student, model.student_config
    if (student is None) != (config is None):
        raise ValueError(
            "student and student_config go together: got a student network "
            f"{'and no' if config is None else 'missing, but a'} student_config"
        )
    if student is not None and type(student) is not type(model.diffusion):
        raise ValueError(
            f"the student network is a {type(student).__name__}; expected the diffusion "
            f"network's class, {type(model.diffusion).__name__}"
        )


def _check_flow(model: Any) -> None:
    """A model without a regression generates whole fields with a rectified-flow DiT."""
    net = model.diffusion
    if type(net).__name__ != "FlowDiT":  # nn is a higher layer: checked by name
        raise ValueError(
            f"a model without a regression network generates whole fields and needs a FlowDiT "
            f"diffusion network; got {type(net).__name__}"
        )
    if tuple(net.input_shape) != tuple(model.shape):
        raise ValueError(
            f"the FlowDiT takes a {tuple(net.input_shape)} domain but the model's grid is "
            f"{tuple(model.shape)}"
        )
    order = net.condition_order.tolist()
    n_cond = len(model.condition_variables)
    if order and (min(order) < 0 or max(order) >= n_cond):
        raise ValueError(
            f"the FlowDiT's condition_order {order} indexes beyond the model's {n_cond} "
            f"condition channels {list(model.condition_variables)}"
        )
    if net.out_channels != len(model.output_variables):
        raise ValueError(
            f"the FlowDiT generates {net.out_channels} channels but the model has "
            f"{len(model.output_variables)} output variables"
        )
    if model.sampler.sampler not in FLOW_SOLVERS or model.student is not None:
        raise ValueError(
            f"a FlowDiT samples with {list(FLOW_SOLVERS)} steps and has no student; got "
            f"sampler={model.sampler.sampler!r}"
        )

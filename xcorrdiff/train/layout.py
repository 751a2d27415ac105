"""What training decides from the data before any network: variables, grids, invariants
(and the time features the configuration declares).

:func:`describe_layout` reads paired ``lr``/``hr`` datasets (standardized to the house
conventions first) into a :class:`Layout`, which the regression stage turns into the
model's variables, grids and invariants.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.lead_time import LEAD, lead_text, lead_times_of
from xcorrdiff.data.prepare import VariableSpec, describe_variables, grid_of, spatial_dims
from xcorrdiff.train.data import TIME, input_grid, resolve_invariants, time_varying

__all__ = ["Layout", "describe_layout"]


@dataclass(frozen=True)
class Layout:
    """What the regression stage decides about the data: variables, grids, invariants."""

    input_variables: list[VariableSpec]
    output_variables: list[VariableSpec]
    grid: xr.Dataset
    grid_dims: tuple[str, str]
    input_grid: xr.Dataset | None
    invariants: xr.Dataset | None
    time_features: tuple[str, ...] = ()
    #: The lead times of forecast data (a ``lead_time`` dimension), else empty.
    lead_times: tuple[np.timedelta64, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.grid.sizes[self.grid_dims[0]]), int(self.grid.sizes[self.grid_dims[1]]))


def describe_layout(
    lr: xr.Dataset,
    hr: xr.Dataset,
    invariants: xr.Dataset | Sequence[str] | None,
    input_variables: Sequence[Hashable] | None,
    output_variables: Sequence[Hashable] | None,
    time_features: tuple[str, ...] = (),
) -> Layout:
    """Standardize ``lr``/``hr`` (and ``invariants``) and decide the model's variables,
    HR grid, its dims, the input grid and the invariants on the HR grid."""
    for name, ds in (("lr", lr), ("hr", hr)):
        if not isinstance(ds, xr.Dataset):
            raise TypeError(
                f"{name} must be an xarray.Dataset, got {type(ds).__name__}; wrap a DataArray "
                "with da.to_dataset(name=...)"
            )
    lr, hr = standardize(lr, role="lr"), standardize(hr, role="hr")
    leads = lead_times_of(lr, role="lr")
    if leads != lead_times_of(hr, role="hr"):
        raise ValueError(
            f"lr has lead times {lead_text(leads)} but hr has "
            f"{lead_text(lead_times_of(hr, role='hr'))}; for forecasts pass the truth "
            "of each (time, lead_time), e.g. truth.sel(time=lr.time + lr.lead_time)"
        )
    if leads:  # variables, grids and invariants are those of one lead
        lr, hr = lr.isel({LEAD: 0}, drop=True), hr.isel({LEAD: 0}, drop=True)
    if isinstance(invariants, xr.Dataset):
        invariants = standardize(invariants, role="invariants")
    inv = resolve_invariants(hr, invariants)
    in_names = list(input_variables) if input_variables is not None else time_varying(lr)
    out_names = list(output_variables) if output_variables is not None else time_varying(hr)
    if not in_names or not out_names:
        raise ValueError(
            f"no {'input' if not in_names else 'output'} variable: lr has time-varying "
            f"{time_varying(lr)}, hr has {time_varying(hr)}; pass input_variables/"
            "output_variables"
        )
    inputs = describe_variables(lr, in_names, role="lr")
    outputs = describe_variables(hr, out_names, role="hr")
    targets = hr[[v.name for v in outputs]]
    grid_dims = spatial_dims(targets, time_dim=TIME)
    grid = grid_of(targets, time_dim=TIME)
    if inv is not None:
        inv = inv.transpose(*grid_dims)
        inv = inv.drop_vars([c for c in inv.coords if c not in grid.coords]).assign_coords(
            grid.coords
        )
        for inv_name in inv.data_vars:
            inv[inv_name].attrs.setdefault("units", "1")
    in_grid = input_grid(lr, [v.name for v in inputs])
    return Layout(list(inputs), list(outputs), grid, grid_dims, in_grid, inv, time_features, leads)

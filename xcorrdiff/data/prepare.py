"""The prepare step shared by training and inference.

``lr`` (any grid, any CF units) → select the model's input variables → convert them to the
model's units → regrid onto the model's HR grid → add the invariants (orography, land-sea
mask…) → normalize. Training runs the same function on the paired LR data, so a model sees
at inference exactly what it saw in training; the HR targets go through
:func:`prepare_target` (select → convert units → normalize).

Everything stays lazy on dask-backed input.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from xcorrdiff.data.conventions import check_calendars, standardize
from xcorrdiff.data.grids import same_grid
from xcorrdiff.data.regrid import latlon_names, regrid
from xcorrdiff.data.time_features import time_features as time_feature_channels
from xcorrdiff.data.units import convert_units

__all__ = [
    "VariableSpec",
    "align_times",
    "describe_variables",
    "grid_of",
    "prepare_condition",
    "prepare_target",
    "spatial_dims",
    "static_fields",
]

RegridMethod = Literal["bilinear", "nearest", "conservative"]


@dataclass(frozen=True, kw_only=True)
class VariableSpec:
    """A variable the model reads or writes: name, CF units and long name.

    Parameters
    ----------
    name : str
        Variable name in the Dataset.
    units : str
        CF units the model works in (inputs are converted to them); ``""`` when unknown
        (an imported model that records none): no conversion then.
    long_name : str, default ""
        Human-readable description.
    """

    name: str
    units: str
    long_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} is invalid; expected a non-empty string")
        if not isinstance(self.units, str):
            raise ValueError(
                f"units={self.units!r} for variable {self.name!r} is invalid; expected a CF "
                "units string such as 'K' or 'm s-1' ('1' for dimensionless)"
            )

    def to_dict(self) -> dict[str, str]:
        """JSON-able form."""
        return {"name": self.name, "units": self.units, "long_name": self.long_name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariableSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            units=str(data["units"]),
            long_name=str(data.get("long_name", "")),
        )


def describe_variables(
    ds: xr.Dataset, names: Sequence[Hashable], *, role: str
) -> tuple[VariableSpec, ...]:
    """:class:`VariableSpec` of each named variable, from its CF attributes.

    Raises
    ------
    KeyError
        A name is not a data variable of ``ds``.
    ValueError
        A variable has no ``units`` attribute.
    """
    specs = []
    for name in names:
        if name not in ds.data_vars:
            raise KeyError(
                f"{role} variable {name!r} is not in the dataset; available data variables: "
                f"{sorted(map(str, ds.data_vars))}"
            )
        attrs = ds[name].attrs
        if "units" not in attrs:
            raise ValueError(
                f"{role} variable {name!r} has no 'units' attribute; set CF units, e.g. "
                f"ds[{str(name)!r}].attrs['units'] = 'K' ('1' for dimensionless)"
            )
        specs.append(
            VariableSpec(
                name=str(name),
                units=str(attrs["units"]),
                long_name=str(attrs.get("long_name", attrs.get("standard_name", ""))),
            )
        )
    return tuple(specs)


def spatial_dims(ds: xr.Dataset | xr.DataArray, *, time_dim: str = "time") -> tuple[str, str]:
    """The ``(y, x)`` dimension names of a gridded Dataset: its last two non-time dims."""
    dims: list[Hashable] = []
    variables = ds.data_vars.values() if isinstance(ds, xr.Dataset) else [ds]
    for var in variables:
        for d in var.dims:
            if d != time_dim and d not in dims:
                dims.append(d)
    if len(dims) != 2:
        raise ValueError(
            f"expected data on two spatial dimensions besides {time_dim!r}, found dims "
            f"{[str(d) for d in dims]}; select or stack the extra ones first "
            "(e.g. ds.sel(level=850))"
        )
    return str(dims[0]), str(dims[1])


def grid_of(ds: xr.Dataset | xr.DataArray, *, time_dim: str = "time") -> xr.Dataset:
    """The grid of ``ds`` as a coordinates-only Dataset.

    Keeps the spatial dimension coordinates, latitude/longitude (found by name or CF
    attributes) and a scalar CF grid mapping (``crs``); drops time and other fields stored
    as coordinates (orography, masks), which are data, not grid.
    """
    y_dim, x_dim = spatial_dims(ds, time_dim=time_dim)
    keep: set[Hashable] = {y_dim, x_dim}
    with contextlib.suppress(ValueError):
        keep.update(latlon_names(ds, role="grid"))
    coords = {}
    for name, coord in ds.coords.items():
        on_grid = bool(coord.dims) and set(coord.dims) <= {y_dim, x_dim}
        grid_mapping = not coord.dims and "grid_mapping_name" in coord.attrs
        if (on_grid and name in keep) or grid_mapping:
            coords[name] = coord.variable
    grid = xr.Dataset(coords=coords)
    for dim, size in ((y_dim, ds.sizes[y_dim]), (x_dim, ds.sizes[x_dim])):
        if dim not in grid.coords:
            grid = grid.assign_coords({dim: np.arange(size)})
    return grid.load()


def static_fields(ds: xr.Dataset, *, time_dim: str = "time") -> xr.Dataset:
    """Static fields of a gridded Dataset: variables without time, plus 2-D coordinates on
    the grid other than the grid's own (e.g. ``orography``, ``land_sea_mask``).
    """
    y_dim, x_dim = spatial_dims(ds, time_dim=time_dim)
    grid = grid_of(ds, time_dim=time_dim)
    fields: dict[Hashable, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        if time_dim not in var.dims:
            fields[name] = var
    for name, coord in ds.coords.items():
        if (
            name not in grid.coords
            and set(coord.dims) == {y_dim, x_dim}
            and np.issubdtype(coord.dtype, np.number)
        ):
            fields[name] = coord.reset_coords(drop=True).variable.to_base_variable()
    out = xr.Dataset({k: (v.dims, np.asarray(v.data), v.attrs) for k, v in fields.items()})
    return out.assign_coords(grid.coords)


def align_times(
    lr: xr.Dataset, hr: xr.Dataset, *, time_dim: str = "time"
) -> tuple[xr.Dataset, xr.Dataset]:
    """The LR and HR data at their common times.

    Raises
    ------
    ValueError
        Either has no time dimension, or they have no time in common.
    """
    for name, ds in (("lr", lr), ("hr", hr)):
        if time_dim not in ds.dims:
            raise ValueError(
                f"{name} has no {time_dim!r} dimension (dims: {tuple(map(str, ds.dims))}); "
                "training needs paired samples along time"
            )
    check_calendars(lr=lr, hr=hr)
    lr_times, hr_times = lr.indexes[time_dim], hr.indexes[time_dim]
    if lr_times.equals(hr_times):
        return lr, hr
    common = lr_times.intersection(hr_times)
    if len(common) == 0:
        raise ValueError(
            f"lr and hr have no common time: lr has {len(lr_times)} times {_span(lr_times)}, "
            f"hr has {len(hr_times)} times {_span(hr_times)}; pass paired data"
        )
    unpaired = [
        f"{len(only)} of {name}'s {len(times)} times have no partner in {other} (first: "
        f"{', '.join(map(str, only[:3]))}{', ...' if len(only) > 3 else ''})"
        for name, other, times, only in (
            ("lr", "hr", lr_times, lr_times.difference(common)),
            ("hr", "lr", hr_times, hr_times.difference(common)),
        )
        if len(only)
    ]
    if unpaired:
        warnings.warn(
            f"training uses the {len(common)} times lr and hr share: {'; '.join(unpaired)}. "
            "Select paired times first (xr.align(lr, hr, join='inner')) to silence this",
            UserWarning,
            stacklevel=3,
        )
    return lr.sel({time_dim: common}), hr.sel({time_dim: common})


def _span(times: pd.Index) -> str:
    return f"from {times[0]} to {times[-1]}" if len(times) else "(none)"


def _on_model_grid(ds: xr.Dataset, grid: xr.Dataset, dims: tuple[str, str]) -> xr.Dataset | None:
    """``ds`` labelled with ``grid``'s coordinates when it already lies on that grid (by the
    one rule of :mod:`xcorrdiff.data.grids`), else None (it is to be regridded). Other
    fields stored as coordinates on the grid (orography, masks) are dropped: the model's
    invariants are the ones it uses."""
    if not same_grid(ds, grid, dims):
        return None
    extra = [n for n, c in ds.coords.items() if n not in grid.coords and set(c.dims) & set(dims)]
    return ds.drop_vars(extra).assign_coords(dict(grid.coords.items()))


def _normalize(ds: xr.Dataset, normalizer: Any) -> xr.Dataset:
    return normalizer.normalize(ds)


def prepare_condition(
    lr: xr.Dataset,
    *,
    input_variables: Sequence[VariableSpec],
    grid: xr.Dataset,
    invariants: xr.Dataset | None = None,
    normalizer: Any = None,
    grid_dims: tuple[str, str] = ("y", "x"),
    regrid_method: RegridMethod = "bilinear",
    time_dim: str = "time",
    time_features: Sequence[str] = (),
) -> xr.Dataset:
    """The network conditioning on the HR grid: inputs (regridded), invariants, time features.

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with CF ``units``; on any rectilinear lat/lon grid, or already
        on the HR grid.
    input_variables : sequence of VariableSpec
        Variables to take from ``lr``, in channel order, with the units to convert to.
    grid : xarray.Dataset
        The HR grid (coordinates), e.g. from :func:`grid_of`.
    invariants : xarray.Dataset, optional
        Static fields on the HR grid, appended after the inputs and broadcast along time.
    normalizer : Normalizer, optional
        Applied last (``normalizer.normalize(ds)``); ``None`` returns physical values.
    grid_dims : (str, str), default ("y", "x")
        Names of the HR grid's row and column dimensions.
    regrid_method : {"bilinear", "nearest", "conservative"}
        Interpolation onto the HR grid.
    time_dim : str, default "time"
        Name of the time dimension.
    time_features : sequence of str, default ()
        Channels computed from each time and the grid's lat/lon, appended last
        (:mod:`xcorrdiff.data.time_features`).

    Returns
    -------
    xarray.Dataset
        Variables ``[*inputs, *invariants, *time feature channels]`` on ``(time, y, x)`` of
        the HR grid (lazy for dask input).

    Raises
    ------
    KeyError
        An input variable is missing from ``lr``.
    ValueError
        Units are missing or not convertible; ``lr`` cannot be regridded onto ``grid``.
    """
    if not isinstance(lr, xr.Dataset):
        raise TypeError(
            f"lr must be an xarray.Dataset, got {type(lr).__name__}; wrap a DataArray with "
            "da.to_dataset(name=...)"
        )
    lr = standardize(lr, role="lr")
    names = [v.name for v in input_variables]
    missing = [n for n in names if n not in lr.data_vars]
    if missing:
        raise KeyError(
            f"lr lacks the model's input variables {missing}; it has "
            f"{sorted(map(str, lr.data_vars))}. Rename or add them (units are converted)"
        )
    ds = lr[names]
    ds = convert_units(ds, {v.name: v.units for v in input_variables if v.units})
    y_dim, x_dim = grid_dims
    for dim in grid_dims:
        if dim not in grid.dims:
            raise ValueError(
                f"grid_dims={tuple(grid_dims)!r} are not dimensions of the grid, which has "
                f"{[str(d) for d in grid.dims]}"
            )
    on_grid = _on_model_grid(ds, grid, grid_dims)
    ds = regrid(ds, grid, regrid_method) if on_grid is None else on_grid
    if invariants is not None and len(invariants.data_vars):
        ds = ds.drop_vars([n for n in invariants.data_vars if n in ds.variables])
        static = invariants.drop_vars(
            [c for c in invariants.coords if c not in ds.coords and c not in invariants.dims]
        )
        ds = xr.merge([ds, static], compat="override", join="override", combine_attrs="override")
    order = [*names, *(list(invariants.data_vars) if invariants is not None else [])]
    if time_features:
        features = time_feature_channels(
            ds[time_dim], grid, time_features, grid_dims=(y_dim, x_dim),
            time_chunks=ds.chunks.get(time_dim) if ds.chunks else None,
        )  # fmt: skip
        ds = ds.assign(features.data_vars)
        order += list(features.data_vars)
    ds = ds[order].transpose(time_dim, y_dim, x_dim, ...)
    if normalizer is not None:
        ds = _normalize(ds, normalizer)
    return ds


def prepare_target(
    hr: xr.Dataset,
    *,
    output_variables: Sequence[VariableSpec],
    normalizer: Any = None,
) -> xr.Dataset:
    """HR targets in the model's units, normalized.

    Raises
    ------
    KeyError
        An output variable is missing from ``hr``.
    """
    hr = standardize(hr, role="hr")
    names = [v.name for v in output_variables]
    missing = [n for n in names if n not in hr.data_vars]
    if missing:
        raise KeyError(
            f"hr lacks the model's output variables {missing}; it has "
            f"{sorted(map(str, hr.data_vars))}"
        )
    ds = convert_units(hr[names], {v.name: v.units for v in output_variables if v.units})
    if normalizer is not None:
        ds = _normalize(ds, normalizer)
    return ds

"""Station observations for guided sampling: checked, in the model's units, normalized, and
placed on the model's grid.

``downscale(lr, model, observations=obs)``: ``obs`` is an xarray Dataset of station values,
a ``station`` dimension with 1-D ``lat``/``lon`` coordinates, some of the model's output
variables in convertible units, on the input's times (or without a time dimension: the same
values at every time). A variable ``<name>_error`` (same units; per station, or per time
and station) gives the observations' error standard deviations; without it the error is
:data:`DEFAULT_ERROR` (a tenth) of the variable's training standard deviation. Missing values (NaN)
take no part. Everything here runs before any task, so unusable observations fail before
anything is computed or written.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.points import locate_points
from xcorrdiff.data.units import convert_units
from xcorrdiff.model import CorrDiffModel

__all__ = ["DEFAULT_ERROR", "StationData", "check_guidance", "prepare_observations"]

TIME = "time"
#: Observation error standard deviation, in training standard deviations, when the
#: observations carry no ``<name>_error``.
DEFAULT_ERROR = 0.1


@dataclass(frozen=True)
class StationData:
    """Observations on the model's grid, normalized: ``values`` ``(time, C_out, S)`` (NaN:
    missing or not an observed variable), ``sigma`` ``(time, C_out, S)``, and ``geometry``
    ``(3, 4, S)`` float64: the rows, columns and weights of each station's four bilinear
    corners (one task argument)."""

    values: np.ndarray
    sigma: np.ndarray
    geometry: np.ndarray


def _station_dim(obs: xr.Dataset) -> str:
    for name in ("lat", "lon"):
        if name not in obs.coords or obs[name].ndim != 1:
            raise ValueError(
                f"observations need 1-D {name!r} coordinates on a station dimension; got "
                f"coordinates {sorted(map(str, obs.coords))}. Set them with "
                "obs.assign_coords(lat=('station', ...), lon=('station', ...))"
            )
    return str(obs["lat"].dims[0])


def _observed_names(obs: xr.Dataset, model: CorrDiffModel) -> list[str]:
    names = [str(n) for n in obs.data_vars if not str(n).endswith("_error")]
    unknown = [n for n in names if n not in model.output_names]
    if unknown or not names:
        raise ValueError(
            f"observations hold {unknown or 'no'} variables the model does not output; "
            f"expected some of {list(model.output_names)} (and optional '<name>_error')"
        )
    nonlinear = {
        n: model.output_normalizer.stats[n].transform
        for n in names
        if model.output_normalizer.stats[n].transform != "none"
    }
    if nonlinear:
        raise ValueError(
            f"observations of {sorted(nonlinear)} cannot guide this model: it generates them "
            f"through the transforms {nonlinear}, where a bilinear operator and Gaussian errors "
            "do not hold; pass observations of the other variables"
        )
    return names


def _on_times(da: xr.DataArray, times: np.ndarray | None, dim: str) -> np.ndarray:
    """``(time, station)`` values of ``da`` at ``times`` (NaN where it has none)."""
    if TIME not in da.dims:
        n = 1 if times is None else len(times)
        return np.broadcast_to(da.transpose(dim).values, (n, da.sizes[dim]))
    if times is None:
        raise ValueError("observations have a 'time' dimension but the input has no time")
    return da.reindex({TIME: times}).transpose(TIME, dim).values


def prepare_observations(
    obs: xr.Dataset, model: CorrDiffModel, times: np.ndarray | None
) -> StationData:
    """``obs`` ready for :func:`~xcorrdiff.inference.blocks.sample_block`."""
    if not isinstance(obs, xr.Dataset):
        raise TypeError(
            f"observations must be an xarray.Dataset of station values, got {type(obs).__name__}"
        )
    obs = standardize(obs, role="observations")
    dim = _station_dim(obs)
    names = _observed_names(obs, model)
    units: dict[Hashable, str] = {
        v.name: v.units for v in model.output_variables if v.name in names and v.units
    }
    errors: dict[Hashable, str] = {
        f"{n}_error": u for n, u in units.items() if f"{n}_error" in obs.data_vars
    }
    obs = convert_units(obs, {**units, **errors})
    where = locate_points(model.grid, obs["lat"].values, obs["lon"].values, names=obs[dim].values)
    n_times = 1 if times is None else len(times)
    shape = (n_times, len(model.output_names), obs.sizes[dim])
    values, sigma = np.full(shape, np.nan), np.full(shape, DEFAULT_ERROR)
    for name in names:
        c = model.output_names.index(name)
        stats = model.output_normalizer.stats[name]
        values[:, c] = (_on_times(obs[name], times, dim) - stats.mean) / stats.std
        if f"{name}_error" in obs.data_vars:
            sigma[:, c] = _on_times(obs[f"{name}_error"], times, dim) / stats.std
    bad = ~(sigma > 0) & ~np.isnan(values)
    if bad.any():
        raise ValueError(
            f"observation errors must be positive where there are observations; "
            f"{int(bad.sum())} are zero, negative or NaN"
        )
    corners = np.asarray(where.corners(), dtype=np.float64)  # (4, 3, S)
    return StationData(
        values=values,
        sigma=np.where(np.isnan(values), 1.0, sigma),
        geometry=corners.transpose(1, 0, 2),
    )


def check_guidance(observations: Any, guidance_scale: float, region: Any) -> float:
    """The guidance scale to use: 0 without observations; checked otherwise."""
    if observations is None:
        return 0.0
    if (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, int | float)
        or not (0 < guidance_scale < float("inf"))
    ):
        raise ValueError(
            f"guidance_scale={guidance_scale!r} is invalid; expected a positive number "
            "(ζ, the weight of the observations' log-likelihood; 1 is Bayesian)"
        )
    if region is not None:
        raise ValueError(
            "observations= with region= is not supported: guidance runs on the whole grid; "
            "downscale the whole domain and cut the region afterwards"
        )
    return float(guidance_scale)

"""Station observations for guided sampling: checked, in the model's units, normalized, and
placed on the model's grid.

``downscale(lr, model, observations=obs)``: ``obs`` is an xarray Dataset of station values,
a ``station`` dimension with 1-D ``lat``/``lon`` coordinates, some of the model's output
variables in convertible units, on the input's times (or without a time dimension: the same
values at every time). A variable ``<name>_error`` (per station, or per time and station)
gives the observations' error standard deviations; without it the error is
:data:`DEFAULT_ERROR` (a tenth) of the variable's training standard deviation. Missing values (NaN)
take no part. Everything here runs before any task, so unusable observations fail before
anything is computed or written.

Nothing is taken silently wrong:

* errors are differences: ``0.3`` in ``degC`` (or ``delta_degC``) is 0.3 K, and an error
  without ``units`` is a number in its variable's units;
* values pass the plausibility check of the inputs (:mod:`xcorrdiff.data.plausibility`):
  Celsius numbers labelled ``K`` are refused, with the likely mistake named;
* observations on none of the input's times are refused, with both time ranges shown (some
  times missing is fine: those times are unguided);
* stations at the same point (latitude and longitude equal within the grid tolerance of
  :mod:`xcorrdiff.data.grids`) are merged when they agree (values and errors equal, to
  float32 rounding, at every time; missing values count as agreeing and are filled from
  the duplicate) and refused, naming both, when they do not.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.grids import coordinate_tolerance
from xcorrdiff.data.plausibility import expected_ranges
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
        given = f"variables {unknown} that are" if unknown else "no variables"
        raise ValueError(
            f"observations hold {given} not outputs of the model; the model outputs "
            f"{list(model.output_names)}, so observations may hold some of those (each with "
            f"an optional '<name>_error'). Rename them, e.g. obs.rename({{'{unknown[0] if unknown else 'name'}': "
            f"'{model.output_names[0]}'}}), or drop the others"
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


def _in_model_units(obs: xr.Dataset, model: CorrDiffModel, names: list[str]) -> xr.Dataset:
    """Values converted as values, errors as differences (no units: the variable's)."""
    units: dict[Hashable, str] = {
        v.name: v.units for v in model.output_variables if v.name in names and v.units
    }
    obs = convert_units(obs, units)
    errors: dict[Hashable, str] = {
        f"{n}_error": u for n, u in units.items() if f"{n}_error" in obs.data_vars
    }
    for error, target in errors.items():
        if "units" not in obs[error].attrs:  # a plain number in its variable's units
            obs[error] = obs[error].assign_attrs(units=target)
    return convert_units(obs, errors, difference=True)


def _check_plausible(obs: xr.Dataset, model: CorrDiffModel, names: list[str]) -> None:
    stats = model.output_normalizer.stats
    observed = [v for v in model.output_variables if v.name in names]
    for expected in expected_ranges(observed, stats):
        values = np.asarray(obs[expected.name].values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            expected.check(float(values.min()), float(values.max()), role="observations")


def _check_times(obs: xr.Dataset, times: np.ndarray | None) -> None:
    if TIME not in obs.dims:
        return
    if times is None:
        raise ValueError("observations have a 'time' dimension but the input has no time")
    if not np.isin(obs[TIME].values, times).any():
        raise ValueError(
            f"observations have {obs.sizes[TIME]} times from {_span(obs[TIME].values)}, none of "
            f"them a time of the input ({len(times)} times from {_span(times)}); pass "
            "observations valid at the input's times, or without a 'time' dimension to use "
            "them at every time"
        )


def _span(times: np.ndarray) -> str:
    return f"{times.min()} to {times.max()}"


def _merge_duplicates(obs: xr.Dataset, dim: str) -> xr.Dataset:
    """One station per point: agreeing duplicates merged into the first, conflicting ones
    refused (see the module docstring)."""
    lat, lon = (np.asarray(obs[c].values, np.float64) for c in ("lat", "lon"))
    tol = max(coordinate_tolerance(lat, lat), coordinate_tolerance(lon, lon))
    pairs = sorted(cKDTree(np.stack([lat, lon], axis=1)).query_pairs(tol))
    if not pairs:
        return obs
    obs, keep = obs.load(), np.ones(lat.size, dtype=bool)
    root: dict[int, int] = {}
    for first, second in pairs:
        first = root.get(first, first)
        for name, var in obs.data_vars.items():
            x, y = var.isel({dim: first}).values, var.isel({dim: second}).values
            conflict = ~np.isnan(x) & ~np.isnan(y) & ~np.isclose(x, y, rtol=1e-6, atol=0)
            if conflict.any():
                stations = obs[dim].values if dim in obs.coords else np.arange(lat.size)
                raise ValueError(
                    f"stations {stations[first].item()!r} and {stations[second].item()!r} lie "
                    f"at the same point ({lat[first]:.5f}, {lon[first]:.5f}) with different "
                    f"{name!r}: {x[conflict].ravel()[0].item()!r} versus "
                    f"{y[conflict].ravel()[0].item()!r}; keep one "
                    "of them (or average them yourself if both are right)"
                )
            var[{dim: first}] = np.where(np.isnan(x), y, x)
        keep[second], root[second] = False, first
    return obs.isel({dim: keep})


def _on_times(da: xr.DataArray, times: np.ndarray | None, dim: str) -> np.ndarray:
    """``(time, station)`` values of ``da`` at ``times`` (NaN where it has none)."""
    if TIME not in da.dims or times is None:
        n = 1 if times is None else len(times)
        return np.broadcast_to(da.transpose(dim).values, (n, da.sizes[dim]))
    return da.reindex({TIME: times}).transpose(TIME, dim).values


def prepare_observations(
    obs: xr.Dataset,
    model: CorrDiffModel,
    times: np.ndarray | None,
    *,
    check_plausibility: bool = True,
) -> StationData:
    """``obs`` ready for :func:`~xcorrdiff.inference.blocks.sample_block`: checked (see the
    module docstring), in the model's units, duplicates merged, normalized, located."""
    if not isinstance(obs, xr.Dataset):
        raise TypeError(
            f"observations must be an xarray.Dataset of station values, got {type(obs).__name__}"
        )
    obs = standardize(obs, role="observations")
    dim = _station_dim(obs)
    names = _observed_names(obs, model)
    obs = _in_model_units(obs, model, names)
    if check_plausibility:
        _check_plausible(obs, model, names)
    _check_times(obs, times)
    obs = _merge_duplicates(obs, dim)
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

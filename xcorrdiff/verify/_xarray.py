"""Shared plumbing of the xarray layer: argument checks, pairing, alignment, chunking.

Every public score validates with these helpers, so errors read the same everywhere: the
argument, what was received, what was expected, and a hint.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

T = TypeVar("T", xr.Dataset, xr.DataArray)
XarrayLike = xr.Dataset | xr.DataArray


def var_name(da: xr.DataArray) -> str:
    """The name of a variable for messages and ``variable`` coordinates."""
    return str(da.name) if da.name is not None else "<unnamed>"


def check_type(obj: object, argname: str) -> None:
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"{argname} must be an xarray Dataset or DataArray, got {type(obj).__name__}; "
            "wrap numpy arrays with xr.DataArray(values, dims=[...])"
        )


def check_numeric(da: xr.DataArray, argname: str) -> None:
    """Raise a ``TypeError`` naming the variable if ``da`` is not real numeric data."""
    if da.dtype.kind not in "iuf":
        raise TypeError(
            f"{argname} variable {var_name(da)!r} has dtype {da.dtype}; verification needs "
            "real numeric (int or float) data; drop it first, e.g. "
            f"ds.drop_vars([{var_name(da)!r}])"
        )


def check_member_dim(forecast: XarrayLike, member_dim: str) -> None:
    if member_dim not in forecast.dims:
        raise ValueError(
            f"forecast has no member dimension {member_dim!r}; its dims are "
            f"{tuple(forecast.dims)}; pass member_dim= naming the ensemble dimension, "
            f"or add one with forecast.expand_dims({member_dim!r})"
        )


def as_dims(dim: str | Iterable[Hashable] | None) -> list[Hashable] | None:
    """Normalise ``dim``: ``None`` stays ``None`` (all dims), a string becomes ``[dim]``."""
    if dim is None:
        return None
    if isinstance(dim, str):
        return [dim]
    return list(dim)


def reduce_dims(
    available: Sequence[Hashable], dim: str | Iterable[Hashable] | None, what: str
) -> list[Hashable]:
    """Dims to average over: all ``available`` for ``None``; ``[]`` keeps every dim."""
    dims = as_dims(dim)
    if dims is None:
        return list(available)
    missing = [d for d in dims if d not in available]
    if missing:
        raise ValueError(
            f"dim {missing} not found: the {what} has dims {tuple(available)}; pass dim=None "
            "to average over all of them or dim=[] to keep them all"
        )
    return dims


def pairs(
    forecast: XarrayLike, obs: XarrayLike
) -> list[tuple[Hashable, xr.DataArray, xr.DataArray]]:
    """Match forecast and obs variables by name: ``[(name, forecast_var, obs_var), ...]``."""
    check_type(forecast, "forecast")
    check_type(obs, "obs")
    if isinstance(obs, xr.Dataset):
        # Imported here: the data package loads pint and cf-xarray, which verify need not.
        from xcorrdiff.data.conventions import standardize

        obs = standardize(obs, role="obs")
    if isinstance(forecast, xr.DataArray):
        if isinstance(obs, xr.Dataset):
            if forecast.name not in obs.data_vars:
                raise ValueError(
                    f"obs is a Dataset with variables {list(obs.data_vars)} but forecast is a "
                    f"DataArray named {forecast.name!r}; pass obs[name] or a DataArray"
                )
            return [(forecast.name, forecast, obs[forecast.name])]
        return [(forecast.name, forecast, obs)]
    for da in forecast.data_vars.values():
        check_numeric(da, "forecast")
    if isinstance(obs, xr.DataArray):
        return [(name, forecast[name], obs) for name in forecast.data_vars]
    missing = [name for name in forecast.data_vars if name not in obs.data_vars]
    if missing:
        raise ValueError(
            f"obs lacks the forecast variables {missing}; forecast has {list(forecast.data_vars)}, "
            f"obs has {list(obs.data_vars)}; rename or select matching variables"
        )
    return [(name, forecast[name], obs[name]) for name in forecast.data_vars]


def align_pair(
    forecast: xr.DataArray, obs: xr.DataArray, member_dim: str
) -> tuple[xr.DataArray, xr.DataArray]:
    """Check one forecast/obs pair and align them on their common coordinates (inner join)."""
    name = var_name(forecast)
    check_numeric(forecast, "forecast")
    check_numeric(obs, "obs")
    if member_dim not in forecast.dims:
        raise ValueError(
            f"forecast variable {name!r} has no member dimension {member_dim!r}; its dims are "
            f"{forecast.dims}; pass member_dim= naming the ensemble dimension"
        )
    if member_dim in obs.dims:
        raise ValueError(
            f"obs variable {var_name(obs)!r} has the member dimension {member_dim!r} "
            f"(dims {obs.dims}); obs must be one realisation: select or average it first"
        )
    extra = [d for d in obs.dims if d not in forecast.dims]
    if extra:
        raise ValueError(
            f"obs variable {var_name(obs)!r} has dims {extra} that forecast variable {name!r} "
            f"(dims {forecast.dims}) lacks; expected obs dims within "
            f"{tuple(d for d in forecast.dims if d != member_dim)}"
        )
    obs = match_units(forecast, obs, "forecast", "obs")
    obs = _snap_labels(forecast, obs)
    try:
        f_aligned, o_aligned = xr.align(forecast, obs, join="inner", copy=False)
    except ValueError as exc:
        sizes = {d: (forecast.sizes[d], obs.sizes[d]) for d in obs.dims}
        raise ValueError(
            f"forecast and obs for variable {name!r} cannot be aligned (dim sizes forecast vs "
            f"obs: {sizes}): {exc}; give both coordinates on the shared dims so that they can "
            "be matched, or select matching sizes"
        ) from exc
    empty = [
        d
        for d in o_aligned.dims
        if f_aligned.sizes[d] == 0 and forecast.sizes[d] > 0 and obs.sizes[d] > 0
    ]
    if empty:
        d = empty[0]
        raise ValueError(
            f"forecast and obs have no common coordinates along dim {d!r} for variable "
            f"{name!r}: forecast {d} = {_describe(forecast, d)}, obs {d} = {_describe(obs, d)}; "
            "select overlapping times/points or fix the coordinates"
        )
    return f_aligned, _same_coordinates(f_aligned, o_aligned, name)


def _float_coordinates(forecast: xr.DataArray, obs: xr.DataArray) -> list[Hashable]:
    return [
        n
        for n, c in obs.coords.items()
        if n in forecast.coords and "f" in (c.dtype.kind, forecast[n].dtype.kind)
    ]


def _snap_labels(forecast: xr.DataArray, obs: xr.DataArray) -> xr.DataArray:
    """``obs`` with the forecast's labels on the float dimensions where the two agree to
    rounding (the one grid rule of :mod:`xcorrdiff.data.grids`), so that aligning them
    neither drops a point nor pairs two different ones."""
    from xcorrdiff.data.grids import coordinate_tolerance

    snapped = {}
    for name in _float_coordinates(forecast, obs):
        if name not in obs.dims or name not in forecast.indexes:
            continue
        index, mine = forecast.indexes[name], np.asarray(obs[name].values)
        tolerance = coordinate_tolerance(index.values, mine)
        try:
            where = index.get_indexer(mine, method="nearest", tolerance=tolerance)
        except (ValueError, TypeError):  # not monotonic, or not comparable: align as is
            continue
        labels = np.where(where >= 0, index.values[where], mine)
        if not np.array_equal(labels, mine):
            snapped[name] = (name, labels, obs[name].attrs)
    return obs.assign_coords(snapped) if snapped else obs


def _same_coordinates(forecast: xr.DataArray, obs: xr.DataArray, name: str) -> xr.DataArray:
    """``obs`` carrying the forecast's other float coordinates (latitude, longitude...) when
    they agree to rounding; refused, with both values, when they do not."""
    from xcorrdiff.data.grids import coordinate_mismatch, coordinate_period

    same = {}
    for coord in _float_coordinates(forecast, obs):
        mine, theirs = obs[coord], forecast[coord]
        if coord in obs.dims or mine.dims != theirs.dims:
            continue
        period = coordinate_period(coord, theirs)
        mismatch = coordinate_mismatch(
            mine.values, theirs.values, names=(coord, coord), period=period
        )
        if mismatch is not None:
            raise ValueError(
                f"obs variable {name!r} is not on the forecast's grid: {mismatch}, the "
                "grid's being the forecast's. Regrid obs onto the forecast's grid first "
                "(obs.corrdiff.regrid(forecast)), or score the forecast at the obs points"
            )
        same[coord] = theirs.variable
    return obs.assign_coords(same) if same else obs


def match_units(
    reference: xr.DataArray, other: xr.DataArray, ref_arg: str, arg: str
) -> xr.DataArray:
    """``other`` in the units of ``reference`` (CF ``units`` attributes, compared with pint).

    Convertible units are converted (lazily; mass per area and liquid-water depth convert
    with a water density of 1000 kg m-3, so precipitation in ``kg m-2 s-1`` meets
    ``mm h-1``). Two variables without units are compared as they are.

    Raises
    ------
    ValueError
        Only one of the two has units, or the units do not convert (different quantities).
    """
    name = var_name(reference)
    ref_units, units = reference.attrs.get("units"), other.attrs.get("units")
    if ref_units is None and units is None:
        return other
    if ref_units is None or units is None:
        lacking, having = (ref_arg, arg) if ref_units is None else (arg, ref_arg)
        present = units if ref_units is None else ref_units
        raise ValueError(
            f"{lacking} variable {name!r} has no 'units' attribute but {having} has "
            f"{present!r}; verification compares values in the same units, so set "
            f"{lacking}[{name!r}].attrs['units'] (or drop the units of both)"
        )
    if str(units).strip() == str(ref_units).strip():
        return other
    # pint (with its registry) loads only when units differ: it is slow to import.
    from xcorrdiff.data.units import convert_units

    try:
        return convert_units(other, str(ref_units), water_equivalent=True)
    except ValueError as exc:
        raise ValueError(
            f"{arg} variable {name!r} is in {units!r}, which does not convert to the "
            f"{ref_arg}'s {ref_units!r} ({exc}); compare the same quantity, or fix the units "
            "attribute that is wrong"
        ) from None


def check_member_weights(weights: object, forecast: xr.DataArray, member_dim: str) -> xr.DataArray:
    """Validate member weights: a DataArray along ``member_dim`` of the forecast's length,
    finite, non-negative, and not all zero at any point.

    Raises
    ------
    TypeError
        ``weights`` is not a DataArray.
    ValueError
        Missing member dimension, wrong length, NaN/inf, negative values, or a point whose
        weights are all zero (the weighted CRPS would divide by zero).
    """
    check_type(weights, "member_weights")
    if not isinstance(weights, xr.DataArray) or member_dim not in weights.dims:
        raise ValueError(
            f"member_weights must be a DataArray with the member dimension {member_dim!r} "
            f"(member weights, as properscoring); got dims {getattr(weights, 'dims', None)}; "
            "for weighted averages over space, weight the result: "
            "crps(..., dim=[]).weighted(w).mean(dims)"
        )
    size, expected = weights.sizes[member_dim], forecast.sizes[member_dim]
    if size != expected:
        raise ValueError(
            f"member_weights has {size} values along {member_dim!r} but the forecast has {expected} "
            f"members; give one weight per member"
        )
    labelled = member_dim in weights.coords and member_dim in forecast.coords
    if labelled and not np.array_equal(weights[member_dim].values, forecast[member_dim].values):
        raise ValueError(
            f"member_weights' {member_dim!r} coordinate {_describe(weights, member_dim)} differs "
            f"from the forecast's {_describe(forecast, member_dim)}; label the weights "
            f"with the forecast's members (member_weights.assign_coords({member_dim}=...))"
        )
    values = np.asarray(weights.values, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(values.size - np.isfinite(values).sum())
        raise ValueError(
            f"member_weights has {bad} NaN/inf values; expected finite, non-negative member weights"
        )
    if (values < 0).any():
        raise ValueError(
            f"member_weights has negative values (smallest {float(values.min())!r}); expected non-negative "
            "member weights"
        )
    if (values.sum(axis=weights.get_axis_num(member_dim)) == 0).any():
        raise ValueError(
            f"member_weights are all zero along {member_dim!r} (at some point); at least one member "
            "needs a positive weight"
        )
    return weights


def _describe(da: xr.DataArray, d: Hashable) -> str:
    if d not in da.coords:
        return f"<{da.sizes[d]} values, no coordinate>"
    values = np.asarray(da[d].values)
    if values.size <= 4:
        return str(values.tolist())
    return f"[{values[0]} … {values[-1]}] ({values.size} values)"


def single_chunk(da: xr.DataArray, dims: Sequence[Hashable], what: str) -> xr.DataArray:
    """Rechunk ``dims`` into one chunk each (with a warning) when dask splits them."""
    if da.chunks is None:
        return da
    split = [d for d in dims if len(da.chunksizes[d]) > 1]
    if not split:
        return da
    warnings.warn(
        f"{what}: variable {var_name(da)!r} is split over several dask chunks along {split}; "
        f"rechunking to one chunk along them (chunk with {{{split[0]!r}: -1}} to avoid this)",
        UserWarning,
        stacklevel=3,
    )
    return da.chunk(dict.fromkeys(split, -1))


def rebuild(forecast: T, results: dict[Hashable, xr.DataArray]) -> T:
    """A DataArray for a DataArray forecast, a Dataset (same variable names) otherwise."""
    if isinstance(forecast, xr.DataArray):
        (result,) = results.values()
        return result.rename(forecast.name)
    return xr.Dataset({name: da.rename(None) for name, da in results.items()})


def map_pairs(
    forecast: T,
    obs: XarrayLike,
    member_dim: str,
    fn: Callable[[xr.DataArray, xr.DataArray], xr.DataArray],
) -> T:
    """Apply ``fn(forecast_var, obs_var)`` to every aligned pair; rebuild the forecast type."""
    check_type(forecast, "forecast")
    check_member_dim(forecast, member_dim)
    results = {}
    for name, f, o in pairs(forecast, obs):
        f, o = align_pair(f, o, member_dim)
        results[name] = fn(f, o)
    return rebuild(forecast, results)


def units_attrs(da: xr.DataArray, long_name: str, squared: bool = False) -> dict[str, str]:
    attrs = {"long_name": long_name}
    units = da.attrs.get("units")
    if units is not None:
        attrs["units"] = f"({units})**2" if squared else str(units)
    return attrs

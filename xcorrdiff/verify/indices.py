"""Climate indices of an ensemble against the truth's, through xclim (ETCCDI-style).

:func:`climate_indices` computes each chosen index (:data:`INDICES`) per member and for
the truth with xclim (the optional extra ``xcorrdiff[climate]``), per grid point and
period (``freq``, default annual), and returns per index its bias (members' mean index
minus the truth's) and the CRPS of the truth's index against the members' indices
(:func:`~xcorrdiff.verify.crps`), averaged over the periods. The daily inputs xclim
expects are made from the data (:func:`daily_inputs`): sub-daily temperature gives the
daily maximum and minimum, sub-daily precipitation the daily mean rate (a flux) or daily
total (an amount per step); daily data are used as they are. Units come from the data's
``units`` attributes.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xcorrdiff.verify._xarray import check_member_dim, check_type
from xcorrdiff.verify.scores import crps

__all__ = ["INDICES", "climate_indices", "daily_inputs"]


@dataclass(frozen=True)
class Index:
    """One index: the daily input it needs, what it is, and its xclim function."""

    needs: str
    summary: str
    compute: Callable[[Any, xr.DataArray, str], xr.DataArray]


def _r95ptot(xi: Any, pr: xr.DataArray, freq: str) -> xr.DataArray:
    """The share of each period's wet-day precipitation from days above the 95th
    percentile of the wet days (>= 1 mm/day) of the whole record, each dataset's (and
    each member's) own."""
    wet = pr.where(_in_mm_per_day(pr) >= 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # no wet day: NaN
        threshold = wet.quantile(0.95, "time").drop_vars("quantile")
    threshold = threshold.assign_attrs(units=pr.attrs["units"])
    return xi.fraction_over_precip_thresh(pr, threshold, freq=freq)


def _in_mm_per_day(pr: xr.DataArray) -> xr.DataArray:
    from xclim.core.units import convert_units_to

    return convert_units_to(pr, "mm/day", context="hydro")


#: The indices by name (the CORDEX ML-Bench set and a few more).
INDICES: dict[str, Index] = {
    "TXx": Index("tasmax", "hottest daily maximum", lambda xi, x, f: xi.tx_max(x, freq=f)),
    "TXn": Index("tasmax", "coldest daily maximum", lambda xi, x, f: xi.tx_min(x, freq=f)),
    "TNn": Index("tasmin", "coldest daily minimum", lambda xi, x, f: xi.tn_min(x, freq=f)),
    "SU": Index("tasmax", "summer days, maximum > 25 °C",
                lambda xi, x, f: xi.tx_days_above(x, thresh="25 degC", freq=f)),
    "Rx1day": Index("pr", "wettest day",
                    lambda xi, x, f: xi.max_1day_precipitation_amount(x, freq=f)),
    "Rx5day": Index("pr", "wettest 5 days",
                    lambda xi, x, f: xi.max_n_day_precipitation_amount(x, window=5, freq=f)),
    "SDII": Index("pr", "mean precipitation of wet days (>= 1 mm/day)",
                  lambda xi, x, f: xi.daily_pr_intensity(x, thresh="1 mm/day", freq=f)),
    "CDD": Index("pr", "longest dry spell (< 1 mm/day)",
                 lambda xi, x, f: xi.maximum_consecutive_dry_days(x, thresh="1 mm/day", freq=f)),
    "CWD": Index("pr", "longest wet spell (>= 1 mm/day)",
                 lambda xi, x, f: xi.maximum_consecutive_wet_days(x, thresh="1 mm/day", freq=f)),
    "R95pTOT": Index("pr", "share of precipitation from days above the 95th percentile",
                     lambda xi, x, f: _r95ptot(xi, x, f)),
}  # fmt: skip

_NAMES = {
    "temperature": ("t2m", "tas", "2t", "temperature", "air_temperature"),
    "tasmax": ("tasmax", "tx", "mx2t", "tmax", "maxt"),
    "tasmin": ("tasmin", "tn", "mn2t", "tmin", "mint"),
    "pr": ("pr", "precip", "tp", "precipitation", "precipitation_flux"),
}


def _xclim() -> Any:
    try:
        return importlib.import_module("xclim.indices")
    except ImportError as exc:
        raise ImportError(
            "climate_indices needs xclim, an optional dependency: pip install "
            f"'xcorrdiff[climate]' (or pip install xclim); importing it failed: {exc}"
        ) from exc


def _find(data: xr.Dataset, role: str) -> Hashable | None:
    for name, da in data.data_vars.items():
        if str(name).lower() in _NAMES[role] or da.attrs.get("standard_name") in _NAMES[role]:
            return name
    return None


def _time_step(data: xr.Dataset) -> pd.Timedelta:
    if "time" not in data.dims or data.sizes["time"] < 2:
        raise ValueError(
            f"climate_indices: the data need a 'time' dimension of at least two steps (got dims "
            f"{dict(data.sizes)})"
        )
    index = data.indexes["time"]
    return pd.Timedelta(np.median(np.asarray(index[1:] - index[:-1])))


def _units(da: xr.DataArray, name: Hashable) -> Any:
    from xclim.core.units import units2pint

    if "units" not in da.attrs:
        raise ValueError(
            f"climate_indices: variable {name!r} has no 'units' attribute; set it, e.g. "
            f"data[{str(name)!r}].attrs['units'] = 'K' (or 'mm/day', 'kg m-2 s-1')"
        )
    return units2pint(da)


def _daily_precipitation(da: xr.DataArray, name: Hashable, sub_daily: bool) -> xr.DataArray:
    """A daily rate in mm/day: a flux's daily mean, or an amount per step (a length, or
    a mass per area) summed over the day."""
    units = _units(da, name)
    amount = units.dimensionality in ({"[length]": 1}, {"[mass]": 1, "[length]": -2})
    daily = da.resample(time="1D").sum() if sub_daily and amount else (
        da.resample(time="1D").mean() if sub_daily else da
    )  # fmt: skip
    unit = str(da.attrs["units"])
    return _in_mm_per_day(daily.assign_attrs(units=f"({unit}) / d" if amount else unit))


def daily_inputs(
    data: xr.Dataset, variables: Mapping[str, Hashable] | None = None
) -> dict[str, xr.DataArray]:
    """The daily ``tasmax``, ``tasmin`` and ``pr`` xclim expects, those the data allow.

    ``variables`` names the data's variable for a role (``"tasmax"``, ``"tasmin"``,
    ``"pr"``, or ``"temperature"``: a sub-daily temperature whose daily maximum and minimum
    give the other two); by default each is found by name or ``standard_name`` (``t2m``,
    ``tas``; ``tasmax``, ``tx``; ``tasmin``; ``pr``, ``precip``, ``tp``).
    """
    chosen = dict(variables or {})
    unknown = sorted(set(chosen) - set(_NAMES))
    if unknown:
        raise ValueError(
            f"climate_indices: variables has roles {unknown}; expected some of {sorted(_NAMES)}"
        )
    sub_daily = _time_step(data) < pd.Timedelta(days=1)
    names = {role: chosen.get(role, _find(data, role)) for role in _NAMES}
    missing = [n for n in names.values() if n is not None and n not in data.data_vars]
    if missing:
        raise ValueError(f"climate_indices: variables names {missing}, which the data lack")
    out: dict[str, xr.DataArray] = {}
    for role, reduce in (("tasmax", "max"), ("tasmin", "min")):
        source = names[role] if names[role] is not None else (
            names["temperature"] if sub_daily else None
        )  # fmt: skip
        if source is None:
            continue
        da = data[source]
        _units(da, source)
        daily = getattr(da.resample(time="1D"), reduce)() if sub_daily else da
        out[role] = daily.assign_attrs(units=da.attrs["units"])
    if names["pr"] is not None:
        out["pr"] = _daily_precipitation(data[names["pr"]], names["pr"], sub_daily)
    return out


def climate_indices(
    forecast: xr.Dataset, obs: xr.Dataset, indices: Sequence[str] | None = None, *,
    member_dim: str = "member", variables: Mapping[str, Hashable] | None = None,
    freq: str = "YS", per_period: bool = False,
) -> xr.Dataset:  # fmt: skip
    """Each index's bias and CRPS, members against the truth (xclim).

    Parameters
    ----------
    forecast, obs : Dataset
        The ensemble (with ``member_dim``) and the truth, daily or sub-daily, with
        ``units`` attributes.
    indices : sequence of str, optional
        Names in :data:`INDICES`; default every index the data's variables allow.
    variables : mapping, optional
        Which variable plays which role (:func:`daily_inputs`).
    freq : str, default "YS"
        The periods of the indices (xclim's ``freq``: annual; ``"MS"`` monthly...).
    per_period : bool, default False
        Keep the periods (``time``) instead of averaging over them.

    Returns
    -------
    Dataset
        ``<index>_bias`` (members' mean index minus the truth's) and ``<index>_crps``
        per grid point, in the index's units.
    """
    check_type(forecast, "forecast")
    check_type(obs, "obs")
    check_member_dim(forecast, member_dim)
    xi = _xclim()
    daily_f, daily_o = daily_inputs(forecast, variables), daily_inputs(obs, variables)
    names = _chosen(indices, daily_o, daily_f)
    out = {}
    for name in names:
        spec = INDICES[name]
        index_f = spec.compute(xi, daily_f[spec.needs], freq)
        index_o = spec.compute(xi, daily_o[spec.needs], freq)
        over = [] if per_period else ["time"]
        bias = index_f.mean(member_dim) - index_o
        bias = bias if per_period else bias.mean("time")
        units = {"units": str(index_o.attrs.get("units", ""))}
        out[f"{name}_bias"] = bias.assign_attrs(long_name=f"{name} bias ({spec.summary})", **units)
        score = crps(index_f, index_o, member_dim=member_dim, dim=over)
        out[f"{name}_crps"] = score.assign_attrs(long_name=f"{name} CRPS ({spec.summary})", **units)
    return xr.Dataset(out)


def _chosen(
    indices: Sequence[str] | None,
    daily_o: dict[str, xr.DataArray],
    daily_f: dict[str, xr.DataArray],
) -> list[str]:
    available = [
        n for n, spec in INDICES.items() if spec.needs in daily_o and spec.needs in daily_f
    ]
    if indices is None:
        if not available:
            raise ValueError(
                "climate_indices: the data hold no temperature or precipitation variable the "
                f"indices can use; name them with variables= (roles {sorted(_NAMES)})"
            )
        return available
    names = [indices] if isinstance(indices, str) else list(indices)
    unknown = [n for n in names if n not in INDICES]
    if unknown:
        raise ValueError(
            f"climate_indices: unknown indices {unknown}; expected some of {list(INDICES)}"
        )
    lacking = [n for n in names if n not in available]
    if lacking:
        needs = {n: INDICES[n].needs for n in lacking}
        raise ValueError(
            f"climate_indices: indices {lacking} need the daily {needs}, which the forecast "
            f"and obs do not both give; name the variable with variables= (roles {sorted(_NAMES)}), "
            "or give sub-daily temperature for the daily maximum and minimum"
        )
    return names

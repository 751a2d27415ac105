"""Forecast lead time: the ``lead_time`` dimension of forecast inputs and its integer labels.

A lead-time-aware model (PhysicsNeMo's ``SongUNetPosLtEmbd``, GEFS-HRRR CorrDiff) keeps a
table of the lead times it was trained on; a sample's label is the row of its lead time.
Forecast data carry ``(time, lead_time, ...)``: ``time`` the initialisation, ``lead_time``
a ``timedelta64`` coordinate; the sample is valid at ``time + lead_time``.

Training flattens ``(time, lead_time)`` into one sample dimension, ``time``, holding the
valid times (:func:`flatten_leads`), with one label per sample; downscaling runs each lead
on its own and labels the output ``(member, time, lead_time, y, x)`` with a 2-D
``valid_time`` coordinate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "LEAD",
    "flatten_leads",
    "lead_labels",
    "lead_text",
    "lead_times_of",
    "map_leads",
    "valid_time",
]

LEAD = "lead_time"
TIME = "time"


def lead_times_of(ds: xr.Dataset, *, role: str = "lr") -> tuple[np.timedelta64, ...]:
    """The sorted distinct lead times of ``ds`` (empty without a ``lead_time`` dimension)."""
    if LEAD not in ds.dims:
        return ()
    values = ds[LEAD].values if LEAD in ds.coords else None
    if values is None or not np.issubdtype(values.dtype, np.timedelta64):
        raise ValueError(
            f"{role} has a {LEAD!r} dimension without a timedelta64 coordinate; label it, e.g. "
            f"{role}.assign_coords({LEAD}=pd.to_timedelta([0, 6, 12], unit='h'))"
        )
    if TIME not in ds.dims:
        raise ValueError(
            f"{role} has a {LEAD!r} dimension but no 'time' (initialisation) dimension; "
            f"expected forecasts on (time, {LEAD}, ...)"
        )
    return tuple(np.unique(values.astype("timedelta64[ns]")))


def lead_text(values: Iterable[Any]) -> list[str]:
    """Lead times for messages: ``['0 days 06:00:00', ...]``."""
    return [str(pd.Timedelta(v)) for v in values]


def lead_labels(values: np.ndarray, lead_times: Sequence[np.timedelta64]) -> np.ndarray:
    """The label (row of ``lead_times``) of each lead time in ``values``.

    Raises
    ------
    ValueError
        A lead time the model was not trained on.
    """
    table = np.asarray(lead_times, dtype="timedelta64[ns]")
    values = np.asarray(values, dtype="timedelta64[ns]")
    unknown = lead_text(sorted({v for v in values if v not in table}))
    if unknown:
        raise ValueError(
            f"lead_time values {unknown} are not lead times of the model, which was trained on "
            f"{lead_text(table)}; select those leads (lr.sel(lead_time=...))"
        )
    return np.searchsorted(table, values).astype(np.int64)


def valid_time(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """``time + lead_time`` on ``(time, lead_time)``."""
    return (ds[TIME] + ds[LEAD]).transpose(TIME, LEAD).rename("valid_time")


def flatten_leads(
    ds: xr.Dataset, lead_times: Sequence[np.timedelta64]
) -> tuple[xr.Dataset, np.ndarray]:
    """``ds`` on ``(time, lead_time, ...)`` as samples along ``time`` (the valid times),
    initialisation-major, and the label of each sample."""
    ordered = ds.sortby([TIME, LEAD]).transpose(TIME, LEAD, ...)
    labels = lead_labels(ordered[LEAD].values, lead_times)
    valid = valid_time(ordered).values.reshape(-1).astype("datetime64[ns]")
    flat = ordered.stack(sample=(TIME, LEAD)).drop_vars(["sample", TIME, LEAD])
    flat = flat.rename(sample=TIME).assign_coords({TIME: valid})
    order = [d for d in ds.dims if d != LEAD]
    return flat.transpose(*order), np.tile(labels, ordered.sizes[TIME])


def map_leads(
    ds: xr.Dataset,
    lead_times: Sequence[np.timedelta64],
    fn: Callable[[xr.Dataset, int], xr.Dataset],
) -> xr.Dataset:
    """``fn(sub, label)`` on each lead of forecasts ``ds`` ``(time, lead_time, ...)``, where
    ``sub`` is the lead's data on its valid times; the results are put back on the
    initialisation ``time``, stacked along ``lead_time`` and given a 2-D ``valid_time``.

    Raises
    ------
    ValueError
        ``ds`` has no ``lead_time`` dimension, or a lead time is not in ``lead_times``.
    """
    if LEAD not in ds.dims:
        raise ValueError(
            f"the model is lead-time-aware (lead times {lead_text(lead_times)}) but the "
            f"input has no {LEAD!r} dimension; pass forecasts on (time, {LEAD}, ...)"
        )
    lead_times_of(ds)  # a timedelta coordinate and a time dimension
    labels = lead_labels(ds[LEAD].values, lead_times)
    parts = []
    for k, lead in enumerate(ds[LEAD].values):
        sub = ds.isel({LEAD: k}, drop=True)
        sub = sub.assign_coords({TIME: (sub[TIME] + lead).values})
        parts.append(fn(sub, int(labels[k])).assign_coords({TIME: ds[TIME].values}))
    out = xr.concat(parts, dim=ds[LEAD], combine_attrs="override")
    return out.assign_coords(valid_time=valid_time(out)).transpose(TIME, LEAD, ...)

"""The GEFS-HRRR CorrDiff data set: GEFS forecasts in, HRRR forecasts out, zarr stores.

Layout (from PhysicsNeMo's ``datasets/gefs_hrrr.py``): ``<root>/gefs/*surface*.zarr``,
``<root>/gefs/*isobaric*.zarr`` and ``<root>/hrrr_forecast/*.zarr`` (one store per half
year), each holding ``values(time, channel, y, x)`` with channel names on ``channel`` and
2-D ``lat``/``lon``; ``time`` holds sample keys ``YYYYMMDDHHfFF``: the initial time and the
lead in hours (6-hourly initial times, leads f00–f24 every 3 h).

The reader pairs the samples the three sources share and labels them by their valid time
(initial time + lead), keeping ``init_time`` and ``lead_time`` as coordinates. Until lead
time is a model input, one valid time must not come from two leads: pick leads with
``leads=``. GEFS stays on its own grid (``fit`` regrids it, as the reference interpolates
it, onto the HRRR latitude/longitude).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from xcorrdiff.io.paired import PairedData, fill_units

__all__ = ["parse_sample_keys", "read_gefs_hrrr"]


def _open_all(folder: Path, pattern: str) -> xr.Dataset:
    paths = sorted(
        p for p in folder.glob(pattern) if "stats" not in p.name and "backup" not in p.name
    )
    if not paths:
        raise FileNotFoundError(
            f"no zarr store matches {os.fspath(folder / pattern)!r}; expected the GEFS-HRRR "
            "layout <root>/gefs/*surface*.zarr, <root>/gefs/*isobaric*.zarr, "
            "<root>/hrrr_forecast/*.zarr"
        )
    stores = [xr.open_zarr(p, consolidated=None) for p in paths]
    return stores[0] if len(stores) == 1 else xr.concat(stores, dim="time")


def parse_sample_keys(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(initial times, leads)`` of sample keys ``YYYYMMDDHHfFF`` (datetime64, timedelta64).

    Raises
    ------
    ValueError
        A key is not of that form.
    """
    keys = [str(k) for k in keys]
    bad = [k for k in keys if len(k) != 13 or k[10] != "f" or not (k[:10] + k[11:]).isdigit()]
    if bad:
        raise ValueError(
            f"sample keys {bad[:3]} are not of the form YYYYMMDDHHfFF (initial time, 'f', lead "
            "hours), e.g. '2021010100f03'"
        )
    init = pd.to_datetime([k[:10] for k in keys], format="%Y%m%d%H").to_numpy()
    lead = np.array([int(k[11:]) for k in keys], dtype="timedelta64[h]").astype("timedelta64[ns]")
    return init, lead


def _fields(store: xr.Dataset, channels: Sequence[str], role: str) -> xr.Dataset:
    stored = [str(c) for c in store["channel"].values]
    missing = sorted(set(channels) - set(stored))
    if missing:
        raise KeyError(f"{role} has no channels {missing}; it has {stored}")
    out = xr.Dataset({c: store["values"].sel(channel=c, drop=True) for c in channels})
    out = out.drop_vars(["lat", "lon"], errors="ignore")
    lat, lon = store["lat"].load(), store["lon"].load() % 360
    if bool(
        (lat == lat.isel({lat.dims[1]: 0})).all() and (lon == lon.isel({lon.dims[0]: 0})).all()
    ):
        y, x = lat.dims  # a rectilinear grid stored as 2-D: keep 1-D axes
        out = out.assign_coords({y: lat.isel({x: 0}).values, x: lon.isel({y: 0}).values})
        return out.rename({y: "lat", x: "lon"})
    return out.assign_coords(lat=lat.variable, lon=lon.variable)


def read_gefs_hrrr(
    root: str | os.PathLike[str],
    *,
    input_surface_variables: Sequence[str],
    input_isobaric_variables: Sequence[str],
    output_variables: Sequence[str],
    leads: Sequence[int] | None = None,
    window: tuple[tuple[int, int], tuple[int, int]] | None = None,
    units: Mapping[str, str] | None = None,
) -> PairedData:
    """Read the GEFS-HRRR stores under ``root`` as ``(lr, hr, invariants, stats)``, lazily.

    Parameters
    ----------
    root : path-like
        Folder holding ``gefs/`` and ``hrrr_forecast/``.
    input_surface_variables, input_isobaric_variables, output_variables : sequence of str
        Channel names (``u10m``, ``t850``, ...).
    leads : sequence of int, optional
        Lead hours to keep (e.g. ``[6]``); default all, which must not repeat a valid time.
    window : ((int, int), (int, int)), optional
        HRRR rows and columns ``((y0, y1), (x0, x1))`` to keep.
    units : mapping, optional
        Units of variables the reader does not know (see :mod:`xcorrdiff.io.paired`).

    Returns
    -------
    PairedData
        ``lr`` (GEFS surface and isobaric channels on their grid) and ``hr`` (HRRR on
        ``(time, y, x)`` with 2-D ``lat``/``lon``) at the samples all three sources hold;
        no invariants or stats.

    Raises
    ------
    ValueError
        Two kept samples share a valid time (pick ``leads=``), or malformed sample keys.
    """
    folder = Path(root)
    stores = {
        "GEFS surface": _open_all(folder / "gefs", "*surface*.zarr"),
        "GEFS isobaric": _open_all(folder / "gefs", "*isobaric*.zarr"),
        "HRRR": _open_all(folder / "hrrr_forecast", "*.zarr"),
    }
    keys = sorted(set.intersection(*(set(map(str, s["time"].values)) for s in stores.values())))
    init, lead = parse_sample_keys(keys)
    if leads is not None:
        keep = np.isin(lead, np.array(list(leads), dtype="timedelta64[h]"))
        keys, init, lead = (
            [k for k, ok in zip(keys, keep, strict=True) if ok],
            init[keep],
            lead[keep],
        )
    valid = init + lead
    if len(np.unique(valid)) != len(valid):
        raise ValueError(
            f"{len(valid) - len(np.unique(valid))} samples share a valid time with another lead; "
            "keep one lead per valid time, e.g. read_gefs_hrrr(..., leads=[6])"
        )
    label = {"time": valid, "init_time": ("time", init), "lead_time": ("time", lead)}
    parts = [
        _fields(stores["GEFS surface"].sel(time=keys), input_surface_variables, "GEFS surface"),
        _fields(stores["GEFS isobaric"].sel(time=keys), input_isobaric_variables, "GEFS isobaric"),
    ]
    lr = xr.merge(parts, compat="override", join="override").assign_coords(label)
    hrrr = stores["HRRR"].sel(time=keys)
    if window is not None:
        (y0, y1), (x0, x1) = window
        hrrr = hrrr.isel(y=slice(y0, y1), x=slice(x0, x1))
    hr = _fields(hrrr, output_variables, "HRRR").assign_coords(label)
    fill_units(lr, hr, units=units)
    return PairedData(lr, hr, None, None)

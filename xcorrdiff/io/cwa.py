"""The Taiwan / CWA CorrDiff data set: one consolidated zarr store.

Layout (from PhysicsNeMo's ``datasets/cwb.py``): dims ``time``, ``cwb_channel``,
``era5_channel``, ``south_north``, ``west_east`` (plus staggered ``*_stag``); arrays
``cwb(time, cwb_channel, south_north, west_east)`` (targets) and ``era5(...)`` (inputs,
already interpolated onto the 2 km grid), per channel ``*_variable`` (names), ``*_pressure``
(NaN for surface fields), ``*_center``/``*_scale`` (normalization); validity masks
``cwb_valid(time)`` and ``era5_valid(time, era5_channel)``; ``XLAT``/``XLONG(south_north,
west_east)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from xcorrdiff.io.paired import PairedData, fill_units

__all__ = ["read_cwa"]

#: Earth2Studio's Taiwan model: 12 ERA5 inputs and 4 CWA outputs, by channel position.
EARTH2STUDIO_CHANNELS = {
    "era5": (0, 1, 2, 3, 4, 9, 10, 11, 12, 17, 18, 19),
    "cwb": (0, 17, 18, 19),
}


def _names(store: xr.Dataset, prefix: str) -> list[str]:
    """``variable`` or ``variable<level>`` per channel (e.g. ``temperature500``)."""
    variables = [str(v) for v in store[f"{prefix}_variable"].values]
    levels = np.asarray(store[f"{prefix}_pressure"].values, dtype=np.float64)
    return [
        v if not np.isfinite(p) else f"{v}{round(p)}"
        for v, p in zip(variables, levels, strict=True)
    ]


def _fields(store: xr.Dataset, prefix: str, channels: Sequence[int] | None) -> xr.Dataset:
    names = _names(store, prefix)
    picked = range(len(names)) if channels is None else channels
    out = xr.Dataset(
        {names[i]: store[prefix].isel({f"{prefix}_channel": i}, drop=True) for i in picked}
    )
    return out.drop_vars([c for c in out.coords if c not in ("time", "XLAT", "XLONG")])


def _stats(store: xr.Dataset, prefix: str, names: Sequence[str]) -> dict[str, dict[str, float]]:
    center = dict(zip(_names(store, prefix), store[f"{prefix}_center"].values, strict=True))
    scale = dict(zip(_names(store, prefix), store[f"{prefix}_scale"].values, strict=True))
    return {n: {"mean": float(center[n]), "std": float(scale[n])} for n in names}


def read_cwa(
    path: str | os.PathLike[str],
    *,
    input_channels: Sequence[int] | None = EARTH2STUDIO_CHANNELS["era5"],
    output_channels: Sequence[int] | None = EARTH2STUDIO_CHANNELS["cwb"],
    shape: tuple[int, int] | None = None,
    units: Mapping[str, str] | None = None,
) -> PairedData:
    """Read the Taiwan / CWA zarr store as ``(lr, hr, invariants, stats)``, lazily.

    Parameters
    ----------
    path : path-like
        The consolidated zarr store.
    input_channels, output_channels : sequence of int, optional
        Positions along ``era5_channel`` and ``cwb_channel``; default Earth2Studio's Taiwan
        selection (12 inputs; radar reflectivity, 2 m temperature and 10 m winds). ``None``:
        every channel.
    shape : (int, int), optional
        Keep the first rows and columns (the reference trains on 448×448 of 450×450).
    units : mapping, optional
        Units of variables the reader does not know (see :mod:`xcorrdiff.io.paired`).

    Returns
    -------
    PairedData
        ``lr`` (ERA5 on the 2 km grid) and ``hr`` (CWA) on ``(time, south_north,
        west_east)`` with ``XLAT``/``XLONG``, only the valid times (``cwb_valid`` and every
        ``era5_valid``); no invariants; ``stats`` from ``*_center``/``*_scale``.
    """
    store = xr.open_zarr(path, consolidated=None)
    valid = np.asarray(store["cwb_valid"].values, dtype=bool) & np.all(
        np.asarray(store["era5_valid"].values, dtype=bool), axis=-1
    )
    store = store.isel(time=np.flatnonzero(valid))
    if shape is not None:
        store = store.isel(south_north=slice(0, shape[0]), west_east=slice(0, shape[1]))
    store = store.set_coords([c for c in ("XLAT", "XLONG") if c in store.data_vars])
    lr = _fields(store, "era5", input_channels)
    hr = _fields(store, "cwb", output_channels)
    fill_units(lr, hr, units=units)
    stats = {
        "input": _stats(store, "era5", list(map(str, lr.data_vars))),
        "output": _stats(store, "cwb", list(map(str, hr.data_vars))),
    }
    return PairedData(lr, hr, None, stats)

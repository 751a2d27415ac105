"""Conditioning channels computed from each sample's valid time and the HR grid's lat/lon.

A model declares the features it was trained with (``TrainConfig(time_features=...)``);
they are stored with it and computed again at downscaling time from the input's ``time``
coordinate, never asked of the user. Each feature gives channels after the invariants:

================= ============================ =========================================
feature           channels                     value
================= ============================ =========================================
``cos_zenith``    ``cos_zenith``               cosine of the solar zenith angle at each
                                               point
``hour_of_day``   ``hour_sin``, ``hour_cos``   the UTC time of day as an angle (24 h = 2π)
``day_of_year``   ``doy_sin``, ``doy_cos``     the time of year as an angle (the
                                               calendar's year = 2π)
================= ============================ =========================================

All lie in [-1, 1] and are not normalized further (mean 0, std 1 in the model's
statistics). The solar position is the Astronomical Almanac's low-precision formula (about
0.01° from 1950 to 2050, Michalsky 1988), geometric (no refraction).

Calendars: ``numpy.datetime64`` times and cftime dates of the ``standard``,
``gregorian`` and ``proleptic_gregorian`` calendars are real instants. Dates of model
calendars (``noleap``, ``365_day``, ``all_leap``, ``366_day``, ``360_day``, ``julian``) keep
their time of day, so the diurnal cycle is exact, and their day of the model year is placed at
the same fraction of the real (proleptic Gregorian) year for the Sun's position.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.data.grids import latlon_names

__all__ = [
    "FEATURES",
    "check_time_features",
    "cos_zenith",
    "feature_channels",
    "feature_stats",
    "time_features",
]

FEATURES: dict[str, tuple[str, ...]] = {
    "cos_zenith": ("cos_zenith",),
    "hour_of_day": ("hour_sin", "hour_cos"),
    "day_of_year": ("doy_sin", "doy_cos"),
}
_REAL_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
_J2000 = np.datetime64("2000-01-01T12:00:00", "s")
_DAY_S = 86400.0


def check_time_features(value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of known feature names, in the canonical order."""
    names = (value,) if isinstance(value, str) else value
    try:
        chosen = tuple(str(n) for n in names)
    except TypeError:
        chosen = ("?",)
    unknown = [n for n in chosen if n not in FEATURES]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"time_features={value!r} is invalid; expected distinct names among "
            f"{list(FEATURES)}, e.g. ('cos_zenith', 'hour_of_day')"
        )
    return tuple(n for n in FEATURES if n in chosen)


def feature_channels(features: Sequence[str]) -> tuple[str, ...]:
    """The channel names of ``features``, in order."""
    return tuple(channel for name in features for channel in FEATURES[name])


def feature_stats(features: Sequence[str]) -> dict[Hashable, dict[str, float]]:
    """Normalization statistics of the channels: none (mean 0, std 1)."""
    return {channel: {"mean": 0.0, "std": 1.0} for channel in feature_channels(features)}


def _calendar_fields(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per time: the year's start as datetime64[s], the day of year (0-based, with its
    fraction) and the length of the year, all in the times' own calendar."""
    if np.issubdtype(times.dtype, np.datetime64):
        t = times.astype("datetime64[s]")
        start = t.astype("datetime64[Y]").astype("datetime64[s]")
        length = ((start.astype("datetime64[Y]") + 1).astype("datetime64[s]") - start) / _DAY_S
        return start, (t - start) / np.timedelta64(1, "D"), length.astype(np.float64)
    import cftime

    first = [cftime.datetime(t.year, 1, 1, calendar=t.calendar) for t in times]
    following = [cftime.datetime(t.year + 1, 1, 1, calendar=t.calendar) for t in times]
    day = np.array([(t - f).total_seconds() / _DAY_S for t, f in zip(times, first, strict=True)])
    length = np.array([(b - a).days for a, b in zip(first, following, strict=True)], np.float64)
    start = np.array([np.datetime64(f"{t.year:04d}-01-01", "s") for t in times])
    return start, day, length


def _instants(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per time: days since J2000.0 (UT) of the Sun's position, the hour of day (UTC) and
    the fraction of the year, as float64."""
    times = np.asarray(times)
    if times.dtype == object and times.size and not hasattr(times.flat[0], "calendar"):
        raise TypeError(
            f"time values of type {type(times.flat[0]).__name__} are not dates; expected "
            "numpy datetime64 or cftime dates"
        )
    start, day, length = _calendar_fields(times)
    seconds, year_fraction = (day % 1.0) * _DAY_S, day / length
    model_calendar = times.dtype == object and times.flat[0].calendar not in _REAL_CALENDARS
    if model_calendar:  # the model day at the same fraction of the real year, same time of day
        real_length = ((start.astype("datetime64[Y]") + 1).astype("datetime64[s]") - start) / _DAY_S
        day = np.floor(np.floor(day) * real_length.astype(np.float64) / length) + day % 1.0
    real = start + np.round(day * _DAY_S).astype("timedelta64[s]")
    days_j2000 = (real - _J2000) / np.timedelta64(1, "D")
    return days_j2000.astype(np.float64), seconds / 3600.0, year_fraction


def cos_zenith(times: Any, lat: Any, lon: Any) -> np.ndarray:
    """Cosine of the solar zenith angle, ``(time, *lat.shape)``, float64.

    Parameters
    ----------
    times : array of datetime64 or cftime dates
        UTC valid times.
    lat, lon : array_like
        Degrees north and east, of one shape (the grid's).
    """
    days, _, _ = _instants(np.atleast_1d(np.asarray(times)))
    n = days[:, None]
    mean_longitude = np.deg2rad(280.460 + 0.9856474 * n)
    anomaly = np.deg2rad(357.528 + 0.9856003 * n)
    ecliptic = mean_longitude + np.deg2rad(1.915 * np.sin(anomaly) + 0.020 * np.sin(2 * anomaly))
    obliquity = np.deg2rad(23.439 - 4e-7 * n)
    right_ascension = np.arctan2(np.cos(obliquity) * np.sin(ecliptic), np.cos(ecliptic))
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecliptic))
    sidereal = np.deg2rad(15.0 * (18.697374558 + 24.06570982441908 * n))
    lat_r = np.deg2rad(np.asarray(lat, dtype=np.float64)).reshape(1, -1)
    lon_r = np.deg2rad(np.asarray(lon, dtype=np.float64)).reshape(1, -1)
    hour_angle = sidereal + lon_r - right_ascension
    value = np.sin(lat_r) * np.sin(declination) + np.cos(lat_r) * np.cos(declination) * np.cos(
        hour_angle
    )
    return value.reshape(days.size, *np.shape(lat))


def _channels(times: np.ndarray, lat: np.ndarray, lon: np.ndarray, features: tuple) -> np.ndarray:
    """``(time, channel, *lat.shape)`` float32 values of ``features``."""
    _, hours, year = _instants(times)
    shape = (times.size, *lat.shape)
    out: list[np.ndarray] = []
    for name in features:
        if name == "cos_zenith":
            out.append(cos_zenith(times, lat, lon))
        else:
            angle = 2 * np.pi * (hours / 24.0 if name == "hour_of_day" else year)
            expand = (slice(None), *([None] * lat.ndim))
            out += [np.broadcast_to(f(angle)[expand], shape) for f in (np.sin, np.cos)]
    return np.stack(out, axis=1).astype(np.float32)


def _grid_latlon(
    grid: xr.Dataset, grid_dims: tuple[Hashable, Hashable], features: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The grid's latitude and longitude on ``grid_dims`` (zeros when no feature needs them)."""
    shape = tuple(grid.sizes[d] for d in grid_dims)
    if "cos_zenith" not in features:
        return np.zeros(shape), np.zeros(shape)
    try:
        names = latlon_names(grid, role="grid")
    except ValueError as exc:
        raise ValueError(
            f"time_features={tuple(features)!r} include 'cos_zenith', which needs the HR "
            f"grid's latitude and longitude: {exc}"
        ) from None
    lat, lon = xr.broadcast(grid[names[0]], grid[names[1]])
    return lat.transpose(*grid_dims).values, lon.transpose(*grid_dims).values


def time_features(
    time: xr.DataArray,
    grid: xr.Dataset,
    features: Sequence[str],
    *,
    grid_dims: tuple[Hashable, Hashable],
    time_chunks: tuple[int, ...] | None = None,
) -> xr.Dataset:
    """The feature channels on ``(time, *grid_dims)``, float32; lazy, one task per chunk,
    when ``time_chunks`` gives the data's chunks along time."""
    lat, lon = _grid_latlon(grid, grid_dims, features)
    names = feature_channels(features)
    times = xr.Variable(time.dims, time.values)  # an index variable would not chunk
    if time_chunks is not None:
        times = times.chunk({time.dims[0]: time_chunks})
    sizes = {"channel": len(names), grid_dims[0]: lat.shape[0], grid_dims[1]: lat.shape[1]}
    values = xr.apply_ufunc(
        lambda t: _channels(np.asarray(t), lat, lon, tuple(features)),
        times,
        output_core_dims=[["channel", *grid_dims]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": sizes},
    )
    return xr.Dataset({name: values.isel(channel=k) for k, name in enumerate(names)})

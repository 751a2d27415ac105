"""Argument checks of :mod:`xcorrdiff.tutorial`: each error names the argument, the value
received and what was expected."""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff._checks import check_int
from xcorrdiff._synthetic.domain import DomainSpec, default_lr_spacing


def check_real(name: str, value: Any, low: float, high: float, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}]{unit}, got {value}")
    return number


def check_spec(
    hr_shape: Any,
    factor: Any,
    center: Any,
    domain_seed: Any,
    grid_spacing: Any,
    lr_spacing: Any,
    margin: Any,
) -> DomainSpec:
    factor = check_real("factor", factor, 1.0, 64.0, " (HR cells per LR cell)")
    if not isinstance(hr_shape, Sequence) or len(hr_shape) != 2:
        raise ValueError(f"hr_shape must be a pair (ny, nx), got {hr_shape!r}")
    minimum = max(16, math.ceil(2 * factor))
    shape = tuple(
        check_int(
            f"hr_shape[{i}]",
            n,
            minimum=minimum,
            hint=f"; the HR domain must span at least 16 cells and 2 LR cells (2 * factor = "
            f"{2 * factor:g}): use a larger hr_shape or a smaller factor",
        )
        for i, n in enumerate(hr_shape)
    )
    if not isinstance(center, Sequence) or len(center) != 2:
        raise ValueError(f"center must be a pair (lat, lon) in degrees, got {center!r}")
    lat0 = check_real("center latitude", center[0], -80.0, 80.0, " degrees")
    if abs(lat0) < 5.0:
        raise ValueError(
            f"center latitude must be at least 5 degrees from the equator (a Lambert conformal "
            f"grid needs it), got {lat0}"
        )
    lon0 = check_real("center longitude", center[1], -360.0, 360.0, " degrees")
    lon0 = (lon0 + 180.0) % 360.0 - 180.0
    grid_spacing = check_real("grid_spacing", grid_spacing, 100.0, 50_000.0, " m")
    if lr_spacing is None:
        lr_spacing = default_lr_spacing(factor, grid_spacing)
    lr_spacing = check_real("lr_spacing", lr_spacing, 0.001, 5.0, " degrees")
    extent = max(shape) * grid_spacing
    if extent > 5_000e3:
        raise ValueError(
            f"hr_shape {shape} at grid_spacing {grid_spacing:g} m spans {extent / 1e3:.0f} km; "
            f"keep the domain under 5000 km"
        )
    return DomainSpec(
        hr_shape=(shape[0], shape[1]),
        factor=factor,
        center=(lat0, lon0),
        domain_seed=check_int("domain_seed", domain_seed),
        grid_spacing=grid_spacing,
        lr_spacing=lr_spacing,
        margin=check_int("margin", margin, minimum=1, hint=" (LR cells)"),
    )


def time_axis(start: Any, n_times: int, freq: Any) -> tuple[np.ndarray, np.ndarray]:
    """Times (datetime64[ns]) and hours since the previous step."""
    if isinstance(freq, datetime.timedelta | np.timedelta64):
        step = np.timedelta64(freq).astype("timedelta64[ns]")
        times = np.datetime64(start, "ns") + step * np.arange(max(n_times, 2))
    else:
        try:
            times = xr.date_range(start, periods=max(n_times, 2), freq=freq).values
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"start {start!r} and freq {freq!r} must define a time axis, e.g. "
                f"start='2000-01-01', freq='6h' ({exc})"
            ) from exc
    if not np.all(np.diff(times) > np.timedelta64(0, "ns")):
        raise ValueError(f"freq must be a positive time step, got {freq!r}")
    times = times[:n_times]
    times = times.astype("datetime64[ns]")
    hours = np.zeros(n_times)
    hours[1:] = np.diff(times).astype("timedelta64[s]").astype(np.float64) / 3600.0
    return times, hours

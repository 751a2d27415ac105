"""Radially averaged 2-D power spectra with physical wavenumbers, and the spectral
distances of climate output (:func:`ralsd`, :func:`band_power_ratio`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import cast

import numpy as np
import xarray as xr

from xcorrdiff.verify import kernels
from xcorrdiff.verify._xarray import (
    T,
    XarrayLike,
    check_numeric,
    check_type,
    map_pairs,
    single_chunk,
    var_name,
)

__all__ = [
    "band_power_ratio",
    "grid_spacing",
    "high_wavenumber_power",
    "power_spectrum",
    "ralsd",
]

EARTH_RADIUS_M = 6_371_000.0
_LAT_NAMES = {"lat", "latitude"}
_LON_NAMES = {"lon", "longitude"}
_METRES = {"m", "metre", "metres", "meter", "meters"}
_KILOMETRES = {"km", "kilometre", "kilometres", "kilometer", "kilometers"}


def _is_lat(c: xr.DataArray) -> bool:
    units = str(c.attrs.get("units", "")).lower()
    return (
        str(c.name).lower() in _LAT_NAMES
        or c.attrs.get("standard_name") == "latitude"
        or units in {"degrees_north", "degree_north", "degrees_n", "degree_n"}
    )


def _is_lon(c: xr.DataArray) -> bool:
    units = str(c.attrs.get("units", "")).lower()
    return (
        str(c.name).lower() in _LON_NAMES
        or c.attrs.get("standard_name") == "longitude"
        or units in {"degrees_east", "degree_east", "degrees_e", "degree_e"}
    )


def _mean_latitude(obj: xr.Dataset | xr.DataArray, dims: tuple[Hashable, Hashable]) -> float:
    for d in dims:
        if d in obj.coords and _is_lat(obj[d]):
            return float(np.mean(obj[d].values))
    for _name, c in obj.coords.items():
        if _is_lat(c) and c.dtype.kind == "f":
            return float(np.nanmean(c.values))
    raise ValueError(
        f"power_spectrum: the grid is in longitude along {dims[1]!r} but no latitude "
        f"coordinate was found (coords {list(obj.coords)}); pass spacing=(dy, dx) in metres"
    )


def grid_spacing(
    obj: xr.Dataset | xr.DataArray, dims: tuple[Hashable, Hashable] = ("y", "x")
) -> tuple[float, float]:
    """Grid spacing ``(dy, dx)`` in metres from the 1-D coordinates on ``dims``.

    Coordinates in metres or kilometres (CF ``units``; metres when there are none) are
    used as they are. Latitude/longitude coordinates (by name, ``standard_name`` or
    ``units``) are converted on a sphere of radius 6371 km:
    :math:`\\Delta y = R\\,\\Delta\\varphi`, :math:`\\Delta x = R\\cos\\bar\\varphi\\,
    \\Delta\\lambda` (radians), :math:`\\bar\\varphi` the mean latitude.

    Raises
    ------
    ValueError
        A dim without a coordinate, a non-uniform coordinate, or unknown units.
    """
    spacing = []
    for d in dims:
        if d not in obj.coords or obj[d].ndim != 1:
            raise ValueError(
                f"power_spectrum needs a 1-D coordinate on dim {d!r} to find the grid "
                f"spacing; found coords {list(obj.coords)}; pass spacing=(dy, dx) in metres"
            )
        c = obj[d]
        values = np.asarray(c.values, dtype=np.float64)
        if values.size < 2:
            raise ValueError(f"power_spectrum: dim {d!r} has {values.size} point; need >= 2")
        steps = np.diff(values)
        step = float(np.median(np.abs(steps)))
        if np.max(np.abs(np.abs(steps) - step)) > 1e-3 * step:
            raise ValueError(
                f"power_spectrum: coordinate {d!r} is not uniformly spaced (steps from "
                f"{np.abs(steps).min()} to {np.abs(steps).max()}); regrid to a uniform grid or "
                "pass spacing=(dy, dx)"
            )
        units = str(c.attrs.get("units", "")).lower()
        if _is_lat(c):
            spacing.append(np.deg2rad(step) * EARTH_RADIUS_M)
        elif _is_lon(c):
            lat = _mean_latitude(obj, dims)
            spacing.append(np.deg2rad(step) * EARTH_RADIUS_M * np.cos(np.deg2rad(lat)))
        elif units in _KILOMETRES:
            spacing.append(step * 1000.0)
        elif units in _METRES or units == "":
            spacing.append(step)
        else:
            raise ValueError(
                f"power_spectrum: coordinate {d!r} has units {units!r}; expected metres, "
                "kilometres or degrees; pass spacing=(dy, dx) in metres"
            )
    return spacing[0], spacing[1]


def power_spectrum(
    field: T,
    *,
    dims: tuple[Hashable, Hashable] = ("y", "x"),
    spacing: tuple[float, float] | None = None,
    window: str | None = None,
    detrend: str | None = None,
) -> T:
    r"""Radially averaged 2-D power spectrum over ``dims``, per time, member, variable.

    With the 2-D DFT :math:`\hat f(\mathbf{k})` of an :math:`N_y \times N_x` field on a
    grid of spacing :math:`(\Delta y, \Delta x)`, wavenumbers :math:`\mathbf{k}` in cycles
    per metre, and annuli :math:`B_b` of width :math:`\Delta k = \max(1/N_y\Delta y,
    1/N_x\Delta x)` around :math:`k_b = b\,\Delta k`,

    .. math::

        E(k_b) = \frac{1}{\Delta k}\sum_{\mathbf{k}\in B_b}
            \frac{|\hat f(\mathbf{k})|^2}{(N_y N_x)^2},\qquad
        \sum_b E(k_b)\,\Delta k = \overline{f^2}\quad\text{(Parseval)}.

    Every other dimension (``member``, ``time``, ...) is kept, so ensembles give one
    spectrum per member; average afterwards, e.g. ``spec.mean(["member", "time"])``.

    Parameters
    ----------
    field : Dataset or DataArray
        Fields with both ``dims``; numpy- or dask-backed (each field must fit one chunk;
        split ``dims`` are rechunked with a warning).
    dims : (y_dim, x_dim), default ("y", "x")
        The two spatial dimensions, slow then fast.
    spacing : (dy, dx), optional
        Grid spacing in metres. Default: from the coordinates (:func:`grid_spacing`).
    window : {"hann", None}
        Hann taper (scaled to unit mean square) against leakage on non-periodic fields.
    detrend : {"constant", "linear", None}
        Remove the mean or a least-squares plane first.

    Returns
    -------
    Dataset or DataArray
        ``dims`` replaced by ``wavenumber`` (cycles per metre, starting at 0), with a
        ``wavelength`` coordinate (metres). Units ``field² · m``.
    """
    check_type(field, "field")
    if window not in (None, "hann"):
        raise ValueError(f"power_spectrum: window={window!r}; expected 'hann' or None")
    if detrend not in (None, "constant", "linear"):
        raise ValueError(
            f"power_spectrum: detrend={detrend!r}; expected 'constant', 'linear' or None"
        )
    dims = (dims[0], dims[1])
    (dy, dx) = spacing if spacing is not None else grid_spacing(field, dims)
    missing = [d for d in dims if d not in field.dims]
    if missing:
        raise ValueError(
            f"power_spectrum: field has dims {tuple(field.dims)}, expected the spatial dims "
            f"{dims}; pass dims=(y_dim, x_dim)"
        )
    shape = (field.sizes[dims[0]], field.sizes[dims[1]])
    _, wavenumber, _ = kernels.radial_bins(shape, (dy, dx))
    with np.errstate(divide="ignore"):
        wavelength = 1.0 / wavenumber

    def one(da: xr.DataArray) -> xr.DataArray:
        check_numeric(da, "field")
        if not all(d in da.dims for d in dims):
            raise ValueError(
                f"power_spectrum: variable {var_name(da)!r} has dims {da.dims}, expected "
                f"both {dims}; drop it or select it out"
            )
        da = single_chunk(da, list(dims), "power_spectrum")
        spec = xr.apply_ufunc(
            kernels.power_spectrum,
            da,
            input_core_dims=[list(dims)],
            output_core_dims=[["wavenumber"]],
            exclude_dims=set(dims),
            kwargs={"spacing": (dy, dx), "window": window, "detrend": detrend},
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"wavenumber": wavenumber.size}},
        )
        units = da.attrs.get("units")
        attrs = {"long_name": "power spectral density"}
        if units is not None:
            attrs["units"] = f"({units})**2 m"
        return spec.assign_attrs(attrs)

    coords = {
        "wavenumber": ("wavenumber", wavenumber, {"units": "m-1", "long_name": "wavenumber"}),
        "wavelength": ("wavenumber", wavelength, {"units": "m", "long_name": "wavelength"}),
    }
    if isinstance(field, xr.DataArray):
        return one(field).assign_coords(coords)
    return xr.Dataset({name: one(da) for name, da in field.data_vars.items()}).assign_coords(coords)


def high_wavenumber_power(
    field: xr.DataArray,
    *,
    dims: tuple[Hashable, Hashable] = ("y", "x"),
    fraction: float = 1.0 / 3.0,
) -> float:
    r"""Mean power in the highest ``fraction`` of resolved wavenumbers.

    The radial spectrum :math:`E(k)` of :func:`power_spectrum` (Hann
    window, linear detrend, so the fields' edges do not leak power to high wavenumbers) is
    summed over the annuli with :math:`(1 - f)\,k_N < k \le k_N`, where
    :math:`k_N = 1 / (2 \max(\Delta y, \Delta x))` is the Nyquist wavenumber of the coarser
    axis (the largest radius every direction resolves), and averaged over every other
    dimension (time, member).

    Parameters
    ----------
    field : xarray.DataArray
        Fields with both ``dims`` (plus any of ``time``, ``member``...).
    dims : (y_dim, x_dim), default ("y", "x")
        The spatial dimensions.
    fraction : float, default 1/3
        Width of the band below the Nyquist wavenumber, as a fraction of it (0 to 1).

    Returns
    -------
    float
        :math:`\sum_{k \in \text{band}} E(k)\,\Delta k`, in the field's units squared.

    Raises
    ------
    ValueError
        If ``fraction`` is not in (0, 1] or the band holds no wavenumber.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is invalid; expected a number in (0, 1]")
    spacing = grid_spacing(field, dims)
    spec = power_spectrum(field, dims=dims, window="hann", detrend="linear")
    k = spec["wavenumber"].values
    k_nyquist = 1.0 / (2.0 * max(spacing))
    band = (k > (1.0 - fraction) * k_nyquist) & (k <= k_nyquist * (1 + 1e-9))
    if not band.any():
        raise ValueError(
            f"the highest {fraction:.2f} of wavenumbers of a {field.sizes[dims[0]]}x"
            f"{field.sizes[dims[1]]} field holds no spectral bin; use a larger field"
        )
    dk = float(k[1] - k[0])
    total = spec.isel(wavenumber=np.flatnonzero(band)).sum("wavenumber") * dk
    return float(total.mean())


# --- spectral distances of climate output --------------------------------------------------


def _mean_spectra(
    f: xr.DataArray, o: xr.DataArray, dims: tuple[Hashable, Hashable],
    spacing: tuple[float, float] | None, member_dim: str, per_member: bool,
) -> tuple[xr.DataArray, xr.DataArray, tuple[float, float]]:  # fmt: skip
    """The forecast's and obs' spectra (Hann window, linear detrend), averaged over every
    dimension but the wavenumber (and the member's, ``per_member``), on the wavenumbers
    every direction resolves, ``0 < k <= 1 / (2 max(dy, dx))``."""
    (dy, dx) = spacing if spacing is not None else grid_spacing(o, dims)
    options = {"dims": dims, "spacing": (dy, dx), "window": "hann", "detrend": "linear"}
    sf, so = power_spectrum(f, **options), power_spectrum(o, **options)  # type: ignore[arg-type]
    keep = {"wavenumber", member_dim} if per_member else {"wavenumber"}
    sf = sf.mean([d for d in sf.dims if d not in keep])
    so = so.mean([d for d in so.dims if d != "wavenumber"])
    return resolved(sf, (dy, dx)), resolved(so, (dy, dx)), (dy, dx)


def resolved(spectrum: xr.DataArray, spacing: tuple[float, float]) -> xr.DataArray:
    """The spectrum on the wavenumbers every direction resolves, ``0 < k <= k_N``,
    ``k_N = 1 / (2 max(dy, dx))``."""
    k = spectrum["wavenumber"].values
    return spectrum.isel(
        wavenumber=np.flatnonzero((k > 0) & (k <= (1 + 1e-9) / (2 * max(spacing))))
    )


def log_spectral_distance(sf: xr.DataArray, so: xr.DataArray) -> xr.DataArray:
    """RALSD (dB) of two mean spectra on the resolved wavenumbers."""
    decibels = 10 * cast(xr.DataArray, np.log10(sf / so))
    distance = ((decibels**2).mean("wavenumber")) ** 0.5
    return distance.assign_attrs(long_name="radially averaged log spectral distance", units="dB")


def band_ratios(
    sf: xr.DataArray, so: xr.DataArray, bands: Sequence[tuple[float, float]] | None,
    shape: tuple[int, int], spacing: tuple[float, float],
) -> xr.DataArray:  # fmt: skip
    """Power of ``sf`` over ``so`` (mean spectra on the resolved wavenumbers) per band."""
    chosen = _check_bands(bands if bands is not None else octave_bands(shape, spacing), so)
    k = so["wavenumber"].values
    ratios = []
    for short, long in chosen:
        inside = np.flatnonzero((k > 1 / long) & (k <= 1 / short * (1 + 1e-9)))
        ratios.append(sf.isel(wavenumber=inside).sum("wavenumber")
                      / so.isel(wavenumber=inside).sum("wavenumber"))  # fmt: skip
    ratio = xr.concat(ratios, "band").assign_coords(
        wavelength_min=("band", [b[0] for b in chosen], {"units": "m"}),
        wavelength_max=("band", [b[1] for b in chosen], {"units": "m"}),
    )
    return ratio.assign_attrs(long_name="power ratio per wavelength band")


def ralsd(
    forecast: T, obs: XarrayLike, *, dims: tuple[Hashable, Hashable] = ("y", "x"),
    spacing: tuple[float, float] | None = None, member_dim: str = "member",
    per_member: bool = False,
) -> T:  # fmt: skip
    r"""Radially averaged log spectral distance, in dB (0: the same spectrum).

    .. math::

        \mathrm{RALSD} = \Big(\frac{1}{K}\sum_{0 < k_b \le k_N}
            \big(10\log_{10} \bar E_f(k_b) - 10\log_{10} \bar E_o(k_b)\big)^2\Big)^{1/2},

    with :math:`\bar E` the spectra of :func:`power_spectrum` (Hann window, linear detrend)
    averaged over time and every other dimension, the members' pooled (or each member's,
    ``per_member``), on the ``K`` radial bins up to the Nyquist wavenumber of the coarser
    axis, :math:`k_N = 1 / (2 \max(\Delta y, \Delta x))`. Every wavenumber counts alike,
    so the many small scales weigh most. Fields with NaN (land-only) give NaN: score a box
    without them.
    """

    def one(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        sf, so, _ = _mean_spectra(f, o, dims, spacing, member_dim, per_member)
        return log_spectral_distance(sf, so)

    return map_pairs(forecast, obs, member_dim, one)


def octave_bands(shape: tuple[int, int], spacing: tuple[float, float]) -> list[tuple[float, float]]:
    """Wavelength bands ``[2Δ·2^j, 2Δ·2^(j+1))`` in metres, from twice the coarser spacing
    ``Δ`` (the Nyquist wavelength) while the band's shortest wavelength fits in the
    domain's shorter side (the longest wavelength :func:`power_spectrum` resolves), so
    each band holds at least one radial bin."""
    side = min(n * d for n, d in zip(shape, spacing, strict=True))
    bands, low = [], 2 * max(spacing)
    while low <= side * (1 + 1e-9):
        bands.append((low, 2 * low))
        low *= 2
    return bands


def band_power_ratio(
    forecast: T, obs: XarrayLike, *, bands: Sequence[tuple[float, float]] | None = None,
    dims: tuple[Hashable, Hashable] = ("y", "x"), spacing: tuple[float, float] | None = None,
    member_dim: str = "member", per_member: bool = False,
) -> T:  # fmt: skip
    """Power of the forecast over the obs' in wavelength bands (1: right; > 1 too much
    small-scale variance, < 1 too smooth), from the spectra :func:`ralsd` averages.

    ``bands``: ``(shortest, longest)`` wavelengths in metres, each band holding the radial
    bins with ``1 / longest < k <= 1 / shortest``; default :func:`octave_bands`, octaves
    from the Nyquist wavelength up. The result has a ``band`` dimension with coordinates
    ``wavelength_min`` and ``wavelength_max`` (metres). The other arguments are
    :func:`ralsd`'s.
    """

    def one(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        sf, so, step = _mean_spectra(f, o, dims, spacing, member_dim, per_member)
        return band_ratios(sf, so, bands, (o.sizes[dims[0]], o.sizes[dims[1]]), step)

    return map_pairs(forecast, obs, member_dim, one)


def _check_bands(
    bands: Sequence[tuple[float, float]], spectrum: xr.DataArray
) -> list[tuple[float, float]]:
    k = spectrum["wavenumber"].values
    chosen = []
    for band in bands:
        short, long = (float(v) for v in band)
        if not 0 < short < long:
            raise ValueError(
                f"bands: {tuple(band)!r} is invalid; expected (shortest, longest) wavelengths "
                "in metres, 0 < shortest < longest"
            )
        if not np.any((k > 1 / long) & (k <= 1 / short * (1 + 1e-9))):
            raise ValueError(
                f"bands: {tuple(band)!r} holds no resolved wavenumber of this grid (resolved "
                f"wavelengths {1 / k[-1]:.4g} to {1 / k[0]:.4g} m); widen or drop it"
            )
        chosen.append((short, long))
    return chosen

"""A known-truth synthetic "toy atmosphere" for training and testing downscaling models.

Real paired LR/HR data (ERA5 with WRF or HRRR) cannot ship with a library, and a generative
model can only be checked against data whose true conditional distribution is known. This
module makes such data, reproducibly, in a second or two::

    lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=256, hr_shape=(128, 128), factor=8)
    oracle = xcorrdiff.tutorial.oracle_ensemble(lr, n_ensemble=32, seed=1)  # samples of p(hr | lr)
    static = xcorrdiff.tutorial.invariants(hr)                            # orography, land-sea mask

By construction ``hr = mean(lr, static) + noise(lr, static, xi)``: the HR truth is a known
function of the LR fields (on their own grid) and the static fields, plus noise drawn from
an explicit distribution given the LR state. :func:`oracle_ensemble` redraws only the noise,
so its members are samples of the true ``p(hr | lr)``: their CRPS against ``hr`` is the floor
any model can reach. :func:`oracle_mean` is ``E[hr | lr]``, the ideal regression output.

The domain (grids, orography, land-sea mask) depends only on ``hr_shape``, ``factor``,
``center``, ``grid_spacing``, ``lr_spacing``, ``margin`` and ``domain_seed``; the weather
only on ``seed`` (and the time axis). Weather from another ``seed`` falls on the same
terrain, so a model trained on one seed can be tested on another.

Grids
-----
HR (``hr``): a Lambert conformal conic grid (tangent at the centre latitude, CF grid mapping
in the scalar coordinate ``crs``), ``grid_spacing`` (2 km) apart, dims ``(time, y, x)``;
``y``/``x`` in metres from the centre; ``lat``/``lon`` are 2-D (curvilinear) coordinates from
the inverse projection, as in WRF and HRRR output.

LR (``lr``): a regular lat/lon grid, dims ``(time, lat, lon)``, ``lat`` descending (as in
ERA5), ``lon`` ascending, both aligned on multiples of the spacing and covering the HR domain
with ``margin`` cells to spare on every side. The LR spacing is ``factor * grid_spacing``
converted to degrees and rounded to a multiple of 0.05° (0.01° below 0.05°): with 2 km,
factor 8 → 0.15°, 12 → 0.2°, 13-15 → 0.25° (ERA5's grid), 16 → 0.3°. North-south the LR
spacing is therefore about ``factor`` HR cells; east-west it is ``cos(lat)`` times that, as
on any lat/lon grid. Rename to ERA5's names with
``lr.rename(lat="latitude", lon="longitude")`` if needed; both carry CF attributes.

Variables
---------
======================  ==========  ==============================================================
variable                units       how it is made
======================  ==========  ==============================================================
``lr.z850``             m2 s-2      geopotential: 1500 m × g + mean-wind balance
                                    (``f0 (v̄ x - ū y)``) + latent field ψ850
``lr.t850``             K           climatology (poleward gradient) + domain-mean AR(1) + anomaly
``lr.t500``             K           ``t850 - 28 K`` + correlated and independent anomalies
``lr.z500``             m2 s-2      hypsometric: ``z850 + R_d ln(850/500) (t850+t500)/2`` + ψ500
``lr.u850``/``v850``    m s-1       geostrophic wind of ``z850`` (f-plane)
``lr.u500``/``v500``    m s-1       geostrophic wind of ``z500`` (includes the thermal wind)
``lr.u10m``/``v10m``    m s-1       850 hPa wind × 0.6, turned 20° towards low pressure, stronger
                                    over sea, weaker over LR orography
``lr.t2m``              K           ``t850`` + 6.5 K/km × (850 hPa height − LR orography) − 1.5 K
``lr.tcwv``             kg m-2      Clausius-Clapeyron in ``t850`` × log-normal moisture anomaly
                                    × ``exp(-h_LR / 2500 m)``
``hr.t2m``              K           interp(``lr.t2m``) − 6.5 K/km × (h − h_LR) + land-sea contrast
                                    (sign follows ``lr.t2m``) + Gaussian noise (``k^-3``, std
                                    0.15-0.7 K: larger over land and in calm air)
``hr.u10m``/``v10m``    m s-1       interp(``lr.u10m``/``v10m``): speed-up over unresolved crests
                                    and open sea, deflected along slopes + turbulence with a
                                    ``k^-5/3`` energy spectrum, std ``0.2 + (0.04 to 0.08) |U|``
``hr.precip``           mm h-1      convective cells: ``p0 expm1(0.7 (ξ - θ))`` where the Gaussian
                                    cell field ``ξ > θ`` (8 km Matérn), else 0; θ falls and p0
                                    rises with ``tcwv`` and with orographic lift (upslope wind)
``orography``           m           ridge (random orientation, 1.5-2.5 km) + fractal terrain
                                    (``k^-2.8``: ~120 m below the LR scale), 0 over sea
``land_sea_mask``       1           1 where ridge + fractal terrain is above a sea level that
                                    leaves 25 % of the HR domain sea
======================  ==========  ==============================================================

``h_LR`` is the HR orography averaged over each LR cell and interpolated back (``interp`` is
bilinear in lat/lon from the LR grid). The latent LR fields are FFT-synthesised Gaussian
random fields with a red spectrum, each Fourier mode an AR(1) process in time whose
correlation time shrinks at small scales (48 h for scales ≥ 1000 km, ``~ k^-1/3`` below).
The HR noise is independent between time steps, so ``p(hr | lr) = prod_t p(hr_t | lr_t)``;
the exact formulas are in ``xcorrdiff._synthetic.physics``.

Invariants
----------
``orography`` and ``land_sea_mask`` are 2-D ``(y, x)`` *coordinates* of ``hr`` (and of the
oracle ensembles): ``hr.data_vars`` are exactly the four targets, and the static fields still
travel with every variable. :func:`invariants` returns them as an ``xr.Dataset`` of data
variables, the form ``fit(..., invariants=...)`` takes; it also works on ``lr`` (rebuilt from
the recipe).

Reproducibility
---------------
Every random draw comes from its own generator, ``SeedSequence(seed, spawn_key=key)``: time
step ``i`` of the weather, time step ``i`` of the HR noise, member ``m`` at time ``t`` of an
oracle ensemble. So the first ``n`` times do not depend on ``n_times``, and an oracle member
at a given time does not depend on which other times or members are computed. The recipe is
recorded in ``attrs["xcorrdiff_recipe"]`` (JSON) of both data sets.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from xcorrdiff._checks import check_int
from xcorrdiff._synthetic import checks, fields, layout, posterior
from xcorrdiff._synthetic.domain import Domain, DomainSpec, build_domain
from xcorrdiff._synthetic.physics import (
    HR_VARIABLES,
    LR_INPUTS,
    NoiseModel,
    PhysicsParams,
    conditional,
    conditional_mean,
    noise_model,
    sample,
    white_noise,
)
from xcorrdiff._synthetic.weather import LR_VARIABLES, WeatherParams, make_weather
from xcorrdiff.data.grids import coordinates_agree

__all__ = ["invariants", "make_synthetic", "oracle_ensemble", "oracle_mean", "oracle_posterior"]

RECIPE_ATTR = layout.RECIPE_ATTR
RECIPE_VERSION = 1
_WEATHER = WeatherParams()
_PHYSICS = PhysicsParams()
_BLOCK = 32  # time steps per block in make_synthetic and oracle_mean (bounds memory)


def _version() -> str | None:
    try:
        from xcorrdiff._version import __version__
    except ImportError:  # pragma: no cover
        return None
    return __version__


# --- public API ---------------------------------------------------------------------------


def make_synthetic(
    n_times: int = 256,
    hr_shape: tuple[int, int] = (128, 128),
    factor: float = 8,
    seed: int = 0,
    *,
    center: tuple[float, float] = (45.0, 7.0),
    domain_seed: int = 0,
    grid_spacing: float = 2000.0,
    lr_spacing: float | None = None,
    margin: int = 2,
    start: str | np.datetime64 | datetime.datetime = "2000-01-01",
    freq: str | np.timedelta64 | datetime.timedelta = "6h",
) -> tuple[xr.Dataset, xr.Dataset]:
    """Make a paired LR/HR synthetic data set whose ``p(hr | lr)`` is known exactly.

    Parameters
    ----------
    n_times : int
        Number of time steps (>= 1).
    hr_shape : (ny, nx)
        HR grid size; each at least 16 and at least ``2 * factor``. Need not be square or a
        multiple of ``factor``.
    factor : float
        About how many HR cells fit in one LR cell (1 to 64); sets the LR spacing (see
        ``lr_spacing``) and the scale below which the HR noise lives.
    seed : int
        Weather seed (>= 0): the LR fields and the HR noise.
    center : (lat, lon)
        Centre of the HR domain in degrees; ``5 <= |lat| <= 80``.
    domain_seed : int
        Terrain seed (>= 0): orography and land-sea mask.
    grid_spacing : float
        HR grid spacing in metres (100 to 50 000).
    lr_spacing : float, optional
        LR spacing in degrees. Default: ``factor * grid_spacing`` in degrees, rounded to a
        multiple of 0.05° (0.15° for the defaults).
    margin : int
        LR cells beyond the HR domain on every side (>= 1).
    start, freq
        First time and time step (any ``xarray.date_range`` frequency, or a timedelta).
        The weather's temporal correlation follows the actual time step.

    Returns
    -------
    lr : xarray.Dataset
        Variables ``u500, v500, z500, t500, u850, v850, z850, t850, u10m, v10m, t2m, tcwv``,
        float32, dims ``(time, lat, lon)``; ``lat`` descending.
    hr : xarray.Dataset
        Variables ``t2m`` (K), ``u10m``, ``v10m`` (m s-1), ``precip`` (mm h-1), float32,
        dims ``(time, y, x)``; coordinates ``y``, ``x`` (m), 2-D ``lat``, ``lon``,
        ``orography``, ``land_sea_mask`` and the grid mapping ``crs``.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or out of range; the message names it.

    Examples
    --------
    >>> lr, hr = make_synthetic(n_times=4, hr_shape=(32, 48), factor=4)
    >>> dict(hr.sizes), list(hr.data_vars)
    ({'time': 4, 'y': 32, 'x': 48}, ['t2m', 'u10m', 'v10m', 'precip'])
    >>> lr.t2m.dims, lr.t2m.attrs["units"]
    (('time', 'lat', 'lon'), 'K')
    """
    n_times = check_int("n_times", n_times, minimum=1)
    seed = check_int("seed", seed)
    spec = checks.check_spec(
        hr_shape, factor, center, domain_seed, grid_spacing, lr_spacing, margin
    )
    times, hours = checks.time_axis(start, n_times, freq)
    domain = build_domain(spec)

    weather = make_weather(domain, seed, hours, _WEATHER)
    model = noise_model(domain, _PHYSICS)
    hr_data = {name: np.empty((n_times, *spec.hr_shape), np.float32) for name in HR_VARIABLES}
    for t0 in range(0, n_times, _BLOCK):
        t1 = min(t0 + _BLOCK, n_times)
        cond = conditional({k: weather[k][t0:t1] for k in LR_INPUTS}, domain, _PHYSICS)
        keys = [(fields.STREAM_TRUTH, i) for i in range(t0, t1)]
        drawn = sample(cond, white_noise(seed, keys, model), model, _PHYSICS)
        for name in HR_VARIABLES:
            hr_data[name][t0:t1] = drawn[name]

    recipe = {
        "generator": "xcorrdiff.tutorial.make_synthetic",
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "n_times": n_times,
        **{
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(spec)
            for v in [getattr(spec, f.name)]
        },
        "start": str(times[0]),
        "freq": str(freq),
        "weather": dataclasses.asdict(_WEATHER),
        "physics": dataclasses.asdict(_PHYSICS),
        "xcorrdiff_version": _version(),
    }
    time = {"time": layout.time_coord(times)}
    lr = xr.Dataset(
        {
            name: (("time", "lat", "lon"), weather[name], layout.lr_metadata(name))
            for name in LR_VARIABLES
        },
        coords={**time, **layout.lr_coords(domain)},
        attrs=layout.global_attrs(
            recipe, "xcorrdiff synthetic toy atmosphere: LR (ERA5-like) input"
        ),
    )
    hr = layout.hr_dataset(
        domain,
        hr_data,
        ("time", "y", "x"),
        time,
        layout.global_attrs(recipe, "xcorrdiff synthetic toy atmosphere: HR target"),
    )
    return lr, hr


def _recipe(ds: xr.Dataset | xr.DataArray, name: str) -> dict[str, Any]:
    text = ds.attrs.get(RECIPE_ATTR)
    if text is None:
        raise ValueError(
            f"{name} has no attrs[{RECIPE_ATTR!r}]; pass a data set returned by "
            f"xcorrdiff.tutorial.make_synthetic (keep its attrs, e.g. with keep_attrs=True)"
        )
    recipe: dict[str, Any] = json.loads(text)
    if recipe.get("recipe_version") != RECIPE_VERSION:
        raise ValueError(
            f"{name} was made by recipe version {recipe.get('recipe_version')!r}; this "
            f"xcorrdiff reads version {RECIPE_VERSION}: remake it with make_synthetic"
        )
    return recipe


def _domain_from_recipe(recipe: Mapping[str, Any]) -> tuple[Domain, PhysicsParams]:
    spec = DomainSpec(
        hr_shape=(int(recipe["hr_shape"][0]), int(recipe["hr_shape"][1])),
        factor=float(recipe["factor"]),
        center=(float(recipe["center"][0]), float(recipe["center"][1])),
        domain_seed=int(recipe["domain_seed"]),
        grid_spacing=float(recipe["grid_spacing"]),
        lr_spacing=float(recipe["lr_spacing"]),
        margin=int(recipe["margin"]),
        sea_fraction=float(recipe["sea_fraction"]),
    )
    return build_domain(spec), PhysicsParams(**recipe["physics"])


def _lr_inputs(lr: xr.Dataset) -> tuple[Domain, PhysicsParams, dict[str, Any], np.ndarray]:
    """Domain, physics, the LR inputs ``(time, lat, lon)`` (numpy or dask) and the times."""
    if not isinstance(lr, xr.Dataset):
        raise TypeError(
            f"lr must be an xarray.Dataset from make_synthetic, got {type(lr).__name__}"
        )
    domain, physics = _domain_from_recipe(_recipe(lr, "lr"))
    missing = [name for name in LR_INPUTS if name not in lr.data_vars]
    if missing:
        raise ValueError(
            f"lr lacks the variables {missing}; the oracle needs {list(LR_INPUTS)} from "
            f"make_synthetic's LR data set"
        )
    arrays = {}
    for name in LR_INPUTS:
        var = lr[name]
        if set(var.dims) != {"time", "lat", "lon"}:
            raise ValueError(
                f"lr[{name!r}] has dims {var.dims}; expected ('time', 'lat', 'lon') (select "
                f"times with lr.isel(time=[i]) to keep the time dimension)"
            )
        expected = layout.lr_metadata(name)["units"]
        if var.attrs.get("units") != expected:
            raise ValueError(
                f"lr[{name!r}] has units {var.attrs.get('units')!r}; expected {expected!r}"
            )
        arrays[name] = var.transpose("time", "lat", "lon").data
    for axis, values in (("lat", domain.lr_lat), ("lon", domain.lr_lon)):
        if not coordinates_agree(lr[axis].values, values):  # the one grid rule
            raise ValueError(
                f"lr[{axis!r}] differs from the recipe's LR grid ({values.size} values from "
                f"{values[0]:g} to {values[-1]:g}); the oracle needs the full, unsubsetted LR grid"
            )
    return domain, physics, arrays, lr["time"].values


def oracle_mean(lr: xr.Dataset) -> xr.Dataset:
    """The exact conditional mean ``E[hr | lr]`` on the HR grid.

    This is what a perfect regression stage (CorrDiff's UNet) would output, and the
    deterministic part of ``hr``: ``t2m``, ``u10m``, ``v10m`` are ``E[hr | lr]`` plus
    zero-mean noise; for ``precip`` the mean is computed in closed form.

    Parameters
    ----------
    lr : xarray.Dataset
        LR data set from :func:`make_synthetic` (any subset of times; the recipe in its
        attrs supplies the domain).

    Returns
    -------
    xarray.Dataset
        ``t2m``, ``u10m``, ``v10m``, ``precip``, float32, dims ``(time, y, x)``, with the
        coordinates of ``hr``.
    """
    domain, physics, arrays, times = _lr_inputs(lr)
    n_times = times.size
    out = {name: np.empty((n_times, *domain.hr_shape), np.float32) for name in HR_VARIABLES}
    for t0 in range(0, n_times, _BLOCK):
        block = {name: np.asarray(arrays[name][t0 : t0 + _BLOCK]) for name in LR_INPUTS}
        mean = conditional_mean(conditional(block, domain, physics), physics)
        for name in HR_VARIABLES:
            out[name][t0 : t0 + _BLOCK] = mean[name]
    attrs = {**lr.attrs, "title": "xcorrdiff synthetic toy atmosphere: oracle mean E[hr | lr]"}
    return layout.hr_dataset(domain, out, ("time", "y", "x"), {"time": lr["time"].variable}, attrs)


def _time_keys(times: np.ndarray) -> list[int]:
    """Non-negative integer stream keys from datetime64 values (nanoseconds, shifted)."""
    return [int(t) + 2**63 for t in times.astype("datetime64[ns]").astype(np.int64)]


def _oracle_block(
    lr_block: Mapping[str, np.ndarray],
    members: Sequence[int],
    time_keys: Sequence[int],
    seed: int,
    domain: Domain,
    model: NoiseModel,
    physics: PhysicsParams,
) -> np.ndarray:
    """Oracle members ``(member, time, variable, y, x)`` for one block."""
    cond = conditional({k: np.asarray(v) for k, v in lr_block.items()}, domain, physics)
    out = np.empty((len(members), len(time_keys), len(HR_VARIABLES), *domain.hr_shape), np.float32)
    for j, member in enumerate(members):
        keys = [(fields.STREAM_ORACLE, member, key) for key in time_keys]
        drawn = sample(cond, white_noise(seed, keys, model), model, physics)
        for k, name in enumerate(HR_VARIABLES):
            out[j, :, k] = drawn[name]
    return out


def oracle_ensemble(
    lr: xr.Dataset,
    n_ensemble: int = 32,
    seed: int = 0,
    *,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Samples of the true ``p(hr | lr)``: the best any downscaling model can do.

    Each member keeps the conditional mean and redraws only the noise, from the stream
    ``(seed, member, time)``: a member at a given time is the same whatever other times or
    members are computed, and whatever the chunking. The streams never coincide with the
    noise of ``hr`` itself, for any ``seed``.

    Parameters
    ----------
    lr : xarray.Dataset
        LR data set from :func:`make_synthetic` (any subset of times; the recipe in its
        attrs supplies the domain). Its values are used, so a modified ``lr`` gives the
        oracle of the modified state.
    n_ensemble : int
        Ensemble size (>= 1).
    seed : int
        Oracle seed (>= 0).
    chunks : mapping, optional
        Dask chunk sizes along ``member`` and ``time``; default ``{"member": 1, "time": 64}``.

    Returns
    -------
    xarray.Dataset
        Dask-backed ``t2m``, ``u10m``, ``v10m``, ``precip``, float32, dims
        ``(member, time, y, x)``, with the coordinates of ``hr``. ``.compute()`` it for
        small cases; the default size (32 × 256 × 128 × 128 × 4 variables) is 2 GB.

    Examples
    --------
    >>> lr, hr = make_synthetic(n_times=2, hr_shape=(32, 32), factor=4)
    >>> ens = oracle_ensemble(lr, n_ensemble=3, seed=1)
    >>> dict(ens.sizes)
    {'member': 3, 'time': 2, 'y': 32, 'x': 32}
    """
    n_ensemble = check_int("n_ensemble", n_ensemble, minimum=1)
    seed = check_int("seed", seed)
    sizes = {"member": 1, "time": 64, **(chunks or {})}
    unknown = set(sizes) - {"member", "time"}
    if unknown:
        raise ValueError(f"chunks may set 'member' and 'time' only, got {sorted(unknown)}")
    member_chunk = check_int("chunks['member']", sizes["member"], minimum=1)
    time_chunk = check_int("chunks['time']", sizes["time"], minimum=1)
    domain, physics, arrays, times = _lr_inputs(lr)
    model = noise_model(domain, physics)
    keys = _time_keys(times)
    n_vars = len(HR_VARIABLES)

    member_blocks = []
    for m0 in range(0, n_ensemble, member_chunk):
        members = list(range(m0, min(m0 + member_chunk, n_ensemble)))
        row = []
        for t0 in range(0, times.size, time_chunk):
            t1 = min(t0 + time_chunk, times.size)
            block = {name: arrays[name][t0:t1] for name in LR_INPUTS}
            task = dask.delayed(_oracle_block, pure=False)(
                block, members, keys[t0:t1], seed, domain, model, physics
            )
            shape = (len(members), t1 - t0, n_vars, *domain.hr_shape)
            row.append(da.from_delayed(task, shape=shape, dtype=np.float32))
        member_blocks.append(da.concatenate(row, axis=1))
    stacked = da.concatenate(member_blocks, axis=0)

    data = {name: stacked[:, :, k] for k, name in enumerate(HR_VARIABLES)}
    coords = {
        "member": ("member", np.arange(n_ensemble), {"long_name": "ensemble member"}),
        "time": lr["time"].variable,
    }
    attrs = {
        **lr.attrs,
        "title": "xcorrdiff synthetic toy atmosphere: oracle ensemble, samples of p(hr | lr)",
        "oracle_seed": seed,
    }
    return layout.hr_dataset(domain, data, ("member", "time", "y", "x"), coords, attrs)


def oracle_posterior(
    lr: xr.Dataset,
    stations: xr.Dataset | xr.DataArray,
    observations: xr.Dataset | None = None,
) -> xr.Dataset:
    """The exact law of ``t2m``, ``u10m`` and ``v10m`` at ``stations``, given ``lr`` and
    station ``observations``: what perfect guidance would know.

    Given the LR state these three are Gaussian fields with a known covariance, so their
    values at points (bilinear, as :func:`xcorrdiff.data.at_stations`) conditioned on noisy
    observations at other points are Gaussian, in closed form
    (:mod:`xcorrdiff._synthetic.posterior`). Without ``observations``: the law given ``lr``
    alone, that of :func:`oracle_ensemble` at the stations.

    Parameters
    ----------
    lr : xarray.Dataset
        LR data set from :func:`make_synthetic` (any subset of times).
    stations : xarray.Dataset or xarray.DataArray
        Where to give the law: 1-D ``lat``/``lon`` coordinates on one station dimension.
    observations : xarray.Dataset, optional
        Observed ``t2m``/``u10m``/``v10m`` (units ``K``, ``m s-1``) on a station dimension
        with 1-D ``lat``/``lon``, on ``lr``'s times or without time, each with its error
        standard deviation ``<name>_error`` (> 0, same units); NaN values take no part.

    Returns
    -------
    xarray.Dataset
        ``<name>_mean`` and ``<name>_std`` (float64, the variable's units) on ``(time,
        station)`` for the three variables, with the stations' coordinates.
    """
    domain, physics, arrays, times = _lr_inputs(lr)
    values = {name: np.asarray(array) for name, array in arrays.items()}
    return posterior.station_law(domain, physics, values, times, stations, observations)


def invariants(ds: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """The static HR fields as an ``xr.Dataset``: ``orography`` (m) and ``land_sea_mask`` (1).

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        ``hr`` (or any object carrying ``orography`` and ``land_sea_mask`` on ``(y, x)``,
        e.g. a spatial subset of ``hr``, or an oracle ensemble), or ``lr`` from
        :func:`make_synthetic` (the HR domain is rebuilt from the recipe in its attrs).

    Returns
    -------
    xarray.Dataset
        Data variables ``orography`` and ``land_sea_mask`` (float32), dims ``(y, x)``, with
        the coordinates ``y``, ``x``, ``lat``, ``lon`` (and ``crs`` when present): the form
        ``fit(..., invariants=...)`` takes.
    """
    names = ("orography", "land_sea_mask")
    if all(name in ds.coords or name in getattr(ds, "data_vars", {}) for name in names):
        keep = [c for c in ("y", "x", "lat", "lon", "crs") if c in ds.coords]
        return xr.Dataset(
            {name: ds[name].variable for name in names},
            coords={c: ds[c].variable for c in keep},
            attrs=layout.static_attrs(ds.attrs),
        )
    if RECIPE_ATTR in ds.attrs:
        domain, _ = _domain_from_recipe(_recipe(ds, "ds"))
        coords = layout.hr_coords(domain)
        static = xr.Dataset(
            {name: coords.pop(name) for name in names},
            coords=coords,
            attrs=layout.static_attrs(ds.attrs),
        )
        return static
    raise ValueError(
        "ds carries neither 'orography' and 'land_sea_mask' nor "
        f"attrs[{RECIPE_ATTR!r}]; pass hr or lr from xcorrdiff.tutorial.make_synthetic"
    )

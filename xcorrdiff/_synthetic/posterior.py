"""The exact law of the toy atmosphere at points, given noisy observations at other points.

Given the LR state, ``t2m``, ``u10m`` and ``v10m`` are Gaussian fields: ``mean + std · ξ``
(:func:`~xcorrdiff._synthetic.physics.sample`), with ``ξ`` a stationary Gaussian field per
variable, independent across variables, made by filtering white noise on the periodic FFT grid
with the amplitude ``A`` (:func:`~xcorrdiff._synthetic.fields.synthesize`). Its covariance is
the circular autocorrelation of the filter, ``cov ξ(p, q) = irfft2(A²)(p − q)``: the same
on every time step. A point's value is the bilinear interpolation of its four grid corners
(:mod:`xcorrdiff.data.points`), so point values are jointly Gaussian too, and observations
``y = H x + e`` (``e`` independent, standard deviations given) condition them exactly::

    mean_b | y = mean_b + C_ba (C_aa + R)⁻¹ (y − mean_a)
    var_b | y  = C_bb − C_ba (C_aa + R)⁻¹ C_ab

Precipitation is a thresholded transform of its field and has no such closed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla
import xarray as xr

from xcorrdiff._synthetic import layout
from xcorrdiff._synthetic.domain import Domain
from xcorrdiff._synthetic.physics import NoiseModel, PhysicsParams, conditional, noise_model
from xcorrdiff.data.points import locate_points

__all__ = [
    "GAUSSIAN",
    "Corners",
    "condition",
    "noise_covariance",
    "point_covariance",
    "point_variance",
    "station_law",
]

#: Gaussian variables: their noise channel and the names of their mean and standard deviation
#: in :func:`~xcorrdiff._synthetic.physics.conditional`'s output.
GAUSSIAN = {
    "t2m": (0, "t2m_mean", "t2m_std"),
    "u10m": (1, "u_mean", "wind_std"),
    "v10m": (2, "v_mean", "wind_std"),
}

#: The bilinear corners of points: ``(rows, cols, weights)``, each ``(4, n_points)``.
Corners = tuple[np.ndarray, np.ndarray, np.ndarray]


def noise_covariance(model: NoiseModel, channel: int) -> np.ndarray:
    """``cov ξ(p, q)`` of noise ``channel`` as a function of ``(p − q) mod`` the FFT grid,
    ``(py, px)`` float64."""
    power = model.amp[channel].astype(np.float64) ** 2
    return sfft.irfft2(power, s=model.shape)


def at_points(field: np.ndarray, corners: Corners) -> np.ndarray:
    """Bilinear values of ``field`` ``(..., ny, nx)`` at the points, ``(..., n_points)``."""
    rows, cols, weights = corners
    return (field[..., rows, cols] * weights).sum(axis=-2)


def point_covariance(cov: np.ndarray, std: np.ndarray, a: Corners, b: Corners) -> np.ndarray:
    """Covariance ``(n_a, n_b)`` of ``std · ξ`` interpolated at the points ``a`` and ``b``
    (``std`` ``(ny, nx)``, ``cov`` from :func:`noise_covariance`)."""
    (ra, ca, wa), (rb, cb, wb) = a, b
    sa, sb = wa * std[ra, ca], wb * std[rb, cb]  # (4, n) each
    py, px = cov.shape
    dy = (ra[:, :, None, None] - rb[None, None]) % py  # (4, n_a, 4, n_b)
    dx = (ca[:, :, None, None] - cb[None, None]) % px
    return np.einsum("kalb,ka,lb->ab", cov[dy, dx], sa, sb)


def point_variance(cov: np.ndarray, std: np.ndarray, points: Corners) -> np.ndarray:
    """The diagonal of :func:`point_covariance` ``(points, points)``, ``(n,)``, without
    forming the ``n × n`` matrix."""
    rows, cols, weights = points
    scaled = weights * std[rows, cols]  # (4, n)
    py, px = cov.shape
    lags = cov[(rows[:, None] - rows[None]) % py, (cols[:, None] - cols[None]) % px]  # (4, 4, n)
    return np.einsum("kln,kn,ln->n", lags, scaled, scaled)


def condition(
    prior: Mapping[str, np.ndarray],
    values: np.ndarray,
    error: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior ``(mean, std)`` at the target points given observations.

    ``prior`` holds ``mean_a`` ``(n_a,)``, ``mean_b`` ``(n_b,)``, ``cov_aa``, ``cov_ab`` and
    ``var_b`` (the targets' prior variances); ``values`` and ``error`` ``(n_a,)`` are the
    observations and their error standard deviations. NaN observations take no part.
    """
    used = ~np.isnan(values)
    if not used.any():
        return prior["mean_b"], np.sqrt(prior["var_b"])
    cov_ab = prior["cov_ab"][used]
    system = prior["cov_aa"][np.ix_(used, used)] + np.diag(error[used] ** 2)
    factor = sla.cho_factor(system, lower=True)
    gain = sla.cho_solve(factor, cov_ab)  # (n_used, n_b)
    mean = prior["mean_b"] + gain.T @ (values[used] - prior["mean_a"][used])
    var = prior["var_b"] - np.einsum("ab,ab->b", cov_ab, gain)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _corners(grid: xr.Dataset, points: xr.Dataset | xr.DataArray, role: str) -> Corners:
    """The bilinear corners of ``points`` (1-D ``lat``/``lon`` on one dim) on the HR grid."""
    if "lat" not in points.coords or "lon" not in points.coords or points["lat"].ndim != 1:
        raise ValueError(
            f"{role} needs 1-D 'lat' and 'lon' coordinates on a station dimension, got "
            f"coordinates {sorted(map(str, points.coords))}"
        )
    where = locate_points(grid, points["lat"].values, points["lon"].values)
    rows, cols, weights = zip(*where.corners(), strict=True)
    return np.stack(rows), np.stack(cols), np.stack(weights)


def _observed(observations: xr.Dataset, times: np.ndarray) -> dict[str, tuple[Any, Any]]:
    """``{name: (values, errors)}``, each ``(time, station)`` float64, of the Gaussian
    variables observed; refuses what the exact law cannot take."""
    names = [str(n) for n in observations.data_vars if not str(n).endswith("_error")]
    unknown = sorted(map(str, set(names) - set(GAUSSIAN)))
    if unknown:
        raise ValueError(
            f"observations hold {unknown}; the exact posterior takes {list(GAUSSIAN)} only "
            "(precipitation is a thresholded field without a Gaussian law): drop them"
        )
    if "time" in observations.dims:
        missing = np.setdiff1d(times, observations["time"].values)
        if missing.size:
            raise ValueError(
                f"observations lack {missing.size} of lr's times (first {missing[0]}); give "
                "every time of lr, or no time dimension for values valid at all times"
            )
        observations = observations.sel(time=times)
    out = {}
    for name in names:
        units, expected = observations[name].attrs.get("units"), layout.HR_METADATA[name]["units"]
        if units != expected:
            raise ValueError(f"observations[{name!r}] has units {units!r}; expected {expected!r}")
        if f"{name}_error" not in observations:
            raise ValueError(
                f"observations lack {name}_error: give the error standard deviation of "
                f"{name} (in {expected}, > 0), per station or per time and station"
            )
        station = observations["lat"].dims[0]
        both = xr.broadcast(observations[name], observations[f"{name}_error"])
        values, error = (v.transpose(..., station).values.astype(np.float64) for v in both)
        if not (np.isfinite(error) & (error > 0)).all():
            raise ValueError(f"observations[{name + '_error'!r}] must be finite and > 0")
        shape = (times.size, values.shape[-1])
        out[name] = (np.broadcast_to(values, shape), np.broadcast_to(error, shape))
    return out


def station_law(
    domain: Domain,
    physics: PhysicsParams,
    lr: Mapping[str, np.ndarray],
    times: np.ndarray,
    stations: xr.Dataset | xr.DataArray,
    observations: xr.Dataset | None,
) -> xr.Dataset:
    """``<name>_mean`` and ``<name>_std`` of each Gaussian variable at ``stations`` on
    ``(time, station)``, given ``lr`` and, if any, the ``observations`` (module docstring)."""
    grid = xr.Dataset(coords=layout.hr_coords(domain))
    targets = _corners(grid, stations, "stations")
    sources = targets if observations is None else _corners(grid, observations, "observations")
    observed = {} if observations is None else _observed(observations, times)
    cond = conditional(lr, domain, physics)
    model = noise_model(domain, physics)
    dim = stations["lat"].dims[0]
    data = {}
    for name, (channel, mean_key, std_key) in GAUSSIAN.items():
        cov = noise_covariance(model, channel)
        seen = observed.get(name)
        law = [
            _law_at(cov, cond[mean_key][t], cond[std_key][t], targets,
                    None if seen is None else (sources, seen[0][t], seen[1][t]))
            for t in range(times.size)
        ]  # fmt: skip
        attrs = layout.HR_METADATA[name]
        for k, part in enumerate(("mean", "std")):
            data[f"{name}_{part}"] = (("time", dim), np.stack([p[k] for p in law]), attrs)
    coords = {n: c for n, c in stations.coords.items() if c.dims == (dim,)}
    return xr.Dataset(data, coords={"time": times, **coords})


def _law_at(
    cov: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    targets: Corners,
    seen: tuple[Corners, np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` at ``targets`` of one variable at one time, conditioned on ``seen``
    (where, values, error standard deviations) when given."""
    mean, std = mean.astype(np.float64), std.astype(np.float64)
    prior = {
        "mean_b": at_points(mean, targets),
        "var_b": point_variance(cov, std, targets),
    }
    if seen is None:
        return prior["mean_b"], np.sqrt(prior["var_b"])
    sources, values, error = seen
    prior |= {
        "mean_a": at_points(mean, sources),
        "cov_aa": point_covariance(cov, std, sources, sources),
        "cov_ab": point_covariance(cov, std, sources, targets),
    }
    return condition(prior, values, error)

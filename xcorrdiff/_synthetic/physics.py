"""HR targets given the LR state: ``hr = mean(lr, static) + noise(lr, static, white)``.

Every HR quantity is a function of the LR fields (bilinearly interpolated from their grid)
and of the static fields only; the randomness enters through four unit-variance Gaussian
random fields ``xi`` per time step, independent between time steps:

* ``t2m  = m_T + s_T * xi_0``  (``xi_0``: spectrum ``k^-3``, high-passed at the LR scale);
* ``u10m = m_u + s_w * xi_1``, ``v10m = m_v + s_w * xi_2`` (spectrum ``k^-8/3``, i.e. a
  ``k^-5/3`` energy spectrum, high-passed at the LR scale);
* ``precip = p_0 * expm1(kappa * (xi_3 - theta))`` where ``xi_3 > theta``, else 0
  (``xi_3``: Matérn spectrum with an 8 km length scale: convective cells).

So ``p(hr | lr)`` is known in closed form pointwise: Gaussian for ``t2m``, ``u10m``, ``v10m``;
for ``precip`` ``P(precip = 0) = Phi(theta)`` and a shifted log-normal tail, with mean
``p_0 * (exp(kappa^2/2 - kappa*theta) * Phi(kappa - theta) - Phi(-theta))``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from xcorrdiff._synthetic import fields
from xcorrdiff._synthetic.domain import Domain

HR_VARIABLES = ("t2m", "u10m", "v10m", "precip")
LR_INPUTS = ("t2m", "u10m", "v10m", "tcwv")


@dataclass(frozen=True)
class PhysicsParams:
    """Constants of the HR model (recorded in the data set's recipe)."""

    lapse_rate: float = 0.0065  # K m-1
    land_sea_contrast: float = 2.0  # K, land warmer (colder) than sea in warm (cold) weather
    contrast_temperature: float = 283.0  # K
    contrast_width: float = 8.0  # K
    t2m_noise_sea: float = 0.15  # K
    t2m_noise_land: float = 0.2  # K, added over land
    calm_speed: float = 4.0  # m s-1: t2m noise doubles in calm conditions
    ridge_speedup: float = 0.3
    ridge_height_scale: float = 400.0  # m
    sea_speedup: float = 0.15
    deflection: float = 0.6
    deflection_slope: float = 0.05  # m m-1
    turbulence_floor: float = 0.2  # m s-1
    turbulence_sea: float = 0.04  # per m s-1 of mean wind
    turbulence_land: float = 0.04  # per m s-1 of mean wind, added over land
    precip_threshold: float = 1.3  # theta at tcwv = precip_tcwv and no lift
    precip_tcwv: float = 15.0  # kg m-2
    threshold_tcwv_scale: float = 10.0  # kg m-2
    threshold_lift_scale: float = 0.5  # m s-1
    threshold_min: float = 0.0  # at most half the area convects
    precip_scale: float = 1.5  # mm h-1
    intensity_tcwv_scale: float = 15.0  # kg m-2
    intensity_lift_scale: float = 0.5  # m s-1
    precip_kappa: float = 0.7
    cell_length: float = 8e3  # m


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """FFT grid and spectral filters of the four HR noise fields."""

    shape: tuple[int, int]
    amp: np.ndarray  # (4, py, px // 2 + 1) float32


@functools.lru_cache(maxsize=8)
def noise_model(domain: Domain, params: PhysicsParams) -> NoiseModel:
    ny, nx = domain.hr_shape
    dx = domain.spec.grid_spacing
    pad = max(16, math.ceil(2 * domain.spec.factor))
    shape = (fields.fft_size(ny, pad), fields.fft_size(nx, pad))
    k_lr = 1.0 / (2 * domain.spec.factor * dx)  # the LR Nyquist wavenumber

    def high_pass(k: np.ndarray) -> np.ndarray:
        return (1.0 - np.exp(-((k / k_lr) ** 2))) ** 2

    spectra = [
        lambda k: k**-3.0 * high_pass(k),
        lambda k: k ** (-8.0 / 3.0) * high_pass(k),
        lambda k: k ** (-8.0 / 3.0) * high_pass(k),
        lambda k: (1.0 + (k * params.cell_length) ** 2) ** -3.0,
    ]
    amp = np.stack([fields.spectral_amplitude(shape, (dx, dx), s) for s in spectra])
    amp.flags.writeable = False
    return NoiseModel(shape=shape, amp=amp)


def conditional(
    lr: Mapping[str, np.ndarray], domain: Domain, params: PhysicsParams
) -> dict[str, np.ndarray]:
    """Parameters of ``p(hr | lr)`` on the HR grid, ``(time, y, x)`` float32 each.

    Parameters
    ----------
    lr : mapping
        ``t2m`` (K), ``u10m``, ``v10m`` (m s-1) and ``tcwv`` (kg m-2), ``(time, lat, lon)``
        on the domain's LR grid.
    """
    h = domain.orography
    land = domain.land_sea_mask
    dh = h - domain.orography_resolved
    dland = land - domain.land_resolved
    t_lr = domain.to_hr(np.asarray(lr["t2m"], dtype=np.float32))
    u_lr = domain.to_hr(np.asarray(lr["u10m"], dtype=np.float32))
    v_lr = domain.to_hr(np.asarray(lr["v10m"], dtype=np.float32))
    q_lr = domain.to_hr(np.asarray(lr["tcwv"], dtype=np.float32))
    p = params

    # 2 m temperature: lapse rate over the unresolved terrain, land-sea contrast.
    contrast = p.land_sea_contrast * np.tanh((t_lr - p.contrast_temperature) / p.contrast_width)
    t_mean = t_lr - p.lapse_rate * dh + contrast * dland

    # 10 m wind: speed-up over unresolved crests and open sea, deflection along the slopes.
    se, sn = domain.slope_east, domain.slope_north
    slope = np.hypot(se, sn)
    safe = np.maximum(slope, 1e-12)
    ne, nn = se / safe, sn / safe
    alpha = p.deflection * np.tanh(slope / p.deflection_slope)
    speedup = (1.0 + p.ridge_speedup * np.tanh(dh / p.ridge_height_scale)) * (
        1.0 - p.sea_speedup * dland
    )
    upslope = u_lr * ne + v_lr * nn
    u_mean = speedup * (u_lr - alpha * upslope * ne)
    v_mean = speedup * (v_lr - alpha * upslope * nn)
    speed = np.hypot(u_mean, v_mean)

    wind_std = p.turbulence_floor + (p.turbulence_sea + p.turbulence_land * land) * speed
    t_std = (p.t2m_noise_sea + p.t2m_noise_land * land) * (1.0 + np.exp(-speed / p.calm_speed))

    # Convective cells: more and stronger with moisture and orographic lift.
    lift = np.maximum(u_mean * se + v_mean * sn, 0.0)
    theta = (
        p.precip_threshold
        - (q_lr - p.precip_tcwv) / p.threshold_tcwv_scale
        - lift / p.threshold_lift_scale
    )
    theta = np.clip(theta, p.threshold_min, 6.0)
    moist = np.clip((q_lr - p.precip_tcwv) / p.intensity_tcwv_scale, -5.0, 1.0)
    intensity = (
        p.precip_scale * np.exp(moist) * (1.0 + np.minimum(lift / p.intensity_lift_scale, 1.0))
    )
    out = {
        "t2m_mean": t_mean,
        "t2m_std": t_std,
        "u_mean": u_mean,
        "v_mean": v_mean,
        "wind_std": wind_std,
        "precip_threshold": theta,
        "precip_scale": intensity,
    }
    return {name: value.astype(np.float32, copy=False) for name, value in out.items()}


def conditional_mean(
    cond: Mapping[str, np.ndarray], params: PhysicsParams
) -> dict[str, np.ndarray]:
    """``E[hr | lr]`` for every HR variable, ``(time, y, x)`` float32."""
    kappa = params.precip_kappa
    theta = cond["precip_threshold"].astype(np.float64)
    precip = cond["precip_scale"] * (
        np.exp(kappa**2 / 2 - kappa * theta) * ndtr(kappa - theta) - ndtr(-theta)
    )
    return {
        "t2m": cond["t2m_mean"],
        "u10m": cond["u_mean"],
        "v10m": cond["v_mean"],
        "precip": precip.astype(np.float32),
    }


def white_noise(seed: int, keys: Sequence[tuple[int, ...]], model: NoiseModel) -> np.ndarray:
    """``(len(keys), 4, py, px)`` float32 white noise, one stream per key."""
    out = np.empty((len(keys), 4, *model.shape), dtype=np.float32)
    for i, key in enumerate(keys):
        fields.generator(seed, *key).standard_normal(out.shape[1:], dtype=np.float32, out=out[i])
    return out


def sample(
    cond: Mapping[str, np.ndarray], white: np.ndarray, model: NoiseModel, params: PhysicsParams
) -> dict[str, np.ndarray]:
    """One draw of ``hr | lr`` per time step from white noise ``(time, 4, py, px)``."""
    ny, nx = cond["t2m_mean"].shape[-2:]
    xi = fields.synthesize(white, model.amp)[..., :ny, :nx]
    theta = cond["precip_threshold"]
    excess = xi[:, 3] - theta
    precip = np.where(
        excess > 0, cond["precip_scale"] * np.expm1(params.precip_kappa * np.maximum(excess, 0)), 0
    )
    return {
        "t2m": cond["t2m_mean"] + cond["t2m_std"] * xi[:, 0],
        "u10m": cond["u_mean"] + cond["wind_std"] * xi[:, 1],
        "v10m": cond["v_mean"] + cond["wind_std"] * xi[:, 2],
        "precip": precip.astype(np.float32),
    }

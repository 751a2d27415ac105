"""LR (ERA5-like) weather: latent Gaussian random fields, AR(1) in time, balanced fields.

Five latent fields live on a periodic padding of the LR grid: a streamfunction-like field at
850 hPa, a temperature anomaly, a moisture anomaly, an extra 500 hPa streamfunction and an
extra 500 hPa temperature anomaly. Each Fourier mode follows its own AR(1) process in time,
with a correlation time that shortens at small scales (``tau(k) ~ k^-1/3``). Four scalar
AR(1) processes add the domain-mean state (mean wind, temperature, moisture).

The LR fields are then built with textbook balances on an f-plane: geopotential at 850 hPa
from the mean wind and the streamfunction, the 500 hPa geopotential from the hypsometric
equation (thickness ∝ layer temperature), winds from geostrophy (so the 500 hPa wind carries
the thermal wind), 10 m winds reduced and turned towards low pressure, 2 m temperature from
850 hPa with a standard lapse rate down to the LR orography, and total column water vapour
following Clausius-Clapeyron.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from xcorrdiff._synthetic import fields
from xcorrdiff._synthetic.domain import METRES_PER_DEGREE, Domain

GRAVITY = 9.80665  # m s-2
R_DRY = 287.05  # J kg-1 K-1
OMEGA = 7.2921e-5  # s-1

LR_VARIABLES = (
    "u500",
    "v500",
    "z500",
    "t500",
    "u850",
    "v850",
    "z850",
    "t850",
    "u10m",
    "v10m",
    "t2m",
    "tcwv",
)


@dataclass(frozen=True)
class WeatherParams:
    """Constants of the LR weather (recorded in the data set's recipe)."""

    spectral_slope: float = 5.5  # latent spectra ~ (k^2 + k0^2)^(-slope/2)
    temperature_slope: float = 6.0  # the same for the temperature anomalies (smoother)
    rolloff_length: float = 1000e3  # m, 1/k0
    periodic_length: float = 1600e3  # m, period of the latent fields (FFT domain)
    tau_large: float = 48.0  # h, correlation time of scales >= rolloff_length
    tau_exponent: float = 1 / 3  # tau(k) = tau_large * (k0 / k) ** tau_exponent below
    wind_anomaly_850: float = 6.0  # m s-1, std of the geostrophic wind anomaly
    wind_anomaly_500: float = 6.0  # m s-1, extra std at 500 hPa
    mean_wind: tuple[float, float] = (6.0, 0.0)  # m s-1, climatological domain-mean wind
    mean_wind_std: float = 5.0  # m s-1
    mean_wind_tau: float = 96.0  # h
    temperature_anomaly: float = 0.7  # K at 45°, scaled with |f| (weak gradients in the tropics)
    temperature_mean_std: float = 4.0  # K
    temperature_mean_tau: float = 120.0  # h
    meridional_gradient: float = 0.45  # K per degree at 45°, scaled with |f|
    moisture_log_std: float = 0.3
    moisture_mean_log_std: float = 0.25
    moisture_mean_tau: float = 72.0  # h
    z850_height: float = 1500.0  # m
    lapse_rate: float = 0.0065  # K m-1
    surface_wind_factor: float = 0.6
    surface_wind_turning: float = 20.0  # degrees towards low pressure
    tcwv_reference: float = 20.0  # kg m-2 at t850 = 275 K, sea level


def _padded_size(n: int, spacing: float, length: float) -> int:
    """Periodic FFT size: twice the LR grid, ``length`` long when affordable (<= 256 cells)."""
    wanted = max(2 * n, n + 16, math.ceil(length / spacing))
    return fields.fft_size(min(wanted, max(2 * n, 256)), 0)


def _ar1_weights(dt_hours: float, tau: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    rho = np.exp(-dt_hours / np.asarray(tau, dtype=np.float64))
    return rho, np.sqrt(1.0 - rho**2)


def make_weather(
    domain: Domain, seed: int, dt_hours: np.ndarray, params: WeatherParams
) -> dict[str, np.ndarray]:
    """LR fields ``(time, lat, lon)``, float32, in the units of :data:`LR_UNITS`.

    Parameters
    ----------
    domain : Domain
        Supplies the LR grid and the LR static fields.
    seed : int
        Weather seed. Time step ``i`` draws from stream ``(STREAM_WEATHER, i)`` only, so the
        first ``n`` steps do not depend on how many more follow.
    dt_hours : numpy.ndarray
        ``(time,)`` hours since the previous step (the first entry is ignored).
    """
    spectra = _Spectra.of(domain, params)
    latent, scalars = _latent(seed, dt_hours, spectra, domain.lr_shape)
    out = _balanced(domain, params, spectra, latent, scalars)
    return _near_surface(domain, params, out)


@dataclasses.dataclass(frozen=True)
class _Spectra:
    """The periodic grid of the latent fields and their spectra and memory times."""

    shape: tuple[int, int]
    spacing: tuple[float, float]
    amp: np.ndarray
    amps: np.ndarray
    tau_k: np.ndarray
    tau_scalar: np.ndarray

    @classmethod
    def of(cls, domain: Domain, params: WeatherParams) -> _Spectra:
        nlat, nlon = domain.lr_shape
        lat0 = domain.spec.center[0]
        step = domain.spec.lr_spacing
        spacing = (step * METRES_PER_DEGREE, step * METRES_PER_DEGREE * np.cos(np.deg2rad(lat0)))
        shape = (
            _padded_size(nlat, spacing[0], params.periodic_length),
            _padded_size(nlon, spacing[1], params.periodic_length),
        )
        k0 = 1.0 / params.rolloff_length
        amp = fields.spectral_amplitude(
            shape, spacing, lambda k: (k**2 + k0**2) ** (-params.spectral_slope / 2)
        )
        _, _, k = fields.wavenumbers(shape, spacing)
        amp_t = fields.spectral_amplitude(
            shape, spacing, lambda k: (k**2 + k0**2) ** (-params.temperature_slope / 2)
        )
        tau_k = params.tau_large * np.minimum(
            1.0, (k0 / np.maximum(k, 1e-30)) ** params.tau_exponent
        )
        tau_scalar = np.array(
            [
                params.mean_wind_tau,
                params.mean_wind_tau,
                params.temperature_mean_tau,
                params.moisture_mean_tau,
            ]
        )
        amps = np.stack([amp, amp_t, amp, amp, amp_t])
        return cls(shape, spacing, amp, amps, tau_k, tau_scalar)


def _latent(
    seed: int, dt_hours: np.ndarray, spectra: _Spectra, lr_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Latent AR(1) fields ``(time, 5, nlat + 2, nlon + 2)`` (a one-cell periodic halo for
    the central differences) and scalars ``(time, 4)``."""
    nlat, nlon = lr_shape
    shape = spectra.shape
    n_times = dt_hours.size
    rows = np.arange(-1, nlat + 1) % shape[0]
    cols = np.arange(-1, nlon + 1) % shape[1]
    latent = np.empty((n_times, 5, nlat + 2, nlon + 2))
    scalars = np.empty((n_times, 4))
    mode_weights: dict[float, tuple[np.ndarray, ...]] = {}
    for i in range(n_times):
        rng = fields.generator(seed, fields.STREAM_WEATHER, i)
        eps = rng.standard_normal(4)
        white = sfft.rfft2(rng.standard_normal((5, *shape), dtype=np.float32))
        if i == 0:
            state, scalar = white, eps
        else:
            dt = float(dt_hours[i])
            if dt not in mode_weights:
                weights = _ar1_weights(dt, spectra.tau_k)
                mode_weights[dt] = tuple(w.astype(np.float32) for w in weights)
            rho, sigma = mode_weights[dt]
            state = rho * state + sigma * white
            rho_s, sigma_s = _ar1_weights(float(dt_hours[i]), spectra.tau_scalar)
            scalar = rho_s * scalar + sigma_s * eps
        latent[i] = sfft.irfft2(state * spectra.amps, s=shape)[:, rows][:, :, cols]
        scalars[i] = scalar
    return latent, scalars


def _d_north_east(field: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Central differences on the interior of a haloed field; rows run north to south."""
    d_north = (field[..., :-2, 1:-1] - field[..., 2:, 1:-1]) / (2 * spacing[0])
    d_east = (field[..., 1:-1, 2:] - field[..., 1:-1, :-2]) / (2 * spacing[1])
    return d_north, d_east


def _balanced(
    domain: Domain,
    params: WeatherParams,
    spectra: _Spectra,
    latent: np.ndarray,
    scalars: np.ndarray,
) -> dict[str, np.ndarray]:
    """Upper-air fields in geostrophic and thermal-wind balance on an f-plane, plus the
    moisture anomaly and mean the surface needs (``_q_anom``, ``_q_mean``)."""
    spacing, lat0, step = spectra.spacing, domain.spec.center[0], domain.spec.lr_spacing
    # f-plane; temperature gradients scale with |f| so that thermal winds stay moderate.
    f0 = 2 * OMEGA * np.sin(np.deg2rad(lat0))
    f_scale = abs(f0) / (2 * OMEGA * np.sin(np.deg2rad(45.0)))
    grad_std = np.sqrt(
        np.mean(np.square(fields.central_difference_std(spectra.amp, spectra.shape, spacing)))
    )
    a850 = params.wind_anomaly_850 * abs(f0) / grad_std
    a500 = params.wind_anomaly_500 * abs(f0) / grad_std
    inner = (Ellipsis, slice(1, -1), slice(1, -1))

    u_mean = params.mean_wind[0] + params.mean_wind_std * scalars[:, 0, None, None]
    v_mean = params.mean_wind[1] + params.mean_wind_std * scalars[:, 1, None, None]
    t_mean = params.temperature_mean_std * scalars[:, 2, None, None]
    q_mean = params.moisture_mean_log_std * scalars[:, 3, None, None]

    psi850, t_anom, q_anom, psi500, t500_anom = (latent[:, c] for c in range(5))
    t_anom = params.temperature_anomaly * f_scale * t_anom
    t500_anom = 0.8 * t_anom + 0.6 * params.temperature_anomaly * f_scale * t500_anom
    layer_anom = 0.5 * (t_anom + t500_anom)

    # Coordinates of the LR grid, metres north/east of the centre.
    north = ((domain.lr_lat - lat0) * spacing[0] / step)[:, None]
    east = ((domain.lr_lon - domain.spec.center[1]) * spacing[1] / step)[None, :]
    gradient = params.meridional_gradient * f_scale * np.sign(lat0)  # K per degree poleward
    t_clim = 288.0 - 0.3 * abs(lat0) - gradient * (domain.lr_lat[:, None] - lat0)
    dclim_dnorth = -gradient / (spacing[0] / step)

    thickness = R_DRY * np.log(850.0 / 500.0)
    t850 = t_clim + t_mean + t_anom[inner]
    t500 = t_clim - 28.0 + 0.8 * t_mean + t500_anom[inner]
    z850 = (
        GRAVITY * params.z850_height + f0 * (v_mean * east - u_mean * north) + a850 * psi850[inner]
    )
    z500 = z850 + thickness * 0.5 * (t850 + t500) + a500 * psi500[inner]
    dpsi_n, dpsi_e = _d_north_east(psi850, spacing)
    u850 = u_mean - (a850 / f0) * dpsi_n
    v850 = v_mean + (a850 / f0) * dpsi_e
    dlayer_n, dlayer_e = _d_north_east(layer_anom, spacing)
    dpsi5_n, dpsi5_e = _d_north_east(psi500, spacing)
    u500 = u850 - (thickness / f0) * (dlayer_n + dclim_dnorth) - (a500 / f0) * dpsi5_n
    v500 = v850 + (thickness / f0) * dlayer_e + (a500 / f0) * dpsi5_e
    return {
        "u500": u500,
        "v500": v500,
        "z500": z500,
        "t500": t500,
        "u850": u850,
        "v850": v850,
        "z850": z850,
        "t850": t850,
        "_q_anom": q_anom[inner],
        "_q_mean": q_mean,
    }


def _near_surface(
    domain: Domain, params: WeatherParams, out: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Near-surface fields, which see the LR terrain and coast; every field as float32."""
    lat0 = domain.spec.center[0]
    h = domain.lr_orography.astype(np.float64)
    land = domain.lr_land_fraction.astype(np.float64)
    turn = np.deg2rad(params.surface_wind_turning) * np.sign(lat0)
    reduce = params.surface_wind_factor * (1.0 + 0.25 * (1.0 - land)) * np.exp(-h / 3000.0)
    out["u10m"] = reduce * (np.cos(turn) * out["u850"] - np.sin(turn) * out["v850"])
    out["v10m"] = reduce * (np.sin(turn) * out["u850"] + np.cos(turn) * out["v850"])
    out["t2m"] = out["t850"] + params.lapse_rate * (out["z850"] / GRAVITY - h) - 1.5
    out["tcwv"] = (
        params.tcwv_reference
        * np.exp(0.07 * (out["t850"] - 275.0))
        * np.exp(params.moisture_log_std * out["_q_anom"] + out["_q_mean"])
        * np.exp(-h / 2500.0)
    )
    return {name: out[name].astype(np.float32) for name in LR_VARIABLES}

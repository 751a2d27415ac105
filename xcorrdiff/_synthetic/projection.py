"""Spherical Lambert conformal conic projection with one standard parallel (tangent cone).

Formulas from Snyder (1987), *Map Projections: A Working Manual*, USGS Professional Paper
1395, pp. 104-110 (eqs. 15-1 to 15-11, sphere), as used by WRF with ``truelat1 == truelat2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS = 6_371_229.0  # m, the sphere of the ECMWF and NCEP models


@dataclass(frozen=True)
class LambertConformal:
    """Lambert conformal conic on a sphere, tangent at ``lat0``, centred on ``(lat0, lon0)``.

    The projection origin ``(lat0, lon0)`` maps to ``(x, y) = (0, 0)``.

    Parameters
    ----------
    lat0, lon0 : float
        Standard parallel (also the latitude of projection origin) and central meridian,
        in degrees. ``lat0`` must not be close to 0 (the cone degenerates into a cylinder).
    radius : float
        Earth radius in metres.
    """

    lat0: float
    lon0: float
    radius: float = EARTH_RADIUS

    @property
    def n(self) -> float:
        """Cone constant ``n = sin(lat0)`` (eq. 15-3 with equal standard parallels)."""
        return float(np.sin(np.deg2rad(self.lat0)))

    @property
    def _rf(self) -> float:
        """``R F`` of eq. 15-2."""
        phi0 = np.deg2rad(self.lat0)
        n = self.n
        return float(self.radius * np.cos(phi0) * np.tan(np.pi / 4 + phi0 / 2) ** n / n)

    @property
    def _rho0(self) -> float:
        phi0 = np.deg2rad(self.lat0)
        return float(self._rf / np.tan(np.pi / 4 + phi0 / 2) ** self.n)

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(lat, lon)`` in degrees to ``(x, y)`` in metres (eqs. 15-1, 15-2)."""
        phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
        dlam = np.deg2rad(np.asarray(lon, dtype=np.float64) - self.lon0)
        dlam = (dlam + np.pi) % (2 * np.pi) - np.pi
        rho = self._rf / np.tan(np.pi / 4 + phi / 2) ** self.n
        theta = self.n * dlam
        return rho * np.sin(theta), self._rho0 - rho * np.cos(theta)

    def inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unproject ``(x, y)`` in metres to ``(lat, lon)`` in degrees (eqs. 15-8 to 15-11).

        Longitudes are continuous around ``lon0`` (they may leave ``[-180, 180)`` for a
        domain that crosses the antimeridian).
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        sign = np.sign(self.n)
        dy = self._rho0 - y
        rho = sign * np.hypot(x, dy)
        theta = np.arctan2(sign * x, sign * dy)
        phi = 2.0 * np.arctan((self._rf / rho) ** (1.0 / self.n)) - np.pi / 2
        return np.rad2deg(phi), self.lon0 + np.rad2deg(theta / self.n)

    def cf_attrs(self) -> dict[str, object]:
        """CF grid-mapping attributes (``grid_mapping_name = lambert_conformal_conic``)."""
        return {
            "grid_mapping_name": "lambert_conformal_conic",
            "standard_parallel": float(self.lat0),
            "longitude_of_central_meridian": float(self.lon0),
            "latitude_of_projection_origin": float(self.lat0),
            "false_easting": 0.0,
            "false_northing": 0.0,
            "earth_radius": float(self.radius),
        }

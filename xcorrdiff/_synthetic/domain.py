"""The synthetic domain: HR projected grid, static fields, LR grid, LR → HR interpolation.

Everything here depends only on :class:`DomainSpec` (shape, spacing, factor, centre,
``domain_seed``), never on the weather ``seed``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from xcorrdiff._synthetic import fields
from xcorrdiff._synthetic.projection import LambertConformal

METRES_PER_DEGREE = 2 * math.pi * 6_371_229.0 / 360.0


@dataclass(frozen=True)
class DomainSpec:
    """Everything that defines the domain (validated by :mod:`xcorrdiff.tutorial`)."""

    hr_shape: tuple[int, int]
    factor: float
    center: tuple[float, float]
    domain_seed: int
    grid_spacing: float
    lr_spacing: float
    margin: int
    sea_fraction: float = 0.25


def default_lr_spacing(factor: float, grid_spacing: float) -> float:
    """LR spacing in degrees: ``factor * grid_spacing`` rounded to a multiple of 0.05°
    (of 0.01° below 0.05°, never below 0.01°).

    With 2 km HR spacing: factor 8 → 0.15°, 12 → 0.2°, 13-15 → 0.25° (ERA5), 16 → 0.3°.
    """
    degrees = factor * grid_spacing / METRES_PER_DEGREE
    step = 0.05 if degrees >= 0.05 else 0.01
    return round(max(step, round(degrees / step) * step), 4)


@dataclass(frozen=True, eq=False)
class Domain:
    """Grids and static fields of one :class:`DomainSpec` (arrays are read-only)."""

    spec: DomainSpec
    projection: LambertConformal
    y: np.ndarray  # (ny,) m
    x: np.ndarray  # (nx,) m
    lat: np.ndarray  # (ny, nx) degrees_north
    lon: np.ndarray  # (ny, nx) degrees_east
    orography: np.ndarray  # (ny, nx) m, float32
    land_sea_mask: np.ndarray  # (ny, nx) 0/1, float32
    lr_lat: np.ndarray  # (nlat,) descending
    lr_lon: np.ndarray  # (nlon,) ascending
    lr_orography: np.ndarray  # (nlat, nlon) m: HR orography averaged over LR cells
    lr_land_fraction: np.ndarray  # (nlat, nlon)
    orography_resolved: np.ndarray  # (ny, nx): lr_orography interpolated back to HR
    land_resolved: np.ndarray  # (ny, nx): lr_land_fraction interpolated back to HR
    slope_east: np.ndarray  # (ny, nx) dh/d(east), m m-1
    slope_north: np.ndarray  # (ny, nx) dh/d(north), m m-1
    interp_index: np.ndarray  # (4, ny*nx) flat LR indices of the bilinear corners
    interp_weight: np.ndarray  # (4, ny*nx) float32 bilinear weights

    @property
    def hr_shape(self) -> tuple[int, int]:
        return self.spec.hr_shape

    @property
    def lr_shape(self) -> tuple[int, int]:
        return (self.lr_lat.size, self.lr_lon.size)

    def to_hr(self, lr_field: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of ``(..., nlat, nlon)`` LR fields to ``(..., ny, nx)``."""
        flat = lr_field.reshape(*lr_field.shape[:-2], -1)
        out = np.zeros((*flat.shape[:-1], self.interp_index.shape[1]), dtype=np.float32)
        for index, weight in zip(self.interp_index, self.interp_weight, strict=True):
            out += np.take(flat, index, axis=-1) * weight
        return out.reshape(*lr_field.shape[:-2], *self.hr_shape)


def _terrain(
    spec: DomainSpec, x: np.ndarray, y: np.ndarray, hr_box: tuple[slice, slice]
) -> tuple[np.ndarray, np.ndarray]:
    """Orography (m) and land-sea mask on the grid ``(y, x)``: a ridge plus fractal terrain,
    cut by a sea level set so that ``sea_fraction`` of the HR box ``hr_box`` is sea."""
    ny, nx = y.size, x.size
    yy, xx = np.meshgrid(y, x, indexing="ij")
    half_y = spec.hr_shape[0] * spec.grid_spacing / 2
    half_x = spec.hr_shape[1] * spec.grid_spacing / 2

    # A ridge: random orientation, offset, height, width and along-ridge undulation.
    rng = fields.generator(spec.domain_seed, fields.STREAM_RIDGE)
    angle = rng.uniform(0, np.pi)
    y0, x0 = rng.uniform(-0.15, 0.15) * half_y, rng.uniform(-0.15, 0.15) * half_x
    height = rng.uniform(1500.0, 2500.0)
    width = rng.uniform(12e3, 25e3)
    wavelength, phase = rng.uniform(80e3, 160e3), rng.uniform(0, 2 * np.pi)
    across = -(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle)
    along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
    undulation = 0.7 + 0.3 * np.cos(2 * np.pi * along / wavelength + phase)
    ridge = height * undulation * np.exp(-0.5 * (across / width) ** 2)

    # Fractal terrain: power-law spectrum k^-2.8 (rolled off beyond 300 km), 400 m std.
    shape = (fields.fft_size(ny, ny // 4 + 8), fields.fft_size(nx, nx // 4 + 8))
    amp = fields.spectral_amplitude(
        shape,
        (spec.grid_spacing, spec.grid_spacing),
        lambda k: (k**2 + (1 / 300e3) ** 2) ** -1.4,
    )
    white = fields.generator(spec.domain_seed, fields.STREAM_TERRAIN).standard_normal(shape)
    fractal = 400.0 * fields.synthesize(white, amp)[:ny, :nx].astype(np.float64)

    elevation = ridge + fractal
    sea_level = np.quantile(elevation[hr_box], spec.sea_fraction)
    land = elevation > sea_level
    return np.where(land, elevation - sea_level, 0.0), land.astype(np.float64)


def _lr_axis(lo: float, hi: float, step: float, margin: int) -> np.ndarray:
    first = math.floor(lo / step + 1e-9) - margin
    last = math.ceil(hi / step - 1e-9) + margin
    return np.round(np.arange(first, last + 1) * step, 6)


def _bilinear(
    lat: np.ndarray, lon: np.ndarray, lr_lat: np.ndarray, lr_lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flat corner indices and weights of bilinear interpolation from the LR grid."""
    step_lat = lr_lat[0] - lr_lat[1]
    step_lon = lr_lon[1] - lr_lon[0]
    fi = ((lr_lat[0] - lat) / step_lat).ravel()
    fj = ((lon - lr_lon[0]) / step_lon).ravel()
    i0 = np.clip(np.floor(fi).astype(np.int64), 0, lr_lat.size - 2)
    j0 = np.clip(np.floor(fj).astype(np.int64), 0, lr_lon.size - 2)
    wi, wj = fi - i0, fj - j0
    nlon = lr_lon.size
    index = np.stack(
        [i0 * nlon + j0, i0 * nlon + j0 + 1, (i0 + 1) * nlon + j0, (i0 + 1) * nlon + j0 + 1]
    )
    weight = np.stack([(1 - wi) * (1 - wj), (1 - wi) * wj, wi * (1 - wj), wi * wj])
    return index, weight.astype(np.float32)


@functools.lru_cache(maxsize=8)
def build_domain(spec: DomainSpec) -> Domain:
    """Build (and cache) the domain of ``spec``."""
    ny, nx = spec.hr_shape
    dx = spec.grid_spacing
    proj = LambertConformal(*spec.center)
    y = (np.arange(ny) - (ny - 1) / 2) * dx
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    lat, lon = proj.inverse(*np.meshgrid(x, y, indexing="xy"))
    lr_lat, lr_lon = _lr_grid(spec, lat, lon)
    x_ext, y_ext, hr_box = _extended_grid(spec, proj, x, y, lr_lat, lr_lon)
    orography_ext, land_ext = _terrain(spec, x_ext, y_ext, hr_box)
    lr_orography, lr_land = _lr_statics(
        proj, x_ext, y_ext, lr_lat, lr_lon, spec.lr_spacing, orography_ext, land_ext
    )
    slope_east, slope_north = _slopes(proj, lat, lon, orography_ext, hr_box, dx)
    index, weight = _bilinear(lat, lon, lr_lat, lr_lon)

    def hr(field: np.ndarray) -> np.ndarray:
        return (np.take(field.ravel(), index) * weight).sum(axis=0).reshape(ny, nx)

    arrays = {
        "y": y,
        "x": x,
        "lat": lat,
        "lon": lon,
        "orography": orography_ext[hr_box].astype(np.float32),
        "land_sea_mask": land_ext[hr_box].astype(np.float32),
        "lr_lat": lr_lat,
        "lr_lon": lr_lon,
        "lr_orography": lr_orography.astype(np.float32),
        "lr_land_fraction": lr_land.astype(np.float32),
        "orography_resolved": hr(lr_orography).astype(np.float32),
        "land_resolved": hr(lr_land).astype(np.float32),
        "slope_east": slope_east.astype(np.float32),
        "slope_north": slope_north.astype(np.float32),
        "interp_index": index,
        "interp_weight": weight,
    }
    for value in arrays.values():
        value.flags.writeable = False
    return Domain(spec=spec, projection=proj, **arrays)


def _lr_grid(spec: DomainSpec, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regular lat/lon grid, aligned on multiples of its spacing, covering the HR domain
    with ``margin`` cells to spare on every side (latitudes north to south)."""
    step = spec.lr_spacing
    lr_lat = _lr_axis(lat.min(), lat.max(), step, spec.margin)[::-1]
    lr_lon = _lr_axis(lon.min(), lon.max(), step, spec.margin)
    if abs(lr_lat).max() > 89.0:
        raise ValueError(
            f"the domain around center={spec.center} with hr_shape={spec.hr_shape} reaches "
            f"latitude {abs(lr_lat).max():.1f}; keep the domain away from the poles"
        )
    return lr_lat, lr_lon


def _extended_grid(
    spec: DomainSpec,
    proj: LambertConformal,
    x: np.ndarray,
    y: np.ndarray,
    lr_lat: np.ndarray,
    lr_lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """An extended HR grid that covers every LR cell completely (the terrain lives on it,
    so that LR cells in the margin see terrain too), and the HR domain's box in it."""
    ny, nx = spec.hr_shape
    dx, step = spec.grid_spacing, spec.lr_spacing
    edge = np.linspace(0.0, 1.0, 257)
    lat_lo, lat_hi = lr_lat[-1] - step / 2, lr_lat[0] + step / 2
    lon_lo, lon_hi = lr_lon[0] - step / 2, lr_lon[-1] + step / 2
    lat_side = lat_lo + (lat_hi - lat_lo) * edge
    lon_side = lon_lo + (lon_hi - lon_lo) * edge
    box_lat = np.concatenate(
        [np.full_like(edge, lat_lo), np.full_like(edge, lat_hi)] + [lat_side] * 2
    )
    box_lon = np.concatenate(
        [lon_side] * 2 + [np.full_like(edge, lon_lo), np.full_like(edge, lon_hi)]
    )
    bx, by = proj.forward(box_lat, box_lon)
    pad_x = math.ceil((np.abs(bx).max() - abs(x[0])) / dx) + 2
    pad_y = math.ceil((np.abs(by).max() - abs(y[0])) / dx) + 2
    y_ext = (np.arange(ny + 2 * pad_y) - (ny + 2 * pad_y - 1) / 2) * dx
    x_ext = (np.arange(nx + 2 * pad_x) - (nx + 2 * pad_x - 1) / 2) * dx
    return x_ext, y_ext, (slice(pad_y, pad_y + ny), slice(pad_x, pad_x + nx))


def _lr_statics(
    proj: LambertConformal,
    x_ext: np.ndarray,
    y_ext: np.ndarray,
    lr_lat: np.ndarray,
    lr_lon: np.ndarray,
    step: float,
    orography_ext: np.ndarray,
    land_ext: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """LR statics: means of the extended HR statics over each LR cell."""
    lat_ext, lon_ext = proj.inverse(*np.meshgrid(x_ext, y_ext, indexing="xy"))
    i = np.rint((lr_lat[0] - lat_ext) / step).astype(np.int64)
    j = np.rint((lon_ext - lr_lon[0]) / step).astype(np.int64)
    inside = (i >= 0) & (i < lr_lat.size) & (j >= 0) & (j < lr_lon.size)
    cell = (i * lr_lon.size + j)[inside]
    size = lr_lat.size * lr_lon.size
    count = np.bincount(cell, minlength=size)
    if (count == 0).any():  # pragma: no cover - guarded by the padding above
        raise RuntimeError("internal error: an LR cell holds no HR point")
    lr_orography = (np.bincount(cell, orography_ext[inside], size) / count).reshape(
        lr_lat.size, lr_lon.size
    )
    lr_land = (np.bincount(cell, land_ext[inside], size) / count).reshape(lr_lat.size, lr_lon.size)
    return lr_orography, lr_land


def _slopes(
    proj: LambertConformal,
    lat: np.ndarray,
    lon: np.ndarray,
    orography_ext: np.ndarray,
    hr_box: tuple[slice, slice],
    dx: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Terrain slopes on the HR grid, rotated from grid axes to east/north."""
    dh_dy, dh_dx = np.gradient(orography_ext, dx)
    dh_dy, dh_dx = dh_dy[hr_box], dh_dx[hr_box]
    eps = 1e-3
    x_east, y_east = proj.forward(lat, lon + eps)
    x_west, y_west = proj.forward(lat, lon - eps)
    ex, ey = x_east - x_west, y_east - y_west
    norm = np.hypot(ex, ey)
    ex, ey = ex / norm, ey / norm
    return ex * dh_dx + ey * dh_dy, -ey * dh_dx + ex * dh_dy

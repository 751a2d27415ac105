"""Regridding from a curvilinear *source* grid (2-D latitude/longitude), pip-only.

A coarse WRF, regional-climate-model or CORDEX field lies on 2-D ``lat``/``lon`` (a Lambert
conformal or rotated-pole grid). Its points are projected gnomonically onto the plane
tangent to the sphere at the source's centre — great circles become straight lines, so a
triangle of the projection is a triangle on the sphere — and triangulated once
(:class:`scipy.spatial.Delaunay`):

``"bilinear"``
    Linear (barycentric) interpolation in the triangle that holds the target point: three
    weights per point, exact for fields linear in the projected plane.
``"nearest"``
    The nearest source point by chord distance on the unit sphere
    (:class:`scipy.spatial.cKDTree`).

The weights form a sparse ``(target, source)`` matrix built once and applied per chunk
with :func:`xarray.apply_ufunc` (lazy on dask). A target point outside the source's
triangulated area raises an error instead of turning into NaN; ``edge="nearest"`` (opt-in)
gives the points within one source cell of the source's edge the nearest source point's
value instead, as the outer ring of a coarse-to-fine pair on the same projection needs
(coarse cell centres stop half a coarse cell short of the fine grid's edge). Conservative remapping
needs cell corners, which 2-D centres alone do not give: it is refused with a message.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import scipy.sparse
import xarray as xr
from scipy.spatial import Delaunay, cKDTree

from xcorrdiff.data.grids import EDGE_HINT, TargetGrid, bbox_text

__all__ = ["is_curvilinear", "regrid_curvilinear"]

# A gnomonic projection holds a hemisphere; stay well inside it.
_MAX_RADIUS_DEG = 60.0


def is_curvilinear(obj: xr.Dataset | xr.DataArray, lat: Hashable, lon: Hashable) -> bool:
    """Whether ``lat`` and ``lon`` of ``obj`` are 2-D on the same dims."""
    return obj[lat].ndim == 2 and obj[lat].dims == obj[lon].dims


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(n, 3)`` points on the unit sphere of latitudes/longitudes in degrees."""
    phi, lam = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)


def _gnomonic(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Gnomonic projection of unit vectors onto the plane tangent at ``center``."""
    east = np.cross([0.0, 0.0, 1.0], center)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-12 else np.array([0, 1.0, 0])
    north = np.cross(center, east)
    along = points @ center
    return np.stack([points @ east / along, points @ north / along], axis=1)


def _source_points(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the source and the unit vector of its centre, checked."""
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError(
            "the curvilinear source's latitude/longitude hold NaN or infinite values; "
            "fill or crop them (e.g. drop the rows of a staggered grid) before regridding"
        )
    xyz = _unit_vectors(lat, lon)
    center = xyz.mean(axis=0)
    center /= np.linalg.norm(center)
    radius = np.degrees(np.arccos(np.clip(xyz @ center, -1, 1))).max()
    if radius > _MAX_RADIUS_DEG:
        raise ValueError(
            f"the curvilinear source reaches {radius:.1f}° from its centre; regridding from a "
            f"curvilinear grid supports regional sources (within {_MAX_RADIUS_DEG:.0f}°). "
            "For a global curvilinear grid use backend='xesmf'"
        )
    return xyz, center


def _outside(
    xyz: np.ndarray, targets: np.ndarray, outside: np.ndarray, edge: str
) -> tuple[np.ndarray, np.ndarray]:
    """The target points outside the triangulation that ``edge="nearest"`` fills (within one
    source cell of the nearest source point), their nearest source points, and the points
    still outside."""
    if edge != "nearest" or not outside.any():
        return np.zeros(0, np.int64), outside
    tree = cKDTree(xyz)
    cell = float(np.median(tree.query(xyz, k=2)[0][:, 1]))  # a source cell's side (chord)
    distance, nearest = tree.query(targets[outside])
    within = distance <= cell * (1 + 1e-6)
    still = outside.copy()
    still[np.flatnonzero(outside)[within]] = False
    return nearest[within], still


def _weights(
    source_lat: np.ndarray,
    source_lon: np.ndarray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    method: str,
    edge: str = "raise",
) -> scipy.sparse.csr_matrix:
    """Sparse ``(n_target, n_source)`` interpolation weights."""
    xyz, center = _source_points(source_lat, source_lon)
    targets = _unit_vectors(target_lat, target_lon)
    n_target, n_source = targets.shape[0], xyz.shape[0]
    hull = Delaunay(_gnomonic(xyz, center))
    projected = _gnomonic(targets, center)
    simplex = np.where(targets @ center > 0, hull.find_simplex(projected, tol=1e-9), -1)
    ring, outside = _outside(xyz, targets, simplex < 0, edge)
    if outside.any():
        raise ValueError(
            f"target grid extends outside the curvilinear source's coverage: "
            f"{int(outside.sum())} of {n_target} target points lie outside. Target "
            f"{bbox_text(target_lat, target_lon)}; source {bbox_text(source_lat, source_lon)}. "
            f"Crop the target to the source domain (e.g. downscale(region=...)) or supply a "
            f"larger source{EDGE_HINT}"
        )
    if method == "nearest":
        _, cols = cKDTree(xyz).query(targets)
        rows, values = np.arange(n_target), np.ones(n_target)
    else:
        inside = np.flatnonzero(simplex >= 0)
        transform = hull.transform[simplex[inside]]
        partial = np.einsum("nij,nj->ni", transform[:, :2], projected[inside] - transform[:, 2])
        bary = np.concatenate([partial, 1 - partial.sum(axis=1, keepdims=True)], axis=1)
        rows = np.concatenate([np.repeat(inside, 3), np.flatnonzero(simplex < 0)])
        cols = np.concatenate([hull.simplices[simplex[inside]].ravel(), ring])
        values = np.concatenate([bary.ravel(), np.ones(ring.size)])
    return scipy.sparse.csr_matrix((values, (rows, cols)), shape=(n_target, n_source))


def _apply(values: np.ndarray, weights: Any, shape: tuple[int, ...]) -> np.ndarray:
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    out = np.asarray((weights @ flat.T).T, dtype=_out_dtype(values.dtype))
    return out.reshape(*values.shape[:-2], *shape)


def _out_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def regrid_curvilinear(
    source: xr.Dataset | xr.DataArray,
    lat: Hashable,
    lon: Hashable,
    target: TargetGrid,
    method: str,
    edge: str = "raise",
) -> xr.Dataset | xr.DataArray:
    """``source`` (2-D ``lat``/``lon``) on the target grid; see the module docstring."""
    if method == "conservative":
        raise ValueError(
            "method='conservative' needs cell corners, which a curvilinear source's 2-D "
            f"{lat!r}/{lon!r} do not give; use method='bilinear' (or 'nearest'), or "
            "backend='xesmf' with corner coordinates"
        )
    src_dims = tuple(source[lat].dims)
    if target.is_rectilinear:
        t_lat, t_lon = np.meshgrid(target.lat.values, target.lon.values, indexing="ij")
        out_dims: tuple[Hashable, ...] = (target.lat.dims[0], target.lon.dims[0])
    else:
        t_lat, t_lon = np.asarray(target.lat.values), np.asarray(target.lon.values)
        out_dims = tuple(target.lat.dims)
    weights = _weights(
        np.asarray(source[lat].values, dtype=np.float64),
        np.asarray(source[lon].values, dtype=np.float64),
        t_lat.astype(np.float64),
        t_lon.astype(np.float64),
        method,
        edge,
    )

    def one(var: xr.DataArray) -> xr.DataArray:
        if not set(src_dims) <= set(var.dims):
            return var
        return xr.apply_ufunc(
            _apply,
            var,
            kwargs={"weights": weights, "shape": t_lat.shape},
            input_core_dims=[list(src_dims)],
            output_core_dims=[list(out_dims)],
            exclude_dims=set(src_dims),
            dask="parallelized",
            dask_gufunc_kwargs={"output_sizes": dict(zip(out_dims, t_lat.shape, strict=True))},
            output_dtypes=[_out_dtype(var.dtype)],
            keep_attrs=True,
        )

    on_source = [c for c in source.coords if set(source[c].dims) & set(src_dims)]
    obj = source.drop_vars(on_source)
    if isinstance(obj, xr.DataArray):
        return one(obj)
    return obj.map(one, keep_attrs=True)

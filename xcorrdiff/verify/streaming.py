"""Streaming verification: mergeable partial sums, one pass over the time chunks of a store.

Scoring thirty years of output at once needs it all in memory; these functions read it one
time chunk at a time and keep only sums, so memory does not grow with the record:

* :func:`accumulate` — the sums of one ensemble against the truth over ``dim`` (time),
  chunk by chunk, saved after each chunk to ``state`` (atomically) so that a stopped run
  resumes where it stopped;
* :func:`merge_sums` — the sums of two or more pieces (e.g. decades scored on different
  workers of a dask.distributed cluster) as one;
* :func:`scores_from_sums` — the scores.

The sums (float64; an ``xarray.Dataset`` with a ``variable`` dimension, writable to
netCDF) hold, per variable and grid point, over the times: the CRPS and fair CRPS, the
absolute and squared error of the ensemble mean, the members' mean squared error, the
corrected ensemble variance and its squared error (the pairs of
:func:`~xcorrdiff.verify.spread_skill`), fixed-bin histograms
of the members' pool and of the truth, and shifted first and second moments of both; over
every point and time the rank-histogram counts; and, per variable, the summed radially
averaged spectra of every member field and truth field without NaN (the one-shot
functions skip those too). From them :func:`scores_from_sums` gives what the one-shot functions give on the same data, to
float64 rounding: :func:`~xcorrdiff.verify.verify`'s table, the rank histogram, Perkins'
score and the log histogram distance on the fixed bins, the ratio of standard deviations,
RALSD and the power ratio per band; the quantile bias it gives from the histograms
(exact to within a bin's width).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from xcorrdiff.verify import kernels
from xcorrdiff.verify._xarray import XarrayLike, align_pair, check_type, pairs
from xcorrdiff.verify.distributions import QUANTILES
from xcorrdiff.verify.spectra import band_ratios, grid_spacing, log_spectral_distance, resolved
from xcorrdiff.verify.summary import _bin_index

__all__ = ["accumulate", "merge_sums", "scores_from_sums"]


# --- the sums of one chunk (numpy) ------------------------------------------------------------


def _error_sums(f: np.ndarray, o: np.ndarray) -> dict[str, np.ndarray]:
    """CRPS and moment sums over the leading (time) axis; ``f`` (time, ..., member)."""
    crps = kernels.crps_ensemble(f, o)
    fair = kernels.crps_ensemble(f, o, fair=True)
    count = np.isfinite(f).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(f, -1) / np.where(count > 0, count, np.nan)
        variance = np.nansum((f - mean[..., None]) ** 2, -1) / np.where(
            count > 1, count - 1, np.nan
        )
    spread2 = variance * (count + 1) / count
    error = mean - o
    squares = (f - o[..., None]) ** 2
    valid = np.isfinite(squares)
    with np.errstate(invalid="ignore", divide="ignore"):
        members = np.where(valid, squares, 0).sum(-1) / np.where(
            valid.any(-1), valid.sum(-1), np.nan
        )
    moments = np.isfinite(spread2) & np.isfinite(error)
    out = {
        "crps": np.nansum(crps, 0), "n": np.isfinite(crps).sum(0),
        "crps_fair": np.nansum(fair, 0), "n_fair": np.isfinite(fair).sum(0),
        "ae_mean": np.nansum(np.abs(error), 0), "se_mean": np.nansum(error**2, 0),
        "se_members": np.nansum(np.where(np.isfinite(error), members, np.nan), 0),
        "spread2": np.where(moments, spread2, 0).sum(0),
        "se_moments": np.where(moments, error**2, 0).sum(0), "n_moments": moments.sum(0),
    }  # fmt: skip
    return out


def _histogram(values: np.ndarray, edges: np.ndarray, points: int) -> np.ndarray:
    """Counts per (point, bin) of ``values`` (..., point) over every leading axis."""
    bins = edges.size - 1
    index = _bin_index(values.reshape(-1, points), edges)
    labels = (np.arange(points) * bins + index)[(index >= 0) & (index < bins)]
    return np.bincount(labels, minlength=points * bins).reshape(points, bins)


def _moment_sums(
    f: np.ndarray, o: np.ndarray, edges: np.ndarray, shift: float
) -> dict[str, np.ndarray]:
    """Histograms and shifted moments of the members' pool and of the truth, per point;
    ``f`` (member, time, *point), ``o`` (time, *point)."""
    shape, points = o.shape[1:], int(np.prod(o.shape[1:]))
    out = {}
    for label, values in (("forecast", f), ("obs", o)):
        flat = values.reshape(-1, points) - shift
        valid = np.isfinite(flat)
        out[f"hist_{label}"] = _histogram(values, edges, points).reshape(*shape, -1)
        out[f"under_{label}"] = (flat < edges[0] - shift).sum(0).reshape(shape)
        out[f"s1_{label}"] = np.where(valid, flat, 0).sum(0).reshape(shape)
        out[f"s2_{label}"] = np.where(valid, flat**2, 0).sum(0).reshape(shape)
        out[f"n_{label}"] = valid.sum(0).reshape(shape)
    return out


def _chunk_sums(
    f: np.ndarray, o: np.ndarray, index: np.ndarray, plan: dict[str, Any], k: int
) -> dict[str, np.ndarray]:
    """Every sum of one time chunk of variable ``k``: ``f`` (member, time, *point),
    ``o`` (time, *point), ``index`` the rank draw's global point index (time, *point)."""
    members_last = np.moveaxis(f, 0, -1)
    out = _error_sums(members_last, o)
    ranks = kernels.rank_ties_random(members_last, o, index, seed=plan["seed"])
    out["ranks"] = np.bincount(ranks[ranks >= 0], minlength=f.shape[0] + 1)
    out |= _moment_sums(f, o, plan["edges"][k], plan["shift"][k])
    if plan["spacing"] is not None:  # the two spatial dims are the last two
        for label, values in (("forecast", f), ("obs", o)):
            spectra = kernels.power_spectrum(
                values, plan["spacing"], window="hann", detrend="linear"
            )
            rows = spectra.reshape(-1, spectra.shape[-1])
            finite = rows[np.isfinite(rows).all(-1)]  # a field with NaN has no spectrum
            out[f"spectrum_{label}"] = finite.sum(0)
            out[f"fields_{label}"] = np.array(finite.shape[0])
    return out


# --- the plan: what is summed, on which grid ---------------------------------------------------


def _variables(
    forecast: XarrayLike, obs: XarrayLike, member_dim: str, dim: str
) -> tuple[list[tuple[Hashable, xr.DataArray, xr.DataArray]], list[list[Hashable]]]:
    """The aligned pairs in the order of their names, the forecast as (member, dim, *point)
    and the obs as (dim, *point), every variable on the same points; and each forecast's own order of its other dims
    (the order of the rank histogram's tie draws)."""
    out: list[tuple[Hashable, xr.DataArray, xr.DataArray]] = []
    orders: list[list[Hashable]] = []
    # By name: sums of stores that list their variables in another order still merge.
    for name, f, o in sorted(pairs(forecast, obs), key=lambda pair: str(pair[0])):
        f, o = align_pair(f, o, member_dim)
        orders.append([d for d in f.dims if d != member_dim])
        if dim not in o.dims:
            raise ValueError(
                f"accumulate: obs variable {name!r} has no dim {dim!r} (dims {o.dims}); the "
                "sums run over dim, the time of the record"
            )
        extra = set(f.dims) - set(o.dims) - {member_dim}
        if extra:
            raise ValueError(
                f"accumulate: forecast variable {name!r} has dims {sorted(map(str, extra))} "
                "that obs lacks; select or average them first"
            )
        points = [d for d in o.dims if d != dim]
        out.append((name, f.transpose(member_dim, dim, *points), o.transpose(dim, *points)))
    first = out[0][2]
    for name, _, o in out[1:]:
        if dict(o.sizes) != dict(first.sizes) or list(o.dims) != list(first.dims):
            raise ValueError(
                f"accumulate: variable {name!r} has sizes {dict(o.sizes)}, variable "
                f"{out[0][0]!r} {dict(first.sizes)}; every variable must share the grid and times"
            )
    return out, orders


def _edges(
    variables: list[tuple[Hashable, xr.DataArray, xr.DataArray]],
    edges: Mapping[Hashable, Sequence[float]] | None,
    bins: int,
) -> np.ndarray:
    """Histogram edges per variable (variable, bins + 1): given, or ``bins`` equal bins over
    the obs' range widened by a tenth on each side (one pass over the obs)."""
    rows = []
    for name, _, o in variables:
        if edges is not None and name in edges:
            row = np.asarray(edges[name], dtype=np.float64)
            if row.ndim != 1 or row.size < 2 or np.any(np.diff(row) <= 0):
                raise ValueError(
                    f"accumulate: edges[{name!r}] = {row.tolist()} is invalid; expected 1-D "
                    "increasing bin edges"
                )
        else:
            low, high = float(o.min()), float(o.max())
            pad = 0.1 * (high - low) if high > low else 0.5
            row = np.linspace(low - pad, high + pad, bins + 1)
        rows.append(row)
    if len({r.size for r in rows}) > 1:
        raise ValueError(
            f"accumulate: edges give {sorted({r.size - 1 for r in rows})} bins for different "
            "variables; give each variable the same number of bins"
        )
    return np.stack(rows)


def _signature(
    variables: list[tuple[Hashable, xr.DataArray, xr.DataArray]], member_dim: str, dim: str,
    edges: np.ndarray, spatial: tuple[Hashable, Hashable] | None,
    spacing: tuple[float, float] | None, seed: int, orders: list[list[Hashable]],
) -> dict[str, Any]:  # fmt: skip
    """What must agree for sums to be merged or a state resumed (JSON-ready)."""
    _, f, o = variables[0]
    points = [str(d) for d in o.dims[1:]]
    if spatial is None:
        spacing = None
    else:
        (dy, dx) = spacing if spacing is not None else grid_spacing(o, spatial)
        spacing = (float(dy), float(dx))
        if [str(d) for d in spatial] != points[-2:]:
            raise ValueError(
                f"accumulate: the spatial dims {tuple(spatial)} must be the obs' last two "
                f"dims other than {dim!r} (got {tuple(points)}); transpose them, or pass "
                "spatial_dims=None to skip the spectra"
            )
    return {
        "version": 1, "variables": [str(n) for n, _, _ in variables],
        "member_dim": member_dim, "dim": dim, "members": int(f.sizes[member_dim]),
        "point_dims": points, "point_shape": [int(o.sizes[d]) for d in o.dims[1:]],
        "forecast_order": [[str(d) for d in order] for order in orders],
        "edges": edges.tolist(), "spacing": list(spacing) if spacing is not None else None,
        "seed": int(seed),
    }  # fmt: skip


def _global_index(layout: Sequence[str], order: Sequence[str], sizes: Mapping[str, int],
                  start: int, stop: int, dim: str) -> np.ndarray:  # fmt: skip
    """The linear index, in the forecast's own dim ``order`` over the whole record, of every
    point of the chunk ``start:stop`` of ``dim``, shaped as ``layout`` (dim, *point)."""
    strides, stride = {}, 1
    for d in reversed(order):
        strides[d] = stride
        stride *= sizes[d]
    index = np.zeros((), dtype=np.int64)
    for axis, d in enumerate(layout):
        positions = np.arange(start, stop) if d == dim else np.arange(sizes[d])
        shape = [1] * len(layout)
        shape[axis] = positions.size
        index = index + (positions * strides[d]).reshape(shape)
    return index


# --- accumulate, save, resume ---------------------------------------------------------------


def _starts(o: xr.DataArray, dim: str, batch: int | None) -> list[int]:
    """The chunk boundaries along ``dim``: every ``batch`` times, else the obs' dask chunks,
    else 64 times."""
    size = o.sizes[dim]
    if batch is None and o.chunks is not None:
        return [0, *np.cumsum(o.chunksizes[dim]).tolist()]
    step = 64 if batch is None else batch
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"accumulate: batch={batch!r} is invalid; expected an integer >= 1")
    return [*range(0, size, int(step)), size]


def add_total(total: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> None:
    """Add sums with the ``variable`` axis (one chunk's, one piece's) to the totals."""
    for key, value in part.items():
        total[key] = total[key] + value if key in total else np.array(value, np.float64)


def add_sums(total: dict[str, np.ndarray], k: int, part: dict[str, np.ndarray], n: int) -> None:
    """Add variable ``k``'s sums of one chunk to the totals (``n`` variables)."""
    for key, value in part.items():
        if key not in total:
            total[key] = np.zeros((n, *np.shape(value)), np.float64)
        total[key][k] += value


def save_sums(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the state atomically: a new file beside it, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        contents: dict[str, Any] = {"__meta__": np.array(json.dumps(meta)), **arrays}
        np.savez(handle, **contents)
    os.replace(tmp, path)


def load_sums(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
        return arrays, json.loads(str(data["__meta__"]))


def accumulate(
    forecast: XarrayLike, obs: XarrayLike, *, member_dim: str = "member", dim: str = "time",
    edges: Mapping[Hashable, Sequence[float]] | None = None, bins: int = 50,
    spatial_dims: tuple[Hashable, Hashable] | None = ("y", "x"),
    spacing: tuple[float, float] | None = None, seed: int = 0, batch: int | None = None,
    state: str | os.PathLike[str] | None = None,
) -> xr.Dataset:  # fmt: skip
    """The mergeable sums of an ensemble's scores against the truth, over ``dim``, one time
    chunk at a time (memory: one chunk and the sums).

    Parameters
    ----------
    forecast, obs : Dataset or DataArray
        The ensemble (with ``member_dim``) and the truth, numpy- or dask-backed (a zarr
        store opened with ``xr.open_zarr``); every variable on the same grid and times.
    dim : str, default "time"
        The dimension summed over; the others are the points.
    edges : mapping of variable name to bin edges, optional
        Fixed histogram edges (Perkins, log histogram distance, quantiles by bins).
        Default: ``bins`` equal bins over the obs' range widened by a tenth on each side.
    spatial_dims : (y_dim, x_dim) or None, default ("y", "x")
        The obs' last two dims, for the spectra; None: no spectra.
    spacing : (dy, dx), optional
        Grid spacing in metres (default: from the coordinates, :func:`grid_spacing`).
    seed : int, default 0
        The rank histogram's tie draws (as :func:`~xcorrdiff.verify.rank_histogram`).
    batch : int, optional
        Times per chunk; default the obs' dask chunks along ``dim``, else 64.
    state : path, optional
        A file the sums are saved to after each chunk (written beside it, then renamed
        over it); if it exists, the run resumes after its last chunk. It is refused if it
        was written for other data or settings.

    Returns
    -------
    Dataset
        The sums (:func:`scores_from_sums` turns them into scores; :func:`merge_sums` adds
        pieces).
    """
    variables, meta = prepare(
        forecast, obs, member_dim=member_dim, dim=dim, edges=edges, bins=bins,
        spatial_dims=spatial_dims, spacing=spacing, seed=seed,
    )  # fmt: skip
    o = variables[0][2]
    meta |= {"starts": _starts(o, dim, batch), "done": 0}
    arrays: dict[str, np.ndarray] = {}
    path = Path(state) if state is not None else None
    if path is not None and path.exists():
        arrays, meta = _resume(path, meta)
    for c in range(meta["done"], len(meta["starts"]) - 1):
        start, stop = meta["starts"][c], meta["starts"][c + 1]
        for k, (_, f, o) in enumerate(variables):
            window = {dim: slice(start, stop)}
            values_f = np.asarray(f.isel(window).values, np.float64)
            values_o = np.asarray(o.isel(window).values, np.float64)
            add_sums(arrays, k, chunk_sums(meta, k, values_f, values_o, start), len(variables))
        meta["done"] = c + 1
        if path is not None:
            save_sums(path, arrays, meta)
    return sums_dataset(arrays, meta, o)


def prepare(
    forecast: XarrayLike, obs: XarrayLike, *, member_dim: str, dim: str,
    edges: Mapping[Hashable, Sequence[float]] | None, bins: int,
    spatial_dims: tuple[Hashable, Hashable] | None, spacing: tuple[float, float] | None,
    seed: int,
) -> tuple[list[tuple[Hashable, xr.DataArray, xr.DataArray]], dict[str, Any]]:  # fmt: skip
    """The aligned pairs (forecast as (member, dim, *point), obs as (dim, *point)) and the
    sums' record (its ``signature`` and ``times``), checked before anything is summed."""
    check_type(forecast, "forecast")
    check_type(obs, "obs")
    variables, orders = _variables(forecast, obs, member_dim, dim)
    signature = _signature(
        variables, member_dim, dim, _edges(variables, edges, bins), spatial_dims, spacing,
        seed, orders,
    )  # fmt: skip
    return variables, {"signature": signature, "times": int(variables[0][2].sizes[dim])}


def chunk_sums(
    meta: dict[str, Any], k: int, f: np.ndarray, o: np.ndarray, start: int
) -> dict[str, np.ndarray]:
    """The sums of variable ``k`` over the times ``start:start + len(o)``: ``f`` (member,
    time, *point) and ``o`` (time, *point) as :func:`prepare` laid them out."""
    signature = meta["signature"]
    edges = np.asarray(signature["edges"])
    plan = {"edges": edges, "shift": (edges[:, 0] + edges[:, -1]) / 2, "seed": signature["seed"],
            "spacing": tuple(signature["spacing"]) if signature["spacing"] else None}  # fmt: skip
    dim = signature["dim"]
    layout = [dim, *signature["point_dims"]]
    sizes = dict(zip(signature["point_dims"], signature["point_shape"], strict=True))
    sizes[dim] = meta["times"]
    order = signature["forecast_order"][k]
    index = _global_index(layout, order, sizes, start, start + o.shape[0], dim)
    return _chunk_sums(f, o, index, plan, k)


def _resume(path: Path, meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        arrays, saved = load_sums(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"accumulate: state={str(path)!r} exists but is not a state of accumulate ({exc}); "
            "pass another path (it is left as it is)"
        ) from exc
    differ = [k for k in ("signature", "starts", "times") if saved.get(k) != meta[k]]
    if differ:
        raise ValueError(
            f"accumulate: state={str(path)!r} was written for other data or settings (its "
            f"{', '.join(differ)} differ); pass another path, or remove it to start over"
        )
    return arrays, saved


# --- the sums as a Dataset, merged ------------------------------------------------------------


def _dims(key: str, points: list[str]) -> list[str]:
    if key == "ranks":
        return ["variable", "rank"]
    if key.startswith("hist_"):
        return ["variable", *points, "bin"]
    if key.startswith("spectrum_"):
        return ["variable", "wavenumber"]
    if key.startswith("fields_"):
        return ["variable"]
    return ["variable", *points]


def sums_dataset(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], template: xr.DataArray | xr.Dataset
) -> xr.Dataset:
    """The sums with their dims, the point coordinates of ``template`` and the signature."""
    signature = meta["signature"]
    points = signature["point_dims"]
    edges = np.asarray(signature["edges"])
    coords: dict[str, Any] = {
        "variable": signature["variables"],
        "bin_lower": (("variable", "bin"), edges[:, :-1]),
        "bin_upper": (("variable", "bin"), edges[:, 1:]),
    }
    coords |= {d: template[d].values for d in points if d in template.coords}
    if signature["spacing"] is not None:
        shape = tuple(signature["point_shape"][-2:])
        coords["wavenumber"] = kernels.radial_bins(shape, tuple(signature["spacing"]))[1]
    data = {key: (_dims(key, points), value) for key, value in arrays.items()}
    return xr.Dataset(data, coords=coords, attrs={"xcorrdiff_sums": json.dumps(meta)})


def _record(sums: xr.Dataset, argname: str) -> dict[str, Any]:
    """The sums' record (signature, times), after checking ``sums`` came from accumulate."""
    if not isinstance(sums, xr.Dataset) or "xcorrdiff_sums" not in sums.attrs:
        raise ValueError(
            f"{argname} is not a result of xcorrdiff.verify.accumulate (no 'xcorrdiff_sums' "
            f"attribute; got {type(sums).__name__}); pass what accumulate returned"
        )
    return dict(json.loads(sums.attrs["xcorrdiff_sums"]))


def _from_dataset(sums: xr.Dataset, argname: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = _record(sums, argname)
    arrays = {str(k): np.asarray(v.values, dtype=np.float64) for k, v in sums.data_vars.items()}
    return arrays, meta


def merge_sums(*sums: xr.Dataset) -> xr.Dataset:
    """The sums of several pieces (e.g. decades scored apart) as one. Their variables, grid,
    members, bins, spacing and seed must agree; the times add up."""
    if not sums:
        raise ValueError("merge_sums: expected at least one result of accumulate, got none")
    total, meta = _from_dataset(sums[0], "sums[0]")
    for j, piece in enumerate(sums[1:], start=1):
        arrays, other = _from_dataset(piece, f"sums[{j}]")
        differ = sorted(
            k for k in meta["signature"] if meta["signature"][k] != other["signature"][k]
        )
        if differ or arrays.keys() != total.keys():
            raise ValueError(
                f"merge_sums: sums[{j}] differs from sums[0] in {differ or 'its statistics'}; "
                "only sums of the same variables, grid, members, bins, spacing and seed merge"
            )
        add_total(total, arrays)
        meta = {**meta, "times": meta["times"] + other["times"], "starts": None, "done": None}
    return sums_dataset(total, meta, sums[0])


# --- scores -------------------------------------------------------------------------------------


def _quantiles(hist: xr.DataArray, under: xr.DataArray, n: xr.DataArray,
               edges: np.ndarray, probabilities: np.ndarray) -> xr.DataArray:  # fmt: skip
    """Quantiles from binned counts: the CDF at the edges, interpolated linearly within a
    bin; NaN where a quantile falls below the first or above the last edge."""

    def kernel(counts: np.ndarray, below: float, total: float, e: np.ndarray) -> np.ndarray:
        if total <= 0:
            return np.full(probabilities.shape, np.nan)
        cdf = (below + np.concatenate([[0.0], np.cumsum(counts)])) / total
        inside = (probabilities >= cdf[0]) & (probabilities <= cdf[-1])
        return np.where(inside, np.interp(probabilities, cdf, e), np.nan)

    return xr.apply_ufunc(
        kernel, hist, under, n, xr.DataArray(edges, dims=["variable", "edge"]),
        input_core_dims=[["bin"], [], [], ["edge"]], output_core_dims=[["quantile"]],
        vectorize=True,
    ).assign_coords(quantile=probabilities)  # fmt: skip


def _distribution_scores(
    s: xr.Dataset, edges: np.ndarray, quantiles: Sequence[float], floor: float
) -> dict[str, xr.DataArray]:
    share_f, share_o = s["hist_forecast"] / s["n_forecast"], s["hist_obs"] / s["n_obs"]
    variances = [
        (s[f"s2_{x}"] - s[f"s1_{x}"] ** 2 / s[f"n_{x}"]) / (s[f"n_{x}"] - 1)
        for x in ("forecast", "obs")
    ]
    p = np.asarray(quantiles, dtype=np.float64)
    qf = _quantiles(s["hist_forecast"], s["under_forecast"], s["n_forecast"], edges, p)
    qo = _quantiles(s["hist_obs"], s["under_obs"], s["n_obs"], edges, p)
    logs = abs(cast(xr.DataArray, np.log10(share_f + floor) - np.log10(share_o + floor)))
    return {
        "perkins": cast(xr.DataArray, np.minimum(share_f, share_o)).sum("bin"),
        "log_histogram_distance": logs.mean("bin"),
        "quantile_bias": qf - qo,
        "std_ratio": (variances[0] / variances[1].where(variances[1] > 0)) ** 0.5,
    }


def _spectral_scores(
    sums: xr.Dataset, signature: dict[str, Any], bands: Any
) -> dict[str, xr.DataArray]:
    if signature["spacing"] is None:
        return {}
    spacing = (float(signature["spacing"][0]), float(signature["spacing"][1]))
    sf = resolved(sums["spectrum_forecast"] / sums["fields_forecast"], spacing)
    so = resolved(sums["spectrum_obs"] / sums["fields_obs"], spacing)
    shape = (int(signature["point_shape"][-2]), int(signature["point_shape"][-1]))
    ratios = band_ratios(sf, so, bands, shape, spacing).transpose("variable", ...)
    return {"ralsd": log_spectral_distance(sf, so), "band_power_ratio": ratios}


def scores_from_sums(
    sums: xr.Dataset, *, per_point: bool = False, quantiles: Sequence[float] | None = None,
    bands: Sequence[tuple[float, float]] | None = None, floor: float = 1e-4,
) -> xr.Dataset:  # fmt: skip
    """The scores of the sums of :func:`accumulate` (or :func:`merge_sums`).

    One data variable per score, each with the ``variable`` dimension; pooled over every
    point and time (``per_point=False``, as the one-shot functions with ``dim=None``) or
    per point over the times (``per_point=True``, as ``dim="time"``). ``crps``,
    ``crps_fair``, ``mae``, ``rmse``, ``spread`` and ``spread_skill`` are
    :func:`~xcorrdiff.verify.verify`'s; ``rmse_members`` is the members' own (the root of
    the mean over members and times of ``(x_m − y)²``); ``perkins``, ``log_histogram_distance`` and
    ``std_ratio`` those of :mod:`xcorrdiff.verify.distributions` on the fixed bins;
    ``quantile_bias`` comes from the bins (within a bin's width of the samples'; NaN
    where a quantile lies beyond the edges); ``rank_histogram`` (pooled, counts), and with
    spectra ``ralsd`` and ``band_power_ratio`` (:func:`~xcorrdiff.verify.ralsd`,
    :func:`~xcorrdiff.verify.band_power_ratio`) are over everything.
    """
    meta = _record(sums, "sums")
    signature = meta["signature"]
    s = sums
    if not per_point:
        s = sums.sum(signature["point_dims"])
    n = s["n"].where(s["n"] > 0)
    scores = {
        "crps": s["crps"] / n, "crps_fair": s["crps_fair"] / s["n_fair"].where(s["n_fair"] > 0),
        "mae": s["ae_mean"] / n, "rmse": (s["se_mean"] / n) ** 0.5,
        "rmse_members": (s["se_members"] / n) ** 0.5,
        "spread": (s["spread2"] / s["n_moments"].where(s["n_moments"] > 0)) ** 0.5,
        "spread_skill": (s["spread2"] / s["se_moments"]) ** 0.5,
    }  # fmt: skip
    edges = np.asarray(signature["edges"])
    scores |= _distribution_scores(s, edges, quantiles or QUANTILES, floor)
    scores["rank_histogram"] = sums["ranks"].astype(np.int64)
    scores |= _spectral_scores(sums, signature, bands)
    out = xr.Dataset(scores).drop_vars(["bin_lower", "bin_upper"], errors="ignore")
    out = out.assign_coords(rank=np.arange(signature["members"] + 1))
    return out.assign_attrs(times=meta["times"], members=signature["members"])

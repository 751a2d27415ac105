"""Observation-guided sampling on the known-truth data, against the exact posterior.

The packaged demo model downscales held-out synthetic data (``make_synthetic(seed=1)``, the
demo's test seed) with and without guidance toward ``--stations`` assimilated stations,
observed as the truth plus Gaussian error of ``--error`` (K for t2m, m s-1 for the winds;
the same error is given to the model as ``<name>_error``). Held-out stations, never
assimilated, sit 1, 2, 4, 8 and 16 grid points from an assimilated one (a random direction,
redrawn until no other assimilated station is nearer).

Besides the model's rows the table prints the exact law of the truth at the stations
(:func:`xcorrdiff.tutorial.oracle_posterior`): given the LR state alone (the floor of any
unguided model) and given the observations too (the floor of any guided one). CRPS is
averaged over t2m, u10m and v10m (each in its units; precipitation has no exact law). Then,
per ring of held-out stations, the gain of guidance, ``1 − CRPS(guided) / CRPS(unguided)``,
beside the exact posterior's gain over the exact prior; issue 26 asks that wherever the
exact gain exceeds 5 %, the guided members reach half of it.

Other columns: the held-out stations' spread/skill; the high-k power of the members over
the truth's (:func:`xcorrdiff.verify.high_wavenumber_power`, whole grid); the **spike**
ratio: the members' squared difference between each assimilated station's nearest grid point
and the mean of its eight neighbours, over the truth's (1: as rough as the weather there;
single-pixel spikes make it large); seconds relative to the unguided run (same run); and the
process's peak resident memory after each run (MiB; it only grows, so a guided run's
excess over the unguided one is what the vector–Jacobian product through the network kept).

    python asv_benchmarks/guided_sampling.py                     # the issue's table
    python asv_benchmarks/guided_sampling.py --sampler euler --steps 12 --scales 1
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import xarray as xr

import xcorrdiff
import xcorrdiff.verify as xv
from xcorrdiff.data.points import locate_points
from xcorrdiff.tutorial import make_synthetic, oracle_posterior

GUIDED = ["t2m", "u10m", "v10m"]  # precip is generated through log1p: not guidable
RINGS = (1, 2, 4, 8, 16)


def stations(hr: xr.Dataset, n: int, seed: int) -> tuple[xr.Dataset, dict[int, list[int]]]:
    """``n`` assimilated stations (indices ``0..n-1``) on grid points, and per ring the
    indices of its held-out stations, whose nearest assimilated station is at the ring's
    distance (to half a grid point)."""
    rng = np.random.default_rng(seed)
    ny, nx = hr.sizes["y"], hr.sizes["x"]
    margin = max(RINGS) + 1
    ys, xs = rng.integers(margin, ny - margin, n), rng.integers(margin, nx - margin, n)
    rows, cols, rings = list(ys), list(xs), {}
    for d in RINGS:
        rings[d] = []
        for y0, x0 in zip(ys, xs, strict=True):
            for _ in range(64):
                angle = rng.uniform(0, 2 * np.pi)
                y, x = y0 + d * np.sin(angle), x0 + d * np.cos(angle)
                if np.hypot(ys - y, xs - x).min() >= d - 0.5:
                    rings[d].append(len(rows))
                    rows.append(y)
                    cols.append(x)
                    break
    lat = hr["lat"].interp(y=xr.DataArray(np.interp(rows, np.arange(ny), hr.y.values)),
                           x=xr.DataArray(np.interp(cols, np.arange(nx), hr.x.values)))  # fmt: skip
    lon = hr["lon"].interp(y=lat["y"], x=lat["x"])
    names = [f"S{k:03d}" for k in range(len(rows))]
    coords = {"station": names, "lat": ("station", lat.values), "lon": ("station", lon.values)}
    return xr.Dataset(coords=coords), rings


def observe(truth: xr.Dataset, error: float, seed: int) -> xr.Dataset:
    """The truth at the stations plus Gaussian error, with ``<name>_error``."""
    rng = np.random.default_rng(seed + 1000)
    obs = truth[GUIDED].copy()
    for name in GUIDED:
        obs[name] = obs[name] + rng.normal(0, error, obs[name].shape)
        obs[name].attrs = truth[name].attrs
        obs[f"{name}_error"] = ("station", np.full(obs.sizes["station"], error),
                                {"units": truth[name].attrs["units"]})  # fmt: skip
    return obs


def _mean_crps(per_var: xr.Dataset) -> float:
    return float(np.mean([float(per_var[v]) for v in GUIDED]))


def ring_scores(crps_at: xr.Dataset, used: list[str], rings: dict[int, list[str]]) -> dict:
    """Mean CRPS (over times and variables) at the assimilated stations and per ring, from
    CRPS per station ``(time, station)``."""

    def mean(names: list[str]) -> float:
        return _mean_crps(crps_at.sel(station=names).mean())

    return {"assimilated": mean(used), **{f"held {d} px": mean(rings[d]) for d in RINGS}}


def spikes(ens: xr.Dataset, hr: xr.Dataset, used: xr.Dataset) -> float:
    """Members' squared difference from the 8-neighbour mean at the assimilated stations'
    nearest grid points, over the truth's (mean over variables)."""
    where = locate_points(hr, used["lat"].values, used["lon"].values)
    iy, ix = np.rint(where.fy).astype(int), np.rint(where.fx).astype(int)

    def roughness(field: xr.DataArray) -> float:
        values = field.transpose(..., "y", "x").values
        window = np.stack([values[..., iy + dy, ix + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        centre = window[4]
        neighbours = (window.sum(axis=0) - centre) / 8
        return float(np.mean((centre - neighbours) ** 2))

    return float(np.mean([roughness(ens[v]) / roughness(hr[v]) for v in GUIDED]))


def model_row(ens, hr, truth, points, used, rings, seconds, base):  # type: ignore[no-untyped-def]
    """The model's columns for one ensemble."""
    at = ens[GUIDED].corrdiff.at_stations(points)
    crps_at = xv.crps(at, truth[GUIDED], dim=[])
    held = [n for ring in rings.values() for n in ring]
    ss = xv.spread_skill(at.sel(station=held), truth.sel(station=held)[GUIDED])
    power = [xv.high_wavenumber_power(ens[v]) / xv.high_wavenumber_power(hr[v]) for v in GUIDED]
    return {
        **ring_scores(crps_at, used, rings),
        "held spread/skill": float(np.mean([float(v) for v in ss.values()])),
        "high-k power": float(np.mean(power)),
        "spike": spikes(ens, hr, points.sel(station=used)),
        "time ratio": seconds / base,
        "peak MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def exact_row(lr, points, truth, used, rings, obs=None):  # type: ignore[no-untyped-def]
    """The exact law's CRPS at the stations, given ``lr`` (and ``obs``)."""
    law = oracle_posterior(lr, points, obs)
    crps_at = xr.Dataset({
        v: xv.crps_gaussian(law[f"{v}_mean"], law[f"{v}_std"], truth[v], dim=[]) for v in GUIDED
    })  # fmt: skip
    return ring_scores(crps_at, used, rings)


def print_table(rows: dict[str, dict], columns: list[str], title: str) -> None:
    print(title)
    print(f"| | {' | '.join(columns)} |")
    print("| --- " * (len(columns) + 1) + "|")
    for label, row in rows.items():
        cells = ["" if c not in row else f"{row[c]:.0f}" if c == "peak MiB" else f"{row[c]:.3f}"
                 for c in columns]  # fmt: skip
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--stations", type=int, default=40)
    parser.add_argument("--error", type=float, default=0.3)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default=None, help="default: the model's")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's")
    args = parser.parse_args()

    model = xcorrdiff.load_model("demo", device="cpu")
    lr, hr = make_synthetic(n_times=args.times, hr_shape=model.shape, factor=8, seed=1)
    points, ring_index = stations(hr, args.stations, args.seed)
    names = points["station"].values
    used = list(names[: args.stations])
    rings = {d: list(names[i]) for d, i in ring_index.items()}
    truth = hr[GUIDED].corrdiff.at_stations(points)
    obs = observe(truth.sel(station=used), args.error, args.seed)
    kw = {"model": model, "n_ensemble": args.members, "seed": 3, "device": "cpu",
          "sampler": args.sampler, "num_steps": args.steps}  # fmt: skip
    start = time.perf_counter()
    plain = lr.corrdiff.downscale(**kw)
    base = time.perf_counter() - start
    rows = {"exact, given LR": exact_row(lr, points, truth, used, rings),
            "exact, given LR and obs": exact_row(lr, points, truth, used, rings, obs),
            "unguided": model_row(plain, hr, truth, points, used, rings, base, base)}  # fmt: skip
    for scale in args.scales:
        start = time.perf_counter()
        ens = lr.corrdiff.downscale(**kw, observations=obs, guidance_scale=scale)
        seconds = time.perf_counter() - start
        rows[f"guided ζ={scale:g}"] = model_row(ens, hr, truth, points, used, rings, seconds, base)
    sampler = (
        f"{args.sampler or model.sampler.sampler}, {args.steps or model.sampler.num_steps} steps"
    )
    print(f"{args.stations} assimilated stations (error {args.error:g}), {args.members} members, "
          f"{args.times} times, {sampler}; unguided took {base:.1f} s")  # fmt: skip
    print_table(rows, list(rows["unguided"]), "CRPS averaged over t2m, u10m, v10m:")
    gains = {"exact": {c: 1 - rows["exact, given LR and obs"][c] / rows["exact, given LR"][c]
                       for c in rows["exact, given LR"]}}  # fmt: skip
    for label in rows:
        if label.startswith("guided"):
            gains[label] = {c: 1 - rows[label][c] / rows["unguided"][c] for c in gains["exact"]}
    print_table(
        gains,
        list(gains["exact"]),
        "Gain in CRPS (exact: posterior over prior; guided: over unguided):",
    )


if __name__ == "__main__":
    main()

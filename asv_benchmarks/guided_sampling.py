"""Observation-guided sampling (DPS) on the known-truth data: CRPS at held-out stations.

The packaged demo model downscales held-out synthetic data (``make_synthetic(seed=1)``, the
demo's test seed) with and without guidance toward the truth at ``--stations`` assimilated
stations. Held-out stations sit at 1, 2, 4, 8 and 16 grid points from an assimilated one
(a random direction each) and are never assimilated; the table prints, per guidance scale,
the CRPS at the assimilated stations, at each ring of held-out ones, on the whole grid, the
held-out spread-skill ratio, and the run time relative to unguided sampling in the same run.

    python asv_benchmarks/guided_sampling.py                  # the issue's table
    python asv_benchmarks/guided_sampling.py --scales 1 4 --members 8 --times 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

import xcorrdiff
import xcorrdiff.verify as xv
from xcorrdiff.tutorial import make_synthetic

GUIDED = ["t2m", "u10m", "v10m"]  # precip is generated through log1p: not guidable
RINGS = (1, 2, 4, 8, 16)


def stations(
    hr: xr.Dataset, n: int, seed: int
) -> tuple[xr.Dataset, list[str], dict[int, list[str]]]:
    """``n`` assimilated stations and, for each, one held-out station per ring distance."""
    rng = np.random.default_rng(seed)
    ny, nx = hr.sizes["y"], hr.sizes["x"]
    margin = max(RINGS) + 1
    ys, xs = rng.integers(margin, ny - margin, n), rng.integers(margin, nx - margin, n)
    rows, cols, names = list(ys), list(xs), [f"A{k:02d}" for k in range(n)]
    rings: dict[int, list[str]] = {}
    for d in RINGS:
        angle = rng.uniform(0, 2 * np.pi, n)
        rows += list(np.rint(ys + d * np.sin(angle)).astype(int))
        cols += list(np.rint(xs + d * np.cos(angle)).astype(int))
        rings[d] = [f"H{d:02d}-{k:02d}" for k in range(n)]
        names += rings[d]
    lat, lon = hr["lat"].values[rows, cols], hr["lon"].values[rows, cols]
    points = xr.Dataset(coords={"station": names, "lat": ("station", lat), "lon": ("station", lon)})
    return points, names[:n], rings


def scores(ens: xr.Dataset, truth: xr.Dataset, hr: xr.Dataset, points: xr.Dataset,
           used: list[str], rings: dict[int, list[str]]) -> dict[str, float]:  # fmt: skip
    """Mean CRPS over the guided variables (each in its units, averaged) per station set."""
    at = ens[GUIDED].corrdiff.at_stations(points)

    def crps(names: list[str]) -> float:
        c = xv.crps(at.sel(station=names), truth.sel(station=names)[GUIDED])
        return float(np.mean([float(c[v]) for v in GUIDED]))

    held = [n for ring in rings.values() for n in ring]
    ss = xv.spread_skill(at.sel(station=held), truth.sel(station=held)[GUIDED])
    row = {"assimilated": crps(used), **{f"held {d} px": crps(rings[d]) for d in RINGS}}
    row["grid"] = float(np.mean([float(v) for v in xv.crps(ens[GUIDED], hr[GUIDED]).values()]))
    row["held spread/skill"] = float(np.mean([float(v) for v in ss.values()]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--stations", type=int, default=40)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = xcorrdiff.load_model("demo", device="cpu")
    lr, hr = make_synthetic(n_times=args.times, hr_shape=model.shape, factor=8, seed=1)
    points, used, rings = stations(hr, args.stations, args.seed)
    truth = hr[GUIDED].corrdiff.at_stations(points)
    obs = truth.sel(station=used)
    kw = {"model": model, "n_ensemble": args.members, "seed": 3, "device": "cpu"}
    start = time.perf_counter()
    plain = lr.corrdiff.downscale(**kw)
    base = time.perf_counter() - start
    rows = {"unguided": {**scores(plain, truth, hr, points, used, rings), "time ratio": 1.0}}
    for scale in args.scales:
        start = time.perf_counter()
        ens = lr.corrdiff.downscale(**kw, observations=obs, guidance_scale=scale)
        seconds = time.perf_counter() - start
        rows[f"guided ζ={scale:g}"] = {**scores(ens, truth, hr, points, used, rings),
                                       "time ratio": seconds / base}  # fmt: skip
    columns = list(rows["unguided"])
    print(f"{args.stations} assimilated stations, {args.members} members, {args.times} times; "
          f"CRPS averaged over {GUIDED} (each in its units); unguided took {base:.1f} s")  # fmt: skip
    print(f"{'':<16}" + "".join(f"{c:>18}" for c in columns))
    for label, row in rows.items():
        print(f"{label:<16}" + "".join(f"{row[c]:>18.3f}" for c in columns))


if __name__ == "__main__":
    main()

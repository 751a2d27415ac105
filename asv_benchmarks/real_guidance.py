"""Observation-guided sampling on real data: how far an observation moves the members.

The small real case of ``real_skill.py`` (NDFD 5 km daily maximum temperature, its 4 × 4
block means as input, three days trained at the 1× budget, training seed ``--seed``, the
model's own sampler): on the held-out day, 3 % of the grid points are stations observed as
the truth plus N(0, 0.3 K²) error (given to the model as ``tmax_error``). The ensemble is
drawn with and without guidance (16 members, the same member seeds); per distance to the
nearest station the table prints the CRPS of both, the gain, and the mean absolute change of
the ensemble mean. Real data have no exact posterior, so the yardstick is the truth's own
residual field: the autocorrelation of ``truth − regression mean`` on the held-out day at
lags of 1, 2, 4 and 8 grid points (and that of the members' residuals, the model's prior).
An observation should move its neighbourhood about as far as that field is correlated.

    python asv_benchmarks/real_guidance.py [--seed 0] [--stations 0.03]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_skill import case, train_config

DISTANCES = ((0, 0.5, "0 (stations)"), (0.5, 1.5, "1"), (1.5, 2.5, "2"), (2.5, 4.5, "3-4"),
             (4.5, np.inf, "> 4"))  # fmt: skip


def observations(truth: xr.Dataset, fraction: float, seed: int) -> tuple[xr.Dataset, np.ndarray]:
    """Stations on ``fraction`` of the grid points, the truth plus 0.3 K error; and each grid
    point's distance (grid points) to the nearest station."""
    rng = np.random.default_rng(seed)
    ny, nx = truth.sizes["y"], truth.sizes["x"]
    n = int(fraction * ny * nx)
    ys, xs = np.divmod(rng.choice(ny * nx, n, replace=False), nx)
    yy, xx = np.mgrid[0:ny, 0:nx]
    distance = np.min(np.hypot(yy[..., None] - ys, xx[..., None] - xs), axis=-1)
    values = truth["tmax"].values[0, ys, xs] + rng.normal(0, 0.3, n)
    obs = xr.Dataset(
        {"tmax": (("time", "station"), values[None], {"units": truth["tmax"].attrs["units"]}),
         "tmax_error": ("station", np.full(n, 0.3), {"units": "K"})},
        coords={"time": truth["time"].values, "station": np.arange(n),
                "lat": ("station", truth["lat"].values[ys, xs]),
                "lon": ("station", truth["lon"].values[ys, xs])},
    )  # fmt: skip
    return obs, distance


def autocorrelation(field: np.ndarray, lag: int) -> float:
    """Lag-``lag`` autocorrelation of a 2-D field, averaged over the two axes."""
    f = field - field.mean()
    along = (f[:, lag:] * f[:, :-lag]).mean() + (f[lag:] * f[:-lag]).mean()
    return float(along / 2 / f.var())


def main() -> None:
    import torch

    import xcorrdiff.verify as xv  # importing xcorrdiff registers the accessor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--stations", type=float, default=0.03, help="fraction of the grid")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lr, hr = case("small")
    with tempfile.TemporaryDirectory() as folder:
        model = lr.isel(time=slice(0, 3)).corrdiff.fit(
            hr.isel(time=slice(0, 3)), config=train_config(args.seed, 1.0, folder, {}),
            invariants=[], input_variables=["tmax"], output_variables=["tmax"], progress=False,
        )  # fmt: skip
    held, truth = lr.isel(time=slice(3, 4)), hr[["tmax"]].isel(time=slice(3, 4))
    obs, distance = observations(truth, args.stations, args.seed)
    kw = {"model": model, "n_ensemble": 16, "seed": 0, "device": "cpu", "return_mean": True}
    plain = held.corrdiff.downscale(**kw).compute()
    guided = held.corrdiff.downscale(**kw, observations=obs).compute()
    y = truth["tmax"].values[0].astype(np.float64)
    before, after = (xv.crps(e["tmax"], truth["tmax"], dim=[]).values[0] for e in (plain, guided))
    shift = np.abs(guided["tmax"].values[:, 0].mean(0) - plain["tmax"].values[:, 0].mean(0))
    print(f"{obs.sizes['station']} stations ({args.stations:.0%} of the grid), error 0.3 K, "
          f"16 members, {model.sampler.sampler} {model.sampler.num_steps} steps, training seed {args.seed}")  # fmt: skip
    print("| distance (px) | points | CRPS unguided | guided | gain | mean change (K) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for low, high, label in DISTANCES:
        at = (distance >= low) & (distance < high)
        gain = 1 - after[at].mean() / before[at].mean()
        print(f"| {label} | {at.sum()} | {before[at].mean():.3f} | {after[at].mean():.3f} | "
              f"{gain:.1%} | {shift[at].mean():.3f} |")  # fmt: skip
    mean = plain["tmax_mean"].values[0].astype(np.float64)
    print("| lag (px) | truth − mean autocorrelation | members − mean autocorrelation |")
    print("| --- | --- | --- |")
    for lag in (1, 2, 4, 8):
        members = np.mean([autocorrelation(m - mean, lag) for m in plain["tmax"].values[:, 0]])
        print(f"| {lag} | {autocorrelation(y - mean, lag):.3f} | {members:.3f} |")


if __name__ == "__main__":
    main()

"""Calibration of the ensemble spread on real data, scored on a day it did not see.

The small real case of ``real_skill.py`` (NDFD 5 km daily maximum temperature, four days,
its 4 × 4 block means as input, the same budget and settings at ``--budget``), split in
time three ways: the model trains on days 0 and 1, :func:`xcorrdiff.calibrate` chooses the
initial-noise factor on day 2 (16 members, member seed 1), and day 3 is scored before and
after (16 members, member seed 0): CRPS, fair CRPS and spread/skill as ``real_skill.py``
computes them (brute force, float64), with the factor chosen, per training seed and as
mean and standard deviation over the seeds. One search gives both of calibrate's rules:
the default one-standard-error rule (columns ``factor``, ``..._after``) and the least
fair CRPS (``least``, ``..._least``); each seed's search (fair CRPS and standard error
per candidate on day 2) is printed after the table.

``--transfer`` also trains the seed's model on days 0–2 (as ``real_skill.py --case small``
does) and scores it on day 3 without and with the one-SE factor the two-day model chose
(columns ``..._3d`` and ``..._3d_factor``): whether a factor found on a held-out day carries
over to the model retrained on every day.

Usage::

    python asv_benchmarks/real_calibration.py [--seeds 0 1 2 3 4] [--budget 1] [--workers 2]
        [--transfer]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMNS = (
    "factor", "least", "crps", "crps_after", "crps_least", "crps_fair", "crps_fair_after",
    "crps_fair_least", "ss", "ss_after", "ss_least",
)  # fmt: skip
TRANSFER = ("crps_3d", "crps_3d_factor", "crps_fair_3d", "crps_fair_3d_factor", "ss_3d",
            "ss_3d_factor")  # fmt: skip


def _scored(model, lr, hr, n_members: int, suffix: str) -> dict:  # type: ignore[no-untyped-def]
    """CRPS, fair CRPS and spread/skill of ``model``'s members on day 3 (member seed 0),
    keyed with ``suffix``."""
    from real_skill import scores

    held = slice(3, 4)
    ens = lr.isel(time=held).corrdiff.downscale(
        model, n_members, seed=0, return_mean=True, device="cpu"
    )
    s = scores(
        ens["tmax"].values.astype(np.float64), ens["tmax_mean"].values.astype(np.float64),
        lr["tmax"].isel(time=held).values.astype(np.float64),
        hr["tmax"].isel(time=held).values.astype(np.float64),
    )  # fmt: skip
    return {f"crps{suffix}": s["crps"], f"crps_fair{suffix}": s["crps_fair"],
            f"ss{suffix}": s["spread_skill"]}  # fmt: skip


def run_seed(seed: int, budget: float, n_members: int, transfer: bool = False) -> dict:
    """Train on days 0–1, calibrate on day 2, score day 3 before and after (``transfer``:
    also the model trained on days 0–2, without and with the factor)."""
    import torch
    from real_skill import case, fit_days

    import xcorrdiff
    from xcorrdiff.inference.calibrate import choose, with_noise_scale

    torch.set_num_threads(1)
    lr, hr = case("small")
    started = time.perf_counter()
    model = fit_days(lr, hr, 2, seed, budget, {})
    least = xcorrdiff.calibrate(
        model, lr.isel(time=[2]), hr[["tmax"]].isel(time=[2]), n_ensemble=n_members, seed=1,
        device="cpu", rule="least_crps",
    )  # fmt: skip
    search = least.provenance["calibration"]
    factor = choose(search["candidates"], search["crps_fair"]["tmax"],
                    search["standard_error"]["tmax"], "one_se")  # fmt: skip
    after = with_noise_scale(least, (factor,))
    row: dict = {"seed": seed, "factor": factor, "least": least.sampler.noise_scale[0],
                 "search": search}  # fmt: skip
    for suffix, candidate in (("", model), ("_after", after), ("_least", least)):
        row |= _scored(candidate, lr, hr, n_members, suffix)
    if transfer:
        every = fit_days(lr, hr, 3, seed, budget, {})
        row |= _scored(every, lr, hr, n_members, "_3d")
        row |= _scored(with_noise_scale(every, (factor,)), lr, hr, n_members, "_3d_factor")
    return {**row, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transfer", action="store_true", help="also the model of days 0-2")
    args = parser.parse_args()
    import xcorrdiff

    print(f"xcorrdiff {xcorrdiff.__version__}; small real case, trained on days 0-1, "
          f"calibrated on day 2, scored on day 3; budget x{args.budget:g}, {args.members} members")  # fmt: skip
    from real_skill import seed_table

    rows = seed_table(
        run_seed, args.seeds, (args.budget, args.members, args.transfer),
        COLUMNS + (TRANSFER if args.transfer else ()), workers=args.workers,
        width=15, digits=4,
    )  # fmt: skip
    print("\nday-2 search: fair CRPS (standard error of the difference from the least)")
    for row in rows:
        search = row["search"]
        cells = zip(search["candidates"], search["crps_fair"]["tmax"],
                    search["standard_error"]["tmax"], strict=True)  # fmt: skip
        print(f"seed {row['seed']}: " + ", ".join(f"{c:g}: {v:.4f} ({e:.4f})" for c, v, e in cells))


if __name__ == "__main__":
    main()

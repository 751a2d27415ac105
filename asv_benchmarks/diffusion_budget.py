"""The diffusion stage alone under other settings, on the real-data small case.

Trains the regression and its cross-fit folds once (the ``real_skill.py --case small``
settings at ``--budget``), then the diffusion stage under each variant on top of them, and
prints the held-out day's scores and those of training day 0 (memorization shows as
spread vanishing on the days it learnt). The fold regressions are reused across variants
by memoizing ``xcorrdiff.train.stages.train_regression`` in this process (every variant
changes only the diffusion settings, so they would be trained identically again).

Usage::

    python asv_benchmarks/diffusion_budget.py [--seed 0] [--budget 4]
        [--variants base diff1x drop13 patch32 patch16 patch16d1x patch8 drop13p32 auto
         autodrop13 autodrop30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Diffusion variants: TrainConfig changes (``net``: the diffusion network's).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"diffusion_crops": False},
    "diff1x": {"diffusion_crops": False, "diffusion_duration": 400},
    "drop13": {"diffusion_crops": False, "net": {"dropout": 0.13}},
    "patch32": {"diffusion_crops": False, "patch_shape": (32, 32)},
    "patch16": {"diffusion_crops": False, "patch_shape": (16, 16)},
    "patch16d1x": {"diffusion_crops": False, "patch_shape": (16, 16), "diffusion_duration": 400},
    "patch8": {"diffusion_crops": False, "patch_shape": (8, 8)},
    "drop13p32": {"diffusion_crops": False, "net": {"dropout": 0.13}, "patch_shape": (32, 32)},
    "auto": {},
    "autodrop13": {"net": {"dropout": 0.13}},
    "autodrop30": {"net": {"dropout": 0.3}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=4.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    import torch
    from real_skill import case, scores, train_config

    import xcorrdiff
    import xcorrdiff.train.stages as stages
    from xcorrdiff.config import NetworkConfig

    torch.set_num_threads(1)
    memo: dict[Any, Any] = {}
    train = stages.train_regression

    def once(*a: Any, fold: int | None = None, **kw: Any) -> Any:
        if fold not in memo:
            memo[fold] = train(*a, fold=fold, **kw)
        return memo[fold]

    stages.train_regression = once  # type: ignore[assignment]
    lr, hr = case("small")
    days = {"held": slice(3, 4), "train0": slice(0, 1)}

    def config(folder: str, changes: dict[str, Any]):  # type: ignore[no-untyped-def]
        base = train_config(args.seed, args.budget, folder, {})
        changes = dict(changes)
        net = {**base.model.diffusion.to_kwargs(), **changes.pop("net", {})}
        return base.replace(diffusion=NetworkConfig(**net), **changes)

    with tempfile.TemporaryDirectory() as folder:
        model = stages.fit_regression(
            lr.isel(time=slice(0, 3)), hr.isel(time=slice(0, 3)), invariants=[],
            config=config(folder, {}), input_variables=["tmax"], output_variables=["tmax"],
            progress=False,
        )  # fmt: skip
    print(f"xcorrdiff {xcorrdiff.__version__}; seed {args.seed}, budget x{args.budget:g}")
    for name in args.variants:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            trained = stages.fit_diffusion(
                model, lr.isel(time=slice(0, 3)), hr.isel(time=slice(0, 3)),
                config=config(folder, VARIANTS[name]), progress=False,
            )  # fmt: skip
        cells = []
        for label, day in days.items():
            ens = lr.isel(time=day).corrdiff.downscale(trained, 16, seed=0, return_mean=True)
            s = scores(
                ens["tmax"].values.astype(np.float64), ens["tmax_mean"].values.astype(np.float64),
                lr["tmax"].isel(time=day).values.astype(np.float64),
                hr["tmax"].isel(time=day).values.astype(np.float64),
            )  # fmt: skip
            cells.append(f"{label}: CRPS {s['crps']:.3f}, spread/skill {s['spread_skill']:.3f}")
        print(f"{name:10s} " + " | ".join(cells) + f"  ({time.perf_counter() - started:.0f} s)",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

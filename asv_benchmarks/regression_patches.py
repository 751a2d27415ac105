"""Cost of a regression training step against the domain's area: whole domain vs patches.

Trains the regression stage of the ``tiny`` preset on synthetic data of growing domains,
once on the whole domain (PhysicsNeMo's CorrDiff) and once on 32×32 patches with the
whole domain's inputs as global context (``TrainConfig(regression_patch_shape=(32, 32))``),
and prints the seconds per optimizer step (batch 4, one patch per sample): the difference
of two runs of ``--steps`` and ``2 * --steps`` steps after a warm-up run, so set-up is
not counted.

Usage::

    python asv_benchmarks/regression_patches.py [--sides 32 64 128 256] [--steps 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.stages import fit_regression
from xcorrdiff.tutorial import make_synthetic


def seconds(lr, hr, patch, steps: int) -> float:  # type: ignore[no-untyped-def]
    config = TrainConfig(
        preset="tiny", batch_size=4, patches_per_sample=1, regression_duration=4 * steps,
        validation_fraction=0.0, regression_patch_shape=patch, lr_rampup=0,
    )  # fmt: skip
    start = time.perf_counter()
    fit_regression(lr, hr, config=config, output_variables=["t2m", "u10m"], progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'domain':>9} {'whole s/step':>13} {'patches s/step':>15} {'ratio':>6}")
    for side in args.sides:
        lr, hr = make_synthetic(n_times=16, hr_shape=(side, side), factor=8, seed=0)
        per_step = {}
        for name, patch in (("whole", None), ("patches", (32, 32))):
            seconds(lr, hr, patch, 1)  # warm-up: first-call costs are not a step's
            short = seconds(lr, hr, patch, args.steps)
            long = seconds(lr, hr, patch, 2 * args.steps)
            per_step[name] = (long - short) / args.steps
        ratio = per_step["whole"] / per_step["patches"]
        print(
            f"{side:>4}x{side:<4} {per_step['whole']:>13.3f} {per_step['patches']:>15.3f} {ratio:>6.1f}"
        )


if __name__ == "__main__":
    main()

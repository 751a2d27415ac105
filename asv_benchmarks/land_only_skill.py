"""Land-only (masked) training against training on the complete field: skill over land.

For each seed, the known-truth synthetic data set (32×32, factor 8, 256 times) is trained
twice with the same ``tiny`` regression budget: once on the complete HR field, once with
the sea set to NaN (the masked loss). Prints the held-out regression MAE over land of both
and their ratio (masked / complete); the issue's bar is a ratio of at most 1.05.

Usage::

    python asv_benchmarks/land_only_skill.py [--seeds 0 1 2] [--samples 1024]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from xcorrdiff.data.split import split_times
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.stages import fit_regression
from xcorrdiff.tutorial import make_synthetic

OUT = ["t2m", "u10m"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'seed':>4} {'variable':>8} {'MAE complete':>13} {'MAE masked':>11} {'ratio':>6}")
    for seed in args.seeds:
        lr, hr = make_synthetic(n_times=256, hr_shape=(32, 32), factor=8, seed=seed)
        land = hr.land_sea_mask > 0.5
        masked = hr[OUT].assign({v: hr[v].where(land) for v in OUT})
        config = TrainConfig(
            preset="tiny", batch_size=8, learning_rate=5e-3, lr_rampup=0, lr_decay=1.0,
            ema_halflife=200, regression_duration=args.samples, validation_every=10**6,
        )  # fmt: skip
        _, held = split_times(256, validation_fraction=config.data.validation_fraction)
        truth = hr.isel(time=held)
        mae = {}
        for name, target in (("complete", hr[OUT]), ("masked", masked)):
            model = fit_regression(lr, target, config=config, progress=False)
            mean = model.regression_mean(lr.isel(time=held))
            mae[name] = {v: float(np.abs(mean[v] - truth[v]).where(land).mean()) for v in OUT}
        for v in OUT:
            a, b = mae["complete"][v], mae["masked"][v]
            print(f"{seed:>4} {v:>8} {a:>13.3f} {b:>11.3f} {b / a:>6.3f}")


if __name__ == "__main__":
    main()

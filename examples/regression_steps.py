"""Regression stage only, on the known-truth data: how batch size, steps and network matter.

Trains the regression UNet with the ``tiny`` preset and the given overrides, then prints
one JSON line: the held-out MAE of the regression mean relative to the MAE of bilinear
interpolation (and the exact conditional mean's, the floor) for t2m, u10m, v10m.

Usage::

    python examples/regression_steps.py --side 64 --batch 8 --samples 2048 --bottleneck-attention 1
    python examples/regression_steps.py --side 64 --batch 1 --samples 4096 --decay-rate 2048

The figures in docs/user-guide/training.md ("Two measurements behind the tiny preset")
came from these runs (64×64, 512 times, factor 8, one torch thread, 3–13 minutes each).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.regrid import regrid
from xcorrdiff.train import fit_regression
from xcorrdiff.tutorial import make_synthetic, oracle_mean

VARIABLES = ["t2m", "u10m", "v10m"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=64, help="HR grid side (pixels)")
    parser.add_argument("--n-times", type=int, default=512)
    parser.add_argument("--channel-mult", default="1,2")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--bottleneck-attention", type=int, choices=(0, 1), default=0)
    parser.add_argument("--learning-rate", type=float, default=4e-3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--decay-rate", type=int, default=4096, help="samples per LR halving")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    lr, hr = make_synthetic(n_times=args.n_times, hr_shape=(args.side, args.side), factor=8)
    hr = hr[VARIABLES]
    net = NetworkConfig(
        model_channels=args.channels,
        channel_mult=tuple(int(c) for c in args.channel_mult.split(",")),
        bottleneck_attention=bool(args.bottleneck_attention),
        embedding_type="zero",
    )
    config = xcorrdiff.TrainConfig(
        preset="tiny",
        regression=net,
        learning_rate=args.learning_rate,
        batch_size=args.batch,
        regression_duration=args.samples,
        lr_decay_rate=args.decay_rate,
        validation_every=10**9,
        checkpoint_dir=tempfile.mkdtemp(prefix="xcorrdiff-regression-"),
    )
    model = fit_regression(lr, hr, config=config, progress=False)
    seconds = time.perf_counter() - start

    n_val = max(1, round(config.data.validation_fraction * args.n_times))
    held_out = slice(args.n_times - n_val, args.n_times)
    truth = hr.isel(time=held_out)
    predicted = model.regression_mean(lr.isel(time=held_out))
    bilinear = regrid(lr[VARIABLES].isel(time=held_out), hr)
    oracle = oracle_mean(lr.isel(time=held_out))

    def mae(field: np.ndarray, name: str) -> float:
        return float(np.abs(field - truth[name].values).mean())

    ratio = {n: mae(predicted[n].values, n) / mae(bilinear[n].values, n) for n in VARIABLES}
    floor = {n: mae(oracle[n].values, n) / mae(bilinear[n].values, n) for n in VARIABLES}
    print(
        json.dumps(
            {
                "args": vars(args),
                "seconds": round(seconds),
                "model/bilinear": {n: round(v, 3) for n, v in ratio.items()},
                "oracle/bilinear": {n: round(v, 3) for n, v in floor.items()},
            }
        )
    )


if __name__ == "__main__":
    main()

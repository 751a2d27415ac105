"""Train the ``tiny`` CorrDiff on the known-truth synthetic data set and score it.

Prints, for the held-out times, the regression MAE against the MAE of bilinear
interpolation and of the exact conditional mean (the oracle, the best any regression can
do), per variable; the diffusion validation loss against the loss of predicting a zero
residual at the same noise levels; and the run time.

Usage::

    python examples/train_tiny.py [--n-times 512] [--side 128] [--factor 8] [--out DIR]

Runs in about 50 minutes on one CPU core with the defaults (measured: 50.4 min on a
shared 2-core machine, 2026-11-21), the regression UNet being trained on the whole 128×128
domain. Held-out regression MAE measured then, relative to bilinear interpolation:
t2m 0.48, u10m 0.53, v10m 0.47 (the exact conditional mean: 0.41, 0.46, 0.39).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xcorrdiff
from xcorrdiff.data.regrid import regrid
from xcorrdiff.tutorial import make_synthetic, oracle_mean

VARIABLES = ["t2m", "u10m", "v10m", "precip"]
#: Per-variable transforms fitted into the output normalization (precipitation: log1p).
OUTPUT_TRANSFORMS = {"precip": "log1p"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-times", type=int, default=512)
    parser.add_argument("--side", type=int, default=128, help="HR grid side (pixels)")
    parser.add_argument("--factor", type=float, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="directory for the model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="xcorrdiff-tiny-"))

    start = time.perf_counter()
    lr, hr = make_synthetic(
        n_times=args.n_times, hr_shape=(args.side, args.side), factor=args.factor
    )
    hr = hr[VARIABLES]  # orography and land_sea_mask (coordinates) become invariants
    config = xcorrdiff.TrainConfig(
        preset="tiny",
        output_transforms=OUTPUT_TRANSFORMS,
        checkpoint_dir=str(out / "checkpoints"),
    )
    print(f"data ready in {time.perf_counter() - start:.0f} s; training {config.preset!r} in {out}")

    model = lr.corrdiff.fit(hr, config=config)
    train_time = time.perf_counter() - start
    model.save(out / "model", overwrite=True)

    # The held-out times are the last validation_fraction of the record.
    n_val = max(1, round(config.data.validation_fraction * args.n_times))
    held_out = slice(args.n_times - n_val, args.n_times)
    truth = hr.isel(time=held_out)
    predicted = model.regression_mean(lr.isel(time=held_out))
    inputs = [name for name in VARIABLES if name in lr]  # precip is not an input
    bilinear = regrid(lr[inputs].isel(time=held_out), hr)
    oracle = oracle_mean(lr.isel(time=held_out))
    print(f"\nheld-out regression MAE ({n_val} times):")
    print(f"{'variable':>9} {'model':>8} {'bilinear':>9} {'oracle':>8} {'ratio':>7}")
    for name in VARIABLES:
        t = truth[name].values
        mae = float(np.abs(predicted[name].values - t).mean())
        mae_oracle = float(np.abs(oracle[name].values - t).mean())
        if name in inputs:
            mae_bil = float(np.abs(bilinear[name].values - t).mean())
            print(f"{name:>9} {mae:8.3f} {mae_bil:9.3f} {mae_oracle:8.3f} {mae / mae_bil:7.3f}")
        else:
            print(f"{name:>9} {mae:8.3f} {'-':>9} {mae_oracle:8.3f} {'-':>7}")

    final = model.provenance["diffusion"]["final_validation"]
    print(
        f"\ndiffusion validation loss {final['val_loss']:.4f} vs zero residual "
        f"{final['val_loss_zero_residual']:.4f} "
        f"(ratio {final['val_loss'] / final['val_loss_zero_residual']:.3f})"
    )
    print(
        f"run time {train_time / 60:.1f} min (data + both stages); model saved to {out / 'model'}"
    )
    summary = {
        "train_seconds": train_time,
        "diffusion": final,
        "regression": model.provenance["regression"]["final_validation"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

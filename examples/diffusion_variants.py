"""Diffusion stage only, on the demo model's regression: how training options change the ensemble.

Retrains the residual diffusion network of the packaged demo model (its regression is
kept, frozen) with the demo recipe plus the given ``TrainConfig`` overrides, scores it on
held-out weather seeds with :func:`xcorrdiff.demo.run_demo` (never the demo's own seed 1)
and prints one line per seed: CRPS, spread-skill ratio and the members' high-wavenumber
power relative to the truth's, per variable.

Usage::

    python examples/diffusion_variants.py --set residual_scaling=False
    python examples/diffusion_variants.py --set residual_scaling=True
    python examples/diffusion_variants.py --set residual_scaling=True --steps 24 --sigma-max 80

The residual-scaling table in docs/user-guide/training.md came from these runs (one torch
thread, about 13 minutes of training and 2 minutes per scored seed on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import tempfile
import time

import torch

import xcorrdiff
from xcorrdiff.config import SamplerConfig
from xcorrdiff.demo import TRAINING_SEED, run_demo
from xcorrdiff.train import fit_diffusion
from xcorrdiff.tutorial import make_synthetic

SCORES = {"crps": "crps", "spread_skill": "ss", "power_members": "power"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainConfig override, e.g. residual_scaling=False (repeatable)",
    )
    parser.add_argument("--seeds", default="2,3", help="held-out weather seeds to score")
    parser.add_argument("--n-times", type=int, default=2, help="held-out times per seed")
    parser.add_argument("--sampler", choices=("euler", "heun"), default="euler")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--sigma-max", type=float, default=800.0, help="sampler's first level")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = ast.literal_eval(value)

    base = xcorrdiff.load_model("demo")
    outputs = list(base.output_names)
    lr, hr = make_synthetic(n_times=512, hr_shape=base.shape, factor=8, seed=TRAINING_SEED)
    config = xcorrdiff.TrainConfig(
        preset="tiny",
        output_transforms={"precip": "log1p"},
        checkpoint_dir=tempfile.mkdtemp(prefix="xcorrdiff-variants-"),
        **overrides,
    )
    start = time.perf_counter()
    model = fit_diffusion(base, lr, hr[outputs], config=config, progress=False)
    train_s = time.perf_counter() - start
    model.sampler = SamplerConfig(
        sampler=args.sampler, num_steps=args.steps, sigma_max=args.sigma_max
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        result = run_demo(
            tempfile.mkdtemp(prefix="xcorrdiff-variants-out-"),
            model=model,
            data_seed=seed,
            n_times=args.n_times,
            figures=False,
            overwrite=True,
            progress=False,
            stream=io.StringIO(),  # the tables are summarized below
        )
        scores = {
            name: {
                short: round(float(result.scores[key].sel(variable=name)), 4)
                for key, short in SCORES.items()
            }
            for name in outputs
        }
        line = {
            "overrides": overrides,
            "sampler": args.sampler,
            "steps": args.steps,
            "sigma_max": args.sigma_max,
            "data_seed": seed,
            "n_times": args.n_times,
            "train_s": round(train_s),
            "residual_scale": model.residual_scale,
            "scores": scores,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

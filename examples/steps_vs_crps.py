"""How many sampler steps does CorrDiff need? CRPS against the known truth, per step count.

Trains a small CorrDiff model on the synthetic toy atmosphere (or loads one), downscales
held-out weather (another weather seed, same terrain) with the Euler and Heun samplers at
6, 9, 12, 18 and 32 steps, and prints the ensemble CRPS of each against the HR truth, next
to the regression MAE and the CRPS of the oracle ensemble (samples of the true
``p(hr | lr)``: the floor any model can reach).

Usage::

    python examples/steps_vs_crps.py --model /tmp/xcorrdiff-steps-model   # trains if absent
    python examples/steps_vs_crps.py --model DIR --train-only             # just train/save

On the CPU (one thread) training takes about 15 minutes (64×64 grid, 256 times, a
16-channel network: 2,048 regression and 6,144 diffusion samples) and the table about
30 more (8 held-out times, 16 members); pass ``--device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.train.config import TrainConfig

HR_SHAPE = (64, 64)
FACTOR = 8
OUTPUTS = ["t2m", "u10m", "v10m"]
STEPS = (6, 9, 12, 18, 32)


def training_data(n_times: int, seed: int) -> tuple[xr.Dataset, xr.Dataset]:
    """Synthetic LR inputs and HR targets (the static fields stay as HR coordinates)."""
    lr, hr = xcorrdiff.tutorial.make_synthetic(
        n_times=n_times, hr_shape=HR_SHAPE, factor=FACTOR, seed=seed
    )
    return lr, hr[OUTPUTS]


def train(path: Path, *, n_times: int, regression: int, diffusion: int, device: str) -> None:
    """Train the two stages with a small network and save the model to ``path``."""
    lr, hr = training_data(n_times, seed=0)
    net = {"model_channels": 16, "channel_mult": (1, 2), "num_blocks": 1}
    config = TrainConfig(
        preset="tiny",
        regression=NetworkConfig(**net, embedding_type="zero"),
        diffusion=NetworkConfig(**net, embedding_type="positional"),
        patch_shape=HR_SHAPE,
        patches_per_sample=1,
        batch_size=8,
        learning_rate=2e-3,
        lr_rampup=256,
        lr_decay=1.0,
        ema_halflife=512,
        regression_duration=regression,
        diffusion_duration=diffusion,
        validation_fraction=0.0,
        validation_every=10**9,
        checkpoint_dir=str(path.with_name(path.name + "-checkpoints")),
        checkpoint_every=1024,
        device=device,
    )
    start = time.perf_counter()
    model = lr.corrdiff.fit(hr, config=config, progress=True)
    model.save(path, overwrite=True)
    print(f"trained {model} in {time.perf_counter() - start:.0f} s; saved to {path}")


def evaluate(
    path: Path, *, n_times: int, n_ensemble: int, device: str, member_batch_size: int
) -> None:
    """Print CRPS per sampler and step count, the regression MAE and the oracle CRPS."""
    model = xcorrdiff.load_model(path)
    lr, hr = training_data(n_times, seed=1)  # held-out weather on the same terrain
    oracle = xcorrdiff.tutorial.oracle_ensemble(lr, n_ensemble=n_ensemble, seed=2)[OUTPUTS]

    def crps(ens: xr.Dataset) -> dict[str, float]:
        scores = xcorrdiff.verify.crps(ens, hr, member_dim="member", dim=None)
        return {name: float(scores[name]) for name in OUTPUTS}

    mean = model.regression_mean(lr)[OUTPUTS]
    mae = xcorrdiff.verify.mae(mean.expand_dims("member"), hr, dim=None)
    rows: list[tuple[str, int | None, dict[str, float], float | None]] = [
        ("regression mean (MAE)", None, {n: float(mae[n]) for n in OUTPUTS}, None),
        ("oracle ensemble (CRPS floor)", None, crps(oracle.compute()), None),
    ]
    runs = [(sampler, steps, None) for sampler in ("euler", "heun") for steps in STEPS]
    runs.append(("heun", 18, 0.0))  # PhysicsNeMo's CorrDiff sampler: 18 Heun steps, no churn
    for sampler, steps, churn in runs:
        start = time.perf_counter()
        ens = lr.corrdiff.downscale(
            model, n_ensemble=n_ensemble, sampler=sampler, num_steps=steps, s_churn=churn,
            seed=0, device=device, member_batch_size=member_batch_size,
        )  # fmt: skip
        label = f"{sampler} {steps}" + (", s_churn=0" if churn == 0 else "")
        evaluations = steps if sampler == "euler" else 2 * steps - 1
        rows.append((label, evaluations, crps(ens), time.perf_counter() - start))

    header = "| method | network evaluations | " + " | ".join(f"{n} CRPS" for n in OUTPUTS)
    print(header + " | seconds |")
    print("|" + " --- |" * (len(OUTPUTS) + 3))
    for label, evaluations, values, seconds in rows:
        cells = " | ".join(f"{values[n]:.3f}" for n in OUTPUTS)
        count = "" if evaluations is None else str(evaluations)
        timing = "" if seconds is None else f"{seconds:.0f}"
        print(f"| {label} | {count} | {cells} | {timing} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/tmp/xcorrdiff-steps-model"))
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--train-times", type=int, default=256)
    parser.add_argument("--regression-samples", type=int, default=2048)
    parser.add_argument("--diffusion-samples", type=int, default=6144)
    parser.add_argument("--eval-times", type=int, default=8)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--member-batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        train(
            args.model,
            n_times=args.train_times,
            regression=args.regression_samples,
            diffusion=args.diffusion_samples,
            device=args.device,
        )
    if not args.train_only:
        evaluate(
            args.model,
            n_times=args.eval_times,
            n_ensemble=args.members,
            device=args.device,
            member_batch_size=args.member_batch_size,
        )


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    main()

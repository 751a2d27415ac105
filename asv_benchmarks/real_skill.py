"""Real-data skill over training seeds: CorrDiff on NWS daily maximum temperature.

A perfect-model case on real fields (:mod:`real_data`: NDFD 5 km daily maximum temperature
over the southern Appalachians, 128 × 128, four days, PRISM terrain):

* HR truth: the 5 km field; LR input: its 4 × 4 block means (20 km), brought back onto the
  HR points by bilinear interpolation between the block centres (the outermost ring, which
  the block centres stop 1.5 HR cells short of, takes the edge's values), so the model is
  given input already on its grid, as from ``lr.corrdiff.regrid(hr, edge="nearest")``;
* terrain (``orography``) as the one invariant;
* three days trained, the fourth held out; a fixed short budget: the ``tiny`` preset with
  16 channels, 900 regression and 400 diffusion samples, learning rate 4e-3 halved every
  300 samples (all scaled by ``--budget``), no validation split, one torch thread;
* 16 members (seed 0, the model's sampler) on the held-out day, and with each sampler of
  ``--samplers NAME:STEPS ...`` from the same trained model (columns suffixed ``@NAME:STEPS``).

For each training seed it prints the held-out MAE of the bilinear input and of the
regression mean, the CRPS and fair CRPS of the members, and the spread/skill ratio
(Fortin-corrected: 1 is calibrated), then their mean and standard deviation over the seeds.
The scores are written out here (brute force over members, float64), and the model is
trained and run through the ``.corrdiff`` accessor and ``xcorrdiff.TrainConfig``, so the
script runs unchanged on older commits of xcorrdiff (put their checkout first on
``PYTHONPATH``; ``git worktree add /tmp/old afae753``):

* CRPS = mean over points of  E|X − y| − ½ E|X − X′|  (members X, X′; truth y);
* fair CRPS: the second term with 1 / (2 M (M − 1)) instead of 1 / (2 M²);
* spread/skill = sqrt(mean member variance (ddof 1) · (M + 1) / M) / RMSE of the member mean.

Seeds run in ``--workers`` processes (default 2). Usage::

    python asv_benchmarks/real_skill.py [--seeds 0 1 2 3 4] [--budget 1] [--workers 2]
    python asv_benchmarks/real_skill.py --case small --samplers dpmpp_2m:4 euler:24
    python asv_benchmarks/real_skill.py --case small --set ema_rampup_ratio=0.5 diffusion.gridtype=none
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import SMALL, load

FACTOR = 4
COLUMNS = ("mae_bilinear", "mae_mean", "bias_mean", "crps", "crps_fair", "spread_skill")
ENSEMBLE = ("crps", "crps_fair", "spread_skill")  # the columns each extra sampler adds


def _upsample(coarse: np.ndarray, n: int) -> np.ndarray:
    """Bilinear interpolation from block centres to the ``n`` fine points of the last two
    axes; points beyond the outermost centres take the edge values."""
    centres = (np.arange(coarse.shape[-1]) + 0.5) * FACTOR - 0.5
    fine = np.arange(n, dtype=np.float64)
    rows = np.apply_along_axis(lambda v: np.interp(fine, centres, v), -2, coarse)
    return np.apply_along_axis(lambda v: np.interp(fine, centres, v), -1, rows)


def case(name: str = "appalachians") -> tuple[xr.Dataset, xr.Dataset]:
    """``(lr, hr)``: the block-mean input on the HR grid, and the truth (with its terrain in
    the full case; the committed small case has none)."""
    ds = load() if name == "appalachians" else xr.open_dataset(SMALL).load()
    tmax = ds["tmax"].values.astype(np.float64)
    t, ny, nx = tmax.shape
    blocks = tmax.reshape(t, ny // FACTOR, FACTOR, nx // FACTOR, FACTOR).mean(axis=(2, 4))
    grid = {name: ds[name] for name in ("y", "x", "lat", "lon")}
    lr = xr.Dataset(
        {"tmax": (("time", "y", "x"), _upsample(blocks, ny).astype(np.float32), ds["tmax"].attrs)},
        coords={"time": ds["time"], **grid},
    )
    return lr, ds[[n for n in ("tmax", "orography") if n in ds]]


def train_config(seed: int, budget: float, folder: str, options: dict):  # type: ignore[no-untyped-def]
    """The case's ``TrainConfig``; ``options`` are further keywords of it, and its
    ``"diffusion"`` entry (a dict), fields of the diffusion network's ``NetworkConfig``."""
    import xcorrdiff
    from xcorrdiff.config import NetworkConfig

    options = dict(options)
    net = {"model_channels": 16, "channel_mult": (1, 2), "num_blocks": 1,
           "bottleneck_attention": False}  # fmt: skip
    diffusion = {"embedding_type": "positional", **options.pop("diffusion", {})}
    return xcorrdiff.TrainConfig(
        preset="tiny",
        regression=NetworkConfig(**net, embedding_type="zero"),
        diffusion=NetworkConfig(**net, **diffusion),
        regression_duration=round(900 * budget),
        diffusion_duration=round(400 * budget),
        learning_rate=4e-3,
        lr_decay=0.5,
        lr_decay_rate=round(300 * budget),
        validation_fraction=0.0,
        seed=seed,
        device="cpu",
        checkpoint_dir=folder,
        **options,  # only when given: older commits have neither option
    )


def fit_days(lr, hr, days: int, seed: int, budget: float, options: dict):  # type: ignore[no-untyped-def]
    """The model of training ``seed`` fitted on the first ``days`` days of the case
    ``(lr, hr)`` (terrain, where the case has it, as the invariant)."""
    train = slice(0, days)
    with tempfile.TemporaryDirectory() as folder:
        return lr.isel(time=train).corrdiff.fit(
            hr.isel(time=train), config=train_config(seed, budget, folder, options),
            invariants=[n for n in hr.data_vars if n != "tmax"], input_variables=["tmax"],
            output_variables=["tmax"], progress=False,
        )  # fmt: skip


def scores(members: np.ndarray, mean: np.ndarray, bilinear: np.ndarray, truth: np.ndarray) -> dict:
    """The held-out scores (see the module docstring); ``members`` ``(M, ...)``."""
    m = members.shape[0]
    skill = np.abs(members - truth).mean(axis=0)
    pairs = np.abs(members[:, None] - members[None, :]).sum(axis=(0, 1))
    spread = members.var(axis=0, ddof=1).mean() * (m + 1) / m
    rmse = np.sqrt(((members.mean(axis=0) - truth) ** 2).mean())
    return {
        "mae_bilinear": float(np.abs(bilinear - truth).mean()),
        "mae_mean": float(np.abs(mean - truth).mean()),
        "bias_mean": float((mean - truth).mean()),
        "crps": float((skill - pairs / (2 * m * m)).mean()),
        "crps_fair": float((skill - pairs / (2 * m * (m - 1))).mean()),
        "spread_skill": float(np.sqrt(spread) / rmse),
    }


def run_seed(
    seed: int, budget: float, n_members: int, options: dict, name: str, samplers: tuple = ()
) -> dict:
    """Train on three days of case ``name`` with ``seed``, downscale the fourth with the
    model's sampler and with each ``(name, steps)`` of ``samplers``, score each."""
    import torch

    import xcorrdiff  # noqa: F401  (registers the accessor)

    torch.set_num_threads(1)
    lr, hr = case(name)
    held = slice(3, 4)
    started = time.perf_counter()
    model = fit_days(lr, hr, 3, seed, budget, options)
    ens = lr.isel(time=held).corrdiff.downscale(
        model, n_members, seed=0, return_mean=True, device="cpu"
    )
    truth = hr["tmax"].isel(time=held).values.astype(np.float64)
    bilinear = lr["tmax"].isel(time=held).values.astype(np.float64)
    mean = ens["tmax_mean"].values.astype(np.float64)
    result = scores(ens["tmax"].values.astype(np.float64), mean, bilinear, truth)
    for sampler, steps in samplers:
        other = lr.isel(time=held).corrdiff.downscale(
            model, n_members, seed=0, sampler=sampler, num_steps=steps, device="cpu"
        )
        extra = scores(other["tmax"].values.astype(np.float64), mean, bilinear, truth)
        result.update({f"{c}@{sampler}:{steps}": extra[c] for c in ENSEMBLE})
    return {"seed": seed, **result, "seconds": time.perf_counter() - started}


def seed_table(
    run: Any, seeds: list[int], arguments: tuple, columns: tuple[str, ...], *,
    workers: int, width: int = 12, digits: int = 3,
) -> list[dict]:  # fmt: skip
    """``run(seed, *arguments)`` for each seed in ``workers`` spawned processes, each row
    printed as it comes (``columns`` to ``digits`` decimals, then its ``seconds``), then the
    columns' mean and standard deviation over the seeds; returns the rows."""
    print(f"{'seed':>4} " + " ".join(f"{c:>{width}}" for c in columns) + f" {'seconds':>8}")
    rows = []
    context = multiprocessing.get_context("spawn")
    spread = [[value] * len(seeds) for value in arguments]
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for row in pool.map(run, seeds, *spread):
            rows.append(row)
            print(f"{row['seed']:>4} " + " ".join(f"{row[c]:>{width}.{digits}f}" for c in columns)
                  + f" {row['seconds']:>8.0f}", flush=True)  # fmt: skip
    table = np.array([[row[c] for c in columns] for row in rows])
    summary = [("mean", table.mean(axis=0))]
    summary += [("sd", table.std(axis=0, ddof=1))] if len(rows) > 1 else []
    for label, values in summary:
        print(f"{label:>4} " + " ".join(f"{v:>{width}.{digits}f}" for v in values))
    return rows


def settings(texts: list[str]) -> dict:
    """``["ema_rampup_ratio=0.5", "diffusion.gridtype=\"none\""]`` → TrainConfig keywords,
    the diffusion network's fields under ``"diffusion"`` (values JSON, else strings)."""
    out: dict = {}
    for text in texts:
        key, _, raw = text.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("diffusion."):
            out.setdefault("diffusion", {})[key.removeprefix("diffusion.")] = value
        else:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=float, default=1.0, help="training budget factor")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--case", choices=("appalachians", "small"), default="appalachians")
    parser.add_argument("--input-skip", action="store_true", help="TrainConfig(input_skip=True)")
    parser.add_argument(
        "--residual-folds", type=int, default=0, help="TrainConfig(residual_folds=k)"
    )
    parser.add_argument("--samplers", nargs="*", default=[], metavar="NAME:STEPS",
                        help="also score these samplers of the same trained model")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                        help="TrainConfig keywords (diffusion.FIELD: the diffusion network's)")  # fmt: skip
    args = parser.parse_args()
    samplers = tuple((name, int(steps)) for name, steps in (s.split(":") for s in args.samplers))
    columns = COLUMNS + tuple(f"{c}@{n}:{k}" for n, k in samplers for c in ENSEMBLE)
    options = {"input_skip": True} if args.input_skip else {}
    options.update({"residual_folds": args.residual_folds} if args.residual_folds else {})
    options.update(settings(args.set))
    import xcorrdiff

    print(f"xcorrdiff {xcorrdiff.__version__} from {Path(xcorrdiff.__file__).parent}; "
          f"case {args.case}, budget x{args.budget:g}, {args.members} members, options {options}")  # fmt: skip
    started = time.perf_counter()
    rows = seed_table(
        run_seed, args.seeds, (args.budget, args.members, options, args.case, samplers), columns,
        workers=args.workers, width=max(12, *map(len, columns)),
    )  # fmt: skip
    print(f"{len(rows)} seeds in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

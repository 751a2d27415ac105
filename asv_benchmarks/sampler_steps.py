"""Cost and skill of the samplers by network evaluations (NFE), on known truth and real data.

For each sampler of :data:`xcorrdiff.config.SAMPLERS` and each NFE of ``--nfe`` (Heun: the
step counts whose ``2 n − 1`` evaluations are listed), the members of the held-out times are
scored against the truth:

* CRPS and fair CRPS (:func:`xcorrdiff.verify.crps`), averaged over the outputs;
* spread/skill per output (:func:`xcorrdiff.verify.spread_skill`; 1 is calibrated);
* rank-histogram flatness: the largest |relative frequency × (M + 1) − 1| over the ranks,
  pooled over outputs (0 is flat);
* high-k power of the members over the truth's (:func:`xcorrdiff.verify.high_wavenumber_power`),
  averaged over the outputs (1 is right; the regression mean's is far below);
* a row's label notes the calibrated noise factors its sampler runs with, where the model
  has them (``--model`` of a model calibrated by :func:`xcorrdiff.calibrate`);
* seconds per member of the whole ``downscale`` call (input preparation and regression
  mean included), and that time over 12-step Euler's (run first), all in the same run.

Cases:

* ``known`` (default): the packaged demo model on held-out synthetic weather (data seed 1,
  ``--times`` times), with the oracle ensemble (samples of the true ``p(hr | lr)``) as the
  floor;
* ``real``: a model trained as ``real_skill.py --case small`` does (training seed
  ``--train-seed``, the issue's budget), scored on the held-out day.

A count a sampler refuses (below its ``min_steps``) is printed as refused, with the message.

Usage::

    python asv_benchmarks/sampler_steps.py [--case known|real] [--times 8] [--members 32]
        [--nfe 1 2 3 4 6 8 12 18 24 36] [--samplers euler heun dpmpp_2m ancestral]
        [--runs euler:4,24 dpmpp_2m:2,4 dpmpp_2m:4@bfloat16 student ...] [--model DIR]
        [--uncalibrated] [--csv table.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMNS = (
    "crps",
    "crps_fair",
    "spread_skill",
    "rank_flatness",
    "power",
    "s_per_member",
    "time_ratio",
)


def known_case(  # type: ignore[no-untyped-def]
    n_times: int, path: str = "demo", uncalibrated: bool = False
):
    """The demo model (or the model at ``path``; ``uncalibrated``: its sampler's and its
    student's noise factors removed), held-out synthetic inputs and truth."""
    from xcorrdiff.demo.run import DATA_SEED, _held_out_data, _load
    from xcorrdiff.inference.calibrate import with_noise_scale

    model = _load(path, "cpu")
    if uncalibrated:
        model = with_noise_scale(model, None)  # type: ignore[arg-type]
        if model.student_config is not None:
            model = with_noise_scale(model, None, student=True)  # type: ignore[arg-type]
    lr, hr = _held_out_data(model, n_times, DATA_SEED, (128, 128), 8)
    return model, lr, hr[list(model.output_names)]


def real_case(train_seed: int):  # type: ignore[no-untyped-def]
    """A model trained on three days of the small real case, its held-out day and truth."""
    import torch
    from real_skill import case, train_config

    torch.set_num_threads(1)
    lr, hr = case("small")
    with tempfile.TemporaryDirectory() as folder:
        model = lr.isel(time=slice(0, 3)).corrdiff.fit(
            hr.isel(time=slice(0, 3)), config=train_config(train_seed, 1.0, folder, {}),
            invariants=[], input_variables=["tmax"], output_variables=["tmax"], progress=False,
        )  # fmt: skip
    return model, lr.isel(time=slice(3, 4)), hr[["tmax"]].isel(time=slice(3, 4))


def score(members: xr.Dataset, truth: xr.Dataset) -> dict[str, float]:
    """The table's columns but the timings, for ``members`` ``(member, time, y, x)``."""
    from xcorrdiff import verify

    names = list(truth.data_vars)
    m = members.sizes["member"]
    ranks = sum(
        verify.rank_histogram(members[n], truth[n]).values.astype(np.float64) for n in names
    )
    return {
        "crps": float(np.mean([verify.crps(members[n], truth[n]) for n in names])),
        "crps_fair": float(np.mean([verify.crps(members[n], truth[n], fair=True) for n in names])),
        "spread_skill": [float(verify.spread_skill(members[n], truth[n])) for n in names],
        "rank_flatness": float(np.abs(ranks / ranks.sum() * (m + 1) - 1).max()),
        "power": float(np.mean([
            verify.high_wavenumber_power(members[n]) / verify.high_wavenumber_power(truth[n])
            for n in names
        ])),
    }  # fmt: skip


def runs(samplers: list[str], nfes: list[int]) -> list[tuple[str, int]]:
    """(sampler, steps) for each sampler and listed NFE."""
    from xcorrdiff.config import SAMPLERS

    out = []
    for name in samplers:
        info = SAMPLERS[name]
        steps = sorted({n for n in range(1, max(nfes) + 1) if info.evaluations(n) in nfes})
        out += [(name, n) for n in steps]
    return out


def parse_runs(texts: list[str]) -> list[tuple[str, int, str | None]]:
    """``["euler:4,24", "heun:12@bfloat16", "student"]`` → ``[("euler", 4, None), ("euler",
    24, None), ("heun", 12, "bfloat16"), ("student", 0, None)]``: sampler, steps (the student
    samples on its own levels) and the network's precision (``@NAME``; None: float32)."""
    out: list[tuple[str, int, str | None]] = []
    for text in texts:
        spec, _, precision = text.partition("@")
        name, _, steps = spec.partition(":")
        if name == "student":
            out.append(("student", 0, precision or None))
            continue
        out += [(name, int(n), precision or None) for n in steps.split(",")]
    return out


def calibrated(model, student: bool) -> str:  # type: ignore[no-untyped-def]
    """A row label's note of the noise factors (``xcorrdiff.calibrate``) its sampler runs
    with: the model's apply to every sampler named in the call, the student's to it."""
    own = model.student_config.sampler if student else model.sampler
    scales = own.noise_scale
    return "" if scales is None else ", noise ×" + "/".join(f"{v:g}" for v in scales)


def row_text(label: str, nfe: object, values: dict) -> str:
    cells = []
    for c in COLUMNS:
        v = values.get(c)
        if isinstance(v, list):
            cells.append("/".join(f"{x:.2f}" for x in v))
        else:
            cells.append("" if v is None else f"{v:.4f}" if c.startswith("crps") else f"{v:.3f}")
    return f"| {label} | {nfe} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("known", "real"), default="known")
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 18, 24, 36])
    parser.add_argument("--samplers", nargs="+", default=None)
    parser.add_argument(
        "--runs", nargs="+", default=None, metavar="SAMPLER:STEPS,...",
        help="explicit rows instead of --samplers/--nfe, e.g. euler:4,24 dpmpp_2m:4,6",
    )  # fmt: skip
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--model", default="demo", help="known case: the model (a directory)")
    parser.add_argument(
        "--uncalibrated", action="store_true",
        help="known case: without the model's calibrated noise factors (the demo model's "
        "grid before 2026-12-08)",
    )  # fmt: skip
    parser.add_argument("--member-batch-size", type=int, default=8)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    import xcorrdiff
    from xcorrdiff.config import SAMPLERS

    samplers = args.samplers or list(SAMPLERS)
    model, lr, truth = (
        known_case(args.times, args.model, args.uncalibrated)
        if args.case == "known"
        else real_case(args.train_seed)
    )
    print(f"xcorrdiff {xcorrdiff.__version__}; case {args.case}: {truth.sizes['time']} time(s), "
          f"{args.members} members, outputs {list(truth.data_vars)}")  # fmt: skip
    header = "| sampler, steps | NFE | " + " | ".join(COLUMNS) + " |"
    print(header + "\n|" + " --- |" * (len(COLUMNS) + 2), flush=True)
    rows = []
    if args.case == "known":
        oracle = xcorrdiff.tutorial.oracle_ensemble(lr, n_ensemble=args.members, seed=2)
        values = score(oracle[list(truth.data_vars)].compute(), truth)
        print(row_text("oracle ensemble (floor)", "", values), flush=True)
        rows.append({"label": "oracle", "nfe": None, **values})
    baseline = None
    listed = (
        [(name, n, None) for name, n in runs(samplers, args.nfe)]
        if args.runs is None
        else parse_runs(args.runs)
    )
    plan = [("euler", 12, None)] + [r for r in listed if r != ("euler", 12, None)]
    for name, steps, precision in plan:
        options: dict = {"sampler": name, "num_steps": steps}
        if name == "student":  # the model's distilled student, on its own levels
            options, steps = {"student": True}, model.student_config.sampler.num_steps
            label, nfe = f"student {steps}", steps
        else:
            label, nfe = f"{name} {steps}", SAMPLERS[name].evaluations(steps)
        if precision is not None:
            options["precision"] = precision
            label += f" ({precision})"
        label += calibrated(model, name == "student")
        started = time.perf_counter()
        try:
            ens = lr.corrdiff.downscale(
                model, args.members, seed=0, device="cpu",
                member_batch_size=args.member_batch_size, **options,
            )  # fmt: skip
        except ValueError as error:
            print(f"| {label} | {nfe} | refused: {error} |", flush=True)
            continue
        per_member = (time.perf_counter() - started) / (args.members * truth.sizes["time"])
        baseline = per_member if baseline is None else baseline
        values = {**score(ens, truth), "s_per_member": per_member,
                  "time_ratio": per_member / baseline}  # fmt: skip
        print(row_text(label, nfe, values), flush=True)
        rows.append({"label": label, "nfe": nfe, **values})
    if args.csv is not None:
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["label", "nfe", *COLUMNS])
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()

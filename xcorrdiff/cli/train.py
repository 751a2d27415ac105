"""``xcorrdiff train``: paired LR/HR data (or a TOML file naming them) to a saved model.

The TOML file holds the run and the training settings::

    lr = "lr.zarr"                   # paths, unless given on the command line
    hr = "hr.zarr"
    out = "model"
    input_variables = ["t2m", "u10m", "v10m"]   # optional, as fit()
    output_variables = ["t2m", "u10m", "v10m"]
    regrid_method = "bilinear"

    [train]                          # TrainConfig: a preset, flat fields or group tables
    preset = "tiny"
    batch_size = 4

    [train.schedule]
    regression_duration = 4096

Values on the command line win over the file's. Checkpoints go to ``--checkpoint-dir``
(default ``OUT.checkpoints``), so running the same command again resumes an interrupted
run; the model is written to ``OUT`` only when both stages finished (and, with
``--distill STEPS``, the student of :func:`xcorrdiff.train.distill`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import tomllib

from xcorrdiff.cli.options import CommandError, Handler, integer, open_dataset, path, subcommand

__all__ = ["add_train", "read_run"]

_RUN_KEYS = ("lr", "hr", "out", "input_variables", "output_variables", "regrid_method", "train")

EXAMPLES = """examples:
  xcorrdiff train lr.zarr hr.zarr --out model --preset tiny
  xcorrdiff train --config run.toml                # paths and settings in the file
  xcorrdiff train lr.nc hr.nc --out model --config settings.toml --seed 3
  xcorrdiff train lr.zarr hr.zarr --out model --distill 2   # and a 2-step student
  (run the same command again to resume from OUT.checkpoints)
"""


def read_run(config: str | None) -> dict[str, Any]:
    """The run described by a TOML file (``{}`` without one); unknown keys are an error."""
    if config is None:
        return {}
    try:
        with open(config, "rb") as f:
            run = tomllib.load(f)
    except FileNotFoundError:
        raise CommandError(f"--config {config!r} does not exist; expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"--config {config!r} is not valid TOML: {exc}") from exc
    unknown = sorted(set(run) - set(_RUN_KEYS))
    if unknown:
        raise CommandError(
            f"--config {config!r} has unknown keys {unknown}; expected keys among "
            f"{list(_RUN_KEYS)} (training settings go in the [train] table)"
        )
    return run


def _setting(args: argparse.Namespace, run: dict[str, Any], key: str) -> Any:
    value = getattr(args, key, None)
    return value if value is not None else run.get(key)


def _train_config(args: argparse.Namespace, run: dict[str, Any], checkpoints: str) -> Any:
    from xcorrdiff.train.config import TrainConfig

    settings = dict(run.get("train", {}))
    for key in ("preset", "seed", "device"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["checkpoint_dir"] = checkpoints
    return TrainConfig(**settings)


def _variables(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _train(args: argparse.Namespace) -> int:
    run = read_run(args.config)
    lr_path, hr_path, out = (_setting(args, run, k) for k in ("lr", "hr", "out"))
    missing = [name for name, v in (("LR", lr_path), ("HR", hr_path), ("--out", out)) if not v]
    if missing:
        raise CommandError(f"{' and '.join(missing)} missing: give them on the command line or "
                           "in the --config file (lr, hr, out)")  # fmt: skip
    target = Path(out)
    if (target.exists() or target.is_symlink()) and not args.overwrite:
        raise CommandError(
            f"--out {out!r} already exists; choose another path or pass --overwrite to "
            "replace a model directory"
        )
    checkpoints = args.checkpoint_dir or os.fspath(target.with_name(target.name + ".checkpoints"))
    config = _train_config(args, run, checkpoints)
    from xcorrdiff.train.api import fit

    lr, hr = open_dataset(lr_path, "LR"), open_dataset(hr_path, "HR")
    model = fit(
        lr,
        hr,
        config=config,
        input_variables=_variables(args.inputs) or run.get("input_variables"),
        output_variables=_variables(args.outputs) or run.get("output_variables"),
        regrid_method=args.regrid_method or run.get("regrid_method", "bilinear"),
        calibrate=args.calibrate,
        progress=not args.quiet,
    )
    if args.distill is not None:
        from xcorrdiff.train.distillation import distill

        model = distill(model, lr, hr, args.distill, config=config, progress=not args.quiet)
    model.save(target, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote the model to {out} (checkpoints in {checkpoints})", file=sys.stderr)
    return 0


def add_train(subparsers: Any) -> Handler:
    p = subcommand(
        subparsers,
        "train",
        "train a CorrDiff model (regression, then residual diffusion) on paired data",
        (
            "Train both CorrDiff stages on paired LR/HR data (any files or stores xarray "
            "opens) and save the model to --out. A TOML --config holds the paths and the "
            "training settings; options on the command line win over it."
        ),
        EXAMPLES,
    )
    p.add_argument("lr", metavar="LR", nargs="?", type=path, help="low-resolution inputs")
    p.add_argument("hr", metavar="HR", nargs="?", type=path, help="high-resolution targets")
    p.add_argument("--out", type=path, default=None, help="model directory to write")
    p.add_argument("--config", type=path, default=None, help="TOML file (see the examples)")
    p.add_argument("--preset", choices=["tiny", "mini", "normal"], default=None)
    p.add_argument("--seed", type=integer(0), default=None, help="root of every random stream")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if any)")
    p.add_argument("--inputs", default=None, help="input variables of LR, comma-separated")
    p.add_argument("--outputs", default=None, help="output variables of HR, comma-separated")
    p.add_argument("--regrid-method", choices=["bilinear", "nearest", "conservative"], default=None)
    p.add_argument(
        "--checkpoint-dir", type=path, default=None, help="default OUT.checkpoints (resumes)"
    )
    p.add_argument(
        "--distill", type=integer(1), default=None, metavar="STEPS",
        help="then distil a STEPS-evaluation student of the diffusion network (same checkpoints)",
    )  # fmt: skip
    p.add_argument(
        "--calibrate", action="store_true",
        help="then calibrate the ensemble's spread on the validation times (fit(calibrate=True))",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return _train

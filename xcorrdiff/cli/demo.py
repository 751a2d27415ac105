"""``xcorrdiff demo``: the main job on held-out known-truth data."""

from __future__ import annotations

import argparse
from typing import Any

from xcorrdiff.cli.options import Handler, integer, path, subcommand

__all__ = ["add_demo"]

EXAMPLES = """examples:
  xcorrdiff demo                                   # 32 members, 1 held-out time
  xcorrdiff demo --out demo-output --overwrite --n-times 4 --n-ensemble 16
  xcorrdiff demo --model my_model --no-figures     # a model trained on the synthetic domain
"""


def _demo(args: argparse.Namespace) -> int:
    from xcorrdiff.demo import run_demo

    run_demo(
        args.out,
        model=args.model,
        n_ensemble=args.n_ensemble,
        n_times=args.n_times,
        num_steps=args.num_steps,
        seed=args.seed,
        overwrite=args.overwrite,
        figures=not args.no_figures,
        device=args.device,
        progress=not args.quiet,
    )
    return 0


def add_demo(subparsers: Any) -> Handler:
    from xcorrdiff.demo import DEFAULT_MEMBERS, DEFAULT_TIMES

    p = subcommand(
        subparsers,
        "demo",
        "downscale held-out known-truth data with the packaged model and score it",
        (
            "Make held-out synthetic LR/HR data (a weather seed the demo model never saw), "
            "downscale it with the packaged demo model, print one table of scores per "
            "variable against the truth and the oracle ensemble, and write DIR/demo.zarr "
            "and PNG figures."
        ),
        EXAMPLES,
    )
    p.add_argument(
        "--out", type=path, default="xcorrdiff-demo", help="output folder (default xcorrdiff-demo)"
    )
    p.add_argument(
        "--n-ensemble",
        "--members",
        type=integer(2),
        default=DEFAULT_MEMBERS,
        help=f"ensemble size (default {DEFAULT_MEMBERS})",
    )
    p.add_argument(
        "--n-times",
        type=integer(1),
        default=DEFAULT_TIMES,
        help=f"held-out times (default {DEFAULT_TIMES})",
    )
    p.add_argument(
        "--num-steps",
        "--steps",
        type=integer(1),
        default=None,
        help="sampler steps (default: the model's)",
    )
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the members and the oracle")
    p.add_argument(
        "--model", type=path, default="demo", help="'demo' (packaged) or a saved model's folder"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if an earlier demo wrote it"
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return _demo

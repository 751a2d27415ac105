"""The ``xcorrdiff`` command line: one subcommand per task.

::

    xcorrdiff downscale INPUT --model DIR --members 32 --out OUT.zarr \\
        [--sampler euler|heun] [--steps N] [--seed S] [--times START/END] [--resume] ...

Subcommands register themselves in :data:`COMMANDS` (name → function adding the subparser
and returning the handler), so new ones (``demo``, ``train``, ``verify``) are one function
each. Errors in the input or arguments print one line to stderr and exit with status 2;
nothing is written then.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --- downscale --------------------------------------------------------------------------


def _open_input(path: str, time_chunk: int) -> Any:
    import xarray as xr

    if not os.path.exists(path):
        raise CommandError(f"INPUT {path!r} does not exist; expected a file or store xarray opens")
    engine = "zarr" if os.path.isdir(path) else None
    try:
        ds = xr.open_dataset(path, engine=engine, chunks={})
    except (ValueError, OSError) as exc:
        raise CommandError(f"INPUT {path!r} could not be opened by xarray: {exc}") from exc
    if "time" in ds.dims:
        ds = ds.chunk({"time": time_chunk})
    return ds


def _select_times(ds: Any, times: str | None) -> Any:
    """Times by label: ``T`` (a time, or all times in a day/month with a partial date) or an
    ISO 8601 interval ``START/END`` (either end may be empty), both ends included."""
    if times is None:
        return ds
    if "time" not in ds.dims:
        raise CommandError(f"--times {times!r} given but INPUT has no 'time' dimension")
    start, sep, end = times.partition("/")
    try:
        window = slice(start or None, end or None) if sep else slice(start, start)
        selected = ds.sel(time=window)
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandError(
            f"--times {times!r} is not a time or a START/END range of times: {exc}"
        ) from exc
    if selected.sizes["time"] == 0:
        first, last = ds["time"].values[[0, -1]]
        raise CommandError(
            f"--times {times!r} selects no time; INPUT has times from {first} to {last}"
        )
    return selected


def _check_finite(ds: Any, names: Sequence[str]) -> None:
    """Count NaN/inf in the variables the model reads (one pass over the input)."""
    import dask
    import numpy as np

    present = [n for n in names if n in ds.data_vars]
    counts = dask.compute({n: (~np.isfinite(ds[n].data)).sum() for n in present})[0]
    bad = {n: int(c) for n, c in counts.items() if int(c)}
    if bad:
        raise CommandError(
            f"INPUT has NaN/inf values in {bad} (variable: count); fill them or drop those "
            "times (--times) first"
        )


class _TqdmCallback:
    """A dask callback showing finished tasks in a tqdm bar."""

    def __init__(self, disable: bool) -> None:
        from dask.callbacks import Callback
        from tqdm.auto import tqdm

        bar: list[Any] = []

        def start_state(dsk: Any, state: Any) -> None:
            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            bar.append(tqdm(total=total, desc="downscale", unit="task", disable=disable))

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            bar[-1].update(1)

        def finish(dsk: Any, state: Any, errored: bool) -> None:
            bar[-1].close()

        self.callback = Callback(start_state=start_state, posttask=posttask, finish=finish)


def _downscale(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.resume and args.mode == "w":
        raise CommandError("--resume and --mode w contradict each other; pass one of them")
    if out.exists() and not (args.mode == "w" or args.resume):
        raise CommandError(
            f"--out {os.fspath(out)!r} already exists; choose another path, pass --resume to "
            "continue an interrupted run, or --mode w to overwrite it"
        )
    import dask

    from xcorrdiff.downscale import downscale_to_zarr, get_model

    try:
        model = get_model(args.model)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise CommandError(f"--model: {exc}") from exc
    lr = _select_times(_open_input(args.input, args.time_chunk), args.times)
    _check_finite(lr, model.input_names)
    progress = _TqdmCallback(disable=args.quiet)
    try:
        with dask.config.set(scheduler="threads", num_workers=args.workers), progress.callback:
            run = downscale_to_zarr(
                lr if "time" in lr.dims else lr.expand_dims("time"),
                out,
                args.model,
                args.members,
                time_chunk=args.time_chunk,
                resume=args.resume,
                overwrite=args.mode == "w",
                seed=args.seed,
                sampler=args.sampler,
                num_steps=args.steps,
                s_churn=args.churn,
                patch_shape=args.patch_shape,
                overlap=args.overlap,
                member_batch_size=args.member_batch_size,
                device=args.device,
                dtype=args.dtype,
                return_mean=args.return_mean,
            )
    except (ValueError, KeyError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CommandError(str(message)) from exc
    if not args.quiet:
        resumed = f", {len(run.skipped)} found done" if run.skipped else ""
        print(
            f"wrote {len(run.computed)} of {run.n_chunks} time chunks{resumed} to {os.fspath(out)}",
            file=sys.stderr,
        )
    return 0


def _pair(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YxX (e.g. 64x64), got {text!r}") from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected YxX (e.g. 64x64), got {text!r}")
    return values[0], values[1]


def _add_downscale(subparsers: Any) -> Handler:
    p = subparsers.add_parser(
        "downscale",
        help="generate an HR ensemble from LR input with a CorrDiff model",
        description=(
            "Downscale INPUT (any file or store xarray opens) with a saved CorrDiff model and "
            "write the ensemble (member, time, y, x) to a zarr store, chunk by chunk."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="netCDF/zarr/... input opened with xarray")
    p.add_argument("--model", required=True, help="directory of a saved CorrDiff model")
    p.add_argument(
        "--out", required=True, help="output zarr store (must not exist, unless --resume)"
    )
    p.add_argument("--members", type=int, default=32, help="ensemble size (default 32)")
    p.add_argument("--sampler", choices=["euler", "heun"], default="euler")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (default: the model's, 12 Euler; 18 Heun)",
    )
    p.add_argument("--churn", type=float, default=None, help="EDM s_churn (default per sampler)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--times",
        default=None,
        help="a time (or day, month) or an ISO 8601 range START/END, e.g. 2021-01-01/2021-01-31",
    )
    p.add_argument("--patch-shape", type=_pair, default=None, help="patch size YxX")
    p.add_argument("--overlap", type=int, default=None, help="patch overlap in pixels")
    p.add_argument("--member-batch-size", type=int, default=None)
    p.add_argument(
        "--time-chunk", type=int, default=1, help="times per task and zarr chunk (default 1)"
    )
    p.add_argument("--workers", type=int, default=1, help="dask threads (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--return-mean", action="store_true", help="also write the regression mean")
    p.add_argument(
        "--mode", choices=["w-", "w"], default="w-", help="'w' overwrites an existing --out"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into --out: same arguments, only unfinished chunks",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return _downscale


# --- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from xcorrdiff.demo import run_demo

    try:
        run_demo(
            args.out,
            model=args.model,
            n_members=args.members,
            n_times=args.times,
            num_steps=args.steps,
            seed=args.seed,
            overwrite=args.overwrite,
            figures=not args.no_figures,
            device=args.device,
            progress=not args.quiet,
        )
    except (ValueError, OSError, ImportError) as exc:  # FileExistsError is an OSError
        raise CommandError(str(exc)) from exc
    return 0


def _add_demo(subparsers: Any) -> Handler:
    from xcorrdiff.demo import DEFAULT_MEMBERS, DEFAULT_TIMES

    p = subparsers.add_parser(
        "demo",
        help="downscale held-out known-truth data with the packaged model and score it",
        description=(
            "Make held-out synthetic LR/HR data (a weather seed the demo model never saw), "
            "downscale it with the packaged demo model, print one table of scores per "
            "variable against the truth and the oracle ensemble, and write DIR/demo.zarr "
            "and PNG figures."
        ),
    )
    p.add_argument("--out", default="xcorrdiff-demo", help="output folder (default xcorrdiff-demo)")
    p.add_argument(
        "--members",
        type=int,
        default=DEFAULT_MEMBERS,
        help=f"ensemble size (default {DEFAULT_MEMBERS})",
    )
    p.add_argument(
        "--times", type=int, default=DEFAULT_TIMES, help=f"held-out times (default {DEFAULT_TIMES})"
    )
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the members and the oracle")
    p.add_argument("--model", default="demo", help="'demo' (packaged) or a saved model's folder")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if an earlier demo wrote it"
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return _demo


#: Subcommands: name → function that adds its subparser and returns its handler.
COMMANDS: dict[str, Callable[[Any], Handler]] = {"downscale": _add_downscale, "demo": _add_demo}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The top-level parser and the handler of each subcommand."""
    parser = argparse.ArgumentParser(
        prog="xcorrdiff", description="CorrDiff generative downscaling for xarray."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers = {name: add(subparsers) for name, add in COMMANDS.items()}
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 2 on a usage error)."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except CommandError as exc:
        print(f"xcorrdiff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

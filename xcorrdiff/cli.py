"""The ``xcorrdiff`` command line: one subcommand per task.

::

    xcorrdiff downscale INPUT --model DIR --members 32 --out OUT.zarr \\
        [--sampler euler|heun] [--steps N] [--seed S] [--times START/END] [--resume] ...
    xcorrdiff demo [--out DIR] [--overwrite]

Subcommands register themselves in :data:`COMMANDS` (name → function adding the subparser
and returning the handler), so new ones are one function each.

The contract of every subcommand: a misuse (a bad option value, bad input data, an output
that exists) prints one line, ``xcorrdiff <command>: error: <message>``, to stderr and
exits with status 2; a failure of the environment (a read-only or full disk, a missing
permission) prints one line naming the path and exits with status 1. In both cases nothing
is left behind: every check runs before the first byte is written, and a store the call
created holding no finished chunk is removed (one with finished chunks stays, to be
resumed with ``--resume``).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["COMMANDS", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the contract above)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


# --- option types -----------------------------------------------------------------------------


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _pair(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YxX (e.g. 64x64), got {text!r}") from None
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected YxX with positive sides, got {text!r}")
    return values[0], values[1]


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


def _downscale_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "time_chunk": args.time_chunk,
        "resume": args.resume,
        "overwrite": args.mode == "w",
        "recompute_changed": args.recompute_changed,
        "check_plausibility": not args.no_plausibility_check,
        "seed": args.seed,
        "sampler": args.sampler,
        "num_steps": args.steps,
        "s_churn": args.churn,
        "patch_shape": args.patch_shape,
        "overlap": args.overlap,
        "member_batch_size": args.member_batch_size,
        "device": args.device,
        "dtype": args.dtype,
        "return_mean": args.return_mean,
    }


def _downscale(args: argparse.Namespace) -> int:
    if args.resume and args.mode == "w":
        raise CommandError("--resume and --mode w contradict each other; pass one of them")
    from xcorrdiff.inference.ownership import check_store_path

    out = check_store_path(args.out, protected=[args.input, args.model], argument="--out")
    if (out.exists() or out.is_symlink()) and not (args.mode == "w" or args.resume):
        raise CommandError(
            f"--out {args.out!r} already exists; choose another path, pass --resume to "
            "continue an interrupted run, or --mode w to replace a store xcorrdiff wrote"
        )
    import dask

    from xcorrdiff.downscale import downscale_to_zarr
    from xcorrdiff.inference.handles import get_model, resolve_model
    from xcorrdiff.inference.store import done_chunks

    try:
        model = resolve_model(args.model)  # hashed once, handed on
        get_model(model)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise CommandError(f"--model: {exc}") from exc
    lr = _select_times(_open_input(args.input, args.time_chunk), args.times)
    progress = _TqdmCallback(disable=args.quiet)
    try:
        with dask.config.set(scheduler="threads", num_workers=args.workers), progress.callback:
            run = downscale_to_zarr(
                lr if "time" in lr.dims else lr.expand_dims("time"),
                out,
                model,
                args.members,
                **_downscale_options(args),
            )
    except OSError as exc:
        if out.exists() and done_chunks(out):
            exc.strerror = (
                f"{exc.strerror}; {len(done_chunks(out))} finished time chunks are kept in "
                f"{args.out}: fix the cause and rerun with --resume to continue"
            )
        raise
    if not args.quiet:
        resumed = f", {len(run.skipped)} found done" if run.skipped else ""
        print(
            f"wrote {len(run.computed)} of {run.n_chunks} time chunks{resumed} to {args.out}",
            file=sys.stderr,
        )
    return 0


def _add_downscale(subparsers: Any) -> Handler:
    p = subparsers.add_parser(
        "downscale",
        help="generate an HR ensemble from LR input with a CorrDiff model",
        description=(
            "Downscale INPUT (any file or store xarray opens) with a saved CorrDiff model and "
            "write the ensemble (member, time, y, x) to a zarr store, chunk by chunk."
        ),
    )
    p.add_argument("input", metavar="INPUT", type=_path, help="netCDF/zarr/... input")
    p.add_argument("--model", required=True, type=_path, help="directory of a saved model")
    p.add_argument(
        "--out",
        required=True,
        type=_path,
        help="output zarr store (must not exist, unless --resume)",
    )
    p.add_argument("--members", type=_integer(1), default=32, help="ensemble size (default 32)")
    p.add_argument("--sampler", choices=["euler", "heun"], default="euler")
    p.add_argument(
        "--steps",
        type=_integer(1),
        default=None,
        help="sampler steps (default: the model's, 12 Euler; 18 Heun)",
    )
    p.add_argument(
        "--churn", type=_nonnegative_float, default=None, help="EDM s_churn (default per sampler)"
    )
    p.add_argument("--seed", type=_integer(0), default=0)
    p.add_argument(
        "--times",
        default=None,
        help="a time (or day, month) or an ISO 8601 range START/END, e.g. 2021-01-01/2021-01-31",
    )
    p.add_argument("--patch-shape", type=_pair, default=None, help="patch size YxX")
    p.add_argument("--overlap", type=_integer(0), default=None, help="patch overlap in pixels")
    p.add_argument("--member-batch-size", type=_integer(1), default=None)
    p.add_argument(
        "--time-chunk",
        type=_integer(1),
        default=1,
        help="times per task and zarr chunk (default 1)",
    )
    p.add_argument("--workers", type=_integer(1), default=1, help="dask threads (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--return-mean", action="store_true", help="also write the regression mean")
    p.add_argument(
        "--mode",
        choices=["w-", "w"],
        default="w-",
        help="'w' replaces an existing --out if xcorrdiff wrote it (never anything else)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into --out: same arguments, only unfinished chunks",
    )
    p.add_argument(
        "--recompute-changed",
        action="store_true",
        help="with --resume: recompute finished chunks whose input values changed",
    )
    p.add_argument(
        "--no-plausibility-check",
        action="store_true",
        help="accept inputs far outside the training range or physical bounds (experts)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return _downscale


# --- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from xcorrdiff.demo import run_demo

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
    p.add_argument(
        "--out", type=_path, default="xcorrdiff-demo", help="output folder (default xcorrdiff-demo)"
    )
    p.add_argument(
        "--members",
        type=_integer(2),
        default=DEFAULT_MEMBERS,
        help=f"ensemble size (default {DEFAULT_MEMBERS})",
    )
    p.add_argument(
        "--times",
        type=_integer(1),
        default=DEFAULT_TIMES,
        help=f"held-out times (default {DEFAULT_TIMES})",
    )
    p.add_argument(
        "--steps", type=_integer(1), default=None, help="sampler steps (default: the model's)"
    )
    p.add_argument("--seed", type=_integer(0), default=0, help="seed of the members and the oracle")
    p.add_argument(
        "--model", type=_path, default="demo", help="'demo' (packaged) or a saved model's folder"
    )
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
    parser = _Parser(prog="xcorrdiff", description="CorrDiff generative downscaling for xarray.")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    handlers = {name: add(subparsers) for name, add in COMMANDS.items()}
    return parser, handlers


#: OS errors that are the environment's (exit 1); other OS errors concern the input (exit 2).
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit status of an exception raised by a handler."""
    if isinstance(exc, OSError) and (
        exc.errno in _ENVIRONMENT_ERRNOS or isinstance(exc, PermissionError)
    ):
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        return f"cannot write or read{where}: {reason}", 1
    if isinstance(exc, MemoryError):  # a request larger than the machine: an argument to change
        return str(exc) or "out of memory", 2
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0]), 2
    return str(exc), 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 misuse, 1 environment)."""
    parser, handlers = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    if unknown:
        print(
            f"xcorrdiff {args.command}: error: unrecognized arguments: {' '.join(unknown)}; "
            f"see xcorrdiff {args.command} --help",
            file=sys.stderr,
        )
        return 2
    try:
        return handlers[args.command](args)
    except (
        CommandError,
        ValueError,
        KeyError,
        TypeError,
        ImportError,
        OSError,
        MemoryError,
    ) as exc:
        text, status = _message(exc)
        print(f"xcorrdiff {args.command}: error: {_one_line(text)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())

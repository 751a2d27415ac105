"""``xcorrdiff downscale``: an HR ensemble from LR input, written to zarr chunk by chunk."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from xcorrdiff.cli.options import (
    CommandError,
    Handler,
    integer,
    nonnegative_float,
    open_dataset,
    pair,
    path,
    region,
    subcommand,
)
from xcorrdiff.config import SAMPLERS

__all__ = ["add_downscale"]

EXAMPLES = """examples:
  xcorrdiff downscale era5.nc --model my_model --n-ensemble 32 --out ens.zarr
  xcorrdiff downscale cmip6.zarr --model my_model --out ens.zarr --times 2050-01/2050-12 \\
      --patch-shape 64x64 --time-chunk 4 --workers 2
  xcorrdiff downscale era5.nc --model my_model --out ens.zarr --resume   # after a kill
  xcorrdiff downscale era5.nc --model my_model --out ens.zarr --observations stations.nc
  xcorrdiff downscale era5_land.nc --model my_model --out ens.zarr --fill-missing nearest \\
      --region lat=44:46,lon=5:8
"""


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


def _downscale(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite:
        raise CommandError("--resume and --overwrite (--mode w) contradict each other; pass one")
    from xcorrdiff.inference.ownership import check_store_path

    out = check_store_path(args.out, protected=[args.input, args.model], argument="--out")
    if (out.exists() or out.is_symlink()) and not (args.overwrite or args.resume):
        raise CommandError(
            f"--out {args.out!r} already exists; choose another path, pass --resume to "
            "continue an interrupted run, or --overwrite to replace a store xcorrdiff wrote"
        )
    import dask

    from xcorrdiff.inference.api import OPTIONS, downscale_to_zarr
    from xcorrdiff.inference.handles import get_model, resolve_model
    from xcorrdiff.inference.store import done_chunks

    try:
        model = resolve_model(args.model)  # hashed once, handed on
        get_model(model)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise CommandError(f"--model: {exc}") from exc
    lr = _select_times(open_dataset(args.input, "INPUT", time_chunk=args.time_chunk), args.times)
    # Each option's flag is its name with dashes; a flag not given is left out, so the
    # function's default holds.
    options = {name: value for name, value in vars(args).items() if name in OPTIONS}
    if "observations" in options:
        options["observations"] = open_dataset(options["observations"], "--observations").load()
    progress = _TqdmCallback(disable=args.quiet)
    try:
        with dask.config.set(scheduler="threads", num_workers=args.workers), progress.callback:
            run = downscale_to_zarr(
                lr if "time" in lr.dims else lr.expand_dims("time"), out, model,
                time_chunk=args.time_chunk, resume=args.resume, overwrite=args.overwrite,
                recompute_changed=args.recompute_changed, **options,
            )  # fmt: skip
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


def _add_request(p: argparse.ArgumentParser) -> None:
    """The flags of the request: each named after its argument of ``downscale`` (older
    spellings kept as aliases), left out of the namespace unless given."""
    add = functools.partial(p.add_argument, default=argparse.SUPPRESS)
    add("--n-ensemble", "--members", type=integer(1), help="ensemble size (default 32)")
    add("--seed", type=integer(0), help="seed of the members' random streams (default 0)")
    add("--sampler", choices=list(SAMPLERS), help="default: the model's own sampler settings")
    add(
        "--num-steps", "--steps", type=integer(1),
        help="sampler steps (default: the model's; else the sampler's, 12, or 18 for Heun)",
    )  # fmt: skip
    add("--s-churn", "--churn", type=nonnegative_float, help="EDM churn (euler, heun)")
    add("--renoise", type=nonnegative_float, help="re-drawn noise fraction (ancestral; default 1)")
    add(
        "--student", action=argparse.BooleanOptionalAction,
        help="sample with the model's distilled few-step student (default: the model's choice)",
    )  # fmt: skip
    add("--patch-shape", type=pair, help="patch size YxX (default: the whole domain)")
    add("--overlap", type=integer(0), help="patch overlap in pixels")
    add(
        "--region", type=region,
        help="generate only a box: y=A:B,x=C:D (labels of the grid's dims) or lat=S:N,lon=W:E",
    )  # fmt: skip
    add(
        "--observations", type=path,
        help="station observations (station dim, lat/lon) to guide the sampler toward",
    )  # fmt: skip
    add(
        "--guidance-scale", type=nonnegative_float,
        help="weight of the observations' log-likelihood (default 1: Bayesian)",
    )  # fmt: skip
    add(
        "--fill-missing", choices=["nearest"],
        help="fill NaN input from the nearest valid cell (land-only input)",
    )  # fmt: skip
    add("--return-mean", action="store_true", help="also write the regression mean")
    add(
        "--no-plausibility-check", dest="check_plausibility", action="store_false",
        help="accept inputs far outside the training range or physical bounds (experts)",
    )  # fmt: skip
    add("--member-batch-size", type=integer(1))
    add("--device", help="cpu, cuda, cuda:N (default: auto)")
    add(
        "--precision", "--dtype", choices=["float32", "bfloat16", "float16"],
        help="network precision (default float32; reduced precision needs CUDA)",
    )  # fmt: skip


def add_downscale(subparsers: Any) -> Handler:
    p = subcommand(
        subparsers,
        "downscale",
        "generate an HR ensemble from LR input with a CorrDiff model",
        (
            "Downscale INPUT (any file or store xarray opens) with a saved CorrDiff model and "
            "write the ensemble (member, time, y, x) to a zarr store, chunk by chunk."
        ),
        EXAMPLES,
    )
    p.add_argument("input", metavar="INPUT", type=path, help="netCDF/zarr/... input")
    p.add_argument("--model", required=True, type=path, help="directory of a saved model")
    p.add_argument(
        "--out",
        required=True,
        type=path,
        help="output zarr store (must not exist, unless --resume or --overwrite)",
    )
    _add_request(p)
    p.add_argument(
        "--times",
        default=None,
        help="a time (or day, month) or an ISO 8601 range START/END, e.g. 2021-01-01/2021-01-31",
    )
    p.add_argument(
        "--time-chunk",
        type=integer(1),
        default=1,
        help="times per task and zarr chunk (default 1)",
    )
    p.add_argument("--workers", type=integer(1), default=1, help="dask threads (default 1)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out if xcorrdiff wrote it (never anything else)",
    )
    p.add_argument(
        "--mode",
        choices=["w-", "w"],
        action=_ModeAction,
        dest="overwrite",
        help="old spelling of --overwrite: 'w' replaces, 'w-' (default) refuses",
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return _downscale


class _ModeAction(argparse.Action):
    """``--mode w`` sets ``overwrite``; ``--mode w-`` leaves it False."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values == "w")

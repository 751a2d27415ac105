"""The ``xcorrdiff`` command line: one subcommand per task.

::

    xcorrdiff demo [--out DIR] [--overwrite]
    xcorrdiff train LR HR --out MODEL [--config run.toml] [--preset tiny] ...
    xcorrdiff downscale INPUT --model DIR --members 32 --out OUT.zarr \\
        [--sampler euler|heun] [--steps N] [--seed S] [--times START/END] [--resume] ...
    xcorrdiff verify ENSEMBLE TRUTH [--format text|csv|json] [--figures DIR]

Each subcommand lives in its own module and registers in :data:`COMMANDS` (name → function
adding the subparser and returning the handler). An option means the same in every
subcommand: ``--members`` the ensemble size, ``--seed`` the root of the random streams,
``--device`` where the networks run, ``--times`` a selection of times by label (the demo's
count of held-out times is ``--n-times``), ``--out`` what the command writes.

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
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from xcorrdiff.cli.demo import add_demo
from xcorrdiff.cli.downscale import add_downscale
from xcorrdiff.cli.options import CommandError, Handler
from xcorrdiff.cli.train import add_train
from xcorrdiff.cli.verify import add_verify

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the contract above)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


#: Subcommands: name → function that adds its subparser and returns its handler.
COMMANDS: dict[str, Callable[[Any], Handler]] = {
    "demo": add_demo,
    "train": add_train,
    "downscale": add_downscale,
    "verify": add_verify,
}


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

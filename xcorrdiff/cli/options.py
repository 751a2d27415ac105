"""Option types and the error of the command line, shared by every subcommand."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any

__all__ = [
    "CommandError",
    "Handler",
    "integer",
    "nonnegative_float",
    "open_dataset",
    "pair",
    "path",
    "region",
    "subcommand",
]


#: What a subcommand's module returns: the function running it on the parsed arguments.
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def integer(minimum: int) -> Callable[[str], int]:
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


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def pair(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YxX (e.g. 64x64), got {text!r}") from None
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected YxX with positive sides, got {text!r}")
    return values[0], values[1]


def region(text: str) -> dict[str, Any]:
    """``y=A:B,x=C:D`` (labels of the grid's dims, either end may be empty) as slices, or
    ``lat=S:N,lon=W:E`` as a latitude/longitude box: ``downscale``'s ``region``."""
    bounds: dict[str, tuple[float | None, float | None]] = {}
    try:
        for item in text.split(","):
            name, _, span = item.partition("=")
            low, sep, high = span.partition(":")
            if not name.strip() or not sep:
                raise ValueError(item)
            bounds[name.strip()] = (float(low) if low else None, float(high) if high else None)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected NAME=A:B[,NAME=C:D] (e.g. y=0:64000,x=:32000 or lat=44:46,lon=5:8), "
            f"got {text!r}"
        ) from None
    if set(bounds) == {"lat", "lon"}:
        if any(v is None for pair in bounds.values() for v in pair):
            raise argparse.ArgumentTypeError(f"a lat/lon box needs both ends of each, got {text!r}")
        return dict(bounds)
    return {name: slice(*pair) for name, pair in bounds.items()}


def open_dataset(source: str, argument: str, *, time_chunk: int | None = None) -> Any:
    """A file or store xarray opens (zarr folders included), lazily; chunked along ``time``."""
    import xarray as xr

    if not os.path.exists(source):
        raise CommandError(
            f"{argument} {source!r} does not exist; expected a file or store xarray opens"
        )
    zarr: dict[str, Any] = {"engine": "zarr", "consolidated": False}
    try:
        ds = xr.open_dataset(source, chunks={}, **(zarr if os.path.isdir(source) else {}))
    except (ValueError, OSError) as exc:
        raise CommandError(f"{argument} {source!r} could not be opened by xarray: {exc}") from exc
    if time_chunk is not None and "time" in ds.dims:
        ds = ds.chunk({"time": time_chunk})
    return ds


def subcommand(
    subparsers: Any, name: str, summary: str, description: str, examples: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser: one-line ``summary`` in ``xcorrdiff --help``, ``description``
    and the ``examples`` block in ``xcorrdiff NAME --help``."""
    extra: dict[str, Any] = {}
    if examples is not None:
        extra = {"epilog": examples, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description, **extra
    )
    return parser

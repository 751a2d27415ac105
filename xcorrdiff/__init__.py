"""xcorrdiff: CorrDiff generative downscaling for xarray.

Importing the package registers the ``.corrdiff`` accessor on :class:`xarray.Dataset`
(and :class:`xarray.DataArray`). Heavy submodules (``nn``, ``diffusion``, anything that
imports torch) load on first attribute access, so ``import xcorrdiff.verify`` stays
free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from xcorrdiff import accessor as _accessor  # noqa: F401  (registers .corrdiff)
from xcorrdiff._version import __version__
from xcorrdiff.options import get_options, set_options

_SUBMODULES = ("data", "diffusion", "inference", "nn", "plot", "train", "tutorial", "verify")

# Public names loaded on first access: {name: module}.
_LAZY_ATTRS = {
    "TrainConfig": "xcorrdiff.train.config",
    "CorrDiffModel": "xcorrdiff.model",
    "load_model": "xcorrdiff.model",
    "downscale": "xcorrdiff.inference.api",
    "downscale_to_zarr": "xcorrdiff.inference.api",
    "calibrate": "xcorrdiff.inference.calibrate",
}

__all__ = ["__version__", "get_options", "set_options", *_SUBMODULES, *_LAZY_ATTRS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"xcorrdiff.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'xcorrdiff' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

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

__version__ = "0.1.0.dev0"

_SUBMODULES = ("data", "diffusion", "nn", "plot", "tutorial", "verify")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"xcorrdiff.{name}")
    raise AttributeError(f"module 'xcorrdiff' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

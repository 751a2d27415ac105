"""The public downscaling API: :func:`downscale` and :func:`downscale_to_zarr`.

* :mod:`~xcorrdiff.inference.pipeline` — ``downscale``: check → prepare → mean → sample →
  label, lazily, one dask chunk of ``time`` at a time (see its module docstring for the
  random streams and the distributed behaviour).
* :mod:`~xcorrdiff.inference.to_zarr` — ``downscale_to_zarr``: resumable output, chunk by
  chunk.
* :mod:`~xcorrdiff.inference.settings` — every argument checked before anything runs.

``xcorrdiff.downscale`` and ``xcorrdiff.downscale_to_zarr`` are these functions.
"""

from __future__ import annotations

from xcorrdiff.inference.blocks import member_seed
from xcorrdiff.inference.handles import cache_info, get_model, resolve_model
from xcorrdiff.inference.pipeline import downscale
from xcorrdiff.inference.settings import DEFAULT_HEUN_CHURN, DEFAULT_STEPS
from xcorrdiff.inference.to_zarr import ZarrRun, downscale_to_zarr

__all__ = [
    "DEFAULT_HEUN_CHURN",
    "DEFAULT_STEPS",
    "ZarrRun",
    "cache_info",
    "downscale",
    "downscale_to_zarr",
    "get_model",
    "member_seed",
    "resolve_model",
]

"""Inference internals behind :func:`xcorrdiff.inference.api.downscale`.

* :mod:`~xcorrdiff.inference.handles` — model references, the per-process model cache and
  the per-worker device choice.
* :mod:`~xcorrdiff.inference.blocks` — random streams and the per-chunk regression and
  sampling.
* :mod:`~xcorrdiff.inference.store` — resumable zarr output: the request record, one region
  and one completion marker per time chunk.
"""

from __future__ import annotations

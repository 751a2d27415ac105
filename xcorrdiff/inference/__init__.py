"""Inference internals behind :func:`xcorrdiff.downscale.downscale`.

* :mod:`~xcorrdiff.inference.handles` — model references and the per-process model cache.
* :mod:`~xcorrdiff.inference.blocks` — random streams and the per-chunk regression and
  sampling.
"""

from __future__ import annotations

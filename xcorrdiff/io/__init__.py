"""Readers of other layouts of CorrDiff models and data.

* :mod:`~xcorrdiff.io.earth2studio` — Earth2Studio / NGC CorrDiff packages
  (:meth:`xcorrdiff.CorrDiffModel.from_earth2studio`).
"""

from __future__ import annotations

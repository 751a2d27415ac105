"""Readers and writers of other layouts of CorrDiff models and data.

* :mod:`~xcorrdiff.io.earth2studio` — Earth2Studio / NGC CorrDiff packages, both ways
  (:meth:`xcorrdiff.CorrDiffModel.from_earth2studio`,
  ``CorrDiffModel.save(..., format="earth2studio")``).
* :func:`read_cwa`, :func:`read_hrrr_mini`, :func:`read_gefs_hrrr` — the published CorrDiff
  data sets, as the :class:`PairedData` ``(lr, hr, invariants, stats)`` that ``fit`` takes.
"""

from __future__ import annotations

from xcorrdiff.io.cwa import read_cwa
from xcorrdiff.io.gefs_hrrr import read_gefs_hrrr
from xcorrdiff.io.hrrr_mini import read_hrrr_mini
from xcorrdiff.io.paired import PairedData

__all__ = ["PairedData", "read_cwa", "read_gefs_hrrr", "read_hrrr_mini"]

"""The main job: downscale held-out known-truth data with the packaged model and score it.

* :mod:`~xcorrdiff.demo.run` — :func:`run_demo`, the whole workflow and its output folder.
* :mod:`~xcorrdiff.demo.scores` — the scores, the quality criteria and the printed tables.
* :mod:`~xcorrdiff.demo.figures` — the PNG figures.

Nothing in the core package imports this package.
"""

from __future__ import annotations

from xcorrdiff.demo.run import (
    DATA_SEED,
    DEFAULT_MEMBERS,
    DEFAULT_TIMES,
    DEMO_MODEL_DIR,
    MARKER,
    TRAINING_SEED,
    DemoResult,
    run_demo,
)
from xcorrdiff.demo.scores import (
    METRICS,
    SPREAD_SKILL_VARIABLES,
    Criterion,
    check_criteria,
    demo_scores,
    format_tables,
    high_wavenumber_power,
)

__all__ = [
    "DATA_SEED",
    "DEFAULT_MEMBERS",
    "DEFAULT_TIMES",
    "DEMO_MODEL_DIR",
    "MARKER",
    "METRICS",
    "SPREAD_SKILL_VARIABLES",
    "TRAINING_SEED",
    "Criterion",
    "DemoResult",
    "check_criteria",
    "demo_scores",
    "format_tables",
    "high_wavenumber_power",
    "run_demo",
]

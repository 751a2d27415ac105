"""Training CorrDiff on paired (LR, HR) data: regression first, then residual diffusion.

* :mod:`~xcorrdiff.train.stages` — :func:`fit`, :func:`fit_regression`, :func:`fit_diffusion`:
  what differs between the two stages (network, loss, validation).
* :mod:`~xcorrdiff.train.config` — :class:`TrainConfig` in five frozen groups; the resume
  fingerprint derived from them.
* :mod:`~xcorrdiff.train.data` — the prepared, normalized training data and its streams.
* :mod:`~xcorrdiff.train.networks` — the networks built from a configuration.
* :mod:`~xcorrdiff.train.loop` — one flat loop of short steps shared by both stages.
* :mod:`~xcorrdiff.train.batches` — endless, resumable batch iteration (DataLoader workers).
* :mod:`~xcorrdiff.train.checkpoint` — pickle-free checkpoints and the JSON-lines log.
* :mod:`~xcorrdiff.train.schedule` — learning rate and EMA.
* :mod:`~xcorrdiff.train.streams` — every random stream, derived from one seed by name.
* :mod:`~xcorrdiff.train.distributed` — data-parallel set-up.
"""

from __future__ import annotations

from xcorrdiff.train.config import (
    DataConfig,
    ModelConfig,
    OptimizationConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainConfig,
)
from xcorrdiff.train.loop import CheckpointMismatchError, NonFiniteError
from xcorrdiff.train.networks import build_diffusion, build_regression
from xcorrdiff.train.stages import fit, fit_diffusion, fit_regression

__all__ = [
    "CheckpointMismatchError",
    "DataConfig",
    "ModelConfig",
    "NonFiniteError",
    "OptimizationConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "build_diffusion",
    "build_regression",
    "fit",
    "fit_diffusion",
    "fit_regression",
]

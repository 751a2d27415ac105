"""Training CorrDiff on paired (LR, HR) data: regression first, then residual diffusion.

* :mod:`~xcorrdiff.train.api` — :func:`fit`, both stages (torch-free: the stages load on
  the first call; the other names below load on first access).
* :mod:`~xcorrdiff.train.stages` — :func:`fit_regression`, :func:`fit_diffusion`: what
  differs between the two stages (network, loss, validation).
* :mod:`~xcorrdiff.train.distillation` — :func:`distill`: a few-step student of the diffusion
  network, trained on the teacher's sampling trajectories.
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

import importlib
from typing import Any

from xcorrdiff.train.api import fit

#: Names that load on first access (the training code imports torch): {name: module}.
_LAZY = {
    "DataConfig": "xcorrdiff.train.config",
    "ModelConfig": "xcorrdiff.train.config",
    "OptimizationConfig": "xcorrdiff.train.config",
    "RuntimeConfig": "xcorrdiff.train.config",
    "ScheduleConfig": "xcorrdiff.train.config",
    "TrainConfig": "xcorrdiff.train.config",
    "CheckpointMismatchError": "xcorrdiff.train.loop",
    "NonFiniteError": "xcorrdiff.train.loop",
    "build_diffusion": "xcorrdiff.train.networks",
    "build_regression": "xcorrdiff.train.networks",
    "fit_diffusion": "xcorrdiff.train.stages",
    "distill": "xcorrdiff.train.distillation",
    "fit_regression": "xcorrdiff.train.stages",
}

__all__ = ["fit", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

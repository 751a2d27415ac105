"""What both training stages share: their batches, the data-dependent part of their
checkpoint fingerprint, and the provenance they record in the model."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train.batches import StreamBatches
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.data import TIME, TrainingData, stream
from xcorrdiff.train.distributed import DistributedContext
from xcorrdiff.train.layout import Layout
from xcorrdiff.train.loop import StageResult

__all__ = ["model_parts", "stage_fingerprint", "stage_provenance", "train_batches"]


def model_parts(
    layout: Layout | CorrDiffModel, data: TrainingData, net: Any, norms: Mapping[str, Any]
) -> dict[str, Any]:
    """The data-dependent part of a stage's fingerprint."""
    return {
        "inputs": [v.to_dict() for v in layout.input_variables],
        "outputs": [v.to_dict() for v in layout.output_variables],
        "condition_variables": data.condition_variables,
        "grid_shape": list(layout.shape),
        "network": net.config,
        "normalization": {k: v.to_dict() for k, v in norms.items()},
    }


def stage_fingerprint(stage: str, config: TrainConfig, parts: Mapping[str, Any]) -> dict[str, Any]:
    return {"stage": stage, "train": config.fingerprint(), **parts}


def stage_provenance(data: TrainingData, result: StageResult) -> dict[str, Any]:
    times = data.condition.indexes.get(TIME)

    def span(idx: np.ndarray) -> list[str] | None:
        if times is None or len(idx) == 0:
            return None
        return [str(times[int(idx[0])]), str(times[int(idx[-1])])]

    validation = [h for h in result.history if h.get("event") == "validation"]
    return {
        "samples": result.samples,
        "steps": result.steps,
        "skipped_batches": result.skipped,
        "train_times": len(data.train),
        "train_time_span": span(data.train),
        "validation_times": len(data.validation),
        "validation_time_span": span(data.validation),
        "final_validation": validation[-1] if validation else None,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }


def train_batches(
    data: TrainingData,
    config: TrainConfig,
    parallel: DistributedContext,
    *,
    patch_shape: tuple[int, int] | None,
    seed: int,
) -> StreamBatches:
    patches = config.data.patches_per_sample if patch_shape is not None else 1
    batches = stream(
        data, config, indices=data.train, patch_shape=patch_shape, patches_per_sample=patches,
        shuffle=True, seed=seed, rank=parallel.rank, world_size=parallel.world_size,
    )  # fmt: skip
    return StreamBatches(batches, num_workers=config.runtime.num_workers)
